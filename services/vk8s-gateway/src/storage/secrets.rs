//! SQL for keeping Secrets' encryption current: which keys the stored
//! Secrets are sealed with, and batches of rows not sealed with the primary
//! key (plain rows included), for re-encryption in place. Re-encryption
//! changes no resourceVersion and appends no change: the objects are the
//! same, only the bytes at rest differ.

use manifold_db::{DbError, Tx, sqlx};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

/// The key id of a sealed body, in SQL (NULL for a plain body).
const KID: &str = "#>> '{manifold.dev/sealed,kid}'";
/// The key name of a sealed body, in SQL.
const KEY: &str = "#>> '{manifold.dev/sealed,key}'";
const SECRETS: &str = "api_group = '' AND kind = 'Secret'";

/// How many stored Secret bodies one key seals (`kid` None: plain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCount {
    pub kid: Option<String>,
    /// The key's name as the envelope recorded it.
    pub name: Option<String>,
    /// Rows of `vk8s.objects`.
    pub objects: i64,
    /// Bodies in `vk8s.changes` (`body` and `prev_body` count apart).
    pub changes: i64,
}

pub async fn key_counts(tx: &mut Tx) -> Result<Vec<KeyCount>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT kid, max(name) AS name, sum(objects)::bigint AS objects, sum(changes)::bigint AS changes FROM ( \
             SELECT body {KID} AS kid, body {KEY} AS name, 1 AS objects, 0 AS changes \
               FROM vk8s.objects WHERE {SECRETS} \
             UNION ALL \
             SELECT body {KID}, body {KEY}, 0, 1 FROM vk8s.changes WHERE {SECRETS} \
             UNION ALL \
             SELECT prev_body {KID}, prev_body {KEY}, 0, 1 FROM vk8s.changes \
               WHERE {SECRETS} AND prev_body IS NOT NULL) b \
         GROUP BY kid ORDER BY kid NULLS FIRST"
    )))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| KeyCount {
            kid: r.get("kid"),
            name: r.get("name"),
            objects: r.get("objects"),
            changes: r.get("changes"),
        })
        .collect())
}

/// A stored Secret to re-encrypt.
#[derive(Debug, Clone)]
pub struct ObjectRow {
    pub vcluster_id: Uuid,
    pub namespace: String,
    pub name: String,
    pub body: Value,
}

/// The sort key of [`ObjectRow`]s.
pub type ObjectCursor = (Uuid, String, String);

/// Up to `limit` Secrets after `after` (in key order) whose body is not
/// sealed with `primary`, locked.
pub async fn stale_objects(
    tx: &mut Tx,
    primary: &str,
    after: Option<&ObjectCursor>,
    limit: i64,
) -> Result<Vec<ObjectRow>, DbError> {
    let (vc, ns, name) = after.cloned().unwrap_or_default();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT vcluster_id, namespace, name, body FROM vk8s.objects \
         WHERE {SECRETS} AND ($1 OR (vcluster_id, namespace, name) > ($2, $3, $4)) \
           AND (body {KID}) IS DISTINCT FROM $5 \
         ORDER BY vcluster_id, namespace, name LIMIT $6 FOR UPDATE"
    )))
    .bind(after.is_none())
    .bind(vc)
    .bind(ns)
    .bind(name)
    .bind(primary)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ObjectRow {
            vcluster_id: r.get("vcluster_id"),
            namespace: r.get("namespace"),
            name: r.get("name"),
            body: r.get("body"),
        })
        .collect())
}

pub async fn replace_object_body(
    tx: &mut Tx,
    row: &ObjectRow,
    body: &Value,
) -> Result<(), DbError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE vk8s.objects SET body = $4 \
         WHERE vcluster_id = $1 AND {SECRETS} AND namespace = $2 AND name = $3"
    )))
    .bind(row.vcluster_id)
    .bind(&row.namespace)
    .bind(&row.name)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A change-log row of a Secret to re-encrypt.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub revision: i64,
    pub vcluster_id: Uuid,
    pub namespace: String,
    pub name: String,
    pub body: Value,
    pub prev_body: Option<Value>,
    /// The Secret was deleted at or after this change (its data must go).
    pub deleted_since: bool,
}

/// Up to `limit` change-log rows of Secrets after revision `after` with a
/// body not sealed with `primary`, locked.
pub async fn stale_changes(
    tx: &mut Tx,
    primary: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<ChangeRow>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT c.revision, c.vcluster_id, c.namespace, c.name, c.body, c.prev_body, \
             EXISTS (SELECT 1 FROM vk8s.changes d \
                     WHERE d.vcluster_id = c.vcluster_id AND d.api_group = '' AND d.kind = 'Secret' \
                       AND d.namespace = c.namespace AND d.name = c.name \
                       AND d.event = 'DELETED' AND d.revision >= c.revision) AS deleted_since \
         FROM vk8s.changes c \
         WHERE c.api_group = '' AND c.kind = 'Secret' AND c.revision > $1 \
           AND ((c.body {KID}) IS DISTINCT FROM $2 \
                OR (c.prev_body IS NOT NULL AND (c.prev_body {KID}) IS DISTINCT FROM $2)) \
         ORDER BY c.revision LIMIT $3 FOR UPDATE OF c"
    )))
    .bind(after)
    .bind(primary)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ChangeRow {
            revision: r.get("revision"),
            vcluster_id: r.get("vcluster_id"),
            namespace: r.get("namespace"),
            name: r.get("name"),
            body: r.get("body"),
            prev_body: r.get("prev_body"),
            deleted_since: r.get("deleted_since"),
        })
        .collect())
}

pub async fn replace_change_bodies(
    tx: &mut Tx,
    revision: i64,
    body: &Value,
    prev_body: Option<&Value>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE vk8s.changes SET body = $2, prev_body = $3 WHERE revision = $1")
        .bind(revision)
        .bind(body)
        .bind(prev_body)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Serialises re-encryption runs (two at once would only repeat work).
pub async fn lock_rotation(tx: &mut Tx) -> Result<(), DbError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('manifold.vk8s.reencrypt'))")
        .execute(&mut **tx)
        .await?;
    Ok(())
}
