//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in PKI operations.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid PEM ({what}): {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    #[error("the CA private key does not match the CA certificate")]
    KeyMismatch,
    #[error("invalid site name {0:?}: use 1-253 lowercase letters, digits, '-' or '.'")]
    InvalidSiteName(String),
    #[error("TLS configuration error: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("system random number generator failed")]
    Random,
}

impl PkiError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
