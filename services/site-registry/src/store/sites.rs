//! `sites.sites`: the sites themselves, their lifecycle and observed status.

use manifold_db::{DbError, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

use super::{Visible, labels_json, labels_of, visible_sql};
use crate::domain::*;
use crate::error::SiteError;

const SITE_COLS: &str = "s.id, s.tenant_id, s.owner_tenant, s.name, s.display_name, s.location, \
     s.provider_kind, s.labels, s.state, s.state_message, s.agent_version, s.nodes, s.last_heartbeat_time, \
     s.register_time, s.decommission_time, s.version, s.create_time, s.update_time, s.pod_security";

fn site_row(r: sqlx::postgres::PgRow) -> SiteRecord {
    let owner = match r.get::<Option<String>, _>("owner_tenant") {
        Some(t) => Owner::Tenant(t),
        None => Owner::Provider,
    };
    SiteRecord {
        id: r.get("id"),
        tenant_id: r.get("tenant_id"),
        owner,
        site: r.get("name"),
        spec: SiteSpec {
            display_name: r.get("display_name"),
            location: r.get("location"),
            provider_kind: ProviderKind::parse(r.get::<&str, _>("provider_kind")),
            labels: labels_of(r.get("labels")),
            pod_security: PodSecurityLevel::parse(r.get::<&str, _>("pod_security"))
                .unwrap_or_default(),
        },
        state: SiteState::parse(r.get::<&str, _>("state")),
        state_message: r.get("state_message"),
        agent_version: r.get("agent_version"),
        nodes: serde_json::from_value(r.get("nodes")).unwrap_or_default(),
        last_heartbeat_time: r.get("last_heartbeat_time"),
        register_time: r.get("register_time"),
        decommission_time: r.get("decommission_time"),
        version: r.get("version"),
        create_time: r.get("create_time"),
        update_time: r.get("update_time"),
    }
}

pub async fn insert_site(
    tx: &mut Tx,
    owner: &Owner,
    tenant_id: Option<Uuid>,
    site: &str,
    spec: &SiteSpec,
) -> Result<SiteRecord, SiteError> {
    let owner_tenant = match owner {
        Owner::Provider => None,
        Owner::Tenant(t) => Some(t.as_str()),
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO sites.sites AS s (id, tenant_id, owner_tenant, name, display_name, location, \
         provider_kind, labels, pod_security) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING {SITE_COLS}"
    )))
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(owner_tenant)
    .bind(site)
    .bind(&spec.display_name)
    .bind(&spec.location)
    .bind(spec.provider_kind.as_str())
    .bind(labels_json(&spec.labels))
    .bind(spec.pod_security.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match DbError::from(e) {
        // Site names are global: they are certificate identities.
        DbError::UniqueViolation(_) => SiteError::AlreadyExists(site_name(site)),
        other => other.into(),
    })?;
    Ok(site_row(row))
}

/// A site the transaction may see and `visible` allows; `lock` takes the row
/// for update.
pub async fn get_site(
    tx: &mut Tx,
    site: &str,
    visible: &Visible,
    lock: bool,
) -> Result<SiteRecord, SiteError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SITE_COLS} FROM sites.sites s WHERE s.name = $1 AND {}{lock}",
        visible_sql(2)
    )))
    .bind(site)
    .bind(visible.filter())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .map(site_row)
    .ok_or_else(|| SiteError::NotFound(site_name(site)))
}

/// Sites after `after` by name, at most `limit`.
pub async fn list_sites(
    tx: &mut Tx,
    visible: &Visible,
    after: &str,
    limit: i64,
    show_decommissioned: bool,
) -> Result<Vec<SiteRecord>, SiteError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SITE_COLS} FROM sites.sites s WHERE s.name > $1 AND {} \
         AND ($3 OR s.state <> 'decommissioned') ORDER BY s.name LIMIT $4",
        visible_sql(2)
    )))
    .bind(after)
    .bind(visible.filter())
    .bind(show_decommissioned)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(rows.into_iter().map(site_row).collect())
}

/// Writes the operator's fields when the row is still at `current.version`.
pub async fn update_spec(
    tx: &mut Tx,
    current: &SiteRecord,
    spec: &SiteSpec,
) -> Result<SiteRecord, SiteError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE sites.sites AS s SET display_name = $2, location = $3, provider_kind = $4, \
         labels = $5, pod_security = $7, version = version + 1, update_time = now() \
         WHERE id = $1 AND version = $6 RETURNING {SITE_COLS}"
    )))
    .bind(current.id)
    .bind(&spec.display_name)
    .bind(&spec.location)
    .bind(spec.provider_kind.as_str())
    .bind(labels_json(&spec.labels))
    .bind(current.version)
    .bind(spec.pod_security.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .map(site_row)
    .ok_or_else(|| SiteError::Aborted(current.name()))
}

