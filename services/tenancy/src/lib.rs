//! The tenancy service: tenants, namespaces, users, role bindings, API tokens,
//! and the authorization check every other service relies on.
#![forbid(unsafe_code)]

pub mod core;
pub mod domain;
pub mod error;
mod grpc;
pub mod store;

use std::{path::Path, sync::Arc, time::Duration};

use manifold_auth::Authenticator;
use manifold_db::Db;
use manifold_proto::tenancy::v1 as pb;

pub use crate::core::{BootstrapError, Core};
pub use grpc::identity::principal_to_proto;

/// Paths the auth layer lets through without a caller token: `Authorize`
/// carries the token to check in its body.
pub const PUBLIC_PATHS: &[&str] = &["/manifold.tenancy.v1.AuthorizationService/Authorize"];

/// Fully qualified names of the services, for the health service.
pub const SERVICE_NAMES: &[&str] = &[
    "manifold.tenancy.v1.TenantService",
    "manifold.tenancy.v1.NamespaceService",
    "manifold.tenancy.v1.UserService",
    "manifold.tenancy.v1.RoleBindingService",
    "manifold.tenancy.v1.ApiTokenService",
    "manifold.tenancy.v1.AuthorizationService",
];

/// The tenancy service, ready to be mounted on a gRPC server.
#[derive(Clone)]
pub struct Tenancy {
    core: Arc<Core>,
}

struct Shared(Arc<Core>);

#[async_trait::async_trait]
impl Authenticator for Shared {
    async fn authenticate(
        &self,
        token: &str,
    ) -> Result<Arc<manifold_auth::Principal>, manifold_auth::AuthError> {
        self.0.auth.authenticate(token).await
    }
}

impl Tenancy {
    pub fn new(db: Db, auth_cache_ttl: Duration) -> Self {
        Self {
            core: Core::new(db, auth_cache_ttl),
        }
    }

    /// Mints the first system-admin token when none is usable; see
    /// [`Core::bootstrap`].
    pub async fn bootstrap(&self, token_file: &Path) -> Result<bool, BootstrapError> {
        self.core.bootstrap(token_file).await
    }

    /// A system-admin token for an internal service; see
    /// [`Core::service_token`].
    pub async fn service_token(&self, service: &str) -> Result<String, error::TenancyError> {
        self.core.service_token(service).await
    }

    /// The in-process authenticator (cached), for the auth layer of the
    /// server that hosts tenancy.
    pub fn authenticator(&self) -> Arc<dyn Authenticator> {
        Arc::new(Shared(self.core.clone()))
    }

    pub fn add_to(&self, routes: &mut tonic::service::RoutesBuilder) {
        let c = &self.core;
        routes
            .add_service(pb::tenant_service_server::TenantServiceServer::new(
                grpc::tenants::Tenants(c.clone()),
            ))
            .add_service(pb::namespace_service_server::NamespaceServiceServer::new(
                grpc::tenants::Namespaces(c.clone()),
            ))
            .add_service(pb::user_service_server::UserServiceServer::new(
                grpc::identity::Users(c.clone()),
            ))
            .add_service(
                pb::role_binding_service_server::RoleBindingServiceServer::new(
                    grpc::identity::RoleBindings(c.clone()),
                ),
            )
            .add_service(pb::api_token_service_server::ApiTokenServiceServer::new(
                grpc::identity::ApiTokens(c.clone()),
            ))
            .add_service(
                pb::authorization_service_server::AuthorizationServiceServer::new(
                    grpc::identity::Authorization(c.clone()),
                ),
            );
    }
}
