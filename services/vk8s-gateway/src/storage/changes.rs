//! SQL for the change log: reading it in revision order, the head and
//! compacted revisions, compaction, and whole-store snapshots. Sealed
//! bodies are opened here; one that does not open (its key is gone, its
//! bytes altered) is marked unreadable rather than failing the whole read,
//! so one broken Secret cannot stop the feed every site depends on.

use std::sync::Arc;

use manifold_db::{Db, DbError, Tx, sqlx};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use super::objects::stub;
use crate::domain::{Change, EventType};
use crate::encryption::{Encryption, EncryptionError, Location};
use crate::error::GatewayError;

/// Restricts a log read to one kind of one cluster.
#[derive(Debug, Clone, Copy)]
pub struct KindFilter<'a> {
    pub vcluster_id: Uuid,
    pub group: &'a str,
    pub kind: &'a str,
}

/// A slice of the log and the revisions around it, read in one snapshot.
#[derive(Debug, Default)]
pub struct LogRead {
    /// Changes at or below this revision are gone.
    pub compacted: i64,
    /// The newest committed revision.
    pub head: i64,
    pub changes: Vec<Change>,
}

fn row_to_change(r: &sqlx::postgres::PgRow) -> Option<Change> {
    let revision: Option<i64> = r.get("revision");
    let event: Option<String> = r.get("event");
    Some(Change {
        revision: revision?,
        tenant_id: r.get("tenant_id"),
        vcluster_id: r.get("vcluster_id"),
        vcluster: r.get("vcluster"),
        group: r.get("api_group"),
        kind: r.get("kind"),
        namespace: r.get("namespace"),
        name: r.get("name"),
        event: EventType::parse(&event?)?,
        object: Arc::new(r.get("body")),
        prev: r.get::<Option<Value>, _>("prev_body").map(Arc::new),
        unreadable: None,
    })
}

/// Opens a change's bodies. A permanent failure marks the change
/// unreadable (its bodies become the object's identity); a transient one
/// (the key provider is down) fails the read, to be retried.
async fn open_change(enc: &Encryption, mut c: Change) -> Result<Change, EncryptionError> {
    let at = Location {
        vcluster_id: c.vcluster_id,
        group: &c.group,
        kind: &c.kind,
        namespace: &c.namespace,
        name: &c.name,
    };
    if !at.encrypted() {
        return Ok(c);
    }
    let object = enc.open(&at, (*c.object).clone()).await;
    let prev = match &c.prev {
        Some(p) => Some(enc.open(&at, (**p).clone()).await),
        None => None,
    };
    match (object, prev.transpose()) {
        (Ok(object), Ok(prev)) => {
            c.object = Arc::new(object);
            c.prev = prev.map(Arc::new);
        }
        (Err(e), _) | (_, Err(e)) if e.is_permanent() => {
            let identity = Arc::new(stub(&c.group, &c.kind, &c.namespace, &c.name, None));
            c.object = identity.clone();
            c.prev = c.prev.as_ref().map(|_| identity);
            c.unreadable = Some(Arc::new(e));
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    }
    Ok(c)
}

/// The head and compacted revisions as one row. Scalar subqueries keep the
/// planner's estimate at one row (a join over the one-row tables, estimated
/// before they are analysed, once pushed whole statements into JIT).
pub const HEADS: &str = "SELECT (SELECT value FROM vk8s.revision) AS head, \
                         (SELECT revision FROM vk8s.compaction) AS compacted";

const CHANGE_COLS: &str = "ch.revision, ch.tenant_id, ch.vcluster_id, ch.vcluster, ch.api_group, ch.kind, ch.namespace, \
     ch.name, ch.event, ch.body, ch.prev_body";

/// Up to `limit` changes after `after`, in revision order, with the
/// compacted and head revisions of the same snapshot.
pub async fn read_after(
    tx: &mut Tx,
    enc: &Encryption,
    filter: Option<KindFilter<'_>>,
    after: i64,
    limit: i64,
) -> Result<LogRead, GatewayError> {
    let rows =
        match filter {
            Some(f) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT h.compacted, h.head, {CHANGE_COLS} FROM ({HEADS}) h LEFT JOIN LATERAL ( \
                     SELECT * FROM vk8s.changes \
                     WHERE vcluster_id = $2 AND api_group = $3 AND kind = $4 AND revision > $1 \
                     ORDER BY revision LIMIT $5) ch ON true \
                 ORDER BY ch.revision"
            )))
            .bind(after)
            .bind(f.vcluster_id)
            .bind(f.group)
            .bind(f.kind)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?,
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT h.compacted, h.head, {CHANGE_COLS} FROM ({HEADS}) h LEFT JOIN LATERAL ( \
                     SELECT * FROM vk8s.changes WHERE revision > $1 \
                     ORDER BY revision LIMIT $2) ch ON true \
                 ORDER BY ch.revision"
            )))
            .bind(after)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?,
        };
    let Some(first) = rows.first() else {
        return Ok(LogRead::default());
    };
    let mut changes = Vec::with_capacity(rows.len());
    for change in rows.iter().filter_map(row_to_change) {
        changes.push(open_change(enc, change).await?);
    }
    Ok(LogRead {
        compacted: first.get("compacted"),
        head: first.get("head"),
        changes,
    })
}

