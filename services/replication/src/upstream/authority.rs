//! Who vouches for agent certificates and renews them. In the all-in-one
//! process the site registry itself (its Rust API, no gRPC hop) does both;
//! elsewhere `CheckCertificate` over gRPC verifies, and renewal over the
//! stream is unavailable (agents call `RenewCertificate` themselves).

use std::sync::Arc;

use manifold_proto::sites::v1 as sites;
use manifold_site_registry::{SiteError, SiteRegistry};

use super::Upstream;
use super::convert::ts;

/// A renewed agent certificate.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub certificate_pem: String,
    pub ca_bundle_pem: String,
    pub expire_time: Option<prost_types::Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The certificate is not (or no longer) trusted.
    #[error("{0}")]
    Untrusted(String),
    /// The request itself is unusable (e.g. a malformed CSR).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Unavailable(String),
}

/// A trusted site certificate: the site it names and what the operator
/// decided about that site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCert {
    /// The site id (`pa2-par`).
    pub site: String,
    /// The site's Pod Security level (`baseline`); empty when the registry
    /// does not say.
    pub pod_security: String,
}

/// Verifies and renews site certificates.
#[async_trait::async_trait]
pub trait SiteAuthority: Send + Sync + 'static {
    /// The site a presented client certificate (DER) names, when the
    /// control plane issued it and still trusts it.
    async fn verify(&self, cert_der: &[u8]) -> Result<VerifiedCert, AuthorityError>;

    /// A fresh certificate for the site `cert_der` names, for the CSR's key.
    async fn renew(&self, cert_der: &[u8], csr_pem: &str) -> Result<Renewed, AuthorityError>;
}

fn site_error(e: SiteError) -> AuthorityError {
    match e {
        SiteError::Unauthenticated(m) => AuthorityError::Untrusted(m),
        SiteError::InvalidArgument { .. } | SiteError::NotFound(_) => {
            AuthorityError::Invalid(e.to_string())
        }
        SiteError::NoCa => AuthorityError::Unsupported(e.to_string()),
        other => AuthorityError::Unavailable(other.to_string()),
    }
}

#[async_trait::async_trait]
impl SiteAuthority for SiteRegistry {
    async fn verify(&self, cert_der: &[u8]) -> Result<VerifiedCert, AuthorityError> {
        self.core()
            .verify_site_certificate(cert_der)
            .await
            .map(|v| VerifiedCert {
                site: v.site,
                pod_security: v.pod_security.as_str().to_owned(),
            })
            .map_err(site_error)
    }

    async fn renew(&self, cert_der: &[u8], csr_pem: &str) -> Result<Renewed, AuthorityError> {
        let issued = self
            .core()
            .renew(cert_der, csr_pem)
            .await
            .map_err(site_error)?;
        Ok(Renewed {
            certificate_pem: issued.certificate_pem,
            ca_bundle_pem: issued.ca_bundle_pem,
            expire_time: Some(ts(issued.expire_time)),
        })
    }
}

/// The site registry over gRPC (`CheckCertificate`, public like OCSP).
pub struct GrpcAuthority(pub Arc<Upstream>);

/// PEM of one DER certificate.
pub fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[async_trait::async_trait]
impl SiteAuthority for GrpcAuthority {
    async fn verify(&self, cert_der: &[u8]) -> Result<VerifiedCert, AuthorityError> {
        let reply = self
            .0
            .registration()
            .check_certificate(self.0.request(sites::CheckCertificateRequest {
                certificate_pem: pem_of(cert_der),
            }))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::InvalidArgument => AuthorityError::Untrusted(s.message().to_owned()),
                _ => AuthorityError::Unavailable(format!("site registry: {}", s.message())),
            })?
            .into_inner();
        if !reply.valid {
            return Err(AuthorityError::Untrusted(reply.reason));
        }
        let pod_security = match sites::PodSecurityLevel::try_from(reply.pod_security) {
            Ok(sites::PodSecurityLevel::Privileged) => "privileged",
            Ok(sites::PodSecurityLevel::Baseline) => "baseline",
            Ok(sites::PodSecurityLevel::Restricted) => "restricted",
            _ => "",
        };
        Ok(VerifiedCert {
            site: reply.site.trim_start_matches("sites/").to_owned(),
            pod_security: pod_security.to_owned(),
        })
    }

    async fn renew(&self, _cert_der: &[u8], _csr_pem: &str) -> Result<Renewed, AuthorityError> {
        Err(AuthorityError::Unsupported(
            "this replication process cannot renew certificates; call \
             RegistrationService.RenewCertificate with the current certificate"
                .into(),
        ))
    }
}
