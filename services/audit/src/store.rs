//! SQL of the `audit` schema: batch inserts (system scope) and the filtered,
//! newest-first, keyset-paginated read.

use chrono::{DateTime, Utc};
use manifold_db::sqlx::{self, Row};
use manifold_db::{DbError, Scope, Tx};
use manifold_telemetry::AuditRecord;
use uuid::Uuid;

use crate::domain::{Cursor, Parent, Query};

/// One stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub tenant: Option<String>,
    pub actor: String,
    pub actor_kind: String,
    pub source: String,
    pub method: String,
    pub resource: String,
    pub http_method: String,
    pub path: String,
    pub code: String,
    pub success: bool,
    pub message: String,
    pub request_id: String,
    pub trace_id: String,
}

/// The id (UUIDv7 of the call's time) and time of a record.
fn identity(record: &AuditRecord) -> (Uuid, DateTime<Utc>) {
    let since_epoch = record
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
    );
    // Postgres keeps microseconds; store exactly what it will return.
    let micros = i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX);
    (
        Uuid::new_v7(ts),
        DateTime::from_timestamp_micros(micros).unwrap_or_default(),
    )
}

/// Inserts `records` in one statement. The transaction must be in system scope.
pub async fn insert(tx: &mut Tx, records: &[AuditRecord]) -> Result<(), DbError> {
    let mut ids = Vec::with_capacity(records.len());
    let mut times = Vec::with_capacity(records.len());
    for r in records {
        let (id, time) = identity(r);
        ids.push(id);
        times.push(time);
    }
    let text = |f: fn(&AuditRecord) -> &str| -> Vec<String> {
        records.iter().map(|r| f(r).to_owned()).collect()
    };
    let tenants: Vec<Option<String>> = records.iter().map(|r| r.tenant.clone()).collect();
    let successes: Vec<bool> = records.iter().map(|r| r.success).collect();
    sqlx::query(
        "INSERT INTO audit.events (id, time, tenant, actor, actor_kind, source, method, resource,
                                   http_method, path, code, success, message, request_id, trace_id)
         SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                              $11::text[], $12::boolean[], $13::text[], $14::text[], $15::text[])",
    )
    .bind(ids)
    .bind(times)
    .bind(tenants)
    .bind(text(|r| &r.actor))
    .bind(text(|r| r.actor_kind.as_str()))
    .bind(text(|r| r.source.as_str()))
    .bind(text(|r| &r.method))
    .bind(text(|r| &r.resource))
    .bind(text(|r| &r.http_method))
    .bind(text(|r| &r.path))
    .bind(text(|r| &r.code))
    .bind(successes)
    .bind(text(|r| &r.message))
    .bind(text(|r| &r.request_id))
    .bind(text(|r| &r.trace_id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Narrows the transaction to what `parent` may read (row-level security):
/// one tenant's rows by name, or every row in system scope.
pub async fn scope_to(tx: &mut Tx, parent: &Parent) -> Result<(), DbError> {
    match parent {
        Parent::All => manifold_db::set_scope(tx, Scope::System).await,
        Parent::Tenant(name) => {
            sqlx::query("SELECT set_config('manifold.tenant', '', true), set_config('manifold.audit_tenant', $1, true)")
                .bind(name)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    }
}

/// Up to `query.page_size + 1` events, newest first (one extra to know
/// whether another page follows).
pub async fn list(tx: &mut Tx, query: &Query) -> Result<Vec<StoredEvent>, DbError> {
    let tenant = match &query.parent {
        Parent::Tenant(t) => Some(t.clone()),
        Parent::All => None,
    };
    let (after_time, after_id) = match query.after {
        Some(Cursor { time, id }) => (Some(time), Some(id)),
        None => (None, None),
    };
    let rows = sqlx::query(
        "SELECT id, time, tenant, actor, actor_kind, source, method, resource, http_method, path,
                code, success, message, request_id, trace_id
           FROM audit.events
          WHERE ($1::text IS NULL OR tenant = $1)
            -- A tenant re-created under a deleted one's name: only its own.
            AND ($1::text IS NULL OR time > coalesce(
                (SELECT max(d.delete_time) FROM audit.tenant_deletions d WHERE d.tenant = $1),
                '-infinity'))
            AND ($2::timestamptz IS NULL OR time >= $2)
            AND ($3::timestamptz IS NULL OR time < $3)
            AND ($4::text IS NULL OR actor = $4)
            AND ($5::text IS NULL OR method = $5 OR right(method, length($5) + 1) = '/' || $5)
            AND ($6::text IS NULL OR source = $6)
            AND ($7::boolean IS NULL OR success = $7)
            AND ($8::text IS NULL OR code = $8)
            AND ($9::timestamptz IS NULL OR (time, id) < ($9, $10::uuid))
          ORDER BY time DESC, id DESC
          LIMIT $11",
    )
    .bind(tenant)
    .bind(query.since)
    .bind(query.until)
    .bind(&query.actor)
    .bind(&query.method)
    .bind(query.source)
    .bind(query.success)
    .bind(&query.code)
    .bind(after_time)
    .bind(after_id)
    .bind(i64::from(query.page_size) + 1)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredEvent {
                id: row.try_get("id")?,
                time: row.try_get("time")?,
                tenant: row.try_get("tenant")?,
                actor: row.try_get("actor")?,
                actor_kind: row.try_get("actor_kind")?,
                source: row.try_get("source")?,
                method: row.try_get("method")?,
                resource: row.try_get("resource")?,
                http_method: row.try_get("http_method")?,
                path: row.try_get("path")?,
                code: row.try_get("code")?,
                success: row.try_get("success")?,
                message: row.try_get("message")?,
                request_id: row.try_get("request_id")?,
                trace_id: row.try_get("trace_id")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// Records that tenant `tenant` was deleted at `delete_time`: tenant-scoped
/// reads of that name no longer show events up to then.
pub async fn record_tenant_deletion(
    tx: &mut Tx,
    tenant: &str,
    delete_time: DateTime<Utc>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO audit.tenant_deletions (tenant, delete_time) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(delete_time)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