/// The newest committed revision and the compacted one.
pub async fn revisions(tx: &mut Tx) -> Result<(i64, i64), DbError> {
    let row = sqlx::query(HEADS).fetch_one(&mut **tx).await?;
    Ok((row.get("head"), row.get("compacted")))
}

/// Deletes changes older than `head - keep` when this replica wins the
/// compactor lock. Returns the new compacted revision when it moved.
pub async fn compact(tx: &mut Tx, keep: i64) -> Result<Option<i64>, DbError> {
    let locked: bool =
        sqlx::query("SELECT pg_try_advisory_xact_lock(hashtext('manifold.vk8s.compactor')) AS ok")
            .fetch_one(&mut **tx)
            .await?
            .get("ok");
    if !locked {
        return Ok(None);
    }
    let (head, compacted) = revisions(tx).await?;
    let target = head - keep.max(0);
    if target <= compacted {
        return Ok(None);
    }
    sqlx::query("DELETE FROM vk8s.changes WHERE revision <= $1")
        .bind(target)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE vk8s.compaction SET revision = $1, compact_time = now()")
        .bind(target)
        .execute(&mut **tx)
        .await?;
    Ok(Some(target))
}

/// One object of a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotItem {
    pub vcluster_id: Uuid,
    pub vcluster: String,
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub body: Value,
    /// Set when the stored body does not decrypt (`body` is then the
    /// object's identity only): the error.
    pub unreadable: Option<Arc<EncryptionError>>,
}

/// The snapshot's sort key: (vcluster_id, api_group, kind, namespace, name).
pub type SnapshotKey = (Uuid, String, String, String, String);

/// A read of every object of every tenant at one revision, held open in one
/// repeatable-read transaction while it is paged through.
pub struct Snapshot {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    pub revision: i64,
    after: Option<SnapshotKey>,
}

impl Snapshot {
    pub async fn open(db: &Db) -> Result<Self, DbError> {
        let mut tx = db.pool().begin().await?;
        // Must come first in the transaction.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        manifold_db::set_scope(&mut tx, manifold_db::Scope::System).await?;
        let revision: i64 = sqlx::query("SELECT value FROM vk8s.revision")
            .fetch_one(&mut *tx)
            .await?
            .get("value");
        Ok(Self {
            tx,
            revision,
            after: None,
        })
    }

    /// The next page in key order; empty at the end.
    pub async fn next_page(
        &mut self,
        enc: &Encryption,
        limit: i64,
    ) -> Result<Vec<SnapshotItem>, GatewayError> {
        let (vc, group, kind, ns, name) = self.after.clone().unwrap_or_default();
        let rows = sqlx::query(
            "SELECT o.vcluster_id, \
                 'tenants/' || v.tenant || '/namespaces/' || v.namespace || '/virtualClusters/' || v.name AS vcluster, \
                 o.api_group, o.kind, o.namespace, o.name, o.body \
             FROM vk8s.objects o JOIN vk8s.virtual_clusters v ON v.id = o.vcluster_id \
             WHERE ($1 OR (o.vcluster_id, o.api_group, o.kind, o.namespace, o.name) > ($2, $3, $4, $5, $6)) \
             ORDER BY o.vcluster_id, o.api_group, o.kind, o.namespace, o.name LIMIT $7",
        )
        .bind(self.after.is_none())
        .bind(vc)
        .bind(group)
        .bind(kind)
        .bind(ns)
        .bind(name)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut items: Vec<SnapshotItem> = Vec::with_capacity(rows.len());
        for r in rows {
            let mut item = SnapshotItem {
                vcluster_id: r.get("vcluster_id"),
                vcluster: r.get("vcluster"),
                group: r.get("api_group"),
                kind: r.get("kind"),
                namespace: r.get("namespace"),
                name: r.get("name"),
                body: Value::Null,
                unreadable: None,
            };
            let at = Location {
                vcluster_id: item.vcluster_id,
                group: &item.group,
                kind: &item.kind,
                namespace: &item.namespace,
                name: &item.name,
            };
            match enc.open(&at, r.get("body")).await {
                Ok(body) => item.body = body,
                Err(e) if e.is_permanent() => {
                    item.body = stub(&item.group, &item.kind, &item.namespace, &item.name, None);
                    item.unreadable = Some(Arc::new(e));
                }
                Err(e) => return Err(e.into()),
            }
            items.push(item);
        }
        if let Some(last) = items.last() {
            self.after = Some((
                last.vcluster_id,
                last.group.clone(),
                last.kind.clone(),
                last.namespace.clone(),
                last.name.clone(),
            ));
        }
        Ok(items)
    }
}
