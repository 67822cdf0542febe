//! Encryption at rest of Secrets, with an envelope scheme: the whole object
//! body is sealed with AES-256-GCM under a data-encryption key (DEK); the
//! DEK is stored beside it, wrapped by a key-encryption key (KEK) of a
//! [`KeyProvider`] (key files, or a KMS later).
//!
//! A stored sealed body is one JSON object:
//!
//! ```json
//! {"manifold.dev/sealed": {"v": 1, "key": "key-b", "kid": "1f0c…", "dek": "<wrapped DEK>",
//!                          "nonce": "<96 bit>", "ct": "<ciphertext and tag>"}}
//! ```
//!
//! The authenticated data is the object's place (virtual cluster id, group,
//! kind, namespace, name), so a sealed body copied onto another row, say
//! another tenant's Secret, does not open. Bodies of other kinds, and
//! Secrets written before encryption was introduced, are stored as plain
//! JSON and read as they are; `manifold rotate-encryption` seals them.
//!
//! One DEK seals many writes (at most [`DEK_MAX_USES`], for at most
//! [`DEK_MAX_AGE`]), each with a fresh random nonce, so the provider wraps
//! rarely; unwrapped DEKs are cached, so reads call it rarely too.

mod key_files;
mod provider;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

pub use key_files::{KEY_LEN, KeyFileError, KeyFiles, key_id};
pub use provider::{KeyInfo, KeyProvider, ProviderError, Wrapped};

/// The single member of a sealed body.
pub const SEALED: &str = "manifold.dev/sealed";
/// A DEK is replaced after sealing this many bodies (random 96-bit nonces
/// stay far from collisions) ...
pub const DEK_MAX_USES: u64 = 1 << 24;
/// ... or after this long.
pub const DEK_MAX_AGE: Duration = Duration::from_secs(3600);
/// Unwrapped DEKs kept in memory.
const OPENED_CAPACITY: u64 = 4096;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Whether objects of this kind are sealed at rest: Secrets (core/v1).
pub fn encrypted_kind(group: &str, kind: &str) -> bool {
    group.is_empty() && kind == "Secret"
}

/// Where a body is stored; its authenticated data.
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    pub vcluster_id: Uuid,
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Location<'_> {
    pub fn encrypted(&self) -> bool {
        encrypted_kind(self.group, self.kind)
    }

    fn aad(&self) -> Vec<u8> {
        format!(
            "manifold.dev/sealed/v1\0{}\0{}\0{}\0{}\0{}",
            self.vcluster_id, self.group, self.kind, self.namespace, self.name
        )
        .into_bytes()
    }

    /// `secrets "db" in namespace "shop"`, for messages.
    fn describe(&self) -> String {
        let plural = manifold_kube_model::kinds::by_group_kind(self.group, self.kind)
            .map(|k| k.plural.to_owned())
            .unwrap_or_else(|| self.kind.to_lowercase());
        format!("{plural} {:?} in namespace {:?}", self.name, self.namespace)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptionError {
    /// Sealed with a key this process is not configured with.
    #[error(
        "{object} cannot be decrypted: it was encrypted with key {key:?} (id {id}), which is \
         not among this server's encryption keys; an operator must add that key back to \
         encryption.key_files (or the Secret must be deleted and written again)"
    )]
    UnknownKey {
        object: String,
        key: String,
        id: String,
    },
    /// The stored body does not open: altered, truncated, or moved from
    /// another object.
    #[error("{object} cannot be decrypted: {reason}")]
    Corrupt { object: String, reason: String },
    /// The key provider cannot be reached (transient).
    #[error("encryption keys are unavailable: {0}")]
    Unavailable(String),
    #[error("encryption failed: {0}")]
    Internal(String),
}

impl EncryptionError {
    /// The body will not open however often it is retried.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            EncryptionError::UnknownKey { .. } | EncryptionError::Corrupt { .. }
        )
    }
}

/// A data key that seals bodies; get one from [`Encryption::data_key`]
/// before a transaction and use it for every body the transaction writes.
pub struct DataKey {
    key: Arc<LessSafeKey>,
    kek: KeyInfo,
    /// The wrapped DEK, base64.
    wrapped: String,
    created: Instant,
    uses: AtomicU64,
    rng: SystemRandom,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("kek", &self.kek).finish()
    }
}

