//! The site registry: physical sites and their lifecycle, virtual sites (label
//! selectors over sites) and the placement they resolve to, agent
//! registration with one-time tokens, and the certificates issued to agents.
#![forbid(unsafe_code)]

pub mod core;
pub mod domain;
pub mod error;
mod grpc;
pub mod store;
pub mod tenancy;

use std::sync::Arc;

use manifold_db::Db;
use manifold_pki::Ca;
use manifold_proto::sites::v1 as pb;
use tonic::transport::Channel;

pub use crate::core::registration::{Reporter, VerifiedSite};
pub use crate::core::{Core, SiteRegistryOptions};
pub use crate::error::SiteError;

/// Paths the auth layer lets through without a caller token. The agent-facing
/// service authenticates in its handlers: the registration token in the body
/// (Register), the mTLS client certificate (RenewCertificate,
/// ReportSiteStatus), or a system-admin bearer token checked through tenancy
/// (ReportSiteStatus). CheckCertificate is public, like OCSP.
pub const PUBLIC_PATHS: &[&str] = &["/manifold.sites.v1.RegistrationService/"];

/// Fully qualified names of the services, for the health service.
pub const SERVICE_NAMES: &[&str] = &[
    "manifold.sites.v1.SiteService",
    "manifold.sites.v1.VirtualSiteService",
    "manifold.sites.v1.RegistrationService",
];

/// The site registry, ready to be mounted on a gRPC server.
#[derive(Clone)]
pub struct SiteRegistry {
    core: Arc<Core>,
}

impl SiteRegistry {
    /// `tenancy`: a channel to the tenancy API (tenant uids, namespace checks,
    /// bearer tokens of status reporters). `ca`: present when this process
    /// may issue agent certificates; `ca_pem`: the bundle agents trust.
    pub fn new(
        db: Db,
        tenancy: Channel,
        ca: Option<Arc<Ca>>,
        ca_pem: String,
        options: SiteRegistryOptions,
    ) -> Self {
        let client =
            tenancy::TenancyClient::new(tenancy, options.tenant_cache_ttl, options.auth_cache_ttl);
        Self {
            core: Core::new(db, client, ca, ca_pem, options),
        }
    }

    /// The core, for in-process callers (replication in the all-in-one
    /// process): certificate checks and status reports without a gRPC hop.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Whether a site certificate (DER) is no longer trusted: revoked,
    /// unknown to the registry, expired, or its site decommissioned.
    pub async fn is_certificate_revoked(&self, cert_der: &[u8]) -> Result<bool, SiteError> {
        self.core.is_certificate_revoked(cert_der).await
    }

    /// Starts the tenant-deletion cleaner (where the registry service runs):
    /// deleted tenants' virtual sites go, their own sites are decommissioned.
    pub fn spawn_tenant_cleaner(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let core = self.core.clone();
        tokio::spawn(async move { core.run_tenant_cleaner(shutdown).await })
    }

    pub fn add_to(&self, routes: &mut tonic::service::RoutesBuilder) {
        let c = &self.core;
        routes
            .add_service(pb::site_service_server::SiteServiceServer::new(
                grpc::sites::Sites(c.clone()),
            ))
            .add_service(
                pb::virtual_site_service_server::VirtualSiteServiceServer::new(
                    grpc::virtual_sites::VirtualSites(c.clone()),
                ),
            )
            .add_service(
                pb::registration_service_server::RegistrationServiceServer::new(
                    grpc::registration::Registration(c.clone()),
                ),
            );
    }
}
