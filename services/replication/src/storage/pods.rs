//! SQL for pods: per-vK8s revisions (`pod_heads`), rows with tombstones,
//! and the reads behind ListPods / WatchPods.

use std::collections::{BTreeMap, HashMap};

use manifold_db::{DbError, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

use super::PODS_CHANNEL;
use crate::domain::status::{PodState, StoredPod};

/// A pod row to write (a new state, or a tombstone).
#[derive(Debug, Clone)]
pub struct PodRow {
    pub tenant_id: Uuid,
    pub site: String,
    pub pod: PodState,
    pub site_offline: bool,
    pub deleted: bool,
}

const COLS: &str = "tenant_id, virtual_cluster, namespace, name, site, node, phase, pod_ip, \
                    restarts, owner_kind, owner_name, object, site_offline, revision, deleted";

fn stored(r: &sqlx::postgres::PgRow) -> (Uuid, StoredPod) {
    (
        r.get("tenant_id"),
        StoredPod {
            site: r.get("site"),
            pod: PodState {
                virtual_cluster: r.get("virtual_cluster"),
                namespace: r.get("namespace"),
                name: r.get("name"),
                node: r.get("node"),
                phase: r.get("phase"),
                pod_ip: r.get("pod_ip"),
                restarts: r.get("restarts"),
                owner_kind: r.get("owner_kind"),
                owner_name: r.get("owner_name"),
                object: r.get("object"),
            },
            site_offline: r.get("site_offline"),
            revision: r.get("revision"),
            deleted: r.get("deleted"),
        },
    )
}

/// Every live (not deleted) pod of `site`, with its tenant.
pub async fn of_site(tx: &mut Tx, site: &str) -> Result<Vec<(Uuid, StoredPod)>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM replication.pods WHERE site = $1 AND NOT deleted"
    )))
    .bind(site)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(stored).collect())
}

/// The live pods of `site` named by (vK8s, namespace, name) triples; a vK8s
/// of `*` matches any.
pub async fn of_site_matching(
    tx: &mut Tx,
    site: &str,
    vks: &[String],
    namespaces: &[String],
    names: &[String],
) -> Result<Vec<(Uuid, StoredPod)>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT {cols} FROM replication.pods p \
         JOIN unnest($2::text[], $3::text[], $4::text[]) AS k(vk, ns, name) \
           ON (k.vk = '*' OR p.virtual_cluster = k.vk) AND p.namespace = k.ns AND p.name = k.name \
         WHERE p.site = $1 AND NOT p.deleted",
        cols = COLS
            .split(", ")
            .map(|c| format!("p.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    )))
    .bind(site)
    .bind(vks)
    .bind(namespaces)
    .bind(names)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(stored).collect())
}

/// Locks the revision counters of `clusters` (creating missing ones) in
/// name order, and returns their current values.
pub async fn lock_heads(
    tx: &mut Tx,
    clusters: &BTreeMap<String, Uuid>,
) -> Result<HashMap<String, i64>, DbError> {
    if clusters.is_empty() {
        return Ok(HashMap::new());
    }
    let names: Vec<&str> = clusters.keys().map(String::as_str).collect();
    let tenants: Vec<Uuid> = clusters.values().copied().collect();
    sqlx::query(
        "INSERT INTO replication.pod_heads (tenant_id, virtual_cluster) \
         SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(&tenants)
    .bind(&names)
    .execute(&mut **tx)
    .await?;
    let rows = sqlx::query(
        "SELECT virtual_cluster, revision FROM replication.pod_heads \
         WHERE virtual_cluster = ANY($1) ORDER BY virtual_cluster FOR UPDATE",
    )
    .bind(&names)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("virtual_cluster"), r.get("revision")))
        .collect())
}

/// Writes `rows` with consecutive revisions per vK8s after the locked
/// `heads`, stores the new heads and notifies watchers at commit.
pub async fn write(
    tx: &mut Tx,
    heads: &mut HashMap<String, i64>,
    rows: &[PodRow],
) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut cols = Columns::default();
    for r in rows {
        let head = heads
            .get_mut(&r.pod.virtual_cluster)
            .ok_or_else(|| DbError::ConstraintViolation("pod_heads not locked".into()))?;
        *head += 1;
        cols.push(r, *head);
    }
    sqlx::query(
        "INSERT INTO replication.pods (tenant_id, virtual_cluster, namespace, name, site, node, \
             phase, pod_ip, restarts, owner_kind, owner_name, object, site_offline, revision, \
             deleted, update_time) \
         SELECT *, now() FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::int[], $10::text[], $11::text[], \
             $12::jsonb[], $13::bool[], $14::bigint[], $15::bool[]) \
         ON CONFLICT (virtual_cluster, namespace, name, site) DO UPDATE SET \
             node = EXCLUDED.node, phase = EXCLUDED.phase, pod_ip = EXCLUDED.pod_ip, \
             restarts = EXCLUDED.restarts, owner_kind = EXCLUDED.owner_kind, \
             owner_name = EXCLUDED.owner_name, object = EXCLUDED.object, \
             site_offline = EXCLUDED.site_offline, revision = EXCLUDED.revision, \
             deleted = EXCLUDED.deleted, update_time = now()",
    )
    .bind(&cols.tenant)
    .bind(&cols.vk)
    .bind(&cols.ns)
    .bind(&cols.name)
    .bind(&cols.site)
    .bind(&cols.node)
    .bind(&cols.phase)
    .bind(&cols.ip)
    .bind(&cols.restarts)
    .bind(&cols.owner_kind)
    .bind(&cols.owner_name)
    .bind(&cols.object)
    .bind(&cols.offline)
    .bind(&cols.revision)
    .bind(&cols.deleted)
    .execute(&mut **tx)
    .await?;
    let names: Vec<&str> = heads.keys().map(String::as_str).collect();
    let values: Vec<i64> = heads.values().copied().collect();
    sqlx::query(
        "UPDATE replication.pod_heads h SET revision = u.revision \
         FROM unnest($1::text[], $2::bigint[]) AS u(virtual_cluster, revision) \
         WHERE h.virtual_cluster = u.virtual_cluster AND h.revision < u.revision",
    )
    .bind(&names)
    .bind(&values)
    .execute(&mut **tx)
    .await?;
    let mut touched: Vec<&str> = rows
        .iter()
        .map(|r| r.pod.virtual_cluster.as_str())
        .collect();
    touched.sort_unstable();
    touched.dedup();
    for vk in touched {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PODS_CHANNEL)
            .bind(vk)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[derive(Default)]
