//! The vK8s gateway: virtual Kubernetes clusters.
//!
//! - gRPC `manifold.vk8s.v1`: `VirtualClusterService` (manage virtual
//!   clusters, mint kubeconfigs) and `ObjectFeed` (the ordered change stream
//!   the replication service consumes).
//! - The Kubernetes REST API under `/vk8s/{tenant}/{namespace}/{vk8s}`,
//!   served over HTTPS with axum, which plain kubectl and client libraries
//!   drive.
//! - Storage in the `vk8s` schema: clusters, objects (JSONB) and a change
//!   log whose global revision is every object's resourceVersion.
//!
//! Layout: `domain` (types and rules), `storage` (SQL), `feed` (the change
//! hub, cursors, the compactor), `core` (operations shared by both APIs),
//! `grpc` and `kube` (the two adapters).
#![forbid(unsafe_code)]

mod core;
pub mod domain;
pub mod encryption;
mod error;
mod feed;
mod grpc;
mod kube;
mod storage;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use manifold_auth::Authenticator;
use manifold_db::Db;
use tokio_util::sync::CancellationToken;

pub use core::quota::Quota;
pub use core::rotation::{ReencryptReport, SecretKeyUsage, reencrypt_secrets, secret_key_usage};
pub use error::{GatewayError, Target};

/// How the gateway presents itself and keeps its log.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The Kubernetes API's public base URL, e.g. `https://127.0.0.1:6443`;
    /// kubeconfigs point at `public_url + /vk8s/<tenant>/<ns>/<vk8s>`.
    pub public_url: String,
    /// The CA bundle embedded in kubeconfigs.
    pub ca_pem: String,
    /// The compactor keeps at least this many revisions of the change log.
    pub log_retention_revisions: i64,
    pub compaction_interval: Duration,
    /// Token lifetime of `GetKubeconfig` when the request names none.
    pub kubeconfig_ttl: Duration,
    /// How often a long-lived Kubernetes API response (a watch, `logs -f`)
    /// re-checks its bearer token; it ends once the token lapses.
    pub stream_recheck: Duration,
    /// Seals Secrets at rest (object table and change log).
    pub encryption: Arc<encryption::Encryption>,
    /// Fair use per vK8s and per principal.
    pub quota: Quota,
    /// Workload watches take status changes pushed by replication (else
    /// they poll every followed object's status each second).
    pub status_push: bool,
}

impl GatewayConfig {
    /// Defaults for everything but the URL, the CA and the encryption keys:
    /// 1,000 revisions kept, compaction every minute, 30-day kubeconfig
    /// tokens, the default [`Quota`], status pushed to watches.
    pub fn new(
        public_url: impl Into<String>,
        ca_pem: impl Into<String>,
        encryption: Arc<encryption::Encryption>,
    ) -> Self {
        Self {
            public_url: public_url.into(),
            ca_pem: ca_pem.into(),
            log_retention_revisions: 1_000,
            compaction_interval: Duration::from_secs(60),
            kubeconfig_ttl: Duration::from_secs(30 * 86_400),
            stream_recheck: manifold_auth::DEFAULT_STREAM_RECHECK,
            encryption,
            quota: Quota::default(),
            status_push: true,
        }
    }
}

/// How often the change hub reads the log even without a notification.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    core: Arc<core::Core>,
    /// Ends long-lived streams (Kubernetes watches, feed streams) when the
    /// HTTPS server or the background tasks are shut down.
    watches: CancellationToken,
    /// Where the Kubernetes API records its HTTP metrics, when set.
    metrics: Option<manifold_telemetry::Metrics>,
    /// Where the Kubernetes API records mutating requests, when set.
    audit: Option<manifold_telemetry::AuditSink>,
}

