//! Manifold's PKI: the control-plane CA, server and site (agent) certificates, and
//! rustls client/server configurations built on the `ring` provider.
#![forbid(unsafe_code)]

mod ca;
mod error;
mod files;
mod pem;
mod site;
mod tls;

#[cfg(test)]
mod tests;

pub use ca::{Ca, CertifiedKeyPem, SignedCert, load_or_create_server_identity};
pub use error::PkiError;
pub use pem::{cert_not_after, certs_from_pem, private_key_from_pem};
pub use site::{
    SITE_URI_PREFIX, csr_matches_cert, generate_csr, site_from_cert_der, site_uri,
    validate_site_name,
};
pub use tls::{client_config, install_default_crypto_provider, server_config};

/// Result alias for this crate.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;
