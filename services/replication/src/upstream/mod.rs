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

/// Where replication reaches the other control-plane services.
#[derive(Clone, Debug)]
pub struct UpstreamChannels {
    pub gateway: Channel,
    pub sites: Channel,
    pub tenancy: Channel,
}

impl UpstreamChannels {
    /// Every service behind one channel (the all-in-one process).
    pub fn all(channel: Channel) -> Self {
        Self {
            gateway: channel.clone(),
            sites: channel.clone(),
            tenancy: channel,
        }
    }
}

/// The control plane as seen from replication.
#[derive(Clone)]
pub struct Upstream {
    /// The gateway (ObjectFeed, VirtualClusterService).
    gateway: Channel,
    /// The site registry (virtual sites, certificate checks).
    sites: Channel,
    /// Tenancy (tenant uids).
    tenancy: Channel,
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
    tenant_ids: moka::future::Cache<String, Uuid>,
}

impl Upstream {
    /// One channel per upstream service; in the all-in-one process they are
    /// all the same listener.
    pub fn new(channels: UpstreamChannels, internal_token: &str) -> Self {
        let bearer = format!("Bearer {internal_token}").parse().ok();
        if bearer.is_none() {
            tracing::error!(
                "the internal token is not valid in a header; upstream calls will be refused"
            );
        }
        Self {
            gateway: channels.gateway,
            sites: channels.sites,
            tenancy: channels.tenancy,
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
        // The call continues the current trace.
        manifold_telemetry::inject_context(r.metadata_mut());
        r
    }

    pub fn feed(&self) -> vk8s::object_feed_client::ObjectFeedClient<Channel> {
        vk8s::object_feed_client::ObjectFeedClient::new(self.gateway.clone())
            .max_decoding_message_size(MAX_FEED_MESSAGE)
    }

    pub fn clusters(
        &self,
    ) -> vk8s::virtual_cluster_service_client::VirtualClusterServiceClient<Channel> {
        vk8s::virtual_cluster_service_client::VirtualClusterServiceClient::new(self.gateway.clone())
    }

    pub fn virtual_sites(
        &self,
    ) -> sites::virtual_site_service_client::VirtualSiteServiceClient<Channel> {
        sites::virtual_site_service_client::VirtualSiteServiceClient::new(self.sites.clone())
    }

    pub fn registration(
        &self,
    ) -> sites::registration_service_client::RegistrationServiceClient<Channel> {
        sites::registration_service_client::RegistrationServiceClient::new(self.sites.clone())
    }

    /// The uid of tenant `tenant` (`acme`): rows of the `replication` schema
    /// carry it. Cached; a tenant's uid never changes.
    pub async fn tenant_uid(&self, tenant: &str) -> Result<Uuid, ReplicationError> {
        if let Some(id) = self.tenant_ids.get(tenant).await {
            return Ok(id);
        }
        let name = format!("tenants/{tenant}");
        let reply = tenancy::tenant_service_client::TenantServiceClient::new(self.tenancy.clone())
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
