//! Tenant and namespace deletion (see `manifold_db::deletions`): the
//! gateway deletes the deleted tenant's (or namespace's) virtual clusters
//! and every object in them through the change log, exactly as
//! `DeleteVirtualCluster` does, so replication sends Deletes to every site.

use manifold_db::{Scope, deletions};

use super::Core;
use crate::domain::ClusterName;
use crate::error::GatewayError;
use crate::storage::{clusters, objects};

/// Deletions handled per pass (one transaction).
const BATCH: i64 = 8;

impl Core {
    /// One pass: forgets recently deleted tenants' uids, then purges the
    /// deletions not handled yet (if this replica gets the lock). Returns
    /// how many virtual clusters were deleted.
    pub async fn purge_deleted_tenants(&self) -> Result<usize, GatewayError> {
        let enc = &*self.config.encryption;
        let dek = enc.data_key().await?;
        let (forget, deleted) = manifold_db::transaction!(
            self.db,
            "vk8s_tenant_deletion",
            Scope::System,
            GatewayError,
            |tx| {
                let forget =
                    deletions::recently_deleted_tenants(tx, deletions::UID_CACHE_FLUSH_WINDOW)
                        .await?;
                let mut deleted: Vec<ClusterName> = Vec::new();
                for d in deletions::claim(tx, deletions::Cleaner::Gateway, None, BATCH).await? {
                    for vc in clusters::lock_deleted(
                        tx,
                        d.tenant_id,
                        d.namespace.as_deref(),
                        d.delete_time,
                    )
                    .await?
                    {
                        objects::delete_all(tx, enc, Some(&*dek), &vc).await?;
                        clusters::delete(tx, vc.id).await?;
                        deleted.push(vc.name.clone());
                    }
                    deletions::done(tx, deletions::Cleaner::Gateway, d.id).await?;
                    tracing::info!(
                        deleted = %d.resource(),
                        "purged the virtual clusters of a deleted tenant or namespace"
                    );
                }
                Ok((forget, deleted))
            }
        )?;
        self.tenancy.forget(&forget).await;
        for name in &deleted {
            self.clusters.invalidate(name).await;
        }
        if !deleted.is_empty() {
            self.hub.wake();
        }
        Ok(deleted.len())
    }
}
