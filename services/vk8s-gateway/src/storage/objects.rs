//! SQL for `vk8s.objects`: reads (current and at an older revision) and the
//! three writes, each of which allocates the next global revision and
//! appends the change-log row in the caller's transaction.
//!
//! Bodies of encrypted kinds (Secrets) are sealed here on the way in, with
//! the caller's data key, and opened on the way out: nothing above this
//! module sees a sealed body, nothing below it a plain Secret. Deleting a
//! Secret also scrubs its data from every change-log row that still has it.

use std::borrow::Cow;

use manifold_db::{DbError, Tx, sqlx};
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::object::scrub_secret;
use crate::domain::{EventType, ObjectKey, VirtualCluster};
use crate::encryption::{DataKey, Encryption, Location};
use crate::error::{GatewayError, Target};

/// The notification channel writers signal after appending to the log.
pub const NOTIFY_CHANNEL: &str = "vk8s_changes";

/// Where `key` of `vc` is stored.
pub fn location<'a>(vc: &VirtualCluster, key: &'a ObjectKey) -> Location<'a> {
    Location {
        vcluster_id: vc.id,
        group: key.group,
        kind: key.kind,
        namespace: &key.namespace,
        name: &key.name,
    }
}

/// `body` as stored at `at`: sealed with `dek` for encrypted kinds. Refuses
/// to store a Secret without a data key rather than store it in plain.
pub fn seal<'v>(
    dek: Option<&DataKey>,
    at: &Location<'_>,
    body: &'v Value,
) -> Result<Cow<'v, Value>, GatewayError> {
    if !at.encrypted() {
        return Ok(Cow::Borrowed(body));
    }
    match dek {
        Some(dek) => Ok(Cow::Owned(dek.seal(at, body)?)),
        None => Err(GatewayError::Internal(format!(
            "{} {:?} must be written with a data key",
            at.kind, at.name
        ))),
    }
}

async fn open(enc: &Encryption, at: &Location<'_>, stored: Value) -> Result<Value, GatewayError> {
    Ok(enc.open(at, stored).await?)
}

/// The object's current body, locked for the rest of the transaction.
pub async fn lock(
    tx: &mut Tx,
    enc: &Encryption,
    vc: &VirtualCluster,
    key: &ObjectKey,
) -> Result<Option<Value>, GatewayError> {
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
    match row {
        Some(r) => Ok(Some(open(enc, &location(vc, key), r.get("body")).await?)),
        None => Ok(None),
    }
}

