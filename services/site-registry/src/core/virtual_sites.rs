//! Virtual sites: label selectors over sites inside a namespace, and the
//! placement they resolve to. Reading needs Read on the namespace; updating
//! (tuning the selector of an existing virtual site) Write; creating and
//! deleting (deciding which virtual sites exist for vK8s to reference) Admin.

use manifold_auth::Permission;
use manifold_db::Scope;
use uuid::Uuid;

use super::{Caller, Core};
use crate::domain::*;
use crate::error::SiteError;
use crate::store::{self, Visible};

/// The fields an update names, with their new values.
#[derive(Debug, Clone, Default)]
pub struct VirtualSiteUpdate {
    pub display_name: Option<String>,
    pub selector: Option<SiteSelector>,
}

/// The sites one virtual site places on, at a registry revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `tenants/{t}/namespaces/{n}/virtualSites/{vs}`.
    pub virtual_site: String,
    /// `sites/{site}`, sorted.
    pub sites: Vec<String>,
    pub revision: i64,
}

/// The placement of every virtual site in a scope, from one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementSnapshot {
    pub revision: i64,
    pub placements: Vec<Placement>,
}

/// Which virtual sites a placement snapshot covers.
#[derive(Debug, Clone)]
pub enum PlacementScope {
    /// One namespace of one tenant (by uid).
    Namespace(Uuid, NamespaceRef),
    /// Every virtual site of every tenant.
    All,
}

impl PlacementScope {
    /// Whether a change to `tenant`'s data (`None`: a provider site) can
    /// affect this scope.
    pub fn affected_by(&self, tenant: Option<Uuid>) -> bool {
        match self {
            PlacementScope::All => true,
            PlacementScope::Namespace(uid, _) => tenant.is_none_or(|t| t == *uid),
        }
    }
}

impl Core {
    async fn tenant_of(&self, caller: &Caller, ns: &NamespaceRef) -> Result<Uuid, SiteError> {
        self.tenancy.tenant_uid(&ns.tenant, &caller.token).await
    }

    pub async fn create_virtual_site(
        &self,
        caller: &Caller,
        vs: VirtualSiteRef,
        display_name: String,
        selector: SiteSelector,
    ) -> Result<VirtualSiteRecord, SiteError> {
        caller
            .principal
            .check(Permission::Admin, &vs.parent.name())?;
        validate_text("virtual_site.display_name", &display_name)?;
        self.tenancy
            .check_namespace(&vs.parent, &caller.token)
            .await?;
        let tenant_id = self.tenant_of(caller, &vs.parent).await?;
        manifold_db::transaction!(
            self.db,
            "create_virtual_site",
            Scope::Tenant(tenant_id),
            SiteError,
            |tx| {
                let rec =
                    store::virtual_sites::insert(tx, tenant_id, &vs, &display_name, &selector)
                        .await?;
                store::bump_revision(tx, Some(tenant_id)).await?;
                Ok(rec)
            }
        )
    }

    pub async fn get_virtual_site(
        &self,
        caller: &Caller,
        vs: &VirtualSiteRef,
    ) -> Result<VirtualSiteRecord, SiteError> {
        caller.principal.check(Permission::Read, &vs.name())?;
        let tenant_id = self.tenant_of(caller, &vs.parent).await?;
        manifold_db::transaction!(
            self.db,
            "get_virtual_site",
            Scope::Tenant(tenant_id),
            SiteError,
            |tx| { store::virtual_sites::get(tx, tenant_id, vs, false).await }
        )
    }

    pub async fn list_virtual_sites(
        &self,
        caller: &Caller,
        parent: &NamespaceRef,
        after: &str,
        limit: i64,
    ) -> Result<Vec<VirtualSiteRecord>, SiteError> {
        caller.principal.check(Permission::Read, &parent.name())?;
        let tenant_id = self.tenant_of(caller, parent).await?;
        manifold_db::transaction!(
            self.db,
            "list_virtual_sites",
            Scope::Tenant(tenant_id),
            SiteError,
            |tx| { store::virtual_sites::list(tx, tenant_id, parent, after, limit).await }
        )
    }

    pub async fn update_virtual_site(
        &self,
        caller: &Caller,
        vs: &VirtualSiteRef,
        update: VirtualSiteUpdate,
        expected: Option<i64>,
    ) -> Result<VirtualSiteRecord, SiteError> {
        let p = &caller.principal;
        p.check(Permission::Read, &vs.name())?;
        p.check(Permission::Write, &vs.name())?;
        if let Some(d) = &update.display_name {
            validate_text("virtual_site.display_name", d)?;
        }
        let tenant_id = self.tenant_of(caller, &vs.parent).await?;
        manifold_db::transaction!(
            self.db,
            "update_virtual_site",
            Scope::Tenant(tenant_id),
            SiteError,
            |tx| {
                let current = store::virtual_sites::get(tx, tenant_id, vs, true).await?;
                if expected.is_some_and(|v| v != current.version) {
                    return Err(SiteError::Aborted(vs.name()));
                }
                let display = update
                    .display_name
                    .as_deref()
                    .unwrap_or(&current.display_name);
                let selector = update.selector.as_ref().unwrap_or(&current.selector);
                let rec = store::virtual_sites::update(tx, &current, display, selector).await?;
                if rec.selector.as_str() != current.selector.as_str() {
                    store::bump_revision(tx, Some(tenant_id)).await?;
                }
                Ok(rec)
            }
        )
    }

