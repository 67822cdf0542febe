//! The gateway's application core, shared by the gRPC and Kubernetes
//! adapters: authorization, virtual cluster management, object reads and
//! writes, lists and watch starts. It speaks domain types; the adapters turn
//! protos and HTTP requests into them.

pub mod cleanup;
pub mod clusters;
pub mod list;
pub mod objects;
pub mod policy;
pub mod quota;
pub mod replication;
pub mod rotation;
pub mod status_push;
pub mod tenancy;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use manifold_auth::Authenticator;
use manifold_db::Db;

use crate::GatewayConfig;
use crate::domain::{ClusterName, VirtualCluster};
use crate::feed::Hub;

pub use clusters::{Caller, CreateCluster};
pub use policy::SitesClient;
pub use replication::ReplicationClient;
pub use tenancy::TenancyClient;

/// Everything the handlers share.
pub struct Core {
    pub db: Db,
    pub hub: Hub,
    pub config: GatewayConfig,
    pub tenancy: TenancyClient,
    pub authenticator: Arc<dyn Authenticator>,
    /// Re-checks the bearer token of long-lived Kubernetes API responses.
    pub recheck: manifold_auth::Recheck,
    /// Open watches and `logs -f` streams per principal on the Kubernetes API.
    pub streams: manifold_auth::StreamLimiter,
    /// Clusters by name, for the Kubernetes API's per-request resolution.
    clusters: moka::future::Cache<ClusterName, Arc<VirtualCluster>>,
    /// The replication service's observed state; unset: nothing observed.
    pub replication: OnceLock<ReplicationClient>,
    /// The site registry, for the Pod Security levels of the placement;
    /// unset: workloads are not checked against sites.
    pub sites: OnceLock<SitesClient>,
    /// Open Kubernetes watches by principal (`quota.max_watches_per_principal`).
    pub watches: quota::Watches,
    /// Status changes pushed by replication, one upstream per vK8s.
    pub status_push: status_push::StatusPush,
}

impl Core {
    /// A watch slot for the caller, or 429 once it holds the maximum.
    pub fn acquire_watch(
        &self,
        user: &str,
    ) -> Result<quota::WatchSlot, crate::error::GatewayError> {
        self.watches
            .acquire(user, self.config.quota.max_watches_per_principal)
    }

    pub fn new(
        db: Db,
        tenancy: TenancyClient,
        authenticator: Arc<dyn Authenticator>,
        config: GatewayConfig,
    ) -> Self {
        let recheck = manifold_auth::Recheck::new(authenticator.clone(), config.stream_recheck);
        Self {
            db,
            hub: Hub::new(),
            config,
            tenancy,
            recheck,
            streams: manifold_auth::StreamLimiter::default(),
            authenticator,
            clusters: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(2))
                .build(),
            replication: OnceLock::new(),
            sites: OnceLock::new(),
            watches: quota::Watches::default(),
            status_push: status_push::StatusPush::default(),
        }
    }

    /// Fills a workload's `.status` with the sum of what its sites report
    /// (a no-op for other kinds, or without replication).
    pub async fn observe(
        &self,
        vc: &VirtualCluster,
        kind: &'static manifold_kube_model::kinds::ResourceKind,
        object: &mut serde_json::Value,
        token: &str,
    ) -> Result<(), crate::error::GatewayError> {
        let Some(r) = self.replication.get() else {
            return Ok(());
        };
        if !replication::is_workload(kind.kind) {
            return Ok(());
        }
        let Some(name) = object
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
        else {
            return Ok(());
        };
        let sites = r.site_statuses(vc, kind, name, token).await?;
        replication::merge_status(kind.kind, object, sites);
        Ok(())
    }
}
