//! Observed state of deleted tenants and namespaces (see
//! `manifold_db::deletions`).

use manifold_db::{DbError, Tx, deletions::TenantDeletion, sqlx};

/// Drops the object status, pods (no tombstones: the vK8s is gone), pod
/// revision heads and events of a deleted tenant, or of the virtual
/// clusters of a deleted namespace. Returns how many rows went.
pub async fn purge(tx: &mut Tx, d: &TenantDeletion) -> Result<u64, DbError> {
    // Virtual cluster names start with the namespace's resource name.
    let prefix = d.namespace.as_ref().map(|_| {
        format!(
            "{}/virtualClusters/",
            d.resource()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let mut total = 0;
    for table in ["object_status", "pods", "pod_heads", "events"] {
        total += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM replication.{table} \
             WHERE tenant_id = $1 AND ($2::text IS NULL OR virtual_cluster LIKE $2 || '%')"
        )))
        .bind(d.tenant_id)
        .bind(prefix.as_deref())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(total)
}