impl DataKey {
    /// The key-encryption key that wrapped this DEK.
    pub fn kek(&self) -> &KeyInfo {
        &self.kek
    }

    fn fresh(&self) -> bool {
        self.uses.load(Ordering::Relaxed) < DEK_MAX_USES && self.created.elapsed() < DEK_MAX_AGE
    }

    /// `body` sealed for storage at `at` (returned unchanged when `at` is
    /// not of an encrypted kind).
    pub fn seal(&self, at: &Location<'_>, body: &Value) -> Result<Value, EncryptionError> {
        if !at.encrypted() {
            return Ok(body.clone());
        }
        self.uses.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| EncryptionError::Internal("the random number generator failed".into()))?;
        let mut buf =
            serde_json::to_vec(body).map_err(|e| EncryptionError::Internal(e.to_string()))?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(at.aad()),
                &mut buf,
            )
            .map_err(|_| EncryptionError::Internal("sealing failed".into()))?;
        Ok(json!({
            SEALED: {
                "v": 1,
                "key": self.kek.name,
                "kid": self.kek.id,
                "dek": self.wrapped,
                "nonce": B64.encode(nonce),
                "ct": B64.encode(&buf),
            }
        }))
    }
}

/// The key id a stored body is sealed with; `None` for a plain body.
pub fn sealed_with(stored: &Value) -> Option<&str> {
    stored
        .get(SEALED)
        .and_then(|e| e.get("kid"))
        .and_then(Value::as_str)
}

/// Seals and opens object bodies with data keys wrapped by a provider.
pub struct Encryption {
    provider: Arc<dyn KeyProvider>,
    current: tokio::sync::Mutex<Option<Arc<DataKey>>>,
    /// (KEK id, wrapped DEK) → the DEK.
    opened: moka::future::Cache<(String, String), Arc<LessSafeKey>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("keys", &self.provider.keys())
            .finish()
    }
}

fn provider_error(at: &Location<'_>, kek: &str, id: &str, e: ProviderError) -> EncryptionError {
    match e {
        ProviderError::UnknownKey { .. } => EncryptionError::UnknownKey {
            object: at.describe(),
            key: kek.to_owned(),
            id: id.to_owned(),
        },
        ProviderError::Invalid(reason) => EncryptionError::Corrupt {
            object: at.describe(),
            reason: format!("its data key does not unwrap with key {kek:?} (id {id}): {reason}"),
        },
        ProviderError::Unavailable(m) => EncryptionError::Unavailable(m),
    }
}

impl Encryption {
    pub fn new(provider: Arc<dyn KeyProvider>) -> Self {
        Self {
            provider,
            current: tokio::sync::Mutex::new(None),
            opened: moka::future::Cache::builder()
                .max_capacity(OPENED_CAPACITY)
                .time_to_idle(DEK_MAX_AGE)
                .build(),
            rng: SystemRandom::new(),
        }
    }

    /// Loads `encryption.key_files` (see [`KeyFiles::load`]).
    pub fn from_key_files(paths: &[std::path::PathBuf]) -> Result<Self, KeyFileError> {
        Ok(Self::new(Arc::new(KeyFiles::load(paths)?)))
    }

    /// The key new writes are encrypted with.
    pub fn primary(&self) -> KeyInfo {
        self.provider.primary()
    }

