//! Background work of one replica: the placement index and the shared
//! feed, session bookkeeping (cursors and liveness in Postgres), the
//! offline marker (one replica at a time, by advisory lock), LISTEN for
//! pod changes and cross-replica commands, and tombstone purging.

use std::{sync::Arc, time::Duration};

use manifold_db::{Scope, sqlx, sqlx::postgres::PgListener};
use manifold_proto::sites::v1 as spb;

use crate::Shared;
use crate::api::Command;
use crate::error::ReplicationError;
use crate::session::inbound::StoredNode;
use crate::storage::{self, COMMANDS_CHANNEL, PODS_CHANNEL, STATUS_CHANNEL, sites::SessionTouch};
use crate::upstream::convert::ts;

/// Advisory lock keys ("mfrepl" + a job number).
const OFFLINE_LOCK: i64 = 0x6d66_7265_706c_0001;
const PURGE_LOCK: i64 = 0x6d66_7265_706c_0002;

/// How often pending cursors are written.
const CURSOR_FLUSH: Duration = Duration::from_millis(500);
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Observed state of a deleted tenant is dropped this long after the gateway
/// deleted its virtual clusters: placement (polled every 2 s) has let go of
/// them by then, so sites' late reports on them are refused, not stored.
const DELETED_TENANT_GRACE: Duration = Duration::from_secs(5);

pub async fn run(shared: Arc<Shared>) {
    let stop = shared.stop.clone();
    tokio::join!(
        crate::placement::run(
            shared.placement.clone(),
            shared.upstream.clone(),
            shared.config.cluster_poll_interval,
            stop.clone(),
        ),
        crate::feed::run_hub(
            shared.ring.clone(),
            shared.upstream.clone(),
            shared.placement.clone(),
            stop.clone(),
        ),
        keep_sessions(&shared),
        mark_offline(&shared),
        listen(&shared),
        purge_tombstones(&shared),
        purge_deleted_tenants(&shared),
    );
}

/// Writes moved cursors often and every live session's liveness every
/// third of the heartbeat timeout; ends sessions another stream took over.
async fn keep_sessions(shared: &Shared) {
    let touch_every = (shared.config.heartbeat_timeout / 3).max(Duration::from_secs(1));
    let mut last_touch = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(CURSOR_FLUSH) => {}
        }
        let touch_all = last_touch.elapsed() >= touch_every;
        let sessions = shared.sessions.all();
        let mut rows = Vec::new();
        let mut taken = Vec::new();
        for h in &sessions {
            let cursor = h.take_cursor();
            if cursor.is_none() && !touch_all {
                continue;
            }
            rows.push(SessionTouch {
                site: h.site.clone(),
                session_id: h.id,
                acked_revision: cursor.as_ref().map_or(0, |(r, _)| *r),
                placement: cursor.as_ref().map(|(_, m)| m.to_json()),
                in_flight: h.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                heartbeat_time: if touch_all { h.take_heartbeat() } else { None },
            });
            taken.push((h.clone(), cursor));
        }
        if rows.is_empty() {
            continue;
        }
        let result = manifold_db::transaction!(
            shared.db,
            "replication_touch",
            Scope::System,
            ReplicationError,
            |tx| { Ok(storage::sites::touch(tx, &rows).await?) }
        );
        match result {
            Ok(lost) => {
                if touch_all {
                    last_touch = tokio::time::Instant::now();
                    let beats: Vec<spb::SiteHeartbeat> = rows
                        .iter()
                        .filter(|r| !lost.contains(&r.site))
                        .filter_map(|r| {
                            r.heartbeat_time.map(|t| spb::SiteHeartbeat {
                                site: format!("sites/{}", r.site),
                                heartbeat_time: Some(ts(t)),
                            })
                        })
                        .collect();
                    report_heartbeats(shared, beats).await;
                }
                for site in lost {
                    if let Some(h) = shared.sessions.get(&site) {
                        h.end(tonic::Status::aborted(
                            "another stream of this site took over; this one ends",
                        ));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording session cursors");
                for (h, cursor) in taken {
                    if let Some((r, m)) = cursor
                        && h.take_cursor().is_none()
                    {
                        h.record_ack(r, &m);
                    }
                }
            }
        }
    }
}

