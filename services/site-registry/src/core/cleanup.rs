//! Tenant and namespace deletion (see `manifold_db::deletions`): once the
//! gateway has deleted the tenant's virtual clusters (so their Deletes are
//! already on their way to the sites), the registry deletes the tenant's
//! (or namespace's) virtual sites and, for a whole tenant, decommissions
//! the tenant's own sites, revoking their certificates. Each change bumps
//! the registry revision, so placement watchers move at once.

use manifold_db::{Scope, deletions};
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::error::SiteError;
use crate::store;

/// Deletions handled per pass (one transaction).
const BATCH: i64 = 8;

impl Core {
    /// One pass: forgets recently deleted tenants' uids, then purges the
    /// deletions not handled yet (if this replica gets the lock).
    pub async fn purge_deleted_tenants(&self) -> Result<(), SiteError> {
        let forget = manifold_db::transaction!(
            self.db,
            "sites_tenant_deletion",
            Scope::System,
            SiteError,
            |tx| {
                let forget =
                    deletions::recently_deleted_tenants(tx, deletions::UID_CACHE_FLUSH_WINDOW)
                        .await?;
                let after = Some((deletions::Cleaner::Gateway, std::time::Duration::ZERO));
                for d in deletions::claim(tx, deletions::Cleaner::Sites, after, BATCH).await? {
                    let virtual_sites = store::virtual_sites::delete_deleted(
                        tx,
                        d.tenant_id,
                        d.namespace.as_deref(),
                        d.delete_time,
                    )
                    .await?;
                    let sites = match d.namespace {
                        None => store::sites::decommission_tenant(tx, d.tenant_id).await?,
                        Some(_) => Vec::new(),
                    };
                    if virtual_sites > 0 || !sites.is_empty() {
                        store::bump_revision(tx, Some(d.tenant_id)).await?;
                    }
                    deletions::done(tx, deletions::Cleaner::Sites, d.id).await?;
                    tracing::info!(
                        deleted = %d.resource(),
                        virtual_sites,
                        decommissioned = ?sites,
                        "purged the sites of a deleted tenant or namespace"
                    );
                }
                Ok(forget)
            }
        )?;
        self.tenancy.forget(&forget).await;
        Ok(())
    }

    /// Runs [`Core::purge_deleted_tenants`] every second until `shutdown`.
    pub async fn run_tenant_cleaner(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(deletions::POLL_INTERVAL) => {}
            }
            if let Err(e) = self.purge_deleted_tenants().await {
                tracing::warn!(error = %e, "purging deleted tenants' sites");
            }
        }
    }
}
