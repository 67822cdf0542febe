//! `TenantService` and `NamespaceService`.

use std::sync::Arc;

use manifold_auth::{Permission, principal};
use manifold_db::Scope;
use manifold_proto::tenancy::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert;
use crate::{core::Core, domain::*, error::TenancyError, store};

pub struct Tenants(pub Arc<Core>);

fn tenant_state(field: &str, v: i32) -> Result<Option<TenantState>, TenancyError> {
    match pb::tenant::State::try_from(v) {
        Ok(pb::tenant::State::Unspecified) => Ok(None),
        Ok(pb::tenant::State::Active) => Ok(Some(TenantState::Active)),
        Ok(pb::tenant::State::Suspended) => Ok(Some(TenantState::Suspended)),
        Err(_) => Err(TenancyError::invalid(field, "must be ACTIVE or SUSPENDED")),
    }
}

#[tonic::async_trait]
impl pb::tenant_service_server::TenantService for Tenants {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let p = principal(&request)?;
        p.check(Permission::Admin, "").map_err(TenancyError::from)?;
        let req = request.into_inner();
        validate_id("tenant_id", &req.tenant_id)?;
        let t = req.tenant.unwrap_or_default();
        validate_labels("tenant.labels", &t.labels)?;
        let state = tenant_state("tenant.state", t.state)?.unwrap_or(TenantState::Active);
        let rec = manifold_db::transaction!(
            self.0.db,
            "create_tenant",
            Scope::System,
            TenancyError,
            |tx| {
                store::insert_tenant(tx, &req.tenant_id, &t.display_name, &t.labels, state).await
            }
        )?;
        Ok(Response::new(convert::tenant(rec)))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let p = principal(&request)?;
        let name = &request.get_ref().name;
        let tenant = parse_tenant_name("name", name)?;
        p.check(Permission::Read, name)
            .map_err(TenancyError::from)?;
        let rec = manifold_db::transaction!(
            self.0.db,
            "get_tenant",
            Scope::System,
            TenancyError,
            |tx| { store::enter_tenant(tx, tenant).await }
        )?;
        Ok(Response::new(convert::tenant(rec)))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        let after = decode_page_token(&req.page_token)?;
        // Operators with an unscoped token see every tenant; anyone else
        // (a scoped operator token too) the tenants they can read.
        let visible: Option<Vec<String>> = (!p.is_system_admin()).then(|| p.readable_tenants());
        let after_id = after.strip_prefix("tenants/").unwrap_or(&after).to_owned();
        let rows = manifold_db::transaction!(
            self.0.db,
            "list_tenants",
            Scope::System,
            TenancyError,
            |tx| { store::list_tenants(tx, &after_id, limit + 1, visible.as_deref()).await }
        )?;
        Ok(Response::new(paginate(
            rows,
            limit,
            |t| tenant_name(&t.name),
            |rows, next| pb::ListTenantsResponse {
                tenants: rows.into_iter().map(convert::tenant).collect(),
                next_page_token: next,
            },
        )))
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let t = req
            .tenant
            .ok_or_else(|| TenancyError::invalid("tenant", "required"))?;
        let tenant = parse_tenant_name("tenant.name", &t.name)?.to_owned();
        p.check(Permission::Admin, &t.name)
            .map_err(TenancyError::from)?;
        let paths: Vec<String> = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let all = paths.is_empty();
        for path in &paths {
            if !matches!(path.as_str(), "display_name" | "labels" | "state") {
                return Err(TenancyError::invalid(
                    "update_mask",
                    format!("{path:?} cannot be updated; updatable: display_name, labels, state"),
                )
                .into());
            }
        }
        let has = |f: &str| all || paths.iter().any(|p| p == f);
        let new_state = if has("state") {
            let s = tenant_state("tenant.state", t.state)?;
            if s.is_none() && !all {
                return Err(
                    TenancyError::invalid("tenant.state", "must be ACTIVE or SUSPENDED").into(),
                );
            }
            s
        } else {
            None
        };
        // Within its scope: an operator token scoped elsewhere is no operator here.
        let operator = p.is_system_admin_on(&t.name);
        if has("labels") {
            validate_labels("tenant.labels", &t.labels)?;
        }
        let expected = parse_etag("tenant.etag", &t.etag)?;
        let rec = manifold_db::transaction!(
            self.0.db,
            "update_tenant",
            Scope::System,
            TenancyError,
            |tx| {
                let current = store::enter_tenant(tx, &tenant).await?;
                if expected.is_some_and(|v| v != current.version) {
                    return Err(TenancyError::Aborted(tenant_name(&tenant)));
                }
                let display = if has("display_name") {
                    &t.display_name
                } else {
                    &current.display_name
                };
                let labels = if has("labels") {
                    &t.labels
                } else {
                    &current.labels
                };
                let state = new_state.unwrap_or(current.state);
                if state != current.state && !operator {
                    // Suspending or resuming a tenant is an operator's decision.
                    return Err(manifold_auth::Denied::PermissionDenied(
                        "only a system-admin may change a tenant's state".into(),
                    )
                    .into());
                }
                store::update_tenant(tx, &current, display, labels, state).await
            }
        )?;
        self.0.access_changed();
        Ok(Response::new(convert::tenant(rec)))
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<()>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let tenant = parse_tenant_name("name", &req.name)?.to_owned();
        // Visible-but-not-allowed gets PERMISSION_DENIED, invisible NOT_FOUND.
        p.check(Permission::Read, &req.name)
            .map_err(TenancyError::from)?;
        p.check(Permission::Admin, "").map_err(TenancyError::from)?;
        let expected = parse_etag("etag", &req.etag)?;
        manifold_db::transaction!(
            self.0.db,
            "delete_tenant",
            Scope::System,
            TenancyError,
            |tx| {
                let current = store::enter_tenant(tx, &tenant).await?;
                if expected.is_some_and(|v| v != current.version) {
                    return Err(TenancyError::Aborted(tenant_name(&tenant)));
                }
                let namespaces = store::count_namespaces(tx, current.id).await?;
                if namespaces > 0 && !req.force {
                    return Err(TenancyError::FailedPrecondition(format!(
                        "tenant {} still has {namespaces} namespace(s); delete them first or set force=true to delete everything the tenant owns",
                        tenant_name(&tenant)
                    )));
                }
                store::delete_tenant(tx, current.id).await?;
                // The other services purge their schemas from this record.
                manifold_db::deletions::record(tx, current.id, &tenant, None).await?;
                Ok(())
            }
        )?;
        self.0.access_changed();
        Ok(Response::new(()))
    }
}

