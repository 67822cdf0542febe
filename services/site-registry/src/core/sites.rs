//! Site lifecycle: create, read, update, decommission, and minting
//! registration tokens, with the ownership rules (provider sites belong to
//! system-admins, a tenant's site to that tenant's admins).

use chrono::{DateTime, Utc};
use manifold_auth::{Permission, Principal};
use manifold_db::{Scope, Tx};
use manifold_kube_model::LabelSelector;

use super::{Caller, Core};
use crate::domain::*;
use crate::error::SiteError;
use crate::store::{self, Visible};

/// The fields an update names (from the field mask), with their new values.
#[derive(Debug, Clone, Default)]
pub struct SiteUpdate {
    pub display_name: Option<String>,
    pub location: Option<String>,
    pub provider_kind: Option<ProviderKind>,
    pub labels: Option<Labels>,
    pub pod_security: Option<PodSecurityLevel>,
}

/// A registration token, shown once.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub site: String,
    pub token: String,
    pub expire_time: DateTime<Utc>,
}

/// Reads beyond this many rows to fill one filtered page are cut short; the
/// page token lets the caller continue.
const SCAN_CHUNK: i64 = 500;

/// The site, locked, once `p` is found to manage it. The permission is
/// checked on a plain read first: locking needs write access under row-level
/// security, and a tenant that can read a provider site must be told
/// PERMISSION_DENIED, not NOT_FOUND.
async fn for_admin(
    tx: &mut Tx,
    p: &Principal,
    site: &str,
    visible: &Visible,
) -> Result<SiteRecord, SiteError> {
    let seen = store::sites::get_site(tx, site, visible, false).await?;
    p.check(Permission::Admin, &seen.owner.resource())?;
    store::sites::get_site(tx, site, visible, true).await
}

impl Core {
    pub async fn create_site(
        &self,
        caller: &Caller,
        site: &str,
        owner: Owner,
        spec: SiteSpec,
    ) -> Result<SiteRecord, SiteError> {
        validate_site_id("site_id", site)?;
        caller
            .principal
            .check(Permission::Admin, &owner.resource())?;
        validate_text("site.display_name", &spec.display_name)?;
        validate_text("site.location", &spec.location)?;
        validate_labels("site.labels", &spec.labels)?;
        let tenant_id = match &owner {
            Owner::Provider => None,
            Owner::Tenant(t) => Some(self.tenancy.tenant_uid(t, &caller.token).await?),
        };
        let scope = tenant_id.map_or(Scope::System, Scope::Tenant);
        manifold_db::transaction!(self.db, "create_site", scope, SiteError, |tx| {
            let rec = store::sites::insert_site(tx, &owner, tenant_id, site, &spec).await?;
            store::bump_revision(tx, tenant_id).await?;
            Ok(rec)
        })
    }

    pub async fn get_site(&self, caller: &Caller, site: &str) -> Result<SiteRecord, SiteError> {
        let (visible, scope) = self.visibility(caller).await?;
        manifold_db::transaction!(self.db, "get_site", scope, SiteError, |tx| {
            store::sites::get_site(tx, site, &visible, false).await
        })
    }

    /// One page of sites after `after`, filtered by `selector`; returns the
    /// page and the key to continue after (when there may be more).
    pub async fn list_sites(
        &self,
        caller: &Caller,
        after: String,
        limit: i64,
        selector: Option<LabelSelector>,
        show_decommissioned: bool,
    ) -> Result<(Vec<SiteRecord>, Option<String>), SiteError> {
        let (visible, scope) = self.visibility(caller).await?;
        let Some(selector) = selector else {
            let mut rows =
                manifold_db::transaction!(self.db, "list_sites", scope, SiteError, |tx| {
                    store::sites::list_sites(tx, &visible, &after, limit + 1, show_decommissioned)
                        .await
                })?;
            let next = (rows.len() as i64 > limit).then(|| {
                rows.truncate(limit as usize);
                rows.last().map(|r| r.site.clone()).unwrap_or_default()
            });
            return Ok((rows, next));
        };
        // The selector runs here, not in SQL: scan in chunks until the page
        // is full, and stop after a bounded amount of work per call.
        let mut page = Vec::new();
        let mut cursor = after;
        for _ in 0..20 {
            let chunk = manifold_db::transaction!(self.db, "list_sites", scope, SiteError, |tx| {
                store::sites::list_sites(tx, &visible, &cursor, SCAN_CHUNK, show_decommissioned)
                    .await
            })?;
            let exhausted = (chunk.len() as i64) < SCAN_CHUNK;
            for rec in chunk {
                cursor.clone_from(&rec.site);
                if selector.matches_map(&rec.spec.labels) {
                    if page.len() as i64 == limit {
                        let last = page
                            .last()
                            .map(|r: &SiteRecord| r.site.clone())
                            .unwrap_or_default();
                        return Ok((page, Some(last)));
                    }
                    page.push(rec);
                }
            }
            if exhausted {
                return Ok((page, None));
            }
        }
        Ok((page, Some(cursor)))
    }

