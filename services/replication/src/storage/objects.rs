//! SQL for `replication.object_status`: one object's status per site.

use chrono::{DateTime, Utc};
use manifold_db::{DbError, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{ObjectKey, group_of, status::ObjectState};

/// Drops everything stored about `site`'s objects (a full report follows).
pub async fn clear_site(tx: &mut Tx, site: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM replication.object_status WHERE site = $1")
        .bind(site)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn upsert(
    tx: &mut Tx,
    tenant_id: Uuid,
    site: &str,
    o: &ObjectState,
) -> Result<(), DbError> {
    let k = &o.key;
    sqlx::query(
        "INSERT INTO replication.object_status (tenant_id, virtual_cluster, api_group, kind, \
             namespace, name, site, api_version, status, observed_revision, failure, update_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now()) \
         ON CONFLICT (virtual_cluster, api_group, kind, namespace, name, site) DO UPDATE SET \
             api_version = EXCLUDED.api_version, status = EXCLUDED.status, \
             observed_revision = EXCLUDED.observed_revision, failure = EXCLUDED.failure, \
             update_time = now()",
    )
    .bind(tenant_id)
    .bind(&k.virtual_cluster)
    .bind(k.group())
    .bind(&k.kind)
    .bind(&k.namespace)
    .bind(&k.name)
    .bind(site)
    .bind(&k.api_version)
    .bind(&o.status)
    .bind(o.observed_revision)
    .bind(
        o.failure
            .as_ref()
            .and_then(|f| serde_json::to_value(f).ok()),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Drops one object's status on `site` (None: on every site).
pub async fn delete(tx: &mut Tx, key: &ObjectKey, site: Option<&str>) -> Result<(), DbError> {
    sqlx::query(
        "DELETE FROM replication.object_status WHERE virtual_cluster = $1 AND api_group = $2 \
         AND kind = $3 AND namespace = $4 AND name = $5 AND ($6::text IS NULL OR site = $6)",
    )
    .bind(&key.virtual_cluster)
    .bind(key.group())
    .bind(&key.kind)
    .bind(&key.namespace)
    .bind(&key.name)
    .bind(site)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One object's status on every site that reported it, by site.
pub async fn of_object(
    tx: &mut Tx,
    key: &ObjectKey,
) -> Result<Vec<(String, ObjectState, DateTime<Utc>)>, DbError> {
    let rows = sqlx::query(
        "SELECT site, api_version, status, observed_revision, failure, update_time \
         FROM replication.object_status WHERE virtual_cluster = $1 AND api_group = $2 \
         AND kind = $3 AND namespace = $4 AND name = $5 ORDER BY site",
    )
    .bind(&key.virtual_cluster)
    .bind(group_of(&key.api_version))
    .bind(&key.kind)
    .bind(&key.namespace)
    .bind(&key.name)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut key = key.clone();
            key.api_version = r.get("api_version");
            (
                r.get("site"),
                ObjectState {
                    key,
                    status: r.get("status"),
                    observed_revision: r.get("observed_revision"),
                    failure: r
                        .get::<Option<serde_json::Value>, _>("failure")
                        .and_then(|v| serde_json::from_value(v).ok()),
                },
                r.get("update_time"),
            )
        })
        .collect())
}