/// Most heartbeats per registry call (the registry takes up to 20,000).
const HEARTBEATS_PER_CALL: usize = 10_000;

/// Tells the registry, in as few calls as the batch allows, that these
/// sites' agents were heard from; a site the registry no longer sees as
/// live gets a full status report with its next heartbeat.
async fn report_heartbeats(shared: &Shared, beats: Vec<spb::SiteHeartbeat>) {
    for chunk in beats.chunks(HEARTBEATS_PER_CALL) {
        let mut client = shared.upstream.registration();
        let call = client.report_site_heartbeats(shared.upstream.request(
            spb::ReportSiteHeartbeatsRequest {
                heartbeats: chunk.to_vec(),
            },
        ));
        match tokio::time::timeout(Duration::from_secs(10), call).await {
            Ok(Ok(reply)) => {
                for name in reply.into_inner().not_live {
                    let site = name.strip_prefix("sites/").unwrap_or(&name);
                    if let Some(h) = shared.sessions.get(site) {
                        h.request_report();
                    }
                }
            }
            Ok(Err(s)) => {
                tracing::warn!(code = ?s.code(), error = %s.message(), sites = chunk.len(),
                    "reporting heartbeats to the site registry");
            }
            Err(_) => {
                tracing::warn!(
                    sites = chunk.len(),
                    "reporting heartbeats to the site registry timed out"
                );
            }
        }
    }
}

/// Marks sites whose stream is gone longer than the heartbeat timeout
/// OFFLINE in the registry (and their pods as possibly stale). Every replica
/// runs this; a transaction-level advisory lock lets one at a time work.
async fn mark_offline(shared: &Shared) {
    let every = (shared.config.heartbeat_timeout / 4).max(Duration::from_secs(1));
    let timeout = shared.config.heartbeat_timeout.as_secs_f64();
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let result = manifold_db::transaction!(
            shared.db,
            "replication_mark_offline",
            Scope::System,
            ReplicationError,
            |tx| {
                let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(OFFLINE_LOCK)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(manifold_db::DbError::from)?;
                if !locked {
                    return Ok(0usize);
                }
                let stale = storage::sites::stale(tx, timeout).await?;
                let mut marked = 0;
                for s in stale {
                    // Nodes of a site nobody hears from are not known to be ready.
                    let nodes: Vec<spb::Node> =
                        serde_json::from_value::<Vec<StoredNode>>(s.nodes.clone())
                            .unwrap_or_default()
                            .into_iter()
                            .map(|n| n.into_node_ready(Some(false)))
                            .collect();
                    let reply = shared
                        .upstream
                        .registration()
                        .report_site_status(shared.upstream.request(spb::ReportSiteStatusRequest {
                            site: format!("sites/{}", s.site),
                            state: spb::site::State::Offline as i32,
                            agent_version: s.agent_version.clone(),
                            nodes,
                            // The last ONLINE report's time: a newer report (the
                            // site reconnected elsewhere) wins over this one.
                            heartbeat_time: s.last_heartbeat_time.map(ts),
                            state_message: "the agent's stream is gone".into(),
                        }))
                        .await;
                    match reply {
                        Ok(_) => {}
                        // Decommissioned or deleted: nothing to mark there.
                        Err(st)
                            if matches!(
                                st.code(),
                                tonic::Code::FailedPrecondition | tonic::Code::NotFound
                            ) => {}
                        Err(st) => {
                            tracing::warn!(site = %s.site, error = %st.message(), "reporting a site OFFLINE; retrying later");
                            continue;
                        }
                    }
                    storage::sites::mark_offline(tx, &s.site).await?;
                    storage::report::set_site_offline(tx, &s.site, true).await?;
                    tracing::info!(site = %s.site, "site marked offline");
                    marked += 1;
                }
                Ok(marked)
            }
        );
        if let Err(e) = result {
            tracing::warn!(error = %e, "marking stale sites offline");
        }
    }
}

