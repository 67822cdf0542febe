//! rustls server and client configurations, always on the `ring` provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::ca::CertifiedKeyPem;
use crate::pem::{certs_from_pem, private_key_from_pem};
use crate::{PkiError, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs `ring` as the process-wide default rustls provider (for libraries that use
/// `ServerConfig::builder()` without a provider). Already installed is fine.
pub fn install_default_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn root_store(ca_pem: &str) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// A TLS server config presenting `identity`. With `client_ca_pem`, client certificates
/// are requested and verified against that CA when presented, but remain optional
/// (token-authenticated clients have none).
pub fn server_config(
    identity: &CertifiedKeyPem,
    client_ca_pem: Option<&str>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        Some(ca_pem) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(root_store(ca_pem)?, provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(PkiError::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(
        certs_from_pem(&identity.cert_pem)?,
        private_key_from_pem(&identity.key_pem)?,
    )?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A TLS client config trusting only `ca_pem`, presenting `client_identity` when given.
/// No ALPN protocols are set; clone the config to add some.
pub fn client_config(
    ca_pem: &str,
    client_identity: Option<&CertifiedKeyPem>,
) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(ca_pem)?);
    let config = match client_identity {
        Some(identity) => builder.with_client_auth_cert(
            certs_from_pem(&identity.cert_pem)?,
            private_key_from_pem(&identity.key_pem)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
