//! The settings tree and its built-in defaults.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

/// Everything a Manifold process can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Directory for the CA, server certificate, bootstrap token and kubeconfigs.
    pub data_dir: PathBuf,
    pub database: Database,
    pub grpc: Grpc,
    pub kube_api: KubeApi,
    pub admin: Admin,
    pub tls: Tls,
    pub auth: Auth,
    pub telemetry: Telemetry,
    pub vk8s: Vk8s,
    pub sites: Sites,
    pub serve: Serve,
    pub upstream: Upstream,
    pub encryption: Encryption,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".manifold"),
            database: Database::default(),
            grpc: Grpc::default(),
            kube_api: KubeApi::default(),
            admin: Admin::default(),
            tls: Tls::default(),
            auth: Auth::default(),
            telemetry: Telemetry::default(),
            vk8s: Vk8s::default(),
            sites: Sites::default(),
            serve: Serve::default(),
            upstream: Upstream::default(),
            encryption: Encryption::default(),
        }
    }
}

impl Settings {
    /// `auth.bootstrap_token_file`, or `<data_dir>/admin.token`.
    pub fn bootstrap_token_file(&self) -> PathBuf {
        self.auth
            .bootstrap_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.token"))
    }

    /// The CA bundle clients trust: `tls.ca_file`, or `<data_dir>/ca.crt`.
    pub fn ca_file(&self) -> PathBuf {
        self.tls
            .ca_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("ca.crt"))
    }

    /// The key file used when `encryption.key_files` is empty:
    /// `<data_dir>/encryption.key` (created at the first start).
    pub fn default_encryption_key_file(&self) -> PathBuf {
        self.data_dir.join("encryption.key")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// Postgres URL; required (`DATABASE_URL` or `MANIFOLD__DATABASE__URL`).
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            url: SecretString::default(),
            max_connections: 20,
            connect_timeout_secs: 30,
        }
    }
}

