//! Replication: the control plane's side of the site agents.
//!
//! - `SiteSync.Connect`: each agent's one mTLS-authenticated stream. Objects
//!   of the vK8s gateway's `ObjectFeed` are placed on sites (vK8s → virtual
//!   sites → sites, narrowed by an object annotation), replayed or
//!   snapshotted on connect, then streamed live under a per-site window;
//!   acks become the site's cursor in Postgres.
//! - Liveness: heartbeats keep the site ONLINE in the site registry; one
//!   replica at a time marks sites whose stream is gone OFFLINE.
//! - Observed state: agents' status reports land in the `replication` schema
//!   and are served by `ReplicationService` (pods, watches across replicas,
//!   per-site object status, sessions, pod deletion and logs).
//!
//! Layout: `domain` (rules, no gRPC/SQL), `storage` (SQL), `feed` (the
//! shared ring, catch-up watches, snapshots), `placement` (the placement
//! index), `session` (one agent stream), `api` (ReplicationService),
//! `background` (jobs), `upstream` (calls to the other services).
#![forbid(unsafe_code)]

mod api;
mod background;
pub mod domain;
mod error;
mod feed;
mod placement;
mod session;
mod storage;
pub mod upstream;

use std::{sync::Arc, time::Duration};

use manifold_db::Db;
use manifold_proto::replication::v1 as pb;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use error::ReplicationError;
pub use upstream::UpstreamChannels;
pub use upstream::authority::{
    AuthorityError, GrpcAuthority, Renewed, SiteAuthority, VerifiedCert,
};

/// Paths the auth layer lets through without a bearer token: the agents'
/// stream authenticates the client certificate itself.
pub const PUBLIC_PATHS: &[&str] = &["/manifold.replication.v1.SiteSync/"];

/// Fully qualified names of the services, for the health service.
pub const SERVICE_NAMES: &[&str] = &[
    "manifold.replication.v1.SiteSync",
    "manifold.replication.v1.ReplicationService",
];

/// Largest agent message accepted (a full status report of a big site).
const MAX_AGENT_MESSAGE: usize = 64 * 1024 * 1024;

/// How replication runs.
#[derive(Clone)]
pub struct ReplicationConfig {
    /// A system-admin bearer token for calls to the gateway (ObjectFeed,
    /// VirtualClusterService), the site registry and tenancy.
    pub internal_token: String,
    /// A site whose stream is gone this long is marked OFFLINE.
    pub heartbeat_timeout: Duration,
    /// Unacknowledged Apply/Delete/Progress messages in flight per site.
    pub window: usize,
    /// This replica's name (shown in sessions; owner of streams).
    pub replica_id: String,
    /// Changes kept in the shared in-memory ring.
    pub feed_buffer: usize,
    /// How often the vK8s → virtual sites mapping is re-read (the gateway
    /// has no watch for it).
    pub cluster_poll_interval: Duration,
    /// Private catch-up watches open at once (sessions behind the ring).
    pub max_catch_up_streams: usize,
    /// Snapshot streams open at once (each holds a gateway transaction).
    pub max_snapshot_streams: usize,
    /// A snapshot up to this size is kept in memory briefly and shared.
    pub snapshot_cache_bytes: usize,
    /// How long an agent may take to send Hello.
    pub hello_timeout: Duration,
    /// How often a live stream's certificate is checked again (revocation).
    pub certificate_recheck: Duration,
    /// Verifies and renews agent certificates. None: the site registry's
    /// `CheckCertificate` over gRPC (no renewal over the stream).
    pub site_authority: Option<Arc<dyn SiteAuthority>>,
    /// Deleted pods stay visible to watchers this long.
    pub pod_tombstone_ttl: Duration,
    /// Reported Kubernetes Events are kept this long.
    pub event_ttl: Duration,
    /// This replica's gRPC URL as other replicas reach it (`https://…`).
    /// With it (and `peer_ca_pem` on the others), StreamLogs on a replica
    /// that does not hold the site's stream is forwarded to the one that
    /// does.
    pub advertise_url: Option<String>,
    /// The CA bundle to trust when forwarding to another replica.
    pub peer_ca_pem: Option<String>,
}

impl ReplicationConfig {
    /// Defaults for everything but the token.
    pub fn new(internal_token: impl Into<String>) -> Self {
        Self {
            internal_token: internal_token.into(),
            heartbeat_timeout: Duration::from_secs(30),
            window: 256,
            replica_id: format!(
                "replica-{}-{:04x}",
                std::process::id(),
                rand::random::<u16>()
            ),
            feed_buffer: 4096,
            cluster_poll_interval: Duration::from_secs(2),
            max_catch_up_streams: 32,
            max_snapshot_streams: 2,
            snapshot_cache_bytes: 64 * 1024 * 1024,
            hello_timeout: Duration::from_secs(30),
            certificate_recheck: Duration::from_secs(60),
            site_authority: None,
            pod_tombstone_ttl: Duration::from_secs(600),
            event_ttl: Duration::from_secs(3600),
            advertise_url: None,
            peer_ca_pem: None,
        }
    }
}

impl std::fmt::Debug for ReplicationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConfig")
            .field("internal_token", &"<redacted>")
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("window", &self.window)
            .field("replica_id", &self.replica_id)
            .field("feed_buffer", &self.feed_buffer)
            .field("site_authority", &self.site_authority.is_some())
            .finish_non_exhaustive()
    }
}

