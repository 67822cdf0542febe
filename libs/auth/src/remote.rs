//! Authentication for services other than tenancy: ask tenancy's `WhoAmI`
//! with the caller's token and turn the answer into a [`Principal`].

use std::sync::Arc;

use manifold_proto::tenancy::v1 as pb;
use tonic::transport::Channel;

use crate::{AuthError, Authenticator, Binding, Principal, Role};

#[derive(Clone)]
pub struct RemoteAuthenticator {
    client: pb::authorization_service_client::AuthorizationServiceClient<Channel>,
}

impl RemoteAuthenticator {
    pub fn new(channel: Channel) -> Self {
        Self {
            client: pb::authorization_service_client::AuthorizationServiceClient::new(channel),
        }
    }
}

#[async_trait::async_trait]
impl Authenticator for RemoteAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let mut request = tonic::Request::new(pb::WhoAmIRequest {});
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| AuthError::Malformed)?;
        request.metadata_mut().insert("authorization", value);
        let reply = self
            .client
            .clone()
            .who_am_i(request)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unauthenticated => AuthError::Invalid,
                tonic::Code::ResourceExhausted => AuthError::Throttled(s.message().to_owned()),
                _ => AuthError::Unavailable(s.message().to_owned()),
            })?;
        principal_from_proto(reply.into_inner()).map(Arc::new)
    }
}

/// Converts tenancy's `Principal` message.
pub fn principal_from_proto(p: pb::Principal) -> Result<Principal, AuthError> {
    let bindings = p
        .role_bindings
        .iter()
        .filter_map(|b| {
            let role = match pb::Role::try_from(b.role).ok()? {
                pb::Role::SystemAdmin => Role::SystemAdmin,
                pb::Role::TenantAdmin => Role::TenantAdmin,
                pb::Role::NamespaceAdmin => Role::NamespaceAdmin,
                pb::Role::NamespaceEditor => Role::NamespaceEditor,
                pb::Role::NamespaceViewer => Role::NamespaceViewer,
                pb::Role::Unspecified => return None,
            };
            let scope = b
                .name
                .rsplit_once("/roleBindings/")
                .map_or(String::new(), |(s, _)| s.to_owned());
            Some(Binding { role, scope })
        })
        .collect();
    let expire = p
        .token_expire_time
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .ok_or_else(|| AuthError::Unavailable("principal without token expiry".into()))?;
    Ok(Principal {
        user: p.user,
        tenant: p
            .tenant
            .strip_prefix("tenants/")
            .map(str::to_owned)
            .filter(|t| !t.is_empty()),
        bindings,
        token: p.token,
        token_scope: p.token_scope,
        token_expire_time: expire,
    })
}
