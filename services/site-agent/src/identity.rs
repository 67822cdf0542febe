//! The agent's credentials: a private key that never leaves the agent, the client
//! certificate the control-plane CA issued for it, and the CA bundle. Registration
//! with a one-time token, storage in the data directory, and the TLS endpoints built
//! from them.
//!
//! On disk: `identity.pem` (mode 0600) holds the private key and the certificate
//! together, so a renewal replaces both in one atomic rename and a crash can never
//! leave a key next to a certificate of another key; `ca.crt` holds the CA bundle.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use manifold_proto::sites::v1 as sites_pb;
use secrecy::{ExposeSecret, SecretString};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::config::AgentConfig;
use crate::error::AgentError;

const IDENTITY_FILE: &str = "identity.pem";
const CA_FILE: &str = "ca.crt";

/// A site's key and certificate, and the CA bundle that signed it.
#[derive(Clone)]
pub struct Identity {
    key_pem: SecretString,
    cert_pem: String,
    ca_pem: String,
    not_after: DateTime<Utc>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Checks that `cert_pem` names `site` and parses its expiry.
    pub fn new(
        site: &str,
        key_pem: String,
        cert_pem: String,
        ca_pem: String,
    ) -> Result<Self, AgentError> {
        let certs = manifold_pki::certs_from_pem(&cert_pem)?;
        let named = manifold_pki::site_from_cert_der(certs[0].as_ref());
        if named.as_deref() != Some(site) {
            return Err(AgentError::Config(format!(
                "the certificate names site {named:?}, not {site:?}"
            )));
        }
        manifold_pki::private_key_from_pem(&key_pem)?;
        let not_after = manifold_pki::cert_not_after(&cert_pem)?;
        Ok(Self {
            key_pem: SecretString::from(key_pem),
            cert_pem,
            ca_pem,
            not_after,
        })
    }

    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// Whether the certificate has less than `margin` of validity left.
    pub fn expires_within(&self, margin: Duration) -> bool {
        let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX);
        self.not_after - Utc::now() < margin
    }

    /// Loads the identity kept in `dir`, if there is one.
    pub fn load(site: &str, dir: &Path) -> Result<Option<Self>, AgentError> {
        let path = dir.join(IDENTITY_FILE);
        let pem = match fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AgentError::io(path, e)),
        };
        let ca_path = dir.join(CA_FILE);
        let ca = fs::read_to_string(&ca_path).map_err(|e| AgentError::io(ca_path, e))?;
        let (key, cert) = split_identity_pem(&pem).ok_or_else(|| {
            AgentError::Config(format!(
                "{} holds no private key and certificate",
                path.display()
            ))
        })?;
        Self::new(site, key, cert, ca).map(Some)
    }

    /// Stores the identity in `dir` (created 0700 when missing), each file replaced
    /// atomically.
    pub fn save(&self, dir: &Path) -> Result<(), AgentError> {
        create_private_dir(dir)?;
        let both = format!(
            "{}\n{}",
            self.key_pem.expose_secret().trim_end(),
            self.cert_pem
        );
        write_atomic(&dir.join(IDENTITY_FILE), both.as_bytes(), 0o600)?;
        write_atomic(&dir.join(CA_FILE), self.ca_pem.as_bytes(), 0o644)
    }

    /// A TLS endpoint at `url` presenting this identity (mTLS), trusting its CA
    /// bundle.
    pub(crate) fn endpoint(&self, config: &AgentConfig, url: &str) -> Result<Endpoint, AgentError> {
        let identity =
            tonic::transport::Identity::from_pem(&self.cert_pem, self.key_pem.expose_secret());
        let ca = if self.ca_pem.trim().is_empty() {
            &config.ca_pem
        } else {
            &self.ca_pem
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(identity)
            .domain_name(config.tls_domain.clone());
        Ok(base_endpoint(config, url)?.tls_config(tls)?)
    }
}

/// The key block(s) and the certificate block(s) of an `identity.pem`.
fn split_identity_pem(pem: &str) -> Option<(String, String)> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")?;
    let (key, cert) = pem.split_at(start);
    (!key.trim().is_empty()).then(|| (key.trim().to_owned() + "\n", cert.to_owned()))
}

fn base_endpoint(config: &AgentConfig, url: &str) -> Result<Endpoint, AgentError> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// A TLS endpoint without a client certificate (registration), trusting the
/// configured CA bundle.
fn anonymous_endpoint(config: &AgentConfig) -> Result<Endpoint, AgentError> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&config.ca_pem))
        .domain_name(config.tls_domain.clone());
    Ok(base_endpoint(config, &config.endpoint)?.tls_config(tls)?)
}

