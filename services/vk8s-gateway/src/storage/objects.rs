//! SQL for `vk8s.objects`: reads (current and at an older revision) and the
//! three writes, each of which allocates the next global revision and
//! appends the change-log row in the caller's transaction.

use manifold_db::{DbError, Tx, sqlx};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{EventType, ObjectKey, VirtualCluster};
use crate::error::{GatewayError, Target};

/// The notification channel writers signal after appending to the log.
pub const NOTIFY_CHANNEL: &str = "vk8s_changes";

/// The object's current body, locked for the rest of the transaction.
pub async fn lock(
    tx: &mut Tx,
    vc: &VirtualCluster,
    key: &ObjectKey,
) -> Result<Option<Value>, DbError> {
    let row = sqlx::query(
        "SELECT body FROM vk8s.objects \
         WHERE vcluster_id = $1 AND api_group = $2 AND kind = $3 AND namespace = $4 AND name = $5 \
         FOR UPDATE",
    )
    .bind(vc.id)
    .bind(key.group)
    .bind(key.kind)
    .bind(&key.namespace)
    .bind(&key.name)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.get("body")))
}

pub async fn get(
    tx: &mut Tx,
    vc: &VirtualCluster,
    key: &ObjectKey,
) -> Result<Option<Value>, DbError> {
    let row = sqlx::query(
        "SELECT body FROM vk8s.objects \
         WHERE vcluster_id = $1 AND api_group = $2 AND kind = $3 AND namespace = $4 AND name = $5",
    )
    .bind(vc.id)
    .bind(key.group)
    .bind(key.kind)
    .bind(&key.namespace)
    .bind(&key.name)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.get("body")))
}

/// Takes the next revision. The counter row stays locked until the
/// transaction ends, which is what makes revisions commit in order.
async fn next_revision(tx: &mut Tx) -> Result<i64, DbError> {
    let row = sqlx::query("UPDATE vk8s.revision SET value = value + 1 RETURNING value")
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.get("value"))
}

fn set_resource_version(body: &mut Value, revision: i64) {
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), revision.to_string().into());
    }
}

fn uid_of(body: &Value) -> Uuid {
    body.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(Uuid::nil)
}

