//! `VirtualSiteService`, including the placement watch stream.

use std::{pin::Pin, sync::Arc};

use manifold_proto::sites::v1 as pb;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{caller, convert};
use crate::core::{Core, virtual_sites::VirtualSiteUpdate};
use crate::domain::*;
use crate::error::SiteError;

pub struct VirtualSites(pub Arc<Core>);

const UPDATABLE: &[&str] = &["display_name", "site_selector"];
const SELECTOR_FIELD: &str = "virtual_site.site_selector";

type PlacementStream = Pin<Box<dyn Stream<Item = Result<pb::PlacementEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::virtual_site_service_server::VirtualSiteService for VirtualSites {
    async fn create_virtual_site(
        &self,
        request: Request<pb::CreateVirtualSiteRequest>,
    ) -> Result<Response<pb::VirtualSite>, Status> {
        let c = caller(&request)?;
        let req = request.into_inner();
        let parent = NamespaceRef::parse("parent", &req.parent)?;
        validate_id("virtual_site_id", &req.virtual_site_id)?;
        let v = req.virtual_site.unwrap_or_default();
        let selector = SiteSelector::parse(SELECTOR_FIELD, &v.site_selector)?;
        let vs = VirtualSiteRef {
            parent,
            id: req.virtual_site_id,
        };
        let rec = self
            .0
            .create_virtual_site(&c, vs, v.display_name, selector)
            .await?;
        Ok(Response::new(convert::virtual_site(rec)))
    }

    async fn get_virtual_site(
        &self,
        request: Request<pb::GetVirtualSiteRequest>,
    ) -> Result<Response<pb::VirtualSite>, Status> {
        let c = caller(&request)?;
        let vs = VirtualSiteRef::parse("name", &request.get_ref().name)?;
        let rec = self.0.get_virtual_site(&c, &vs).await?;
        Ok(Response::new(convert::virtual_site(rec)))
    }

    async fn list_virtual_sites(
        &self,
        request: Request<pb::ListVirtualSitesRequest>,
    ) -> Result<Response<pb::ListVirtualSitesResponse>, Status> {
        let c = caller(&request)?;
        let req = request.into_inner();
        let parent = NamespaceRef::parse("parent", &req.parent)?;
        let limit = page_size(req.page_size)?;
        let after = decode_page_token(&req.page_token)?;
        let mut rows = self
            .0
            .list_virtual_sites(&c, &parent, &after, limit + 1)
            .await?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|r| encode_page_token(&r.vs.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListVirtualSitesResponse {
            virtual_sites: rows.into_iter().map(convert::virtual_site).collect(),
            next_page_token: next,
        }))
    }

    async fn update_virtual_site(
        &self,
        request: Request<pb::UpdateVirtualSiteRequest>,
    ) -> Result<Response<pb::VirtualSite>, Status> {
        let c = caller(&request)?;
        let req = request.into_inner();
        let v = req
            .virtual_site
            .ok_or_else(|| SiteError::invalid("virtual_site", "required"))?;
        let vs = VirtualSiteRef::parse("virtual_site.name", &v.name)?;
        let paths = convert::mask_paths(req.update_mask, UPDATABLE)?;
        let has = |f: &str| paths.is_empty() || paths.iter().any(|p| p == f);
        let update = VirtualSiteUpdate {
            display_name: has("display_name").then(|| v.display_name.clone()),
            selector: if has("site_selector") {
                Some(SiteSelector::parse(SELECTOR_FIELD, &v.site_selector)?)
            } else {
                None
            },
        };
        let expected = parse_etag("virtual_site.etag", &v.etag)?;
        let rec = self
            .0
            .update_virtual_site(&c, &vs, update, expected)
            .await?;
        Ok(Response::new(convert::virtual_site(rec)))
    }

    async fn delete_virtual_site(
        &self,
        request: Request<pb::DeleteVirtualSiteRequest>,
    ) -> Result<Response<()>, Status> {
        let c = caller(&request)?;
        let req = request.into_inner();
        let vs = VirtualSiteRef::parse("name", &req.name)?;
        let expected = parse_etag("etag", &req.etag)?;
        self.0.delete_virtual_site(&c, &vs, expected).await?;
        Ok(Response::new(()))
    }

    async fn resolve_virtual_site(
        &self,
        request: Request<pb::ResolveVirtualSiteRequest>,
    ) -> Result<Response<pb::ResolveVirtualSiteResponse>, Status> {
        let c = caller(&request)?;
        let vs = VirtualSiteRef::parse("name", &request.get_ref().name)?;
        let (placement, levels) = self.0.resolve_virtual_site(&c, &vs).await?;
        let resolved_sites = placement
            .sites
            .iter()
            .zip(levels)
            .map(|(name, level)| pb::ResolvedSite {
                name: name.clone(),
                pod_security: convert::pod_security(level) as i32,
            })
            .collect();
        Ok(Response::new(pb::ResolveVirtualSiteResponse {
            sites: placement.sites,
            revision: placement.revision,
            resolved_sites,
        }))
    }

    type WatchPlacementStream = PlacementStream;

    async fn watch_placement(
        &self,
        request: Request<pb::WatchPlacementRequest>,
    ) -> Result<Response<Self::WatchPlacementStream>, Status> {
        let c = caller(&request)?;
        let parent = &request.get_ref().parent;
        let parent = if parent.is_empty() {
            None
        } else {
            Some(NamespaceRef::parse("parent", parent)?)
        };
        let scope = self.0.placement_scope(&c, parent).await?;
        let updates = self.0.watch_placement(scope).await?;
        let stream = ReceiverStream::new(updates).map(|u| {
            Ok(pb::PlacementEvent {
                virtual_site: u.placement.virtual_site,
                sites: u.placement.sites,
                revision: u.placement.revision,
                deleted: u.deleted,
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
