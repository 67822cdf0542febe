//! The registry's SQL. Small functions over one transaction; the caller
//! commits. Every query names the tenants it may touch, and row-level security
//! checks the same thing a second time inside Postgres.

pub mod credentials;
pub mod sites;
pub mod virtual_sites;

use manifold_db::{DbError, Tx, sqlx};
use uuid::Uuid;

use crate::domain::Labels;

/// The Postgres channel placement watchers listen on.
pub const CHANGE_CHANNEL: &str = "sites_changed";

/// Which sites a query may return besides provider-owned ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// Every site (system scope).
    All,
    /// Provider sites and the private sites of these tenants.
    Tenants(Vec<Uuid>),
}

impl Visible {
    /// The `tenant_id = ANY(...)` filter to bind; `None` filters nothing.
    pub(crate) fn filter(&self) -> Option<Vec<Uuid>> {
        match self {
            Visible::All => None,
            Visible::Tenants(ids) => Some(ids.clone()),
        }
    }
}

/// SQL condition over `s.tenant_id` for a bound `uuid[]` parameter.
pub(crate) fn visible_sql(param: u8) -> String {
    format!("(${param}::uuid[] IS NULL OR s.tenant_id IS NULL OR s.tenant_id = ANY(${param}))")
}

pub(crate) fn labels_of(v: serde_json::Value) -> Labels {
    serde_json::from_value(v).unwrap_or_default()
}

pub(crate) fn labels_json(labels: &Labels) -> serde_json::Value {
    serde_json::to_value(labels).unwrap_or_default()
}

/// Advances the registry revision and tells every replica's watchers, at
/// commit, that placements may have changed. `tenant`: whose virtual sites
/// can be affected (`None`: every tenant's, i.e. a provider site changed).
pub async fn bump_revision(tx: &mut Tx, tenant: Option<Uuid>) -> Result<i64, DbError> {
    let revision: i64 =
        sqlx::query_scalar("UPDATE sites.revision SET value = value + 1 RETURNING value")
            .fetch_one(&mut **tx)
            .await?;
    let payload = serde_json::json!({
        "revision": revision,
        "tenant": tenant.map(|t| t.to_string()),
    });
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGE_CHANNEL)
        .bind(payload.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(revision)
}

/// The revision the transaction's snapshot reflects.
pub async fn current_revision(tx: &mut Tx) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT value FROM sites.revision")
        .fetch_one(&mut **tx)
        .await?)
}

/// A change notification's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: i64,
    /// `None`: may affect every tenant.
    pub tenant: Option<Uuid>,
}

impl Change {
    pub fn parse(payload: &str) -> Option<Change> {
        let v: serde_json::Value = serde_json::from_str(payload).ok()?;
        Some(Change {
            revision: v.get("revision")?.as_i64()?,
            tenant: match v.get("tenant") {
                Some(serde_json::Value::String(s)) => Some(Uuid::parse_str(s).ok()?),
                _ => None,
            },
        })
    }
}