    /// Every configured key, the primary first.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.provider.keys()
    }

    /// The current data key, replaced when it is worn out or the provider's
    /// primary key changed. Call it before a transaction: it may call the
    /// provider.
    pub async fn data_key(&self) -> Result<Arc<DataKey>, EncryptionError> {
        let mut current = self.current.lock().await;
        let primary = self.provider.primary();
        if let Some(k) = current.as_ref()
            && k.fresh()
            && k.kek == primary
        {
            return Ok(k.clone());
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        self.rng
            .fill(raw.as_mut())
            .map_err(|_| EncryptionError::Internal("the random number generator failed".into()))?;
        let wrapped = self
            .provider
            .wrap(raw.as_ref())
            .await
            .map_err(|e| match e {
                ProviderError::Unavailable(m) => EncryptionError::Unavailable(m),
                other => EncryptionError::Internal(other.to_string()),
            })?;
        let key = Arc::new(aead_key(raw.as_ref())?);
        let wrapped_b64 = B64.encode(&wrapped.ciphertext);
        self.opened
            .insert((wrapped.key.id.clone(), wrapped_b64.clone()), key.clone())
            .await;
        let dek = Arc::new(DataKey {
            key,
            kek: wrapped.key,
            wrapped: wrapped_b64,
            created: Instant::now(),
            uses: AtomicU64::new(0),
            rng: SystemRandom::new(),
        });
        *current = Some(dek.clone());
        Ok(dek)
    }

    /// The body stored at `at`, opened. Plain bodies (other kinds, Secrets
    /// from before encryption) come back unchanged.
    pub async fn open(&self, at: &Location<'_>, stored: Value) -> Result<Value, EncryptionError> {
        if !at.encrypted() {
            return Ok(stored);
        }
        let Some(envelope) = stored.get(SEALED) else {
            return Ok(stored);
        };
        let corrupt = |reason: &str| EncryptionError::Corrupt {
            object: at.describe(),
            reason: reason.to_owned(),
        };
        let field = |name: &str| {
            envelope
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| corrupt(&format!("its envelope has no {name:?}")))
        };
        if envelope.get("v").and_then(Value::as_i64) != Some(1) {
            return Err(corrupt("its envelope version is not 1"));
        }
        let (kek, kid, dek, nonce, ct) = (
            field("key")?,
            field("kid")?,
            field("dek")?,
            field("nonce")?,
            field("ct")?,
        );
        let key = self
            .opened
            .try_get_with((kid.to_owned(), dek.to_owned()), async {
                let wrapped = B64
                    .decode(dek)
                    .map_err(|_| corrupt("its data key is not base64"))?;
                let raw = self
                    .provider
                    .unwrap(kid, &wrapped)
                    .await
                    .map_err(|e| provider_error(at, kek, kid, e))?;
                aead_key(&raw).map(Arc::new)
            })
            .await
            .map_err(|e: Arc<EncryptionError>| (*e).clone())?;
        let nonce = B64
            .decode(nonce)
            .ok()
            .and_then(|n| Nonce::try_assume_unique_for_key(&n).ok())
            .ok_or_else(|| corrupt("its nonce is malformed"))?;
        let mut buf = B64
            .decode(ct)
            .map_err(|_| corrupt("its ciphertext is not base64"))?;
        let plain = key
            .open_in_place(nonce, Aad::from(at.aad()), &mut buf)
            .map_err(|_| {
                corrupt("authentication failed: the stored bytes were altered or belong to another object")
            })?;
        let value = serde_json::from_slice(plain);
        buf.iter_mut().for_each(|b| *b = 0);
        value.map_err(|_| corrupt("the decrypted body is not JSON"))
    }
}

