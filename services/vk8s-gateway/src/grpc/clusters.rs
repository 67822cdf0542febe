//! `VirtualClusterService`: protos in, core operations, protos out.

use std::sync::Arc;
use std::time::Duration;

use manifold_auth::{bearer_from_metadata, principal};
use manifold_proto::vk8s::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert::{self, UpdateRequest};
use crate::core::{Caller, Core, CreateCluster};
use crate::domain::cluster::{decode_page_token, encode_page_token, page_size, parse_etag};
use crate::domain::{ClusterName, NamespaceRef};
use crate::error::GatewayError;

pub struct Clusters(pub Arc<Core>);

/// The principal and bearer of a call.
fn caller_parts<T>(
    request: &Request<T>,
) -> Result<(Arc<manifold_auth::Principal>, String), Status> {
    let p = principal(request)?;
    let token = bearer_from_metadata(request.metadata())
        .map_err(GatewayError::from)?
        .to_owned();
    Ok((p, token))
}

#[tonic::async_trait]
impl pb::virtual_cluster_service_server::VirtualClusterService for Clusters {
    async fn create_virtual_cluster(
        &self,
        request: Request<pb::CreateVirtualClusterRequest>,
    ) -> Result<Response<pb::VirtualCluster>, Status> {
        let (p, token) = caller_parts(&request)?;
        let req = CreateCluster::try_from(request.into_inner())?;
        let caller = Caller {
            principal: &p,
            token: &token,
        };
        let vc = self.0.create_cluster(&caller, req).await?;
        Ok(Response::new(convert::cluster(
            &vc,
            &self.0.config.public_url,
        )))
    }

    async fn get_virtual_cluster(
        &self,
        request: Request<pb::GetVirtualClusterRequest>,
    ) -> Result<Response<pb::VirtualCluster>, Status> {
        let (p, token) = caller_parts(&request)?;
        let name = ClusterName::parse("name", &request.get_ref().name)?;
        let caller = Caller {
            principal: &p,
            token: &token,
        };
        let vc = self.0.get_cluster(&caller, &name).await?;
        Ok(Response::new(convert::cluster(
            &vc,
            &self.0.config.public_url,
        )))
    }

    async fn list_virtual_clusters(
        &self,
        request: Request<pb::ListVirtualClustersRequest>,
    ) -> Result<Response<pb::ListVirtualClustersResponse>, Status> {
        let (p, token) = caller_parts(&request)?;
        let req = request.into_inner();
        let parent = NamespaceRef::parse("parent", &req.parent, true)?;
        let limit = page_size(req.page_size)?;
        let after = decode_page_token(&req.page_token)?;
        let caller = Caller {
            principal: &p,
            token: &token,
        };
        let (clusters, next) = self
            .0
            .list_clusters(&caller, &parent, &after, limit)
            .await?;
        Ok(Response::new(pb::ListVirtualClustersResponse {
            virtual_clusters: clusters
                .iter()
                .map(|vc| convert::cluster(vc, &self.0.config.public_url))
                .collect(),
            next_page_token: next.map(|n| encode_page_token(&n)).unwrap_or_default(),
        }))
    }

    async fn update_virtual_cluster(
        &self,
        request: Request<pb::UpdateVirtualClusterRequest>,
    ) -> Result<Response<pb::VirtualCluster>, Status> {
        let (p, token) = caller_parts(&request)?;
        let req = UpdateRequest::try_from(request.into_inner())?;
        let caller = Caller {
            principal: &p,
            token: &token,
        };
        let vc = self
            .0
            .update_cluster(&caller, &req.name, req.update)
            .await?;
        Ok(Response::new(convert::cluster(
            &vc,
            &self.0.config.public_url,
        )))
    }

    async fn delete_virtual_cluster(
        &self,
        request: Request<pb::DeleteVirtualClusterRequest>,
    ) -> Result<Response<()>, Status> {
        let (p, token) = caller_parts(&request)?;
        let req = request.into_inner();
        let name = ClusterName::parse("name", &req.name)?;
        let expected = parse_etag("etag", &req.etag)?;
        let caller = Caller {
            principal: &p,
            token: &token,
        };
        self.0.delete_cluster(&caller, &name, expected).await?;
        Ok(Response::new(()))
    }

    async fn get_kubeconfig(
        &self,
        request: Request<pb::GetKubeconfigRequest>,
    ) -> Result<Response<pb::Kubeconfig>, Status> {
        let (p, token) = caller_parts(&request)?;
        let req = request.into_inner();
        let name = ClusterName::parse("name", &req.name)?;
        let ttl = match req.ttl_seconds {
            0 => None,
            n if n > 0 => Some(Duration::from_secs(n.unsigned_abs())),
            _ => {
                return Err(
                    GatewayError::invalid_argument("ttl_seconds", "must not be negative").into(),
                );
            }
        };
        let caller = Caller {
            principal: &p,
            token: &token,
        };
        let kubeconfig = self.0.kubeconfig(&caller, &name, ttl).await?;
        Ok(Response::new(pb::Kubeconfig {
            kubeconfig: kubeconfig.yaml,
            expire_time: kubeconfig.expire_time.map(convert::ts),
        }))
    }
}
