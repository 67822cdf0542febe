//! Key-encryption keys from local files (`encryption.key_files`): each file
//! holds 32 random bytes in base64, the first file's key wraps new data
//! keys, every file's key unwraps. Data keys are wrapped with AES-256-GCM.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::provider::{KeyInfo, KeyProvider, ProviderError, Wrapped};

/// Length of a key-encryption key.
pub const KEY_LEN: usize = 32;
/// Authenticated data of every wrapped data key: binds the wrapping to its
/// purpose (a wrapped DEK cannot be passed off as anything else).
const WRAP_AAD: &[u8] = b"manifold.dev/data-key/v1";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A key file that cannot be used; names the setting and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {path}: {message}")]
pub struct KeyFileError {
    /// `encryption.key_files[1]`, or the default key file's description.
    pub setting: String,
    pub path: PathBuf,
    pub message: String,
}

struct LocalKey {
    info: KeyInfo,
    aead: LessSafeKey,
}

/// The local [`KeyProvider`].
pub struct KeyFiles {
    keys: Vec<LocalKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for KeyFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.info))
            .finish()
    }
}

/// The stable id of a key: the first 8 bytes of SHA-256 over a label and
/// the key, in hex. It names the key without revealing anything about it.
pub fn key_id(key: &[u8]) -> String {
    let mut input = b"manifold.dev/key-id\0".to_vec();
    input.extend_from_slice(key);
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    input.iter_mut().for_each(|b| *b = 0);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Parses a key file's contents: base64 of exactly 32 bytes, surrounding
/// whitespace ignored.
fn parse_key(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    const FIX: &str = "a key file holds 32 random bytes in base64, e.g. \
                       `head -c 32 /dev/urandom | base64 > FILE && chmod 600 FILE`";
    let text = std::str::from_utf8(text).map_err(|_| format!("not text; {FIX}"))?;
    let key = Zeroizing::new(
        B64.decode(text.trim())
            .map_err(|e| format!("not base64 ({e}); {FIX}"))?,
    );
    if key.len() != KEY_LEN {
        return Err(format!(
            "decodes to {} bytes, a key has {KEY_LEN}; {FIX}",
            key.len()
        ));
    }
    Ok(key)
}

impl KeyFiles {
    /// Loads `paths` in order: the first key is the primary. Refuses an
    /// empty list, unreadable or malformed files, the same key twice and two
    /// keys with one name, naming the setting (`encryption.key_files[i]`).
    pub fn load(paths: &[PathBuf]) -> Result<Self, KeyFileError> {
        let mut keys: Vec<LocalKey> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let setting = format!("encryption.key_files[{i}]");
            let fail = |message: String| KeyFileError {
                setting: setting.clone(),
                path: path.clone(),
                message,
            };
            let key = read_key(path).map_err(&fail)?;
            let id = key_id(&key);
            if let Some(first) = seen.get(&id) {
                return Err(fail(format!(
                    "the same key as encryption.key_files[{first}]; list each key once"
                )));
            }
            let name = key_name(path);
            if let Some(other) = keys.iter().position(|k| k.info.name == name) {
                return Err(fail(format!(
                    "encryption.key_files[{other}] has the same file name {name:?}; key \
                     files are named by their file name, give each a distinct one"
                )));
            }
            seen.insert(id.clone(), i);
            keys.push(LocalKey {
                info: KeyInfo { name, id },
                aead: aead_key(&key),
            });
        }
        if keys.is_empty() {
            return Err(KeyFileError {
                setting: "encryption.key_files".into(),
                path: PathBuf::new(),
                message: "no key file given".into(),
            });
        }
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Loads the key at `path`, creating it first (32 random bytes, mode
    /// 0600, written atomically) when the file does not exist. Concurrent
    /// callers agree on one key: the file is linked into place only if it is
    /// still absent. Returns whether this call created it.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyFileError> {
        let created = create_key_file(path).map_err(|message| KeyFileError {
            setting: "the default encryption key (encryption.key_files is empty)".into(),
            path: path.to_owned(),
            message,
        })?;
        let keys = Self::load(&[path.to_owned()]).map_err(|mut e| {
            e.setting = "the default encryption key (encryption.key_files is empty)".into();
            e
        })?;
        Ok((keys, created))
    }

    fn find(&self, id: &str) -> Option<&LocalKey> {
        self.keys.iter().find(|k| k.info.id == id)
    }
}

fn aead_key(key: &[u8]) -> LessSafeKey {
    // Only fails for a wrong length, which parse_key rules out.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

fn read_key(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?);
    warn_if_world_readable(path);
    parse_key(&bytes)
}

#[cfg(unix)]
fn warn_if_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "an encryption key file is world-readable; restrict it (chmod 600)"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_world_readable(_path: &Path) {}

/// Writes a fresh key to `path` unless a file is there. `Ok(true)` when it
/// wrote one.
fn create_key_file(path: &Path) -> Result<bool, String> {
    if path.exists() {
        return Ok(false);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create its directory: {e}"))?;
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new()
        .fill(key.as_mut())
        .map_err(|_| "the system random number generator failed".to_owned())?;
    let mut text = Zeroizing::new(B64.encode(key.as_ref()));
    text.push('\n');
    let tmp = path.with_file_name(format!(".{}.tmp-{}", key_name(path), std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut file = open_private(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        // A hard link fails when the target exists: the first writer wins
        // and every other process loads the winner's key.
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(format!("cannot write: {e}")),
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[async_trait::async_trait]
impl KeyProvider for KeyFiles {
    fn primary(&self) -> KeyInfo {
        self.keys[0].info.clone()
    }

    fn keys(&self) -> Vec<KeyInfo> {
        self.keys.iter().map(|k| k.info.clone()).collect()
    }

    async fn wrap(&self, dek: &[u8]) -> Result<Wrapped, ProviderError> {
        let primary = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| ProviderError::Unavailable("the random number generator failed".into()))?;
        let mut sealed = dek.to_vec();
        primary
            .aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(WRAP_AAD),
                &mut sealed,
            )
            .map_err(|_| ProviderError::Invalid("wrapping failed".into()))?;
        let mut ciphertext = nonce.to_vec();
        ciphertext.extend_from_slice(&sealed);
        Ok(Wrapped {
            key: primary.info.clone(),
            ciphertext,
        })
    }

    async fn unwrap(
        &self,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        let key = self.find(key_id).ok_or_else(|| ProviderError::UnknownKey {
            id: key_id.to_owned(),
        })?;
        if wrapped.len() < NONCE_LEN {
            return Err(ProviderError::Invalid("too short".into()));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| ProviderError::Invalid("bad nonce".into()))?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let len = key
            .aead
            .open_in_place(nonce, Aad::from(WRAP_AAD), &mut buf)
            .map_err(|_| ProviderError::Invalid("authentication failed".into()))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_key(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut key).unwrap();
        std::fs::write(&path, format!("{}\n", B64.encode(key))).unwrap();
        path
    }

    #[tokio::test]
    async fn the_first_key_wraps_and_every_key_unwraps() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_key(dir.path(), "a.key");
        let b = write_key(dir.path(), "b.key");
        let old = KeyFiles::load(std::slice::from_ref(&a)).unwrap();
        let wrapped_a = old.wrap(&[7u8; 32]).await.unwrap();
        assert_eq!(wrapped_a.key.name, "a.key");

        let both = KeyFiles::load(&[b.clone(), a.clone()]).unwrap();
        assert_eq!(both.primary().name, "b.key");
        let wrapped_b = both.wrap(&[9u8; 32]).await.unwrap();
        assert_eq!(wrapped_b.key.name, "b.key");
        let dek = both
            .unwrap(&wrapped_a.key.id, &wrapped_a.ciphertext)
            .await
            .unwrap();
        assert_eq!(&dek[..], &[7u8; 32]);

        // Without a, what a wrapped names an unknown key.
        let only_b = KeyFiles::load(&[b]).unwrap();
        assert!(matches!(
            only_b
                .unwrap(&wrapped_a.key.id, &wrapped_a.ciphertext)
                .await,
            Err(ProviderError::UnknownKey { .. })
        ));
        // Tampering is detected.
        let mut bad = wrapped_b.ciphertext.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            only_b.unwrap(&wrapped_b.key.id, &bad).await,
            Err(ProviderError::Invalid(_))
        ));
    }

    #[test]
    fn bad_key_files_name_the_setting_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let good = write_key(dir.path(), "good.key");
        let short = dir.path().join("short.key");
        std::fs::write(&short, B64.encode([1u8; 16])).unwrap();
        let e = KeyFiles::load(&[good.clone(), short]).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("encryption.key_files[1]: "), "{text}");
        assert!(text.contains("decodes to 16 bytes"), "{text}");
        assert!(text.contains("head -c 32 /dev/urandom | base64"), "{text}");

        let garbage = dir.path().join("garbage.key");
        std::fs::write(&garbage, "not base64 at all!").unwrap();
        assert!(
            KeyFiles::load(&[garbage])
                .unwrap_err()
                .to_string()
                .contains("not base64")
        );

        let missing = dir.path().join("missing.key");
        let e = KeyFiles::load(&[missing]).unwrap_err().to_string();
        assert!(
            e.contains("encryption.key_files[0]") && e.contains("cannot read"),
            "{e}"
        );

        let e = KeyFiles::load(&[good.clone(), good.clone()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("the same key as encryption.key_files[0]"), "{e}");

        let other_dir = dir.path().join("other");
        std::fs::create_dir(&other_dir).unwrap();
        let twin = write_key(&other_dir, "good.key");
        let e = KeyFiles::load(&[good, twin]).unwrap_err().to_string();
        assert!(e.contains("same file name"), "{e}");

        assert!(KeyFiles::load(&[]).is_err());
    }

    #[test]
    fn the_default_key_is_created_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("encryption.key");
        let (first, created) = KeyFiles::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = KeyFiles::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.primary(), again.primary());
        assert_eq!(first.primary().name, "encryption.key");
        assert_eq!(first.primary().id.len(), 16);
        // No temporary files are left behind.
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }
}
