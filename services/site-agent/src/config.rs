//! The agent's configuration: where the control plane is, which site this is, where
//! its credentials live, and the timings of the session.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::error::AgentError;
use crate::identity::Identity;

/// The agent version sent in Register and Hello.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything [`crate::run`] and [`crate::register`] need.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The site this agent serves (`pa2-par`), as created in the site registry.
    pub site: String,
    /// The control plane's gRPC endpoint, `https://host:port`: registration and
    /// renewal (site registry), and the replication stream unless `sync_endpoint`
    /// says otherwise.
    pub endpoint: String,
    /// Where `SiteSync` is served when not at `endpoint` (services deployed apart).
    pub sync_endpoint: Option<String>,
    /// CA bundle (PEM) the agent trusts for the control plane before it has
    /// registered; afterwards the bundle returned by registration is used.
    pub ca_pem: String,
    /// The name the control plane's server certificate is checked against.
    pub tls_domain: String,
    /// Where the key, certificate and CA bundle are kept. `None` keeps them in
    /// memory only (in-process simulated agents of the all-in-one).
    pub data_dir: Option<PathBuf>,
    /// One-time registration token, needed only while no certificate exists.
    pub registration_token: Option<SecretString>,
    /// Credentials obtained beforehand (e.g. by [`crate::register`]); they win over
    /// the data directory.
    pub identity: Option<Identity>,
    pub agent_version: String,
    /// Heartbeats (with node readiness) are sent this often.
    pub heartbeat_interval: Duration,
    /// Observed changes are batched for this long before a status report is sent.
    pub status_debounce: Duration,
    /// At most this many pods/objects per status report message.
    pub status_batch_max: usize,
    /// First reconnect delay; doubles (with jitter) up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub connect_timeout: Duration,
    /// The certificate is renewed when it has less than this much validity left.
    pub renew_before: Duration,
    /// How long to wait for a RenewResponse on the stream before renewing through
    /// `RegistrationService.RenewCertificate` directly.
    pub renew_timeout: Duration,
    /// Concurrent `kubectl logs` streams served (further requests are refused).
    pub max_log_streams: usize,
    /// A transient backend failure is retried this many times before the session is
    /// restarted (which replays from the last acknowledged revision).
    pub apply_attempts: u32,
}

impl AgentConfig {
    /// A configuration with the default timings.
    pub fn new(
        site: impl Into<String>,
        endpoint: impl Into<String>,
        ca_pem: impl Into<String>,
    ) -> Self {
        Self {
            site: site.into(),
            endpoint: endpoint.into(),
            sync_endpoint: None,
            ca_pem: ca_pem.into(),
            tls_domain: "localhost".into(),
            data_dir: None,
            registration_token: None,
            identity: None,
            agent_version: AGENT_VERSION.into(),
            heartbeat_interval: Duration::from_secs(5),
            status_debounce: Duration::from_millis(250),
            status_batch_max: 500,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            renew_before: Duration::from_secs(10 * 24 * 3600),
            renew_timeout: Duration::from_secs(60),
            max_log_streams: 32,
            apply_attempts: 5,
        }
    }

    /// The endpoint of the replication stream.
    pub fn sync_endpoint(&self) -> &str {
        self.sync_endpoint.as_deref().unwrap_or(&self.endpoint)
    }

    /// Checks the values that would otherwise fail late.
    pub fn validate(&self) -> Result<(), AgentError> {
        manifold_pki::validate_site_name(&self.site)
            .map_err(|e| AgentError::Config(format!("site: {e}")))?;
        for (key, url) in [
            ("endpoint", Some(&self.endpoint)),
            ("sync_endpoint", self.sync_endpoint.as_ref()),
        ] {
            if let Some(url) = url
                && !url.starts_with("https://")
            {
                return Err(AgentError::Config(format!(
                    "{key}: {url:?} must be an https:// URL (the control plane only speaks TLS)"
                )));
            }
        }
        if self.ca_pem.trim().is_empty() && self.identity.is_none() && self.data_dir.is_none() {
            return Err(AgentError::Config(
                "ca: a CA bundle is required to reach the control plane".into(),
            ));
        }
        if self.heartbeat_interval.is_zero() || self.reconnect_min.is_zero() {
            return Err(AgentError::Config(
                "heartbeat_interval and reconnect_min must be positive".into(),
            ));
        }
        if self.reconnect_max < self.reconnect_min {
            return Err(AgentError::Config(
                "reconnect_max must not be below reconnect_min".into(),
            ));
        }
        if self.status_batch_max == 0 {
            return Err(AgentError::Config(
                "status_batch_max must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_setting() {
        let ok = AgentConfig::new("pa2-par", "https://127.0.0.1:7443", "pem");
        ok.validate().unwrap();
        let bad_site = AgentConfig::new("PA2", "https://127.0.0.1:7443", "pem");
        assert!(
            bad_site
                .validate()
                .unwrap_err()
                .to_string()
                .contains("site")
        );
        let plain = AgentConfig::new("pa2-par", "http://127.0.0.1:7443", "pem");
        assert!(
            plain
                .validate()
                .unwrap_err()
                .to_string()
                .contains("endpoint")
        );
    }
}
