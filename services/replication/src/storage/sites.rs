//! SQL for `replication.sites`: cursors, sessions and liveness.

use chrono::{DateTime, Utc};
use manifold_db::{DbError, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

/// What a site left behind at its last session.
#[derive(Debug, Clone, Default)]
pub struct StoredCursor {
    pub acked_revision: i64,
    pub placement: Option<serde_json::Value>,
}

/// Records a new stream of `site` (the newest stream wins) and returns the
/// cursor stored before it.
pub async fn connect(
    tx: &mut Tx,
    site: &str,
    session_id: Uuid,
    replica: &str,
    replica_url: Option<&str>,
    agent_version: &str,
) -> Result<StoredCursor, DbError> {
    let before = sqlx::query(
        "SELECT acked_revision, placement FROM replication.sites WHERE site = $1 FOR UPDATE",
    )
    .bind(site)
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| StoredCursor {
        acked_revision: r.get("acked_revision"),
        placement: r.get("placement"),
    })
    .unwrap_or_default();
    sqlx::query(
        "INSERT INTO replication.sites (site, session_id, replica, replica_url, connected, \
             connect_time, last_seen_time, agent_version, offline, in_flight) \
         VALUES ($1, $2, $3, $5, true, now(), now(), $4, false, 0) \
         ON CONFLICT (site) DO UPDATE SET session_id = $2, replica = $3, replica_url = $5, \
             connected = true, connect_time = now(), last_seen_time = now(), \
             disconnect_time = NULL, agent_version = $4, offline = false, in_flight = 0",
    )
    .bind(site)
    .bind(session_id)
    .bind(replica)
    .bind(agent_version)
    .bind(replica_url)
    .execute(&mut **tx)
    .await?;
    Ok(before)
}

/// The stream ended (only if it is still the site's current one).
pub async fn disconnect(tx: &mut Tx, site: &str, session_id: Uuid) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE replication.sites SET connected = false, disconnect_time = now(), in_flight = 0 \
         WHERE site = $1 AND session_id = $2 AND connected",
    )
    .bind(site)
    .bind(session_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A heartbeat at `time`: liveness, plus the node list when reported.
/// Returns the node list now stored.
pub async fn heartbeat_any(
    tx: &mut Tx,
    site: &str,
    time: DateTime<Utc>,
    nodes: Option<&serde_json::Value>,
) -> Result<serde_json::Value, DbError> {
    let stored: Option<serde_json::Value> = sqlx::query_scalar(
        "UPDATE replication.sites SET last_heartbeat_time = $2, last_seen_time = now(), \
             nodes = coalesce($3, nodes) \
         WHERE site = $1 RETURNING nodes",
    )
    .bind(site)
    .bind(time)
    .bind(nodes)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(stored.unwrap_or_else(|| serde_json::Value::Array(Vec::new())))
}

/// One live session's numbers, written periodically.
#[derive(Debug, Clone)]
pub struct SessionTouch {
    pub site: String,
    pub session_id: Uuid,
    pub acked_revision: i64,
    /// Set when the cursor moved since the last write.
    pub placement: Option<serde_json::Value>,
    pub in_flight: i64,
    /// The newest heartbeat since the last write, if any.
    pub heartbeat_time: Option<DateTime<Utc>>,
}

/// Refreshes the sessions this replica holds: liveness, cursor, in-flight
/// count. Returns the sites whose stream another replica (or a newer
/// stream) has taken over.
pub async fn touch(tx: &mut Tx, sessions: &[SessionTouch]) -> Result<Vec<String>, DbError> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let sites: Vec<&str> = sessions.iter().map(|s| s.site.as_str()).collect();
    let ids: Vec<Uuid> = sessions.iter().map(|s| s.session_id).collect();
    let acked: Vec<i64> = sessions.iter().map(|s| s.acked_revision).collect();
    let placements: Vec<Option<serde_json::Value>> =
        sessions.iter().map(|s| s.placement.clone()).collect();
    let in_flight: Vec<i64> = sessions.iter().map(|s| s.in_flight).collect();
    let heard: Vec<Option<DateTime<Utc>>> = sessions.iter().map(|s| s.heartbeat_time).collect();
    let updated: Vec<String> = sqlx::query_scalar(
        "UPDATE replication.sites s SET last_seen_time = now(), \
             acked_revision = greatest(s.acked_revision, u.acked), \
             placement = coalesce(u.placement, s.placement), in_flight = u.in_flight, \
             last_heartbeat_time = greatest(s.last_heartbeat_time, u.heard) \
         FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::jsonb[], $5::bigint[], \
                     $6::timestamptz[]) \
             AS u(site, session_id, acked, placement, in_flight, heard) \
         WHERE s.site = u.site AND s.session_id = u.session_id AND s.connected \
         RETURNING s.site",
    )
    .bind(&sites)
    .bind(&ids)
    .bind(&acked)
    .bind(&placements)
    .bind(&in_flight)
    .bind(&heard)
    .fetch_all(&mut **tx)
    .await?;
    Ok(sites
        .into_iter()
        .filter(|s| !updated.iter().any(|u| u == s))
        .map(str::to_owned)
        .collect())
}

