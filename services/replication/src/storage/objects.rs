//! SQL for `replication.object_status`: one object's status per site.

use chrono::{DateTime, Utc};
use manifold_db::{DbError, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{ObjectKey, group_of, status::ObjectState};

/// Drops everything stored about `site`'s objects (a full report follows).
/// The other sites' status of those objects is marked changed (the merged
/// status no longer counts this site); the vK8s names touched.
pub async fn clear_site(tx: &mut Tx, site: &str) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "WITH gone AS (DELETE FROM replication.object_status WHERE site = $1 \
             RETURNING virtual_cluster, api_group, kind, namespace, name), \
         touched AS (UPDATE replication.object_status o \
             SET changed = nextval('replication.status_change'), change_time = now() \
             FROM (SELECT DISTINCT * FROM gone) g \
             WHERE o.virtual_cluster = g.virtual_cluster AND o.api_group = g.api_group \
             AND o.kind = g.kind AND o.namespace = g.namespace AND o.name = g.name \
             AND o.site <> $1 \
             RETURNING o.virtual_cluster) \
         SELECT DISTINCT virtual_cluster FROM touched",
    )
    .bind(site)
    .fetch_all(&mut **tx)
    .await?)
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
             update_time = now(), \
             changed = CASE WHEN (object_status.status, object_status.observed_revision, \
                                  object_status.failure) \
                 IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.observed_revision, EXCLUDED.failure) \
               THEN nextval('replication.status_change') ELSE object_status.changed END, \
             change_time = CASE WHEN (object_status.status, object_status.observed_revision, \
                                      object_status.failure) \
                 IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.observed_revision, EXCLUDED.failure) \
               THEN now() ELSE object_status.change_time END",
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

/// Drops one object's status on `site` (None: on every site). The other
/// sites' status of it is marked changed (the merged status no longer
/// counts this site); whether any was.
pub async fn delete(tx: &mut Tx, key: &ObjectKey, site: Option<&str>) -> Result<bool, DbError> {
    let touched: i64 = sqlx::query_scalar(
        "WITH gone AS (DELETE FROM replication.object_status WHERE virtual_cluster = $1 \
             AND api_group = $2 AND kind = $3 AND namespace = $4 AND name = $5 \
             AND ($6::text IS NULL OR site = $6) RETURNING site), \
         touched AS (UPDATE replication.object_status \
             SET changed = nextval('replication.status_change'), change_time = now() \
             WHERE virtual_cluster = $1 AND api_group = $2 AND kind = $3 AND namespace = $4 \
             AND name = $5 AND $6::text IS NOT NULL AND site <> $6 \
             AND EXISTS (SELECT 1 FROM gone) RETURNING 1) \
         SELECT count(*) FROM touched",
    )
    .bind(&key.virtual_cluster)
    .bind(key.group())
    .bind(&key.kind)
    .bind(&key.namespace)
    .bind(&key.name)
    .bind(site)
    .fetch_one(&mut **tx)
    .await?;
    Ok(touched > 0)
}

/// Marks every status `site` holds as changed (the site went offline or
/// came back, which changes how its status reads); the vK8s names touched.
pub async fn touch_site(tx: &mut Tx, site: &str) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "WITH touched AS (UPDATE replication.object_status \
             SET changed = nextval('replication.status_change'), change_time = now() \
             WHERE site = $1 RETURNING virtual_cluster) \
         SELECT DISTINCT virtual_cluster FROM touched",
    )
    .bind(site)
    .fetch_all(&mut **tx)
    .await?)
}

/// Notifies [`super::STATUS_CHANNEL`] that the status of `vks` changed.
pub async fn notify_changed<'a>(
    tx: &mut Tx,
    vks: impl IntoIterator<Item = &'a str>,
) -> Result<(), DbError> {
    for vk in vks {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::STATUS_CHANNEL)
            .bind(vk)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A change of the status of objects of one vK8s: the objects whose status
/// changed after `after` (or at `since` or later, the look-back), each with
/// its status on every site; and the highest change number seen.
pub struct Changed {
    pub objects: Vec<Vec<(String, ObjectState, DateTime<Utc>)>>,
    pub last: i64,
}

/// The objects of `vk` whose status changed after change number `after` or
/// at `since` or later, each with every site's status (sorted by site).
pub async fn changed_since(
    tx: &mut Tx,
    vk: &str,
    after: i64,
    since: DateTime<Utc>,
) -> Result<Changed, DbError> {
    let rows = sqlx::query(
        "WITH hit AS (SELECT DISTINCT api_group, kind, namespace, name \
             FROM replication.object_status WHERE virtual_cluster = $1 \
             AND (changed > $2 OR change_time >= $3)) \
         SELECT s.api_version, s.kind, s.namespace, s.name, s.site, s.status, \
             s.observed_revision, s.failure, s.update_time, s.changed \
         FROM replication.object_status s JOIN hit USING (api_group, kind, namespace, name) \
         WHERE s.virtual_cluster = $1 \
         ORDER BY s.api_group, s.kind, s.namespace, s.name, s.site",
    )
    .bind(vk)
    .bind(after)
    .bind(since)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = Changed {
        objects: Vec::new(),
        last: after,
    };
    for r in rows {
        out.last = out.last.max(r.get::<i64, _>("changed"));
        let stored = stored_status(
            &r,
            ObjectKey {
                virtual_cluster: vk.to_owned(),
                api_version: String::new(),
                kind: r.get("kind"),
                namespace: r.get("namespace"),
                name: r.get("name"),
            },
        );
        // Rows come ordered by object: a new object starts a new group.
        match out.objects.last_mut() {
            Some(group) if same_object(&group[0].1.key, &stored.1.key) => group.push(stored),
            _ => out.objects.push(vec![stored]),
        }
    }
    Ok(out)
}

/// One object, whatever version of its API group each site reported.
fn same_object(a: &ObjectKey, b: &ObjectKey) -> bool {
    a.group() == b.group() && a.kind == b.kind && a.namespace == b.namespace && a.name == b.name
}

/// One `object_status` row (site, api_version, status, observed_revision,
/// failure, update_time) as (site, state of `key` at that version, time).
fn stored_status(
    r: &sqlx::postgres::PgRow,
    mut key: ObjectKey,
) -> (String, ObjectState, DateTime<Utc>) {
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
}

/// The highest status change number handed out so far.
pub async fn last_change(tx: &mut Tx) -> Result<i64, DbError> {
    let row = sqlx::query("SELECT last_value, is_called FROM replication.status_change")
        .fetch_one(&mut **tx)
        .await?;
    Ok(if row.get::<bool, _>("is_called") {
        row.get("last_value")
    } else {
        0
    })
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
    Ok(rows.iter().map(|r| stored_status(r, key.clone())).collect())
}
