//! Calls to the tenancy API, made with the caller's own bearer token so
//! tenancy applies its rules to the caller, not to the registry. The registry
//! never reads the tenancy schema.

use std::{sync::Arc, time::Duration};

use manifold_auth::{
    AuthError, Authenticator, CachingAuthenticator, Principal, RemoteAuthenticator,
};
use manifold_proto::tenancy::v1 as pb;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::domain::NamespaceRef;
use crate::error::SiteError;

#[derive(Clone)]
pub struct TenancyClient {
    channel: Channel,
    authenticator: Arc<CachingAuthenticator<RemoteAuthenticator>>,
    /// Tenant name → uid. A tenant's uid never changes; a deleted and
    /// re-created tenant gets a new one, noticed when the entry expires.
    /// Entries are only used after the caller's own RBAC check passed.
    tenant_ids: moka::future::Cache<String, Uuid>,
}

fn with_token<T>(message: T, token: &str) -> Result<tonic::Request<T>, SiteError> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| SiteError::Auth(AuthError::Malformed))?;
    request.metadata_mut().insert("authorization", value);
    // The call continues the caller's trace.
    manifold_telemetry::inject_context(request.metadata_mut());
    Ok(request)
}

fn upstream(status: tonic::Status, target: &str) -> SiteError {
    match status.code() {
        tonic::Code::NotFound => SiteError::NotFound(target.to_owned()),
        _ => SiteError::Upstream(status),
    }
}

impl TenancyClient {
    /// `tenant_ttl`: how long tenant uids are reused; `auth_ttl`: how long a
    /// resolved bearer token is.
    pub fn new(channel: Channel, tenant_ttl: Duration, auth_ttl: Duration) -> Self {
        Self {
            authenticator: Arc::new(CachingAuthenticator::new(
                RemoteAuthenticator::new(channel.clone()),
                auth_ttl,
            )),
            channel,
            tenant_ids: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(tenant_ttl)
                .build(),
        }
    }

    /// Drops cached uids of `tenants` (names of deleted tenants).
    pub async fn forget(&self, tenants: &[String]) {
        for t in tenants {
            self.tenant_ids.invalidate(t).await;
        }
    }

    /// The uid of tenant `tenant` (`acme`), asked with the caller's token: a
    /// tenant the caller cannot see is NOT_FOUND.
    pub async fn tenant_uid(&self, tenant: &str, token: &str) -> Result<Uuid, SiteError> {
        if let Some(id) = self.tenant_ids.get(tenant).await {
            return Ok(id);
        }
        let name = format!("tenants/{tenant}");
        let mut client = pb::tenant_service_client::TenantServiceClient::new(self.channel.clone());
        let reply = client
            .get_tenant(with_token(
                pb::GetTenantRequest { name: name.clone() },
                token,
            )?)
            .await
            .map_err(|s| upstream(s, &name))?
            .into_inner();
        let id = Uuid::parse_str(&reply.uid).map_err(|_| {
            SiteError::Upstream(tonic::Status::internal(format!(
                "tenancy returned a bad uid for {name}"
            )))
        })?;
        self.tenant_ids.insert(tenant.to_owned(), id).await;
        Ok(id)
    }

    /// NOT_FOUND unless the namespace exists (and the caller can see it).
    pub async fn check_namespace(&self, ns: &NamespaceRef, token: &str) -> Result<(), SiteError> {
        let name = ns.name();
        let mut client =
            pb::namespace_service_client::NamespaceServiceClient::new(self.channel.clone());
        client
            .get_namespace(with_token(
                pb::GetNamespaceRequest { name: name.clone() },
                token,
            )?)
            .await
            .map_err(|s| upstream(s, &name))?;
        Ok(())
    }

    /// Resolves a bearer token for calls the auth layer lets through
    /// (the agent-facing service), cached briefly like the auth layer does.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        self.authenticator.authenticate(token).await
    }
}
