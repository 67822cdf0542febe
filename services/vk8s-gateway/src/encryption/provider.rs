//! The key-encryption-key (KEK) side of envelope encryption, behind a
//! KMS-style interface: a provider wraps and unwraps data keys and never
//! hands out its own keys. [`super::KeyFiles`] is the local implementation;
//! a cloud KMS or Vault transit engine fits the same trait.

use zeroize::Zeroizing;

/// A key-encryption key as stored objects name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyInfo {
    /// Human name (for key files: the file name), shown in errors and reports.
    pub name: String,
    /// Stable identifier stored beside every wrapped data key; the provider
    /// finds the key to unwrap with by it. Renaming a key file keeps it.
    pub id: String,
}

impl std::fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} (id {})", self.name, self.id)
    }
}

/// A data key wrapped by a key-encryption key.
#[derive(Debug, Clone)]
pub struct Wrapped {
    /// The key that wrapped it (the provider's primary at the time).
    pub key: KeyInfo,
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The data key was wrapped by a key this provider does not have.
    #[error("key id {id} is not configured")]
    UnknownKey { id: String },
    /// The wrapped data key does not open with the key it names: altered,
    /// truncated, or wrapped by another key with the same id.
    #[error("the wrapped data key does not open: {0}")]
    Invalid(String),
    /// The provider cannot be reached right now (a remote KMS); retry later.
    #[error("the key provider is unavailable: {0}")]
    Unavailable(String),
}

/// Wraps and unwraps data-encryption keys (DEKs) with key-encryption keys.
///
/// The envelope layer calls `wrap` rarely (a data key seals many writes)
/// and caches what `unwrap` returns, so a remote provider sees a handful of
/// calls per hour, not one per request.
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync + 'static {
    /// The key new data keys are wrapped with.
    fn primary(&self) -> KeyInfo;
    /// Every key the provider can unwrap with, the primary first.
    fn keys(&self) -> Vec<KeyInfo>;
    /// Wraps `dek` with the primary key.
    async fn wrap(&self, dek: &[u8]) -> Result<Wrapped, ProviderError>;
    /// Unwraps a data key wrapped by the key with id `key_id`.
    async fn unwrap(
        &self,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ProviderError>;
}