impl Database {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grpc {
    pub listen: SocketAddr,
    /// The endpoint clients are told to use (kubeconfigs, agents).
    pub public_endpoint: String,
}

impl Default for Grpc {
    fn default() -> Self {
        Self {
            listen: loopback(7443),
            public_endpoint: "https://127.0.0.1:7443".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeApi {
    pub listen: SocketAddr,
    /// Base URL written into generated kubeconfigs.
    pub public_url: String,
}

impl Default for KubeApi {
    fn default() -> Self {
        Self {
            listen: loopback(6443),
            public_url: "https://127.0.0.1:6443".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Metrics and readiness; plain HTTP is only served on loopback.
    pub listen: SocketAddr,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            listen: loopback(9090),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// Server certificate; with `key_file`. When unset, one is issued from the data-dir CA.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// CA bundle (defaults to `<data_dir>/ca.crt`, see [`Settings::ca_file`]).
    pub ca_file: Option<PathBuf>,
    /// Names (DNS or IP) of the self-issued server certificate. From the environment, a
    /// comma-separated list.
    #[serde(deserialize_with = "string_or_list")]
    pub server_names: Vec<String>,
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            ca_file: None,
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Defaults to `<data_dir>/admin.token` (see [`Settings::bootstrap_token_file`]).
    pub bootstrap_token_file: Option<PathBuf>,
    /// How long an authorization decision is cached; 0 disables the cache.
    pub cache_ttl_secs: u64,
    /// How often a long-lived stream (a watch, `logs -f`, the object feed,
    /// a placement watch) re-checks its caller's token: it ends within this
    /// (plus `cache_ttl_secs`) of the token being revoked or expiring.
    pub stream_recheck_secs: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            bootstrap_token_file: None,
            cache_ttl_secs: 5,
            stream_recheck_secs: 30,
        }
    }
}

impl Auth {
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    pub fn stream_recheck(&self) -> Duration {
        Duration::from_secs(self.stream_recheck_secs)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    pub log_format: LogFormat,
    /// `EnvFilter` directives; `RUST_LOG` wins when set.
    pub log_filter: String,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vk8s {
    /// Change-log revisions kept behind the head before compaction.
    pub log_retention_revisions: i64,
    pub compaction_interval_secs: u64,
    /// Fair use per vK8s: objects stored (every kind, Secrets included).
    pub max_objects: i64,
    /// Fair use per vK8s: total bytes of the stored objects.
    pub max_bytes: i64,
    /// Fair use per vK8s: pods its workloads ask of each site (replicas of
    /// Deployments, ReplicaSets and StatefulSets, Job parallelism, bare Pods).
    pub max_pods_per_site: i64,
    /// Fair use: Kubernetes watches one principal holds open at once on one
    /// gateway process.
    pub max_watches_per_principal: usize,
    /// Workload watches take the sites' status changes pushed by
    /// replication (WatchObjectStatus). `false` makes them re-read every
    /// followed object's status each second instead (the behaviour before
    /// the push; kept as a switch and as the benchmark's baseline).
    pub status_push: bool,
}

impl Default for Vk8s {
    fn default() -> Self {
        Self {
            log_retention_revisions: 10_000,
            compaction_interval_secs: 60,
            max_objects: 10_000,
            max_bytes: 256 * 1024 * 1024,
            max_pods_per_site: 1_000,
            max_watches_per_principal: 100,
            status_push: true,
        }
    }
}

impl Vk8s {
    pub fn compaction_interval(&self) -> Duration {
        Duration::from_secs(self.compaction_interval_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sites {
    /// A site whose agent has not been heard from for this long is marked unreachable.
    pub heartbeat_timeout_secs: u64,
    /// A renewed agent certificate stays valid this long after its renewal
    /// (for the stream it is carrying), then it is revoked.
    pub renewal_grace_secs: u64,
    /// How often replication checks each agent stream's certificate again
    /// (revoked, expired, site decommissioned: the stream ends) and the
    /// site's settings (a changed Pod Security level reaches the agent).
    pub certificate_recheck_secs: u64,
}

impl Default for Sites {
    fn default() -> Self {
        Self {
            heartbeat_timeout_secs: 30,
            renewal_grace_secs: 300,
            certificate_recheck_secs: 60,
        }
    }
}

impl Sites {
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.heartbeat_timeout_secs)
    }

    pub fn renewal_grace(&self) -> Duration {
        Duration::from_secs(self.renewal_grace_secs)
    }

    pub fn certificate_recheck(&self) -> Duration {
        Duration::from_secs(self.certificate_recheck_secs)
    }
}

/// The control-plane services a process can run.
pub const SERVICES: [&str; 4] = ["tenancy", "sites", "gateway", "replication"];

/// Which services this process runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Serve {
    /// A subset of [`SERVICES`]; all of them by default (the all-in-one).
    /// `MANIFOLD__SERVE__SERVICES=gateway,replication` takes a comma list.
    #[serde(deserialize_with = "string_or_list")]
    pub services: Vec<String>,
    /// This process's gRPC URL as its peers reach it (replication forwards
    /// log streams to the replica holding a site's stream). Default:
    /// `https://<grpc.listen>` with loopback for an unspecified address.
    pub advertise_url: String,
}

impl Default for Serve {
    fn default() -> Self {
        Self {
            services: SERVICES.iter().map(|s| (*s).to_owned()).collect(),
            advertise_url: String::new(),
        }
    }
}

impl Serve {
    pub fn runs(&self, service: &str) -> bool {
        self.services.iter().any(|s| s == service)
    }
}

/// Where the services this process does not run are reached (`https://host:port`,
/// trusted through the control-plane CA). Empty: this process's own listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    pub tenancy: String,
    pub sites: String,
    pub gateway: String,
    pub replication: String,
}

impl Upstream {
    /// The URL configured for `service` (one of [`SERVICES`]), if any.
    pub fn url(&self, service: &str) -> Option<&str> {
        let url = match service {
            "tenancy" => &self.tenancy,
            "sites" => &self.sites,
            "gateway" => &self.gateway,
            "replication" => &self.replication,
            _ => return None,
        };
        (!url.trim().is_empty()).then_some(url.trim())
    }
}

/// Encryption at rest of Secrets (envelope encryption; see the README's
/// "Secrets at rest").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Encryption {
    /// Key-encryption key files, each 32 random bytes in base64. The first
    /// encrypts new writes; all of them decrypt (rotation: put the new key
    /// first, run `manifold rotate-encryption`, then drop the old one).
    /// Empty: `<data_dir>/encryption.key`, created at the first start. From
    /// the environment, a comma-separated list.
    #[serde(deserialize_with = "paths_or_list")]
    pub key_files: Vec<PathBuf>,
}

fn paths_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<PathBuf>, D::Error> {
    Ok(string_or_list(deserializer)?
        .into_iter()
        .map(PathBuf::from)
        .collect())
}

/// A list given either as a list or as one comma-separated string (environment variables).
fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}