struct Columns {
    tenant: Vec<Uuid>,
    vk: Vec<String>,
    ns: Vec<String>,
    name: Vec<String>,
    site: Vec<String>,
    node: Vec<String>,
    phase: Vec<String>,
    ip: Vec<String>,
    restarts: Vec<i32>,
    owner_kind: Vec<String>,
    owner_name: Vec<String>,
    object: Vec<serde_json::Value>,
    offline: Vec<bool>,
    revision: Vec<i64>,
    deleted: Vec<bool>,
}

impl Columns {
    fn push(&mut self, r: &PodRow, revision: i64) {
        let p = &r.pod;
        self.tenant.push(r.tenant_id);
        self.vk.push(p.virtual_cluster.clone());
        self.ns.push(p.namespace.clone());
        self.name.push(p.name.clone());
        self.site.push(r.site.clone());
        self.node.push(p.node.clone());
        self.phase.push(p.phase.clone());
        self.ip.push(p.pod_ip.clone());
        self.restarts.push(p.restarts);
        self.owner_kind.push(p.owner_kind.clone());
        self.owner_name.push(p.owner_name.clone());
        self.object.push(p.object.clone());
        self.offline.push(r.site_offline);
        self.revision.push(revision);
        self.deleted.push(r.deleted);
    }
}

/// The pod revision of a vK8s (0 before its first pod).
pub async fn head(tx: &mut Tx, vk: &str) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("SELECT revision FROM replication.pod_heads WHERE virtual_cluster = $1")
            .bind(vk)
            .fetch_optional(&mut **tx)
            .await?
            .unwrap_or(0),
    )
}

/// The live pods of a vK8s and the revision they reflect.
pub async fn list(tx: &mut Tx, vk: &str) -> Result<(Vec<StoredPod>, i64), DbError> {
    let head = head(tx, vk).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM replication.pods WHERE virtual_cluster = $1 AND NOT deleted \
         ORDER BY namespace, name, site"
    )))
    .bind(vk)
    .fetch_all(&mut **tx)
    .await?;
    Ok((rows.iter().map(|r| stored(r).1).collect(), head))
}

/// Changes of a vK8s's pods after `after` (tombstones included), oldest
/// first, and the compacted revision (changes at or below it may be lost).
pub async fn after(
    tx: &mut Tx,
    vk: &str,
    after: i64,
    limit: i64,
) -> Result<(Vec<StoredPod>, i64), DbError> {
    let compacted: i64 = sqlx::query_scalar(
        "SELECT compacted FROM replication.pod_heads WHERE virtual_cluster = $1",
    )
    .bind(vk)
    .fetch_optional(&mut **tx)
    .await?
    .unwrap_or(0);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM replication.pods WHERE virtual_cluster = $1 AND revision > $2 \
         ORDER BY revision LIMIT $3"
    )))
    .bind(vk)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok((rows.iter().map(|r| stored(r).1).collect(), compacted))
}

/// Live pods of a vK8s by namespace and name (one per site running one).
pub async fn find(
    tx: &mut Tx,
    vk: &str,
    namespace: &str,
    name: &str,
) -> Result<Vec<StoredPod>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM replication.pods \
         WHERE virtual_cluster = $1 AND namespace = $2 AND name = $3 AND NOT deleted ORDER BY site"
    )))
    .bind(vk)
    .bind(namespace)
    .bind(name)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(|r| stored(r).1).collect())
}

/// Purges tombstones older than `older_than_secs` and records, per vK8s,
/// the newest purged revision. Returns how many vK8s had tombstones purged.
pub async fn purge_tombstones(tx: &mut Tx, older_than_secs: f64) -> Result<u64, DbError> {
    let purged = sqlx::query(
        "WITH gone AS ( \
             DELETE FROM replication.pods \
             WHERE deleted AND update_time < now() - make_interval(secs => $1) \
             RETURNING virtual_cluster, revision), \
         newest AS (SELECT virtual_cluster, max(revision) AS revision FROM gone GROUP BY 1) \
         UPDATE replication.pod_heads h SET compacted = greatest(h.compacted, n.revision) \
         FROM newest n WHERE h.virtual_cluster = n.virtual_cluster",
    )
    .bind(older_than_secs)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(purged)
}
