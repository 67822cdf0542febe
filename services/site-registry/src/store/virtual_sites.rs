//! `sites.virtual_sites`: label selectors over sites, inside a namespace.

use manifold_db::{DbError, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::*;
use crate::error::SiteError;

const VS_COLS: &str = "id, tenant_id, tenant, namespace, name, display_name, site_selector, \
     version, create_time, update_time";

fn vs_row(r: sqlx::postgres::PgRow) -> VirtualSiteRecord {
    VirtualSiteRecord {
        id: r.get("id"),
        tenant_id: r.get("tenant_id"),
        vs: VirtualSiteRef {
            parent: NamespaceRef {
                tenant: r.get("tenant"),
                namespace: r.get("namespace"),
            },
            id: r.get("name"),
        },
        display_name: r.get("display_name"),
        selector: SiteSelector::stored(r.get::<&str, _>("site_selector")),
        version: r.get("version"),
        create_time: r.get("create_time"),
        update_time: r.get("update_time"),
    }
}

pub async fn insert(
    tx: &mut Tx,
    tenant_id: Uuid,
    vs: &VirtualSiteRef,
    display_name: &str,
    selector: &SiteSelector,
) -> Result<VirtualSiteRecord, SiteError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO sites.virtual_sites (id, tenant_id, tenant, namespace, name, display_name, \
         site_selector) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {VS_COLS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(&vs.parent.tenant)
    .bind(&vs.parent.namespace)
    .bind(&vs.id)
    .bind(display_name)
    .bind(selector.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match DbError::from(e) {
        DbError::UniqueViolation(_) => SiteError::AlreadyExists(vs.name()),
        other => other.into(),
    })?;
    Ok(vs_row(row))
}

pub async fn get(
    tx: &mut Tx,
    tenant_id: Uuid,
    vs: &VirtualSiteRef,
    lock: bool,
) -> Result<VirtualSiteRecord, SiteError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {VS_COLS} FROM sites.virtual_sites \
         WHERE tenant_id = $1 AND namespace = $2 AND name = $3{lock}"
    )))
    .bind(tenant_id)
    .bind(&vs.parent.namespace)
    .bind(&vs.id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .map(vs_row)
    .ok_or_else(|| SiteError::NotFound(vs.name()))
}

pub async fn list(
    tx: &mut Tx,
    tenant_id: Uuid,
    parent: &NamespaceRef,
    after: &str,
    limit: i64,
) -> Result<Vec<VirtualSiteRecord>, SiteError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {VS_COLS} FROM sites.virtual_sites \
         WHERE tenant_id = $1 AND namespace = $2 AND name > $3 ORDER BY name LIMIT $4"
    )))
    .bind(tenant_id)
    .bind(&parent.namespace)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(rows.into_iter().map(vs_row).collect())
}

/// Every virtual site of one namespace (`Some((tenant uid, namespace))`) or
/// of every tenant (`None`, system scope only).
pub async fn all_in(
    tx: &mut Tx,
    scope: Option<(Uuid, &str)>,
) -> Result<Vec<VirtualSiteRecord>, SiteError> {
    let (tenant_id, namespace) = scope.unzip();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {VS_COLS} FROM sites.virtual_sites \
         WHERE ($1::uuid IS NULL OR (tenant_id = $1 AND namespace = $2)) \
         ORDER BY tenant, namespace, name"
    )))
    .bind(tenant_id)
    .bind(namespace)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(rows.into_iter().map(vs_row).collect())
}

pub async fn update(
    tx: &mut Tx,
    current: &VirtualSiteRecord,
    display_name: &str,
    selector: &SiteSelector,
) -> Result<VirtualSiteRecord, SiteError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE sites.virtual_sites SET display_name = $2, site_selector = $3, \
         version = version + 1, update_time = now() \
         WHERE id = $1 AND version = $4 RETURNING {VS_COLS}"
    )))
    .bind(current.id)
    .bind(display_name)
    .bind(selector.as_str())
    .bind(current.version)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .map(vs_row)
    .ok_or_else(|| SiteError::Aborted(current.vs.name()))
}

pub async fn delete(tx: &mut Tx, current: &VirtualSiteRecord) -> Result<(), SiteError> {
    let done = sqlx::query("DELETE FROM sites.virtual_sites WHERE id = $1 AND version = $2")
        .bind(current.id)
        .bind(current.version)
        .execute(&mut **tx)
        .await
        .map_err(DbError::from)?;
    if done.rows_affected() == 0 {
        return Err(SiteError::Aborted(current.vs.name()));
    }
    Ok(())
}

/// Deletes the virtual sites of a deleted tenant (in `namespace` only, when
/// given) created before `before`; returns how many.
pub async fn delete_deleted(
    tx: &mut Tx,
    tenant_id: Uuid,
    namespace: Option<&str>,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<u64, SiteError> {
    let done = sqlx::query(
        "DELETE FROM sites.virtual_sites \
         WHERE tenant_id = $1 AND ($2::text IS NULL OR namespace = $2) AND create_time <= $3",
    )
    .bind(tenant_id)
    .bind(namespace)
    .bind(before)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(done.rows_affected())
}