/// What the row's columns tell of an object whose body cannot be opened:
/// enough to delete it (name, namespace, uid, resourceVersion), locked.
pub async fn lock_stub(
    tx: &mut Tx,
    vc: &VirtualCluster,
    key: &ObjectKey,
) -> Result<Option<Value>, DbError> {
    let row = sqlx::query(
        "SELECT uid, resource_version FROM vk8s.objects \
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
    Ok(row.map(|r| {
        stub(
            key.group,
            key.kind,
            &key.namespace,
            &key.name,
            Some((r.get("uid"), r.get("resource_version"))),
        )
    }))
}

/// A body made of an object's identity alone.
pub fn stub(
    group: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    stored: Option<(Uuid, i64)>,
) -> Value {
    let api_version = manifold_kube_model::kinds::by_group_kind(group, kind)
        .map(|k| k.api_version())
        .unwrap_or_else(|| "v1".into());
    let mut metadata = json!({"name": name, "namespace": namespace});
    if let Some((uid, rv)) = stored {
        metadata["uid"] = uid.to_string().into();
        metadata["resourceVersion"] = rv.to_string().into();
    }
    json!({"apiVersion": api_version, "kind": kind, "metadata": metadata})
}

pub async fn get(
    tx: &mut Tx,
    enc: &Encryption,
    vc: &VirtualCluster,
    key: &ObjectKey,
) -> Result<Option<Value>, GatewayError> {
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
    match row {
        Some(r) => Ok(Some(open(enc, &location(vc, key), r.get("body")).await?)),
        None => Ok(None),
    }
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

/// Appends the change; `body` and `prev` are plain and sealed here.
#[allow(clippy::too_many_arguments)]
async fn append_change(
    tx: &mut Tx,
    dek: Option<&DataKey>,
    vc: &VirtualCluster,
    key: &ObjectKey,
    revision: i64,
    event: EventType,
    body: &Value,
    prev: Option<&Value>,
) -> Result<(), GatewayError> {
    let at = location(vc, key);
    let body = seal(dek, &at, body)?;
    let prev = prev.map(|p| seal(dek, &at, p)).transpose()?;
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
    .bind(&*body)
    .bind(prev.as_deref())
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
    dek: Option<&DataKey>,
    vc: &VirtualCluster,
    key: &ObjectKey,
    target: &Target,
    body: &mut Value,
) -> Result<i64, GatewayError> {
    let revision = next_revision(tx).await?;
    set_resource_version(body, revision);
    let stored = seal(dek, &location(vc, key), body)?;
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
    .bind(&*stored)
    .execute(&mut **tx)
    .await
    .map_err(|e| match DbError::from(e) {
        DbError::UniqueViolation(_) => GatewayError::AlreadyExists(target.clone()),
        DbError::ConstraintViolation(_) => {
            GatewayError::NotFound(Target::named(vc.name.resource_name()))
        }
        other => other.into(),
    })?;
    append_change(tx, dek, vc, key, revision, EventType::Added, body, None).await?;
    Ok(revision)
}

/// Replaces an object read (and locked) in this transaction; sets the new
/// resourceVersion.
pub async fn update(
    tx: &mut Tx,
    dek: Option<&DataKey>,
    vc: &VirtualCluster,
    key: &ObjectKey,
    prev: &Value,
    body: &mut Value,
) -> Result<i64, GatewayError> {
    let revision = next_revision(tx).await?;
    set_resource_version(body, revision);
    let stored = seal(dek, &location(vc, key), body)?;
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
    .bind(&*stored)
    .execute(&mut **tx)
    .await?;
    append_change(
        tx,
        dek,
        vc,
        key,
        revision,
        EventType::Modified,
        body,
        Some(prev),
    )
    .await?;
    Ok(revision)
}

/// Removes an object read (and locked) in this transaction. Returns its
/// last state carrying the deletion's resourceVersion, as DELETED events do.
///
/// A Secret leaves no data behind: the DELETED change keeps only its
/// identity and labels (see [`scrub_secret`]), and with `scrub` every
/// earlier change of it is scrubbed the same way, so neither a list at an
/// old resourceVersion nor a watch from one returns its data.
#[allow(clippy::too_many_arguments)]
pub async fn delete(
    tx: &mut Tx,
    enc: &Encryption,
    dek: Option<&DataKey>,
    vc: &VirtualCluster,
    key: &ObjectKey,
    prev: &Value,
    scrub: bool,
) -> Result<Value, GatewayError> {
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
    let secret = location(vc, key).encrypted();
    if secret && scrub {
        scrub_secret_changes(tx, enc, dek, vc.id, Some((&key.namespace, &key.name))).await?;
    }
    let revision = next_revision(tx).await?;
    let mut last = prev.clone();
    set_resource_version(&mut last, revision);
    if secret {
        let (kept, kept_prev) = (scrub_secret(&last), scrub_secret(prev));
        append_change(
            tx,
            dek,
            vc,
            key,
            revision,
            EventType::Deleted,
            &kept,
            Some(&kept_prev),
        )
        .await?;
    } else {
        append_change(
            tx,
            dek,
            vc,
            key,
            revision,
            EventType::Deleted,
            &last,
            Some(prev),
        )
        .await?;
    }
    Ok(last)
}

/// Rewrites the change-log rows of the Secrets of cluster `vcluster_id`
/// (or of the one Secret `only`) to their scrubbed form, re-sealed with
/// `dek`. A body that no longer opens is replaced by the row's identity.
pub async fn scrub_secret_changes(
    tx: &mut Tx,
    enc: &Encryption,
    dek: Option<&DataKey>,
    vcluster_id: Uuid,
    only: Option<(&str, &str)>,
) -> Result<u64, GatewayError> {
    let rows = sqlx::query(
        "SELECT revision, namespace, name, body, prev_body FROM vk8s.changes \
         WHERE vcluster_id = $1 AND api_group = '' AND kind = 'Secret' \
           AND ($2::text IS NULL OR (namespace = $2 AND name = $3)) \
         ORDER BY revision FOR UPDATE",
    )
    .bind(vcluster_id)
    .bind(only.map(|o| o.0))
    .bind(only.map(|o| o.1))
    .fetch_all(&mut **tx)
    .await?;
    let mut revisions = Vec::new();
    let mut bodies = Vec::new();
    let mut prevs: Vec<Option<Value>> = Vec::new();
    for r in rows {
        let (namespace, name): (String, String) = (r.get("namespace"), r.get("name"));
        let at = Location {
            vcluster_id,
            group: "",
            kind: "Secret",
            namespace: &namespace,
            name: &name,
        };
        let body = scrubbed(enc, &at, r.get("body")).await?;
        let prev = match r.get::<Option<Value>, _>("prev_body") {
            Some(p) => Some(scrubbed(enc, &at, p).await?),
            None => None,
        };
        revisions.push(r.get::<i64, _>("revision"));
        bodies.push(seal(dek, &at, &body)?.into_owned());
        prevs.push(
            prev.map(|p| seal(dek, &at, &p).map(Cow::into_owned))
                .transpose()?,
        );
    }
    if revisions.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE vk8s.changes c SET body = u.body, prev_body = u.prev_body \
         FROM unnest($1::bigint[], $2::jsonb[], $3::jsonb[]) AS u(revision, body, prev_body) \
         WHERE c.revision = u.revision",
    )
    .bind(&revisions)
    .bind(&bodies)
    .bind(&prevs)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// The scrubbed form of a stored Secret body; its identity alone when the
/// body does not open (a transient provider failure is an error).
async fn scrubbed(
    enc: &Encryption,
    at: &Location<'_>,
    stored: Value,
) -> Result<Value, GatewayError> {
    match enc.open(at, stored).await {
        Ok(body) => Ok(scrub_secret(&body)),
        Err(e) if e.is_permanent() => {
            tracing::warn!(error = %e, "scrubbing a change-log entry that does not decrypt");
            Ok(stub(at.group, at.kind, at.namespace, at.name, None))
        }
        Err(e) => Err(e.into()),
    }
}

/// Every object of a cluster, locked, in key order (for deleting the
/// cluster). A Secret that does not decrypt comes back as its identity, so
/// the cluster can still be deleted.
pub async fn lock_all(
    tx: &mut Tx,
    enc: &Encryption,
    vc: &VirtualCluster,
) -> Result<Vec<(ObjectKey, Value)>, GatewayError> {
    let rows = sqlx::query(
        "SELECT api_group, kind, namespace, name, uid, resource_version, body FROM vk8s.objects \
         WHERE vcluster_id = $1 ORDER BY api_group, kind, namespace, name FOR UPDATE",
    )
    .bind(vc.id)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let group: String = r.get("api_group");
        let kind: String = r.get("kind");
        let Some(k) = manifold_kube_model::kinds::by_group_kind(&group, &kind) else {
            continue;
        };
        let key = ObjectKey {
            group: k.group,
            kind: k.kind,
            namespace: r.get("namespace"),
            name: r.get("name"),
        };
        let body = match enc.open(&location(vc, &key), r.get("body")).await {
            Ok(body) => body,
            Err(e) if e.is_permanent() => {
                tracing::warn!(error = %e, "deleting an object that does not decrypt");
                stub(
                    key.group,
                    key.kind,
                    &key.namespace,
                    &key.name,
                    Some((r.get("uid"), r.get("resource_version"))),
                )
            }
            Err(e) => return Err(e.into()),
        };
        out.push((key, body));
    }
    Ok(out)
}

/// Deletes every object of a cluster (each leaving a DELETED change) and
/// scrubs the cluster's Secrets from the change log once.
pub async fn delete_all(
    tx: &mut Tx,
    enc: &Encryption,
    dek: Option<&DataKey>,
    vc: &VirtualCluster,
) -> Result<(), GatewayError> {
    let objects = lock_all(tx, enc, vc).await?;
    let secrets = objects.iter().any(|(k, _)| location(vc, k).encrypted());
    if secrets {
        scrub_secret_changes(tx, enc, dek, vc.id, None).await?;
    }
    for (key, body) in objects {
        delete(tx, enc, dek, vc, &key, &body, false).await?;
    }
    Ok(())
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
    enc: &Encryption,
    scope: &ListScope<'_>,
) -> Result<(i64, Vec<Value>), GatewayError> {
    // One statement: the head and the rows come from one snapshot.
    let rows = sqlx::query(
        "SELECT h.head, o.namespace, o.name, o.body FROM (SELECT (SELECT value FROM vk8s.revision) AS head) h LEFT JOIN LATERAL ( \
             SELECT namespace, name, body FROM vk8s.objects \
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
    Ok((head, open_rows(enc, scope, rows).await?))
}

/// Opens the `(namespace, name, body)` rows of a list.
async fn open_rows(
    enc: &Encryption,
    scope: &ListScope<'_>,
    rows: Vec<sqlx::postgres::PgRow>,
) -> Result<Vec<Value>, GatewayError> {
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(body) = r.get::<Option<Value>, _>("body") else {
            continue;
        };
        let (namespace, name): (String, String) = (r.get("namespace"), r.get("name"));
        let at = Location {
            vcluster_id: scope.vcluster_id,
            group: scope.group,
            kind: scope.kind,
            namespace: &namespace,
            name: &name,
        };
        items.push(open(enc, &at, body).await?);
    }
    Ok(items)
}

/// A page of the state at `revision`, rebuilt from the current rows and the
/// log after it. `Err(compacted)` when the log no longer reaches back there.
pub async fn list_at(
    tx: &mut Tx,
    enc: &Encryption,
    scope: &ListScope<'_>,
    revision: i64,
) -> Result<Result<Vec<Value>, i64>, GatewayError> {
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
         SELECT c.compacted, i.namespace, i.name, i.body FROM (SELECT (SELECT revision FROM vk8s.compaction) AS compacted) c \
         LEFT JOIN LATERAL ( \
             SELECT namespace, name, body FROM items ORDER BY namespace, name LIMIT $7) i ON true",
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
    Ok(Ok(open_rows(enc, scope, rows).await?))
}