    pub async fn delete_virtual_site(
        &self,
        caller: &Caller,
        vs: &VirtualSiteRef,
        expected: Option<i64>,
    ) -> Result<(), SiteError> {
        let p = &caller.principal;
        p.check(Permission::Read, &vs.name())?;
        p.check(Permission::Admin, &vs.name())?;
        let tenant_id = self.tenant_of(caller, &vs.parent).await?;
        manifold_db::transaction!(
            self.db,
            "delete_virtual_site",
            Scope::Tenant(tenant_id),
            SiteError,
            |tx| {
                let current = store::virtual_sites::get(tx, tenant_id, vs, true).await?;
                if expected.is_some_and(|v| v != current.version) {
                    return Err(SiteError::Aborted(vs.name()));
                }
                store::virtual_sites::delete(tx, &current).await?;
                store::bump_revision(tx, Some(tenant_id)).await?;
                Ok(())
            }
        )
    }

    /// The sites a virtual site places on now: provider sites and the
    /// tenant's own, never another tenant's, never decommissioned ones;
    /// with each site's Pod Security level (same order).
    pub async fn resolve_virtual_site(
        &self,
        caller: &Caller,
        vs: &VirtualSiteRef,
    ) -> Result<(Placement, Vec<PodSecurityLevel>), SiteError> {
        caller.principal.check(Permission::Read, &vs.name())?;
        let tenant_id = self.tenant_of(caller, &vs.parent).await?;
        // Tenant scope: row-level security hides other tenants' sites too.
        manifold_db::transaction!(
            self.db,
            "resolve_virtual_site",
            Scope::Tenant(tenant_id),
            SiteError,
            |tx| {
                let rec = store::virtual_sites::get(tx, tenant_id, vs, false).await?;
                let revision = store::current_revision(tx).await?;
                let candidates =
                    store::sites::live_candidates(tx, &Visible::Tenants(vec![tenant_id])).await?;
                let sites = placement(&rec.selector, rec.tenant_id, &candidates);
                let levels = sites
                    .iter()
                    .map(|s| {
                        candidates
                            .iter()
                            .find(|c| site_name(&c.site) == *s)
                            .map(|c| c.pod_security)
                            .unwrap_or_default()
                    })
                    .collect();
                Ok((
                    Placement {
                        virtual_site: vs.name(),
                        sites,
                        revision,
                    },
                    levels,
                ))
            }
        )
    }

    /// Where a placement watch of `caller` applies: one namespace (Read on
    /// it), or everything (system-admins only).
    pub async fn placement_scope(
        &self,
        caller: &Caller,
        parent: Option<NamespaceRef>,
    ) -> Result<PlacementScope, SiteError> {
        match parent {
            None => {
                caller.principal.check(Permission::Admin, "")?;
                Ok(PlacementScope::All)
            }
            Some(ns) => {
                caller.principal.check(Permission::Read, &ns.name())?;
                let uid = self.tenant_of(caller, &ns).await?;
                Ok(PlacementScope::Namespace(uid, ns))
            }
        }
    }

    /// The current placement of every virtual site in `scope`, from one
    /// snapshot.
    pub async fn placements(&self, scope: &PlacementScope) -> Result<PlacementSnapshot, SiteError> {
        let (tx_scope, filter) = match scope {
            PlacementScope::All => (Scope::System, None),
            PlacementScope::Namespace(uid, ns) => {
                (Scope::Tenant(*uid), Some((*uid, ns.namespace.as_str())))
            }
        };
        let visible = match scope {
            PlacementScope::All => Visible::All,
            PlacementScope::Namespace(uid, _) => Visible::Tenants(vec![*uid]),
        };
        manifold_db::transaction!(self.db, "placements", tx_scope, SiteError, |tx| {
            let revision = store::current_revision(tx).await?;
            let vss = store::virtual_sites::all_in(tx, filter).await?;
            let candidates = store::sites::live_candidates(tx, &visible).await?;
            let placements = vss
                .iter()
                .map(|v| Placement {
                    virtual_site: v.vs.name(),
                    // `placement` keeps each virtual site to its own tenant's
                    // private sites, also when the snapshot spans every tenant.
                    sites: placement(&v.selector, v.tenant_id, &candidates),
                    revision,
                })
                .collect();
            Ok(PlacementSnapshot {
                revision,
                placements,
            })
        })
    }
}
