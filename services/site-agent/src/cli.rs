//! The `manifold-site-agent` binary's flags (each also an environment variable) and
//! what they turn into.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::backend::kube::KubeBackend;
use crate::backend::simulated::{SimulatedBackend, SimulatedOptions};
use crate::config::AgentConfig;
use crate::error::AgentError;

/// Which cluster the agent drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A real cluster, from the in-cluster service account or the kubeconfig.
    Kube,
    /// An in-process simulated cluster (demos, tests, scale runs).
    Simulated,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Parser, Debug)]
#[command(
    name = "manifold-site-agent",
    version,
    about = "Manifold site agent: replicates what the control plane places on this site into its cluster"
)]
pub struct Cli {
    /// The control plane's gRPC endpoint.
    #[arg(
        long,
        env = "MANIFOLD_ENDPOINT",
        default_value = "https://127.0.0.1:7443"
    )]
    pub endpoint: String,
    /// Where the replication stream (SiteSync) is served, when not at --endpoint.
    #[arg(long, env = "MANIFOLD_SYNC_ENDPOINT")]
    pub sync_endpoint: Option<String>,
    /// CA bundle to trust for the control plane until registration returns one.
    #[arg(long, env = "MANIFOLD_CA_FILE", default_value = ".manifold/ca.crt")]
    pub ca_file: PathBuf,
    /// The TLS name the control plane's certificate is checked against.
    #[arg(long, env = "MANIFOLD_TLS_DOMAIN", default_value = "localhost")]
    pub tls_domain: String,
    /// This site's name, as created in the site registry.
    #[arg(long, env = "MANIFOLD_SITE")]
    pub site: String,
    /// One-time registration token (first start only).
    #[arg(long, env = "MANIFOLD_REGISTRATION_TOKEN", hide_env_values = true)]
    pub registration_token: Option<String>,
    /// File holding the registration token.
    #[arg(
        long,
        env = "MANIFOLD_REGISTRATION_TOKEN_FILE",
        conflicts_with = "registration_token"
    )]
    pub registration_token_file: Option<PathBuf>,
    /// Where the key, certificate and CA bundle are kept.
    #[arg(
        long,
        env = "MANIFOLD_AGENT_DATA_DIR",
        default_value = ".manifold-agent"
    )]
    pub data_dir: PathBuf,
    /// The cluster to drive.
    #[arg(
        long,
        env = "MANIFOLD_AGENT_BACKEND",
        value_enum,
        default_value = "kube"
    )]
    pub backend: BackendKind,
    /// Nodes of the simulated cluster.
    #[arg(long, env = "MANIFOLD_SIMULATED_NODES", default_value_t = 2)]
    pub nodes: usize,
    /// Seconds between heartbeats.
    #[arg(long, env = "MANIFOLD_HEARTBEAT_SECS", default_value_t = 5)]
    pub heartbeat_secs: u64,
    /// Log format.
    #[arg(long, env = "MANIFOLD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormatArg,
    /// Log filter directives (`RUST_LOG` wins when set).
    #[arg(long, env = "MANIFOLD_LOG_FILTER", default_value = "info")]
    pub log_filter: String,
}

impl Cli {
    pub fn log_format(&self) -> manifold_config::LogFormat {
        match self.log_format {
            LogFormatArg::Text => manifold_config::LogFormat::Text,
            LogFormatArg::Json => manifold_config::LogFormat::Json,
        }
    }

    /// The agent configuration these flags describe (reads the CA and token files).
    pub fn agent_config(&self) -> Result<AgentConfig, AgentError> {
        let ca_pem = match std::fs::read_to_string(&self.ca_file) {
            Ok(pem) => pem,
            // After registration the data directory holds the CA bundle.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.data_dir.join("identity.pem").exists() =>
            {
                String::new()
            }
            Err(e) => {
                return Err(AgentError::Config(format!(
                    "--ca-file {}: {e}",
                    self.ca_file.display()
                )));
            }
        };
        let token = match (&self.registration_token, &self.registration_token_file) {
            (Some(t), _) => Some(t.trim().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| AgentError::io(path, e))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let mut config = AgentConfig::new(&self.site, &self.endpoint, ca_pem);
        config.tls_domain = self.tls_domain.clone();
        config.sync_endpoint = self.sync_endpoint.clone();
        config.data_dir = Some(self.data_dir.clone());
        config.registration_token = token.filter(|t| !t.is_empty()).map(SecretString::from);
        config.heartbeat_interval = Duration::from_secs(self.heartbeat_secs.max(1));
        config.validate()?;
        Ok(config)
    }

    /// The backend these flags select.
    pub async fn backend(&self) -> Result<Arc<dyn Backend>, AgentError> {
        Ok(match self.backend {
            BackendKind::Simulated => Arc::new(SimulatedBackend::new(
                &self.site,
                self.nodes,
                SimulatedOptions::default(),
            )),
            BackendKind::Kube => Arc::new(KubeBackend::connect(&self.site).await?),
        })
    }
}

/// Runs the agent these flags describe until `shutdown`.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> Result<(), AgentError> {
    let config = cli.agent_config()?;
    let backend = cli.backend().await?;
    tracing::info!(site = %config.site, endpoint = %config.endpoint, backend = ?cli.backend, "site agent starting");
    crate::session::run(config, backend, shutdown).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_an_agent_config() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "secret-token\n").unwrap();
        let cli = Cli::try_parse_from([
            "manifold-site-agent",
            "--site",
            "pa2-par",
            "--endpoint",
            "https://cp.example:7443",
            "--ca-file",
            ca.to_str().unwrap(),
            "--registration-token-file",
            token.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--backend",
            "simulated",
            "--nodes",
            "3",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.backend, BackendKind::Simulated);
        assert_eq!(cli.log_format(), manifold_config::LogFormat::Json);
        let config = cli.agent_config().unwrap();
        assert_eq!(config.site, "pa2-par");
        assert_eq!(config.endpoint, "https://cp.example:7443");
        assert_eq!(config.tls_domain, "localhost");
        use secrecy::ExposeSecret;
        assert_eq!(
            config.registration_token.unwrap().expose_secret(),
            "secret-token"
        );
        // Secrets never print.
        assert!(!format!("{:?}", cli.agent_config().unwrap()).contains("secret-token"));

        let missing_ca = Cli::try_parse_from([
            "manifold-site-agent",
            "--site",
            "pa2-par",
            "--ca-file",
            "/nonexistent/ca.crt",
            "--data-dir",
            dir.path().join("empty").to_str().unwrap(),
        ])
        .unwrap();
        assert!(
            missing_ca
                .agent_config()
                .unwrap_err()
                .to_string()
                .contains("--ca-file")
        );
        assert!(
            Cli::try_parse_from(["manifold-site-agent", "--site", "x", "--backend", "docker"])
                .is_err()
        );
    }
}
