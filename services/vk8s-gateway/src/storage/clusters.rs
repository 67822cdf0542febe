//! SQL for `vk8s.virtual_clusters`.

use std::collections::HashMap;

use manifold_db::{DbError, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{ClusterName, ClusterUpdate, NewCluster, VirtualCluster};
use crate::error::{GatewayError, Target};

const COLS: &str = "id, tenant_id, tenant, namespace, name, display_name, labels, virtual_sites, \
                    version, create_time, update_time";

fn row_to_cluster(r: sqlx::postgres::PgRow) -> VirtualCluster {
    VirtualCluster {
        id: r.get("id"),
        tenant_id: r.get("tenant_id"),
        name: ClusterName {
            tenant: r.get("tenant"),
            namespace: r.get("namespace"),
            name: r.get("name"),
        },
        display_name: r.get("display_name"),
        labels: serde_json::from_value(r.get("labels")).unwrap_or_default(),
        virtual_sites: r.get("virtual_sites"),
        version: r.get("version"),
        create_time: r.get("create_time"),
        update_time: r.get("update_time"),
    }
}

fn labels_json(labels: &HashMap<String, String>) -> serde_json::Value {
    serde_json::to_value(labels).unwrap_or_default()
}

pub async fn insert(tx: &mut Tx, new: &NewCluster) -> Result<VirtualCluster, GatewayError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO vk8s.virtual_clusters \
         (id, tenant_id, tenant, namespace, name, display_name, labels, virtual_sites) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLS}"
    )))
    .bind(Uuid::now_v7())
    .bind(new.tenant_id)
    .bind(&new.name.tenant)
    .bind(&new.name.namespace)
    .bind(&new.name.name)
    .bind(&new.display_name)
    .bind(labels_json(&new.labels))
    .bind(&new.virtual_sites)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match DbError::from(e) {
        DbError::UniqueViolation(_) => {
            GatewayError::AlreadyExists(Target::named(new.name.resource_name()))
        }
        other => other.into(),
    })?;
    Ok(row_to_cluster(row))
}

/// Looks a cluster up by name. A tenant that was deleted and created again
/// under the same name may leave an older row behind; the newest wins.
pub async fn get(tx: &mut Tx, name: &ClusterName) -> Result<Option<VirtualCluster>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM vk8s.virtual_clusters \
         WHERE tenant = $1 AND namespace = $2 AND name = $3 \
         ORDER BY create_time DESC LIMIT 1"
    )))
    .bind(&name.tenant)
    .bind(&name.namespace)
    .bind(&name.name)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(row_to_cluster))
}

/// Clusters of a tenant, in one namespace or (`namespace = None`) all, by
/// (namespace, name) after the `after` key `namespace/name`.
pub async fn list(
    tx: &mut Tx,
    tenant: &str,
    namespace: Option<&str>,
    after: &str,
    limit: i64,
) -> Result<Vec<VirtualCluster>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM vk8s.virtual_clusters \
         WHERE tenant = $1 AND ($2::text IS NULL OR namespace = $2) \
           AND namespace || '/' || name > $3 \
         ORDER BY namespace || '/' || name LIMIT $4"
    )))
    .bind(tenant)
    .bind(namespace)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(row_to_cluster).collect())
}

/// Applies an update to `current` (already read in this transaction).
/// Fails with `Conflict` when the stored version moved on.
pub async fn update(
    tx: &mut Tx,
    current: &VirtualCluster,
    update: &ClusterUpdate,
) -> Result<VirtualCluster, GatewayError> {
    let display_name = update
        .display_name
        .as_ref()
        .unwrap_or(&current.display_name);
    let labels = update.labels.as_ref().unwrap_or(&current.labels);
    let sites = update
        .virtual_sites
        .as_ref()
        .unwrap_or(&current.virtual_sites);
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE vk8s.virtual_clusters SET display_name = $2, labels = $3, virtual_sites = $4, \
         version = version + 1, update_time = now() \
         WHERE id = $1 AND version = $5 RETURNING {COLS}"
    )))
    .bind(current.id)
    .bind(display_name)
    .bind(labels_json(labels))
    .bind(sites)
    .bind(current.version)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?;
    row.map(row_to_cluster)
        .ok_or_else(|| aborted(&current.name))
}

pub fn aborted(name: &ClusterName) -> GatewayError {
    GatewayError::Conflict {
        target: Target::named(name.resource_name()),
        message: "it was changed since it was read (etag mismatch); read it again and retry"
            .to_owned(),
    }
}

pub async fn delete(tx: &mut Tx, id: Uuid) -> Result<(), DbError> {
    sqlx::query("DELETE FROM vk8s.virtual_clusters WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Locks the cluster row so objects are not written while it is deleted.
pub async fn lock(tx: &mut Tx, id: Uuid) -> Result<Option<i64>, DbError> {
    let row = sqlx::query("SELECT version FROM vk8s.virtual_clusters WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.get("version")))
}

/// The clusters of tenant `tenant_id` (in `namespace` only, when given)
/// created before `before`, locked: what a tenant or namespace deletion
/// removes (a namespace re-created under the same name keeps its new ones).
pub async fn lock_deleted(
    tx: &mut Tx,
    tenant_id: Uuid,
    namespace: Option<&str>,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<VirtualCluster>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM vk8s.virtual_clusters \
         WHERE tenant_id = $1 AND ($2::text IS NULL OR namespace = $2) AND create_time <= $3 \
         ORDER BY id FOR UPDATE"
    )))
    .bind(tenant_id)
    .bind(namespace)
    .bind(before)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(row_to_cluster).collect())
}