/// Registers the site with its one-time token: generates a key and CSR, calls
/// `RegistrationService.Register`, and stores the result in the data directory (when
/// configured). The token is spent even if storing fails afterwards.
pub async fn register(config: &AgentConfig) -> Result<Identity, AgentError> {
    config.validate()?;
    let token = config
        .registration_token
        .as_ref()
        .ok_or_else(|| AgentError::NotRegistered {
            site: config.site.clone(),
        })?;
    let (key_pem, csr_pem) = manifold_pki::generate_csr(&config.site)?;
    let channel = anonymous_endpoint(config)?.connect().await?;
    let response = sites_pb::registration_service_client::RegistrationServiceClient::new(channel)
        .register(sites_pb::RegisterRequest {
            site: format!("sites/{}", config.site),
            registration_token: token.expose_secret().to_owned(),
            csr_pem,
            agent_version: config.agent_version.clone(),
        })
        .await
        .map_err(|status| match status.code() {
            Code::Unauthenticated
            | Code::PermissionDenied
            | Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition => AgentError::RegistrationRefused(status),
            _ => AgentError::Rpc(status),
        })?
        .into_inner();
    let ca = if response.ca_bundle_pem.trim().is_empty() {
        config.ca_pem.clone()
    } else {
        response.ca_bundle_pem
    };
    let identity = Identity::new(&config.site, key_pem, response.certificate_pem, ca)?;
    if let Some(dir) = &config.data_dir {
        identity.save(dir)?;
    }
    tracing::info!(site = %config.site, expires = %identity.not_after, "registered with the control plane");
    Ok(identity)
}

/// The identity to connect with: the configured one, else the one in the data
/// directory, else a fresh registration with the token.
pub async fn ensure_identity(config: &AgentConfig) -> Result<Identity, AgentError> {
    if let Some(identity) = &config.identity {
        return Ok(identity.clone());
    }
    if let Some(dir) = &config.data_dir
        && let Some(identity) = Identity::load(&config.site, dir)?
    {
        return Ok(identity);
    }
    register(config).await
}

/// Renews through `RegistrationService.RenewCertificate` (authenticated by the
/// current certificate), for when the stream does not answer a RenewRequest;
/// `key_pem`/`csr_pem` are the renewal's key and CSR.
pub(crate) async fn renew_directly(
    config: &AgentConfig,
    current: &Identity,
    key_pem: String,
    csr_pem: String,
) -> Result<Identity, AgentError> {
    let channel = current
        .endpoint(config, &config.endpoint)?
        .connect()
        .await?;
    let response = sites_pb::registration_service_client::RegistrationServiceClient::new(channel)
        .renew_certificate(sites_pb::RenewCertificateRequest { csr_pem })
        .await?
        .into_inner();
    let ca = if response.ca_bundle_pem.trim().is_empty() {
        current.ca_pem.clone()
    } else {
        response.ca_bundle_pem
    };
    Identity::new(&config.site, key_pem, response.certificate_pem, ca)
}

/// Builds the identity a RenewResponse completes and stores it.
pub(crate) fn adopt_renewal(
    config: &AgentConfig,
    key_pem: String,
    certificate_pem: String,
    ca_bundle_pem: String,
    current: &Identity,
) -> Result<Identity, AgentError> {
    let ca = if ca_bundle_pem.trim().is_empty() {
        current.ca_pem.clone()
    } else {
        ca_bundle_pem
    };
    let renewed = Identity::new(&config.site, key_pem, certificate_pem, ca)?;
    if let Some(dir) = &config.data_dir {
        renewed.save(dir)?;
    }
    tracing::info!(site = %config.site, expires = %renewed.not_after, "certificate renewed");
    Ok(renewed)
}

fn create_private_dir(dir: &Path) -> Result<(), AgentError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| AgentError::io(dir, e))
}

/// Writes `contents` to a temporary file created with `mode` (a key is never
/// readable by others, not even briefly), syncs it, and renames it over `path`.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), AgentError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        AgentError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(site: &str) -> (manifold_pki::Ca, String, String) {
        let ca = manifold_pki::Ca::generate().unwrap();
        let (key, csr) = manifold_pki::generate_csr(site).unwrap();
        let signed = ca
            .sign_site_csr(&csr, site, Duration::from_secs(3600))
            .unwrap();
        (ca, key, signed.cert_pem)
    }

    #[test]
    fn save_and_load_round_trip_with_private_modes() {
        let (ca, key, cert) = issued("pa2-par");
        let id = Identity::new("pa2-par", key, cert, ca.cert_pem().to_owned()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("agent");
        assert!(Identity::load("pa2-par", &data).unwrap().is_none());
        id.save(&data).unwrap();
        let back = Identity::load("pa2-par", &data).unwrap().unwrap();
        assert_eq!(back.certificate_pem(), id.certificate_pem());
        assert_eq!(back.not_after(), id.not_after());
        assert!(!back.expires_within(Duration::from_secs(60)));
        assert!(back.expires_within(Duration::from_secs(7200)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(data.join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(&data).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
        // Another site's agent refuses the identity.
        assert!(Identity::load("ny8-nyc", &data).is_err());
    }
}