/// LISTEN for pod changes (wakes WatchPods) and commands for sites whose
/// stream this replica holds. Reconnects with back-off; after a reconnect
/// every watcher re-reads.
async fn listen(shared: &Shared) {
    let mut delay = Duration::from_millis(200);
    loop {
        let connected = async {
            let mut l = PgListener::connect_with(shared.db.pool()).await?;
            l.listen_all([PODS_CHANNEL, STATUS_CHANNEL, COMMANDS_CHANNEL])
                .await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = shared.stop.cancelled() => return,
            l = connected => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; watchers poll until it works");
                    tokio::select! {
                        _ = shared.stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        delay = Duration::from_millis(200);
        shared.pod_hub.notify(None);
        shared.status_hub.notify(None);
        loop {
            let n = tokio::select! {
                _ = shared.stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match n {
                Ok(Some(n)) if n.channel() == PODS_CHANNEL => {
                    shared.pod_hub.notify(Some(n.payload()))
                }
                Ok(Some(n)) if n.channel() == STATUS_CHANNEL => {
                    shared.status_hub.notify(Some(n.payload()))
                }
                Ok(Some(n)) => deliver_command(shared, n.payload()),
                Ok(None) => {
                    shared.pod_hub.notify(None);
                    shared.status_hub.notify(None);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "notification stream failed; reconnecting");
                    break;
                }
            }
        }
    }
}

fn deliver_command(shared: &Shared, payload: &str) {
    let Ok(command) = serde_json::from_str::<Command>(payload) else {
        tracing::warn!("malformed replication command ignored");
        return;
    };
    if let Some(h) = shared.sessions.get(&command.site) {
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), h.commands.send(command.message()))
                    .await;
        });
    }
}

async fn purge_tombstones(shared: &Shared) {
    let ttl = shared.config.pod_tombstone_ttl.as_secs_f64();
    let event_ttl = shared.config.event_ttl.as_secs_f64();
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(PURGE_EVERY) => {}
        }
        let result = manifold_db::transaction!(
            shared.db,
            "replication_purge",
            Scope::System,
            ReplicationError,
            |tx| {
                let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(PURGE_LOCK)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(manifold_db::DbError::from)?;
                if !locked {
                    return Ok(0);
                }
                storage::events::purge(tx, event_ttl).await?;
                Ok(storage::pods::purge_tombstones(tx, ttl).await?)
            }
        );
        if let Err(e) = result {
            tracing::warn!(error = %e, "purging pod tombstones");
        }
    }
}

/// Drops observed state of deleted tenants and namespaces (one replica per
/// pass, by the cleaner's advisory lock).
async fn purge_deleted_tenants(shared: &Shared) {
    use manifold_db::deletions::{self, Cleaner};
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(deletions::POLL_INTERVAL) => {}
        }
        let result = manifold_db::transaction!(
            shared.db,
            "replication_tenant_deletion",
            Scope::System,
            ReplicationError,
            |tx| {
                let after = Some((Cleaner::Gateway, DELETED_TENANT_GRACE));
                for d in deletions::claim(tx, Cleaner::Replication, after, 8).await? {
                    let rows = storage::tenants::purge(tx, &d).await?;
                    deletions::done(tx, Cleaner::Replication, d.id).await?;
                    tracing::info!(
                        deleted = %d.resource(),
                        rows,
                        "dropped the observed state of a deleted tenant or namespace"
                    );
                }
                Ok(())
            }
        );
        if let Err(e) = result {
            tracing::warn!(error = %e, "dropping deleted tenants' observed state");
        }
    }
}