fn aead_key(raw: &[u8]) -> Result<LessSafeKey, EncryptionError> {
    UnboundKey::new(&AES_256_GCM, raw)
        .map(LessSafeKey::new)
        .map_err(|_| EncryptionError::Internal("a data key must have 32 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn key_file(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut key).unwrap();
        std::fs::write(&path, B64.encode(key)).unwrap();
        path
    }

    fn at(name: &str) -> Location<'_> {
        Location {
            vcluster_id: Uuid::nil(),
            group: "",
            kind: "Secret",
            namespace: "shop",
            name,
        }
    }

    fn secret() -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
               "data": {"password": "aHVudGVyMg=="}, "stringData": {"token": "s3cr3t-token"}})
    }

    #[tokio::test]
    async fn bodies_round_trip_and_hide_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let enc = Encryption::from_key_files(&[key_file(dir.path(), "a.key")]).unwrap();
        let dek = enc.data_key().await.unwrap();
        let sealed = dek.seal(&at("db"), &secret()).unwrap();
        let text = sealed.to_string();
        // (Needles long enough never to turn up in random base64 by chance.)
        for plain in ["aHVudGVyMg==", "hunter2", "s3cr3t-token", "password"] {
            assert!(!text.contains(plain), "{plain} in {text}");
        }
        assert_eq!(sealed_with(&sealed), Some(enc.primary().id.as_str()));
        assert_eq!(enc.open(&at("db"), sealed).await.unwrap(), secret());
        // The same data key again, a fresh nonce each time.
        let again = enc.data_key().await.unwrap();
        assert!(Arc::ptr_eq(&dek, &again));
        let one = again.seal(&at("db"), &secret()).unwrap();
        let two = again.seal(&at("db"), &secret()).unwrap();
        assert_ne!(one, two);
    }

    #[tokio::test]
    async fn other_kinds_and_plain_secrets_pass_through() {
        let dir = tempfile::tempdir().unwrap();
        let enc = Encryption::from_key_files(&[key_file(dir.path(), "a.key")]).unwrap();
        let cm = Location {
            kind: "ConfigMap",
            ..at("c")
        };
        let dek = enc.data_key().await.unwrap();
        let body = json!({"data": {"k": "v"}});
        assert_eq!(dek.seal(&cm, &body).unwrap(), body);
        assert_eq!(enc.open(&cm, body.clone()).await.unwrap(), body);
        assert_eq!(enc.open(&at("db"), secret()).await.unwrap(), secret());
        assert_eq!(sealed_with(&secret()), None);
    }

    #[tokio::test]
    async fn a_body_moved_to_another_object_or_altered_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let enc = Encryption::from_key_files(&[key_file(dir.path(), "a.key")]).unwrap();
        let sealed = enc
            .data_key()
            .await
            .unwrap()
            .seal(&at("db"), &secret())
            .unwrap();
        let e = enc.open(&at("other"), sealed.clone()).await.unwrap_err();
        assert!(matches!(e, EncryptionError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("secrets \"other\""), "{e}");
        let elsewhere = Location {
            vcluster_id: Uuid::new_v4(),
            ..at("db")
        };
        assert!(enc.open(&elsewhere, sealed.clone()).await.is_err());

        let mut altered = sealed.clone();
        let ct = altered[SEALED]["ct"].as_str().unwrap().to_owned();
        let mut bytes = B64.decode(ct).unwrap();
        bytes[0] ^= 1;
        altered[SEALED]["ct"] = B64.encode(bytes).into();
        assert!(
            enc.open(&at("db"), altered)
                .await
                .unwrap_err()
                .is_permanent()
        );

        let mut no_ct = sealed;
        no_ct[SEALED].as_object_mut().unwrap().remove("ct");
        assert!(
            enc.open(&at("db"), no_ct)
                .await
                .unwrap_err()
                .to_string()
                .contains("no \"ct\"")
        );
    }

    #[tokio::test]
    async fn rotation_old_keys_decrypt_and_a_missing_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = key_file(dir.path(), "a.key");
        let b = key_file(dir.path(), "b.key");
        let old = Encryption::from_key_files(std::slice::from_ref(&a)).unwrap();
        let under_a = old
            .data_key()
            .await
            .unwrap()
            .seal(&at("db"), &secret())
            .unwrap();

        let rotated = Encryption::from_key_files(&[b.clone(), a.clone()]).unwrap();
        assert_eq!(rotated.primary().name, "b.key");
        assert_eq!(
            rotated.open(&at("db"), under_a.clone()).await.unwrap(),
            secret()
        );
        let under_b = rotated
            .data_key()
            .await
            .unwrap()
            .seal(&at("db"), &secret())
            .unwrap();
        assert_eq!(under_b[SEALED]["key"], "b.key");

        let only_b = Encryption::from_key_files(&[b]).unwrap();
        assert_eq!(only_b.open(&at("db"), under_b).await.unwrap(), secret());
        let e = only_b.open(&at("db"), under_a).await.unwrap_err();
        assert!(e.is_permanent());
        let text = e.to_string();
        assert!(
            text.contains("secrets \"db\" in namespace \"shop\" cannot be decrypted")
                && text.contains("key \"a.key\"")
                && text.contains("encryption.key_files"),
            "{text}"
        );
    }
}
