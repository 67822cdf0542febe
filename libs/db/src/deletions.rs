//! The tenant-deletion outbox (`tenancy.deletions`, migration 0006): tenancy
//! records a deleted tenant or namespace in the deleting transaction; every
//! service owning tenant data claims the rows it has not handled yet, purges
//! its own schema and marks the row done, all in one transaction, under a
//! transaction-level advisory lock per cleaner so that one replica works at
//! a time. A failed pass rolls back and is repeated.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::{DbError, Tx};

/// A service that purges deleted tenants' rows from its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleaner {
    Gateway,
    Sites,
    Replication,
    Audit,
}

impl Cleaner {
    fn column(self) -> &'static str {
        match self {
            Cleaner::Gateway => "gateway_done_time",
            Cleaner::Sites => "sites_done_time",
            Cleaner::Replication => "replication_done_time",
            Cleaner::Audit => "audit_done_time",
        }
    }

    fn lock_name(self) -> &'static str {
        match self {
            Cleaner::Gateway => "manifold.tenant_deletion.gateway",
            Cleaner::Sites => "manifold.tenant_deletion.sites",
            Cleaner::Replication => "manifold.tenant_deletion.replication",
            Cleaner::Audit => "manifold.tenant_deletion.audit",
        }
    }
}

/// How often cleaners look for new deletions.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One deleted tenant, or one deleted namespace of a tenant.
#[derive(Debug, Clone)]
pub struct TenantDeletion {
    pub id: i64,
    /// The deleted tenant's uid: rows of other schemas are keyed by it.
    pub tenant_id: Uuid,
    /// The tenant's name (`acme`).
    pub tenant: String,
    /// `None`: the whole tenant.
    pub namespace: Option<String>,
    pub delete_time: DateTime<Utc>,
}

/// Records a deletion (tenancy, in the deleting transaction; system scope).
pub async fn record(
    tx: &mut Tx,
    tenant_id: Uuid,
    tenant: &str,
    namespace: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO tenancy.deletions (tenant_id, tenant, namespace) VALUES ($1, $2, $3)")
        .bind(tenant_id)
        .bind(tenant)
        .bind(namespace)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes `cleaner`'s advisory lock for the rest of the transaction (system
/// scope) and returns up to `limit` deletions it has not handled, oldest
/// first; empty while another replica holds the lock. `after`: only
/// deletions that this other cleaner finished at least that long ago.
pub async fn claim(
    tx: &mut Tx,
    cleaner: Cleaner,
    after: Option<(Cleaner, Duration)>,
    limit: i64,
) -> Result<Vec<TenantDeletion>, DbError> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
        .bind(cleaner.lock_name())
        .fetch_one(&mut **tx)
        .await?;
    if !locked {
        return Ok(Vec::new());
    }
    let (after_col, min_age) = match after {
        Some((c, age)) => (c.column(), age),
        None => ("now()", Duration::ZERO),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, tenant_id, tenant, namespace, delete_time FROM tenancy.deletions \
         WHERE {col} IS NULL AND {after_col} <= now() - make_interval(secs => $1) \
         ORDER BY id LIMIT $2",
        col = cleaner.column(),
    )))
    .bind(min_age.as_secs_f64())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TenantDeletion {
            id: r.get("id"),
            tenant_id: r.get("tenant_id"),
            tenant: r.get("tenant"),
            namespace: r.get("namespace"),
            delete_time: r.get("delete_time"),
        })
        .collect())
}

/// Marks a deletion handled by `cleaner`.
pub async fn done(tx: &mut Tx, cleaner: Cleaner, id: i64) -> Result<(), DbError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE tenancy.deletions SET {} = now() WHERE id = $1",
        cleaner.column()
    )))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl TenantDeletion {
    /// The resource name (`tenants/t` or `tenants/t/namespaces/n`).
    pub fn resource(&self) -> String {
        match &self.namespace {
            None => format!("tenants/{}", self.tenant),
            Some(ns) => format!("tenants/{}/namespaces/{ns}", self.tenant),
        }
    }
}

/// Names of tenants deleted within the last `window` (any scope that can
/// read them; system scope reads all). Processes caching tenant name → uid
/// drop these names every pass, so a tenant re-created under the same name
/// is never resolved to the deleted tenant's uid.
pub async fn recently_deleted_tenants(
    tx: &mut Tx,
    window: Duration,
) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT tenant FROM tenancy.deletions \
         WHERE namespace IS NULL AND delete_time > now() - make_interval(secs => $1)",
    )
    .bind(window.as_secs_f64())
    .fetch_all(&mut **tx)
    .await?)
}

/// How long after a tenant's deletion name → uid caches are flushed (longer
/// than any such cache's time to live).
pub const UID_CACHE_FLUSH_WINDOW: Duration = Duration::from_secs(120);