impl Gateway {
    /// Fully qualified names of the gRPC services, for the health service.
    pub const SERVICE_NAMES: &'static [&'static str] = &[
        "manifold.vk8s.v1.VirtualClusterService",
        "manifold.vk8s.v1.ObjectFeed",
    ];

    /// `tenancy` is a channel to the tenancy API, called with each end
    /// user's own token. `authenticator` resolves the Kubernetes API's bearer
    /// tokens; it should cache for a few seconds (revocation is then honoured
    /// within that time).
    pub async fn new(
        db: Db,
        tenancy: tonic::transport::Channel,
        authenticator: Arc<dyn Authenticator>,
        config: GatewayConfig,
    ) -> Result<Self, GatewayError> {
        if config.log_retention_revisions < 1 {
            return Err(GatewayError::invalid_argument(
                "log_retention_revisions",
                "must keep at least one revision",
            ));
        }
        let core = core::Core::new(db, core::TenancyClient::new(tenancy), authenticator, config);
        Ok(Self {
            core: Arc::new(core),
            watches: CancellationToken::new(),
            metrics: None,
            audit: None,
        })
    }

    /// Merges the sites' observed state (pods, per-site workload status,
    /// pod deletion and logs) from the replication service reached over
    /// `channel`, called with each end user's own token. Without it pods
    /// list empty and workload status is whatever was written.
    pub fn with_replication(self, channel: tonic::transport::Channel) -> Self {
        let _ = self
            .core
            .replication
            .set(core::ReplicationClient::new(channel));
        self
    }

    /// Checks workloads against the Pod Security level of the sites each
    /// vK8s is placed on, resolved by the site registry reached over
    /// `channel` (with each end user's own token). Without it workloads are
    /// not checked against sites (Services still are).
    pub fn with_sites(self, channel: tonic::transport::Channel) -> Self {
        let _ = self.core.sites.set(core::SitesClient::new(channel));
        self
    }

    /// Records the Kubernetes API's requests (`http_requests`,
    /// `http_duration_seconds` by route template, method and code) in
    /// `metrics`.
    pub fn with_metrics(mut self, metrics: manifold_telemetry::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records every POST/PUT/PATCH/DELETE of the Kubernetes API (refused
    /// and failed ones too) in `sink`, the process's audit log.
    pub fn with_audit(mut self, sink: manifold_telemetry::AuditSink) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Adds `VirtualClusterService` and `ObjectFeed` to a gRPC server's
    /// routes. The server's auth layer must put the caller's principal in
    /// the request extensions (manifold-server's `GrpcServer` does).
    pub fn add_to(&self, routes: &mut tonic::service::RoutesBuilder) {
        grpc::add_to(self.core.clone(), self.watches.clone(), routes);
    }

    /// The Kubernetes API as an axum router (paths start with `/vk8s/`).
    pub fn router(&self) -> axum::Router {
        kube::router(
            self.core.clone(),
            self.watches.clone(),
            self.metrics.clone(),
            self.audit.clone(),
        )
    }

    /// Serves the Kubernetes API over TLS (HTTP/2 and HTTP/1.1 by ALPN) on
    /// `listener` until `shutdown` resolves; then ends open watches and
    /// drains connections for up to 10 seconds.
    pub async fn serve_kube_api(
        &self,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        kube::serve(self.router(), listener, tls, self.watches.clone(), shutdown).await
    }

    /// Starts the change hub (LISTEN/NOTIFY plus polling) and the compactor.
    /// The handle finishes after `shutdown` is cancelled.
    pub fn spawn_background(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let core = self.core.clone();
        let watches = self.watches.clone();
        tokio::spawn(async move {
            let stop = shutdown.clone();
            let ends_streams = async move {
                stop.cancelled().await;
                watches.cancel();
            };
            let hub = core.hub.clone().run(
                core.db.clone(),
                core.config.encryption.clone(),
                POLL_INTERVAL,
                shutdown.clone(),
            );
            let compactor = feed::run_compactor(
                core.db.clone(),
                core.config.log_retention_revisions,
                core.config.compaction_interval,
                shutdown.clone(),
            );
            let cleaner = run_tenant_cleaner(core.clone(), shutdown.clone());
            let keys = core::rotation::check_key_usage(&core.db, &core.config.encryption);
            tokio::join!(hub, compactor, ends_streams, cleaner, keys);
        })
    }
}

/// Purges deleted tenants' and namespaces' virtual clusters (through the
/// change log) every second; one replica per pass (advisory lock).
async fn run_tenant_cleaner(core: Arc<core::Core>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(manifold_db::deletions::POLL_INTERVAL) => {}
        }
        if let Err(e) = core.purge_deleted_tenants().await {
            tracing::warn!(error = %e, "purging deleted tenants' virtual clusters");
        }
    }
}