/// Everything the parts share.
pub(crate) struct Shared {
    pub db: Db,
    pub upstream: Arc<upstream::Upstream>,
    pub authority: Arc<dyn SiteAuthority>,
    pub config: ReplicationConfig,
    pub ring: Arc<feed::Ring>,
    pub snapshots: feed::Snapshots,
    pub catch_up: Arc<Semaphore>,
    pub placement: Arc<placement::Placement>,
    pub sessions: session::Sessions,
    pub logs: session::logs::LogRoutes,
    pub pod_hub: api::pod_hub::PodHub,
    /// Wakes the status readers (STATUS_CHANNEL notifications).
    pub status_hub: api::pod_hub::PodHub,
    /// One status reader per followed vK8s.
    pub status_topics: api::status_watch::StatusTopics,
    /// Ends every stream of this instance (process shutdown).
    pub stop: CancellationToken,
    /// `manifold_propagation_latency_seconds`, once metrics are registered.
    pub propagation: std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>,
}

/// The replication service; cheap to clone.
#[derive(Clone)]
pub struct Replication {
    shared: Arc<Shared>,
}

impl Replication {
    /// `control_plane`: a channel to the control plane's gRPC API (gateway,
    /// site registry, tenancy), called with `config.internal_token`.
    pub fn new(
        db: Db,
        control_plane: tonic::transport::Channel,
        config: ReplicationConfig,
    ) -> Self {
        Self::with_upstreams(db, UpstreamChannels::all(control_plane), config)
    }

    /// [`Replication::new`] with the gateway, site registry and tenancy
    /// behind separate channels (services deployed apart).
    pub fn with_upstreams(db: Db, upstreams: UpstreamChannels, config: ReplicationConfig) -> Self {
        let upstream = Arc::new(upstream::Upstream::new(upstreams, &config.internal_token));
        let authority: Arc<dyn SiteAuthority> = match &config.site_authority {
            Some(a) => a.clone(),
            None => Arc::new(GrpcAuthority(upstream.clone())),
        };
        let ring = Arc::new(feed::Ring::new(config.feed_buffer));
        let shared = Shared {
            db,
            ring: ring.clone(),
            snapshots: feed::Snapshots::new(
                upstream.clone(),
                ring,
                config.max_snapshot_streams,
                config.snapshot_cache_bytes,
            ),
            catch_up: Arc::new(Semaphore::new(config.max_catch_up_streams.max(1))),
            placement: placement::Placement::new(),
            sessions: session::Sessions::default(),
            logs: session::logs::LogRoutes::default(),
            pod_hub: api::pod_hub::PodHub::new(),
            status_hub: api::pod_hub::PodHub::new(),
            status_topics: Default::default(),
            stop: CancellationToken::new(),
            propagation: std::sync::OnceLock::new(),
            upstream,
            authority,
            config,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Adds `SiteSync` and `ReplicationService` to a gRPC server's routes.
    /// SiteSync must be served on a listener that asks for (optional) client
    /// certificates signed by the control-plane CA, and its paths must be
    /// public in the auth layer ([`PUBLIC_PATHS`]).
    pub fn add_to(&self, routes: &mut tonic::service::RoutesBuilder) {
        routes
            .add_service(
                pb::site_sync_server::SiteSyncServer::new(session::SiteSyncService(
                    self.shared.clone(),
                ))
                .max_decoding_message_size(MAX_AGENT_MESSAGE),
            )
            .add_service(
                pb::replication_service_server::ReplicationServiceServer::new(api::Api(
                    self.shared.clone(),
                )),
            );
    }

    /// Starts the background work: the placement index, the shared feed,
    /// session bookkeeping, the offline marker, pod notifications and
    /// tombstone purging. When `shutdown` is cancelled every agent stream is
    /// ended (agents reconnect elsewhere) and the handle finishes.
    pub fn spawn_background(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let stop = shared.stop.clone();
            let watcher = async {
                shutdown.cancelled().await;
                stop.cancel();
            };
            tokio::join!(watcher, background::run(shared.clone()));
        })
    }

    /// Registers replication's metrics in `metrics` (once per process):
    /// `manifold_sites_connected`, `manifold_site_pending_acks{site}` (read
    /// from the live sessions at each scrape) and
    /// `manifold_propagation_latency_seconds`.
    pub fn register_metrics(&self, metrics: &manifold_telemetry::Metrics) {
        use prometheus_client::metrics::{family::Family, gauge::Gauge, histogram::Histogram};
        let histogram = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]);
        if self.shared.propagation.set(histogram.clone()).is_err() {
            return;
        }
        metrics.register(
            "manifold_propagation_latency_seconds",
            "Time from sending a change (Apply, Delete) to a site until the site acknowledged it",
            histogram,
        );
        let connected = metrics.register_gauge(
            "manifold_sites_connected",
            "Sites with a live agent stream on this replica",
        );
        let pending = Family::<Vec<(&'static str, String)>, Gauge>::default();
        metrics.register(
            "manifold_site_pending_acks",
            "Messages sent to a site and not yet acknowledged, per site",
            pending.clone(),
        );
        let shared = Arc::downgrade(&self.shared);
        metrics.on_scrape(move || {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let sessions = shared.sessions.all();
            connected.set(sessions.len() as i64);
            // Sites that went away must not linger as series.
            pending.clear();
            for s in sessions {
                pending
                    .get_or_create(&vec![("site", s.site.clone())])
                    .set(s.in_flight.load(std::sync::atomic::Ordering::Relaxed));
            }
        });
    }

    /// Sites with a live stream on this replica (for tests and diagnostics).
    pub fn local_sites(&self) -> Vec<String> {
        self.shared.sessions.sites()
    }
}
