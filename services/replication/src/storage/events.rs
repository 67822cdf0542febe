//! SQL for `replication.events`: Kubernetes Events reported by sites.

use chrono::{DateTime, Utc};
use manifold_db::{DbError, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::status::EventState;

pub async fn upsert(
    tx: &mut Tx,
    tenant_id: Uuid,
    site: &str,
    e: &EventState,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO replication.events (tenant_id, virtual_cluster, namespace, name, site, object, \
             update_time) VALUES ($1, $2, $3, $4, $5, $6, now()) \
         ON CONFLICT (virtual_cluster, namespace, name, site) DO UPDATE SET \
             object = EXCLUDED.object, update_time = now()",
    )
    .bind(tenant_id)
    .bind(&e.virtual_cluster)
    .bind(&e.namespace)
    .bind(&e.name)
    .bind(site)
    .bind(&e.object)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The events of a vK8s (of one namespace, when given), oldest first, with
/// their site and time; at most `limit`.
pub async fn list(
    tx: &mut Tx,
    vk: &str,
    namespace: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, EventState, DateTime<Utc>)>, DbError> {
    let rows = sqlx::query(
        "SELECT * FROM (SELECT virtual_cluster, namespace, name, site, object, update_time \
             FROM replication.events WHERE virtual_cluster = $1 \
             AND ($2::text IS NULL OR namespace = $2) ORDER BY update_time DESC LIMIT $3) e \
         ORDER BY update_time, site, name",
    )
    .bind(vk)
    .bind(namespace)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get("site"),
                EventState {
                    virtual_cluster: r.get("virtual_cluster"),
                    namespace: r.get("namespace"),
                    name: r.get("name"),
                    object: r.get("object"),
                },
                r.get("update_time"),
            )
        })
        .collect())
}

/// Drops events older than `older_than_secs`.
pub async fn purge(tx: &mut Tx, older_than_secs: f64) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "DELETE FROM replication.events WHERE update_time < now() - make_interval(secs => $1)",
    )
    .bind(older_than_secs)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}