/// A site whose stream is gone for longer than the timeout.
#[derive(Debug, Clone)]
pub struct StaleSite {
    pub site: String,
    pub last_heartbeat_time: Option<DateTime<Utc>>,
    pub agent_version: String,
    pub nodes: serde_json::Value,
}

/// Sites not yet reported offline whose stream ended, or whose replica
/// stopped refreshing it, more than `timeout_secs` ago. Locks them.
pub async fn stale(tx: &mut Tx, timeout_secs: f64) -> Result<Vec<StaleSite>, DbError> {
    let rows = sqlx::query(
        "SELECT site, last_heartbeat_time, agent_version, nodes FROM replication.sites \
         WHERE NOT offline AND ( \
             (connected AND last_seen_time < now() - make_interval(secs => $1)) OR \
             (NOT connected AND disconnect_time < now() - make_interval(secs => $1))) \
         ORDER BY site LIMIT 1000 FOR UPDATE SKIP LOCKED",
    )
    .bind(timeout_secs)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StaleSite {
            site: r.get("site"),
            last_heartbeat_time: r.get("last_heartbeat_time"),
            agent_version: r.get("agent_version"),
            nodes: r.get("nodes"),
        })
        .collect())
}

/// What the sites table knows of one site's nodes.
#[derive(Debug, Clone)]
pub struct SiteNodes {
    pub site: String,
    /// `[{"name": …, "ready": …}]`, as of the last heartbeat.
    pub nodes: serde_json::Value,
    pub offline: bool,
    pub last_heartbeat_time: Option<DateTime<Utc>>,
}

/// The stored node lists of `sites` (those the table knows), by site.
pub async fn nodes_of(tx: &mut Tx, sites: &[String]) -> Result<Vec<SiteNodes>, DbError> {
    if sites.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT site, nodes, offline, last_heartbeat_time FROM replication.sites \
         WHERE site = ANY($1) ORDER BY site",
    )
    .bind(sites)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SiteNodes {
            site: r.get("site"),
            nodes: r.get("nodes"),
            offline: r.get("offline"),
            last_heartbeat_time: r.get("last_heartbeat_time"),
        })
        .collect())
}

/// Those of `sites` that are reported offline.
pub async fn offline_among(tx: &mut Tx, sites: &[String]) -> Result<Vec<String>, DbError> {
    if sites.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query("SELECT site FROM replication.sites WHERE offline AND site = ANY($1)")
        .bind(sites)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.iter().map(|r| r.get("site")).collect())
}

pub async fn mark_offline(tx: &mut Tx, site: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE replication.sites SET offline = true, \
             connected = false, disconnect_time = coalesce(disconnect_time, now()) \
         WHERE site = $1",
    )
    .bind(site)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A live session as stored.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub site: String,
    pub replica: String,
    pub acked_revision: i64,
    pub in_flight: i64,
    pub connect_time: Option<DateTime<Utc>>,
    pub agent_version: String,
    pub last_heartbeat_time: Option<DateTime<Utc>>,
}

/// Connected sites whose replica refreshed them within `fresh_secs`.
pub async fn sessions(tx: &mut Tx, fresh_secs: f64) -> Result<Vec<SessionRow>, DbError> {
    let rows = sqlx::query(
        "SELECT site, coalesce(replica, '') AS replica, acked_revision, in_flight, connect_time, \
             agent_version, last_heartbeat_time \
         FROM replication.sites \
         WHERE connected AND last_seen_time >= now() - make_interval(secs => $1) ORDER BY site",
    )
    .bind(fresh_secs)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SessionRow {
            site: r.get("site"),
            replica: r.get("replica"),
            acked_revision: r.get("acked_revision"),
            in_flight: r.get("in_flight"),
            connect_time: r.get("connect_time"),
            agent_version: r.get("agent_version"),
            last_heartbeat_time: r.get("last_heartbeat_time"),
        })
        .collect())
}

/// The replica holding a site's live stream.
#[derive(Debug, Clone)]
pub struct Holder {
    pub replica: String,
    pub url: Option<String>,
}

/// The replica holding `site`'s live stream, if any.
pub async fn holder(tx: &mut Tx, site: &str) -> Result<Option<Holder>, DbError> {
    let row = sqlx::query(
        "SELECT coalesce(replica, '') AS replica, replica_url FROM replication.sites \
         WHERE site = $1 AND connected",
    )
    .bind(site)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| Holder {
        replica: r.get("replica"),
        url: r.get("replica_url"),
    }))
}
