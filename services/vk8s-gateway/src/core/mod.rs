//! The gateway's application core, shared by the gRPC and Kubernetes
//! adapters: authorization, virtual cluster management, object reads and
//! writes, lists and watch starts. It speaks domain types; the adapters turn
//! protos and HTTP requests into them.

pub mod clusters;
pub mod list;
pub mod objects;
pub mod tenancy;

use std::sync::Arc;
use std::time::Duration;

use manifold_auth::Authenticator;
use manifold_db::Db;

use crate::GatewayConfig;
use crate::domain::{ClusterName, VirtualCluster};
use crate::feed::Hub;

pub use clusters::{Caller, CreateCluster};
pub use tenancy::TenancyClient;

/// Everything the handlers share.
pub struct Core {
    pub db: Db,
    pub hub: Hub,
    pub config: GatewayConfig,
    pub tenancy: TenancyClient,
    pub authenticator: Arc<dyn Authenticator>,
    /// Clusters by name, for the Kubernetes API's per-request resolution.
    clusters: moka::future::Cache<ClusterName, Arc<VirtualCluster>>,
}

impl Core {
    pub fn new(
        db: Db,
        tenancy: TenancyClient,
        authenticator: Arc<dyn Authenticator>,
        config: GatewayConfig,
    ) -> Self {
        Self {
            db,
            hub: Hub::new(),
            config,
            tenancy,
            authenticator,
            clusters: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(2))
                .build(),
        }
    }
}
