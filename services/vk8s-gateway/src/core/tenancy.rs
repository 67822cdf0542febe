//! Calls to the tenancy API, made with the end user's own bearer token so
//! tenancy applies its rules to the user, not to the gateway.

use std::time::Duration;

use chrono::{DateTime, Utc};
use manifold_proto::tenancy::v1 as pb;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::domain::NamespaceRef;
use crate::error::{GatewayError, Target};

#[derive(Clone)]
pub struct TenancyClient {
    channel: Channel,
    /// Tenant name → uid. A tenant's uid never changes; a deleted and
    /// re-created tenant gets a new one: deleted names are dropped by the
    /// tenant-deletion pass ([`TenancyClient::forget`]).
    tenant_ids: moka::future::Cache<String, Uuid>,
}

/// A freshly minted API token.
#[derive(Debug, Clone)]
pub struct MintedToken {
    pub secret: String,
    pub expire_time: Option<DateTime<Utc>>,
}

fn with_token<T>(message: T, token: &str) -> Result<tonic::Request<T>, GatewayError> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| GatewayError::Unauthenticated(manifold_auth::AuthError::Malformed))?;
    request.metadata_mut().insert("authorization", value);
    // The call continues the caller's trace.
    manifold_telemetry::inject_context(request.metadata_mut());
    Ok(request)
}

fn upstream(status: tonic::Status, target: &str) -> GatewayError {
    match status.code() {
        tonic::Code::NotFound => GatewayError::NotFound(Target::named(target)),
        _ => GatewayError::Upstream(status),
    }
}

impl TenancyClient {
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            tenant_ids: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// Drops cached uids of `tenants` (names of deleted tenants).
    pub async fn forget(&self, tenants: &[String]) {
        for t in tenants {
            self.tenant_ids.invalidate(t).await;
        }
    }

    /// The uid of tenant `tenant` (a name such as `acme`), asked with the
    /// caller's token: a tenant the caller cannot see is NOT_FOUND.
    pub async fn tenant_uid(&self, tenant: &str, token: &str) -> Result<Uuid, GatewayError> {
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
            GatewayError::Internal(format!("tenancy returned a bad uid for {name}"))
        })?;
        self.tenant_ids.insert(tenant.to_owned(), id).await;
        Ok(id)
    }

    /// NOT_FOUND unless the namespace exists (and the caller can see it).
    pub async fn check_namespace(
        &self,
        ns: &NamespaceRef,
        token: &str,
    ) -> Result<(), GatewayError> {
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

    /// A new API token for `user` limited to `scope`.
    pub async fn create_token(
        &self,
        user: &str,
        scope: &str,
        display_name: &str,
        ttl: Duration,
        token: &str,
    ) -> Result<MintedToken, GatewayError> {
        let mut client =
            pb::api_token_service_client::ApiTokenServiceClient::new(self.channel.clone());
        let request = pb::CreateApiTokenRequest {
            parent: user.to_owned(),
            token: Some(pb::ApiToken {
                display_name: display_name.to_owned(),
                scope: scope.to_owned(),
                ..Default::default()
            }),
            ttl: Some(prost_types::Duration {
                seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        };
        let reply = client
            .create_api_token(with_token(request, token)?)
            .await
            .map_err(|s| upstream(s, user))?
            .into_inner();
        let expire_time = reply
            .token
            .and_then(|t| t.expire_time)
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)));
        Ok(MintedToken {
            secret: reply.secret,
            expire_time,
        })
    }
}