    pub async fn update_site(
        &self,
        caller: &Caller,
        site: &str,
        update: SiteUpdate,
        expected: Option<i64>,
    ) -> Result<SiteRecord, SiteError> {
        if let Some(d) = &update.display_name {
            validate_text("site.display_name", d)?;
        }
        if let Some(l) = &update.location {
            validate_text("site.location", l)?;
        }
        if let Some(labels) = &update.labels {
            validate_labels("site.labels", labels)?;
        }
        let (visible, scope) = self.visibility(caller).await?;
        let p = &caller.principal;
        manifold_db::transaction!(self.db, "update_site", scope, SiteError, |tx| {
            let current = for_admin(tx, p, site, &visible).await?;
            if current.state == SiteState::Decommissioned {
                return Err(SiteError::FailedPrecondition(format!(
                    "{} is decommissioned and can no longer be changed",
                    current.name()
                )));
            }
            if expected.is_some_and(|v| v != current.version) {
                return Err(SiteError::Aborted(current.name()));
            }
            let mut spec = current.spec.clone();
            if let Some(d) = &update.display_name {
                spec.display_name.clone_from(d);
            }
            if let Some(l) = &update.location {
                spec.location.clone_from(l);
            }
            if let Some(k) = update.provider_kind {
                spec.provider_kind = k;
            }
            if let Some(labels) = &update.labels {
                spec.labels.clone_from(labels);
            }
            if let Some(level) = update.pod_security {
                spec.pod_security = level;
            }
            let rec = store::sites::update_spec(tx, &current, &spec).await?;
            // A new level reaches the agents through placement watchers
            // (they relabel the site's namespaces), so it moves the revision.
            if rec.spec.labels != current.spec.labels
                || rec.spec.pod_security != current.spec.pod_security
            {
                store::bump_revision(tx, current.tenant_id).await?;
            }
            Ok(rec)
        })
    }

    /// Decommissions a site: terminal state, certificates revoked, unused
    /// registration tokens dropped, no longer placed on.
    pub async fn delete_site(
        &self,
        caller: &Caller,
        site: &str,
        expected: Option<i64>,
    ) -> Result<SiteRecord, SiteError> {
        let (visible, scope) = self.visibility(caller).await?;
        let p = &caller.principal;
        manifold_db::transaction!(self.db, "delete_site", scope, SiteError, |tx| {
            let current = for_admin(tx, p, site, &visible).await?;
            if current.state == SiteState::Decommissioned {
                // Soft-deleted already (AIP-164).
                return Err(SiteError::NotFound(current.name()));
            }
            if expected.is_some_and(|v| v != current.version) {
                return Err(SiteError::Aborted(current.name()));
            }
            let rec = store::sites::decommission(tx, &current).await?;
            store::bump_revision(tx, current.tenant_id).await?;
            Ok(rec)
        })
    }

    pub async fn create_registration_token(
        &self,
        caller: &Caller,
        site: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<IssuedToken, SiteError> {
        let ttl = ttl.unwrap_or(self.options.default_token_ttl);
        if ttl > self.options.max_token_ttl {
            return Err(SiteError::invalid(
                "ttl_seconds",
                format!("at most {} seconds", self.options.max_token_ttl.as_secs()),
            ));
        }
        // Never outlive the calling token: a short-lived (or leaked and soon
        // revoked) operator token cannot leave a week-long way in behind it.
        let expire_time = (Utc::now()
            + chrono::Duration::from_std(ttl)
                .map_err(|_| SiteError::invalid("ttl_seconds", "out of range"))?)
        .min(caller.principal.token_expire_time);
        let (visible, scope) = self.visibility(caller).await?;
        let p = &caller.principal;
        let secret = new_registration_secret();
        manifold_db::transaction!(
            self.db,
            "create_registration_token",
            scope,
            SiteError,
            |tx| {
                let current = for_admin(tx, p, site, &visible).await?;
                if current.state == SiteState::Decommissioned {
                    return Err(SiteError::FailedPrecondition(format!(
                        "{} is decommissioned; create a new site instead",
                        current.name()
                    )));
                }
                store::credentials::insert_token(
                    tx,
                    current.id,
                    current.tenant_id,
                    &secret,
                    &p.user,
                    expire_time,
                )
                .await?;
                Ok(())
            }
        )?;
        Ok(IssuedToken {
            site: site_name(site),
            token: secret.token,
            expire_time,
        })
    }
}
