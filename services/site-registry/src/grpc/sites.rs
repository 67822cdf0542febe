//! `SiteService`.

use std::sync::Arc;

use manifold_kube_model::LabelSelector;
use manifold_proto::sites::v1 as pb;
use tonic::{Request, Response, Status};

use super::{caller, convert};
use crate::core::{Core, sites::SiteUpdate};
use crate::domain::*;
use crate::error::SiteError;

pub struct Sites(pub Arc<Core>);

const UPDATABLE: &[&str] = &[
    "display_name",
    "location",
    "provider_kind",
    "labels",
    "pod_security",
];

#[tonic::async_trait]
impl pb::site_service_server::SiteService for Sites {
    async fn create_site(
        &self,
        request: Request<pb::CreateSiteRequest>,
    ) -> Result<Response<pb::Site>, Status> {
        let c = caller(&request)?;
        let req = request.into_inner();
        validate_site_id("site_id", &req.site_id)?;
        let s = req.site.unwrap_or_default();
        let owner = Owner::parse("site.owner", &s.owner)?;
        let spec = SiteSpec {
            display_name: s.display_name,
            location: s.location,
            provider_kind: convert::provider_kind_from_proto(
                "site.provider_kind",
                s.provider_kind,
            )?,
            labels: convert::labels_from_proto(s.labels),
            pod_security: convert::pod_security_from_proto("site.pod_security", s.pod_security)?
                .unwrap_or_default(),
        };
        let rec = self.0.create_site(&c, &req.site_id, owner, spec).await?;
        Ok(Response::new(convert::site(rec)))
    }

    async fn get_site(
        &self,
        request: Request<pb::GetSiteRequest>,
    ) -> Result<Response<pb::Site>, Status> {
        let c = caller(&request)?;
        let site = parse_site_name("name", &request.get_ref().name)?;
        let rec = self.0.get_site(&c, &site).await?;
        Ok(Response::new(convert::site(rec)))
    }

    async fn list_sites(
        &self,
        request: Request<pb::ListSitesRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, Status> {
        let c = caller(&request)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = decode_page_token(&req.page_token)?;
        let after = after.strip_prefix("sites/").unwrap_or(&after).to_owned();
        let selector = if req.label_selector.trim().is_empty() {
            None
        } else {
            Some(LabelSelector::parse(&req.label_selector).map_err(|e| {
                SiteError::invalid(
                    "label_selector",
                    format!("{e} (e.g. \"env=edge,region in (eu,us)\")"),
                )
            })?)
        };
        let (rows, next) = self
            .0
            .list_sites(&c, after, limit, selector, req.show_decommissioned)
            .await?;
        Ok(Response::new(pb::ListSitesResponse {
            sites: rows.into_iter().map(convert::site).collect(),
            next_page_token: next
                .map(|n| encode_page_token(&site_name(&n)))
                .unwrap_or_default(),
        }))
    }

    async fn update_site(
        &self,
        request: Request<pb::UpdateSiteRequest>,
    ) -> Result<Response<pb::Site>, Status> {
        let c = caller(&request)?;
        let req = request.into_inner();
        let s = req
            .site
            .ok_or_else(|| SiteError::invalid("site", "required"))?;
        let site = parse_site_name("site.name", &s.name)?;
        let paths = convert::mask_paths(req.update_mask, UPDATABLE)?;
        let has = |f: &str| paths.is_empty() || paths.iter().any(|p| p == f);
        let update = SiteUpdate {
            display_name: has("display_name").then(|| s.display_name.clone()),
            location: has("location").then(|| s.location.clone()),
            provider_kind: if has("provider_kind") {
                Some(convert::provider_kind_from_proto(
                    "site.provider_kind",
                    s.provider_kind,
                )?)
            } else {
                None
            },
            labels: has("labels").then(|| convert::labels_from_proto(s.labels.clone())),
            // Named in the mask: a level is required; an empty mask keeps
            // the stored level when the client sent none.
            pod_security: match convert::pod_security_from_proto(
                "site.pod_security",
                s.pod_security,
            )? {
                Some(level) if has("pod_security") => Some(level),
                None if !paths.is_empty() && has("pod_security") => {
                    return Err(SiteError::invalid(
                        "site.pod_security",
                        "must be PRIVILEGED, BASELINE or RESTRICTED when the update mask names it",
                    )
                    .into());
                }
                _ => None,
            },
        };
        let expected = parse_etag("site.etag", &s.etag)?;
        let rec = self.0.update_site(&c, &site, update, expected).await?;
        Ok(Response::new(convert::site(rec)))
    }

    async fn delete_site(
        &self,
        request: Request<pb::DeleteSiteRequest>,
    ) -> Result<Response<()>, Status> {
        let c = caller(&request)?;
        let req = request.into_inner();
        let site = parse_site_name("name", &req.name)?;
        let expected = parse_etag("etag", &req.etag)?;
        self.0.delete_site(&c, &site, expected).await?;
        Ok(Response::new(()))
    }

    async fn create_registration_token(
        &self,
        request: Request<pb::CreateRegistrationTokenRequest>,
    ) -> Result<Response<pb::RegistrationToken>, Status> {
        let c = caller(&request)?;
        let req = request.into_inner();
        let site = parse_site_name("site", &req.site)?;
        let ttl = match req.ttl_seconds {
            0 => None,
            n if n < 0 => {
                return Err(SiteError::invalid("ttl_seconds", "must not be negative").into());
            }
            n => Some(std::time::Duration::from_secs(n.unsigned_abs())),
        };
        let issued = self.0.create_registration_token(&c, &site, ttl).await?;
        Ok(Response::new(pb::RegistrationToken {
            site: issued.site,
            token: issued.token,
            expire_time: Some(convert::ts(issued.expire_time)),
        }))
    }
}