/// Moves a site to `decommissioned` (terminal), revokes every certificate it
/// holds and drops its unused registration tokens.
pub async fn decommission(tx: &mut Tx, current: &SiteRecord) -> Result<SiteRecord, SiteError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE sites.sites AS s SET state = 'decommissioned', decommission_time = now(), \
         version = version + 1, update_time = now() \
         WHERE id = $1 AND version = $2 RETURNING {SITE_COLS}"
    )))
    .bind(current.id)
    .bind(current.version)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .ok_or_else(|| SiteError::Aborted(current.name()))?;
    super::credentials::revoke_certs(tx, current.id, None).await?;
    sqlx::query("DELETE FROM sites.registration_tokens WHERE site_id = $1")
        .bind(current.id)
        .execute(&mut **tx)
        .await
        .map_err(DbError::from)?;
    Ok(site_row(row))
}

/// Applies an observed status unless the site is decommissioned or the report
/// is older than the last one applied. Status is not configuration: neither
/// the version (etag) nor `update_time` change.
pub async fn apply_status(
    tx: &mut Tx,
    current: &SiteRecord,
    report: &StatusReport,
) -> Result<SiteRecord, SiteError> {
    if current.state == SiteState::Decommissioned {
        return Err(SiteError::FailedPrecondition(format!(
            "{} is decommissioned; it takes no status reports",
            current.name()
        )));
    }
    if current
        .last_heartbeat_time
        .is_some_and(|last| last > report.heartbeat_time)
    {
        return Ok(current.clone());
    }
    let nodes = serde_json::to_value(&report.nodes).unwrap_or_default();
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE sites.sites AS s SET state = $2, agent_version = $3, nodes = $4, \
         last_heartbeat_time = $5, state_message = $6 \
         WHERE id = $1 AND state <> 'decommissioned' RETURNING {SITE_COLS}"
    )))
    .bind(current.id)
    .bind(report.state.as_str())
    .bind(&report.agent_version)
    .bind(nodes)
    .bind(report.heartbeat_time)
    .bind(&report.state_message)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .ok_or_else(|| SiteError::NotFound(current.name()))?;
    Ok(site_row(row))
}

/// Heartbeat times of many sites at once (never backwards), for the sites
/// that are ONLINE or DEGRADED. Returns how many listed sites are live and
/// those that are not (absent, OFFLINE, never connected, decommissioned).
pub async fn touch_heartbeats(
    tx: &mut Tx,
    sites: &[String],
    times: &[chrono::DateTime<chrono::Utc>],
) -> Result<(u64, Vec<String>), SiteError> {
    let live: Vec<String> = sqlx::query_scalar(
        "WITH beats AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS u(name, t)), \
         moved AS ( \
             UPDATE sites.sites s SET last_heartbeat_time = b.t FROM beats b \
             WHERE s.name = b.name AND s.state IN ('online', 'degraded') \
               AND (s.last_heartbeat_time IS NULL OR s.last_heartbeat_time < b.t)) \
         SELECT s.name FROM sites.sites s JOIN beats b ON s.name = b.name \
         WHERE s.state IN ('online', 'degraded')",
    )
    .bind(sites)
    .bind(times)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    let live: std::collections::HashSet<String> = live.into_iter().collect();
    let not_live = sites
        .iter()
        .filter(|s| !live.contains(*s))
        .cloned()
        .collect();
    Ok((live.len() as u64, not_live))
}

/// Records a successful registration.
pub async fn mark_registered(
    tx: &mut Tx,
    site_id: Uuid,
    agent_version: &str,
) -> Result<(), SiteError> {
    sqlx::query(
        "UPDATE sites.sites SET register_time = now(), \
         agent_version = CASE WHEN $2 = '' THEN agent_version ELSE $2 END WHERE id = $1",
    )
    .bind(site_id)
    .bind(agent_version)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(())
}

/// Every site placement may use (not decommissioned) among `visible`.
pub async fn live_candidates(
    tx: &mut Tx,
    visible: &Visible,
) -> Result<Vec<PlacementCandidate>, SiteError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT s.name, s.tenant_id, s.labels, s.pod_security FROM sites.sites s \
         WHERE s.state <> 'decommissioned' AND {} ORDER BY s.name",
        visible_sql(1)
    )))
    .bind(visible.filter())
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(rows
        .into_iter()
        .map(|r| PlacementCandidate {
            site: r.get("name"),
            tenant_id: r.get("tenant_id"),
            labels: labels_of(r.get("labels")),
            pod_security: PodSecurityLevel::parse(r.get::<&str, _>("pod_security"))
                .unwrap_or_default(),
        })
        .collect())
}

/// Decommissions every site of a deleted tenant (as [`decommission`] does
/// for one: certificates revoked, unused registration tokens dropped);
/// returns their names. System scope.
pub async fn decommission_tenant(tx: &mut Tx, tenant_id: Uuid) -> Result<Vec<String>, SiteError> {
    let rows = sqlx::query(
        "UPDATE sites.sites SET state = 'decommissioned', decommission_time = now(), \
         version = version + 1, update_time = now() \
         WHERE tenant_id = $1 AND state <> 'decommissioned' RETURNING id, name",
    )
    .bind(tenant_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    let mut names = Vec::with_capacity(rows.len());
    for r in rows {
        let id: Uuid = r.get("id");
        super::credentials::revoke_certs(tx, id, None).await?;
        sqlx::query("DELETE FROM sites.registration_tokens WHERE site_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(DbError::from)?;
        names.push(r.get("name"));
    }
    Ok(names)
}