/// Splits off the look-ahead row and makes the next page token.
pub fn paginate<R, T>(
    mut rows: Vec<R>,
    limit: i64,
    key: impl Fn(&R) -> String,
    build: impl FnOnce(Vec<R>, String) -> T,
) -> T {
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| encode_page_token(&key(r)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    build(rows, next)
}

pub struct Namespaces(pub Arc<Core>);

#[tonic::async_trait]
impl pb::namespace_service_server::NamespaceService for Namespaces {
    async fn create_namespace(
        &self,
        request: Request<pb::CreateNamespaceRequest>,
    ) -> Result<Response<pb::Namespace>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let tenant = parse_tenant_name("parent", &req.parent)?.to_owned();
        p.check(Permission::Admin, &req.parent)
            .map_err(TenancyError::from)?;
        validate_id("namespace_id", &req.namespace_id)?;
        let ns = req.namespace.unwrap_or_default();
        validate_labels("namespace.labels", &ns.labels)?;
        let rec = manifold_db::transaction!(
            self.0.db,
            "create_namespace",
            Scope::System,
            TenancyError,
            |tx| {
                let t = store::enter_tenant(tx, &tenant).await?;
                store::insert_namespace(tx, &t, &req.namespace_id, &ns.display_name, &ns.labels)
                    .await
            }
        )?;
        Ok(Response::new(convert::namespace(rec)))
    }

    async fn get_namespace(
        &self,
        request: Request<pb::GetNamespaceRequest>,
    ) -> Result<Response<pb::Namespace>, Status> {
        let p = principal(&request)?;
        let name = request.get_ref().name.clone();
        let (tenant, ns) = parse_namespace_name("name", &name)?;
        p.check(Permission::Read, &name)
            .map_err(TenancyError::from)?;
        let rec = manifold_db::transaction!(
            self.0.db,
            "get_namespace",
            Scope::System,
            TenancyError,
            |tx| {
                let t = store::enter_tenant(tx, tenant).await?;
                store::get_namespace(tx, &t, ns).await
            }
        )?;
        Ok(Response::new(convert::namespace(rec)))
    }

    async fn update_namespace(
        &self,
        request: Request<pb::UpdateNamespaceRequest>,
    ) -> Result<Response<pb::Namespace>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let ns = req
            .namespace
            .ok_or_else(|| TenancyError::invalid("namespace", "required"))?;
        let (tenant, name) = parse_namespace_name("namespace.name", &ns.name)?;
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        p.check(Permission::Admin, &ns.name)
            .map_err(TenancyError::from)?;
        let paths: Vec<String> = req.update_mask.map(|m| m.paths).unwrap_or_default();
        for path in &paths {
            if !matches!(path.as_str(), "display_name" | "labels") {
                return Err(TenancyError::invalid(
                    "update_mask",
                    format!("{path:?} cannot be updated; updatable: display_name, labels"),
                )
                .into());
            }
        }
        let has = |f: &str| paths.is_empty() || paths.iter().any(|p| p == f);
        if has("labels") {
            validate_labels("namespace.labels", &ns.labels)?;
        }
        let expected = parse_etag("namespace.etag", &ns.etag)?;
        let rec = manifold_db::transaction!(
            self.0.db,
            "update_namespace",
            Scope::System,
            TenancyError,
            |tx| {
                let t = store::enter_tenant(tx, &tenant).await?;
                let current = store::get_namespace(tx, &t, &name).await?;
                if expected.is_some_and(|v| v != current.version) {
                    return Err(TenancyError::Aborted(ns.name.clone()));
                }
                let display = if has("display_name") {
                    &ns.display_name
                } else {
                    &current.display_name
                };
                let labels = if has("labels") {
                    &ns.labels
                } else {
                    &current.labels
                };
                store::update_namespace(tx, &current, display, labels).await
            }
        )?;
        Ok(Response::new(convert::namespace(rec)))
    }

    async fn list_namespaces(
        &self,
        request: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let tenant = parse_tenant_name("parent", &req.parent)?.to_owned();
        p.check(Permission::Read, &req.parent)
            .map_err(TenancyError::from)?;
        let limit = page_size(req.page_size)?;
        let after = decode_page_token(&req.page_token)?;
        let rows = manifold_db::transaction!(
            self.0.db,
            "list_namespaces",
            Scope::System,
            TenancyError,
            |tx| {
                let t = store::enter_tenant(tx, &tenant).await?;
                store::list_namespaces(tx, &t, &after, limit + 1).await
            }
        )?;
        let parent = req.parent.clone();
        Ok(Response::new(paginate(
            rows,
            limit,
            |n| n.name.clone(),
            |rows, next| {
                pb::ListNamespacesResponse {
                    // Holders of a namespace role see only the namespaces they can read.
                    namespaces: rows
                        .into_iter()
                        .filter(|n| {
                            p.grant(&format!("{parent}/namespaces/{}", n.name))
                                .is_some()
                        })
                        .map(convert::namespace)
                        .collect(),
                    next_page_token: next,
                }
            },
        )))
    }

    async fn delete_namespace(
        &self,
        request: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<()>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let (tenant, ns) = parse_namespace_name("name", &req.name)?;
        p.check(Permission::Read, &req.name)
            .map_err(TenancyError::from)?;
        p.check(Permission::Admin, &format!("tenants/{tenant}"))
            .map_err(TenancyError::from)?;
        let expected = parse_etag("etag", &req.etag)?;
        manifold_db::transaction!(
            self.0.db,
            "delete_namespace",
            Scope::System,
            TenancyError,
            |tx| {
                let t = store::enter_tenant(tx, tenant).await?;
                let current = store::get_namespace(tx, &t, ns).await?;
                store::delete_namespace(tx, &current, expected).await?;
                manifold_db::deletions::record(tx, t.id, tenant, Some(ns)).await?;
                Ok(())
            }
        )?;
        self.0.access_changed();
        Ok(Response::new(()))
    }
}
