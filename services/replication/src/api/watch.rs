//! WatchPods: the current pods (when starting from 0), a bookmark, then
//! every change of the vK8s's pods, woken by LISTEN/NOTIFY so a change
//! written by any replica reaches watchers on every replica.

use std::{sync::Arc, time::Duration};

use manifold_db::Scope;
use manifold_proto::replication::v1 as pb;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use uuid::Uuid;

use super::{PodStream, pod_proto};
use crate::Shared;
use crate::domain::status::StoredPod;
use crate::error::ReplicationError;
use crate::storage;

const PAGE: i64 = 500;
/// Without notifications, the database is read this often anyway.
const POLL: Duration = Duration::from_secs(2);
/// An idle watch carries a bookmark this often.
const BOOKMARK_EVERY: Duration = Duration::from_secs(15);

fn event(p: &StoredPod) -> pb::PodEvent {
    pb::PodEvent {
        r#type: if p.deleted {
            pb::pod_event::Type::Delete
        } else {
            pb::pod_event::Type::Upsert
        } as i32,
        pod: Some(pod_proto(p)),
        revision: p.revision,
    }
}

fn bookmark(revision: i64) -> pb::PodEvent {
    pb::PodEvent {
        r#type: pb::pod_event::Type::Bookmark as i32,
        pod: None,
        revision,
    }
}

fn out_of_range(from: i64) -> ReplicationError {
    ReplicationError::OutOfRange(format!(
        "pod changes after revision {from} are no longer kept; list again (from_revision 0)"
    ))
}

pub async fn start(
    shared: Arc<Shared>,
    vk: String,
    tenant: Uuid,
    from: i64,
) -> Result<PodStream, ReplicationError> {
    // Subscribe before the first read so nothing falls in between.
    let notices = shared.pod_hub.subscribe();
    let name = vk.clone();
    let (initial, mut last) = if from == 0 {
        let (pods, head) = manifold_db::transaction!(
            shared.db,
            "replication_watch_list",
            Scope::Tenant(tenant),
            ReplicationError,
            |tx| { Ok(storage::pods::list(tx, &name).await?) }
        )?;
        let mut events: Vec<pb::PodEvent> = pods.iter().map(event).collect();
        events.push(bookmark(head));
        (events, head)
    } else {
        let (_, compacted) = manifold_db::transaction!(
            shared.db,
            "replication_watch_check",
            Scope::Tenant(tenant),
            ReplicationError,
            |tx| { Ok(storage::pods::after(tx, &name, from, 0).await?) }
        )?;
        if from < compacted {
            return Err(out_of_range(from));
        }
        (Vec::new(), from)
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        for e in initial {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
        let mut notices = notices;
        let mut idle_since = tokio::time::Instant::now();
        loop {
            let name = vk.clone();
            let after = last;
            let read = manifold_db::transaction!(
                shared.db,
                "replication_watch_read",
                Scope::Tenant(tenant),
                ReplicationError,
                |tx| { Ok(storage::pods::after(tx, &name, after, PAGE).await?) }
            );
            let (rows, compacted) = match read {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(Status::from(e))).await;
                    return;
                }
            };
            if last < compacted {
                let _ = tx.send(Err(out_of_range(last).into())).await;
                return;
            }
            let full = rows.len() as i64 == PAGE;
            for p in &rows {
                last = last.max(p.revision);
                if tx.send(Ok(event(p))).await.is_err() {
                    return;
                }
            }
            if !rows.is_empty() {
                idle_since = tokio::time::Instant::now();
            }
            if full {
                continue;
            }
            if idle_since.elapsed() >= BOOKMARK_EVERY {
                idle_since = tokio::time::Instant::now();
                if tx.send(Ok(bookmark(last))).await.is_err() {
                    return;
                }
            }
            // Wait for a notice about this vK8s (or any, after a lag), a
            // poll, the reader leaving, or shutdown.
            let deadline = tokio::time::sleep(POLL);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = shared.stop.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the server is shutting down; watch again"))).await;
                        return;
                    }
                    _ = tx.closed() => return,
                    _ = &mut deadline => break,
                    n = notices.recv() => match n {
                        Ok(changed) if *changed == *vk || &*changed == "*" => break,
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => {
                            (&mut deadline).await;
                            break;
                        }
                    },
                }
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
