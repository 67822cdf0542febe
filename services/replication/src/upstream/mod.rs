//! Calls to the other control-plane services (vK8s gateway, site registry,
//! tenancy) over gRPC, made with the internal service token.

pub mod authority;
pub mod convert;

use std::{sync::Arc, time::Duration};

use manifold_proto::{sites::v1 as sites, tenancy::v1 as tenancy, vk8s::v1 as vk8s};
use tonic::{metadata::MetadataValue, transport::Channel};
use uuid::Uuid;

use crate::error::ReplicationError;

/// Snapshot chunks carry up to 500 whole objects.
const MAX_FEED_MESSAGE: usize = 256 * 1024 * 1024;

/// The control plane as seen from replication.
#[derive(Clone)]
pub struct Upstream {
    channel: Channel,
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
    tenant_ids: moka::future::Cache<String, Uuid>,
}

impl Upstream {
    pub fn new(channel: Channel, internal_token: &str) -> Self {
        let bearer = format!("Bearer {internal_token}").parse().ok();
        if bearer.is_none() {
            tracing::error!(
                "the internal token is not valid in a header; upstream calls will be refused"
            );
        }
        Self {
            channel,
            bearer,
            tenant_ids: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        }
    }

    /// `message` with the internal bearer token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        if let Some(b) = &self.bearer {
            r.metadata_mut().insert("authorization", b.clone());
        }
        r
    }

    pub fn feed(&self) -> vk8s::object_feed_client::ObjectFeedClient<Channel> {
        vk8s::object_feed_client::ObjectFeedClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_FEED_MESSAGE)
    }

    pub fn clusters(
        &self,
    ) -> vk8s::virtual_cluster_service_client::VirtualClusterServiceClient<Channel> {
        vk8s::virtual_cluster_service_client::VirtualClusterServiceClient::new(self.channel.clone())
    }

    pub fn virtual_sites(
        &self,
    ) -> sites::virtual_site_service_client::VirtualSiteServiceClient<Channel> {
        sites::virtual_site_service_client::VirtualSiteServiceClient::new(self.channel.clone())
    }

    pub fn registration(
        &self,
    ) -> sites::registration_service_client::RegistrationServiceClient<Channel> {
        sites::registration_service_client::RegistrationServiceClient::new(self.channel.clone())
    }

    /// The uid of tenant `tenant` (`acme`): rows of the `replication` schema
    /// carry it. Cached; a tenant's uid never changes.
    pub async fn tenant_uid(&self, tenant: &str) -> Result<Uuid, ReplicationError> {
        if let Some(id) = self.tenant_ids.get(tenant).await {
            return Ok(id);
        }
        let name = format!("tenants/{tenant}");
        let reply = tenancy::tenant_service_client::TenantServiceClient::new(self.channel.clone())
            .get_tenant(self.request(tenancy::GetTenantRequest { name: name.clone() }))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => ReplicationError::NotFound(name.clone()),
                _ => ReplicationError::Upstream(s),
            })?
            .into_inner();
        let id = Uuid::parse_str(&reply.uid).map_err(|_| {
            ReplicationError::Internal(format!("tenancy returned a malformed uid for {name}"))
        })?;
        self.tenant_ids.insert(tenant.to_owned(), id).await;
        Ok(id)
    }
}

/// Shared handle.
pub type SharedUpstream = Arc<Upstream>;