fn generation_of(body: &Value) -> i64 {
    body.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn deleting(body: &Value) -> bool {
    body.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

#[allow(clippy::too_many_arguments)]
async fn append_change(
    tx: &mut Tx,
    vc: &VirtualCluster,
    key: &ObjectKey,
    revision: i64,
    event: EventType,
    body: &Value,
    prev: Option<&Value>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO vk8s.changes (revision, tenant_id, vcluster_id, vcluster, api_group, kind, \
         namespace, name, event, body, prev_body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(revision)
    .bind(vc.tenant_id)
    .bind(vc.id)
    .bind(vc.name.resource_name())
    .bind(key.group)
    .bind(key.kind)
    .bind(&key.namespace)
    .bind(&key.name)
    .bind(event.as_str())
    .bind(body)
    .bind(prev)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(revision.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stores a new object; sets its resourceVersion. `AlreadyExists` when the
/// key is taken, `NotFound` when the cluster is gone.
pub async fn insert(
    tx: &mut Tx,
    vc: &VirtualCluster,
    key: &ObjectKey,
    target: &Target,
    body: &mut Value,
) -> Result<i64, GatewayError> {
    let revision = next_revision(tx).await?;
    set_resource_version(body, revision);
    sqlx::query(
        "INSERT INTO vk8s.objects (tenant_id, vcluster_id, api_group, kind, namespace, name, uid, \
         resource_version, create_revision, generation, deletion_time, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, NULL, $10)",
    )
    .bind(vc.tenant_id)
    .bind(vc.id)
    .bind(key.group)
    .bind(key.kind)
    .bind(&key.namespace)
    .bind(&key.name)
    .bind(uid_of(body))
    .bind(revision)
    .bind(generation_of(body))
    .bind(&*body)
    .execute(&mut **tx)
    .await
    .map_err(|e| match DbError::from(e) {
        DbError::UniqueViolation(_) => GatewayError::AlreadyExists(target.clone()),
        DbError::ConstraintViolation(_) => {
            GatewayError::NotFound(Target::named(vc.name.resource_name()))
        }
        other => other.into(),
    })?;
    append_change(tx, vc, key, revision, EventType::Added, body, None).await?;
    Ok(revision)
}

/// Replaces an object read (and locked) in this transaction; sets the new
/// resourceVersion.
pub async fn update(
    tx: &mut Tx,
    vc: &VirtualCluster,
    key: &ObjectKey,
    prev: &Value,
    body: &mut Value,
) -> Result<i64, DbError> {
    let revision = next_revision(tx).await?;
    set_resource_version(body, revision);
    sqlx::query(
        "UPDATE vk8s.objects SET resource_version = $6, generation = $7, \
         deletion_time = CASE WHEN $8 THEN coalesce(deletion_time, now()) END, body = $9 \
         WHERE vcluster_id = $1 AND api_group = $2 AND kind = $3 AND namespace = $4 AND name = $5",
    )
    .bind(vc.id)
    .bind(key.group)
    .bind(key.kind)
    .bind(&key.namespace)
    .bind(&key.name)
    .bind(revision)
    .bind(generation_of(body))
    .bind(deleting(body))
    .bind(&*body)
    .execute(&mut **tx)
    .await?;
    append_change(tx, vc, key, revision, EventType::Modified, body, Some(prev)).await?;
    Ok(revision)
}

/// Removes an object read (and locked) in this transaction. Returns its
/// last state carrying the deletion's resourceVersion, as DELETED events do.
pub async fn delete(
    tx: &mut Tx,
    vc: &VirtualCluster,
    key: &ObjectKey,
    prev: &Value,
) -> Result<Value, DbError> {
    sqlx::query(
        "DELETE FROM vk8s.objects \
         WHERE vcluster_id = $1 AND api_group = $2 AND kind = $3 AND namespace = $4 AND name = $5",
    )
    .bind(vc.id)
    .bind(key.group)
    .bind(key.kind)
    .bind(&key.namespace)
    .bind(&key.name)
    .execute(&mut **tx)
    .await?;
    let revision = next_revision(tx).await?;
    let mut last = prev.clone();
    set_resource_version(&mut last, revision);
    append_change(tx, vc, key, revision, EventType::Deleted, &last, Some(prev)).await?;
    Ok(last)
}

/// Every object of a cluster, locked, in key order (for deleting the cluster).
pub async fn lock_all(
    tx: &mut Tx,
    vc: &VirtualCluster,
) -> Result<Vec<(ObjectKey, Value)>, DbError> {
    let rows = sqlx::query(
        "SELECT api_group, kind, namespace, name, body FROM vk8s.objects WHERE vcluster_id = $1 \
         ORDER BY api_group, kind, namespace, name FOR UPDATE",
    )
    .bind(vc.id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let group: String = r.get("api_group");
            let kind: String = r.get("kind");
            let k = manifold_kube_model::kinds::by_group_kind(&group, &kind)?;
            Some((
                ObjectKey {
                    group: k.group,
                    kind: k.kind,
                    namespace: r.get("namespace"),
                    name: r.get("name"),
                },
                r.get("body"),
            ))
        })
        .collect())
}

/// Which objects of one kind a list reads, from which key on.
#[derive(Debug, Clone)]
pub struct ListScope<'a> {
    pub vcluster_id: Uuid,
    pub group: &'a str,
    pub kind: &'a str,
    /// Only this name (a `metadata.name=` field selector).
    pub name: Option<&'a str>,
    /// Keys strictly after (namespace, name).
    pub after: (&'a str, &'a str),
    pub limit: i64,
}

/// A page of the current state and the revision it is at.
pub async fn list_current(
    tx: &mut Tx,
    scope: &ListScope<'_>,
) -> Result<(i64, Vec<Value>), DbError> {
    // One statement: the head and the rows come from one snapshot.
    let rows = sqlx::query(
        "SELECT h.head, o.body FROM (SELECT (SELECT value FROM vk8s.revision) AS head) h LEFT JOIN LATERAL ( \
             SELECT body FROM vk8s.objects \
             WHERE vcluster_id = $1 AND api_group = $2 AND kind = $3 \
               AND ($4::text IS NULL OR name = $4) AND (namespace, name) > ($5, $6) \
             ORDER BY namespace, name LIMIT $7) o ON true",
    )
    .bind(scope.vcluster_id)
    .bind(scope.group)
    .bind(scope.kind)
    .bind(scope.name)
    .bind(scope.after.0)
    .bind(scope.after.1)
    .bind(scope.limit)
    .fetch_all(&mut **tx)
    .await?;
    let head = rows.first().map(|r| r.get("head")).unwrap_or(0);
    let items = rows
        .into_iter()
        .filter_map(|r| r.get::<Option<Value>, _>("body"))
        .collect();
    Ok((head, items))
}

/// A page of the state at `revision`, rebuilt from the current rows and the
/// log after it. `Err(compacted)` when the log no longer reaches back there.
pub async fn list_at(
    tx: &mut Tx,
    scope: &ListScope<'_>,
    revision: i64,
) -> Result<Result<Vec<Value>, i64>, DbError> {
    let rows = sqlx::query(
        "WITH later AS ( \
             SELECT DISTINCT ON (namespace, name) namespace, name, event, prev_body \
             FROM vk8s.changes \
             WHERE vcluster_id = $1 AND api_group = $2 AND kind = $3 AND revision > $8 \
               AND ($4::text IS NULL OR name = $4) AND (namespace, name) > ($5, $6) \
             ORDER BY namespace, name, revision), \
         items AS ( \
             SELECT namespace, name, body FROM vk8s.objects \
             WHERE vcluster_id = $1 AND api_group = $2 AND kind = $3 AND resource_version <= $8 \
               AND ($4::text IS NULL OR name = $4) AND (namespace, name) > ($5, $6) \
             UNION ALL \
             SELECT namespace, name, prev_body FROM later WHERE event <> 'ADDED') \
         SELECT c.compacted, i.body FROM (SELECT (SELECT revision FROM vk8s.compaction) AS compacted) c \
         LEFT JOIN LATERAL ( \
             SELECT body FROM items ORDER BY namespace, name LIMIT $7) i ON true",
    )
    .bind(scope.vcluster_id)
    .bind(scope.group)
    .bind(scope.kind)
    .bind(scope.name)
    .bind(scope.after.0)
    .bind(scope.after.1)
    .bind(scope.limit)
    .bind(revision)
    .fetch_all(&mut **tx)
    .await?;
    let compacted: i64 = rows.first().map(|r| r.get("compacted")).unwrap_or(0);
    if revision < compacted {
        return Ok(Err(compacted));
    }
    Ok(Ok(rows
        .into_iter()
        .filter_map(|r| r.get::<Option<Value>, _>("body"))
        .collect()))
}
