//! WatchObjectStatus: the sites' status of a vK8s's objects, pushed as it
//! changes. However many streams follow one vK8s, a process runs one reader
//! for it: woken by LISTEN/NOTIFY on [`crate::storage::STATUS_CHANNEL`] (any
//! replica's writes reach every replica), it reads the objects whose status
//! changed since its last read, once, and broadcasts them to every stream of
//! that vK8s. With nobody following a vK8s nothing runs; with a thousand
//! kubectl watches of it, a status change still costs one read.
//!
//! Change numbers come from a sequence, so a transaction holding a lower
//! number may commit after a reader saw a higher one; each read also looks
//! [`LOOK_BACK`] back by change time, and what it already sent it does not
//! send again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use manifold_db::Scope;
use manifold_proto::replication::v1 as pb;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use uuid::Uuid;

use crate::Shared;
use crate::domain::{group_of, status::ObjectState};
use crate::error::ReplicationError;
use crate::storage;
use crate::upstream::convert::{to_struct, ts};

/// Events kept for a slow stream; one that falls further behind ends.
const CAPACITY: usize = 1024;
/// Without notifications (LISTEN reconnecting), read this often anyway.
const POLL: Duration = Duration::from_secs(10);
/// How far back by change time each read looks as well.
const LOOK_BACK: Duration = Duration::from_secs(5);

pub type StatusStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<pb::ObjectStatusEvent, Status>> + Send>>;

type Event = Arc<pb::ObjectStatusEvent>;

/// The readers of this process, by vK8s.
#[derive(Default)]
pub struct StatusTopics {
    topics: Mutex<HashMap<String, broadcast::Sender<Event>>>,
}

impl StatusTopics {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Event>>> {
        self.topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Subscribes to `vk`'s changes, starting its reader if none runs.
fn subscribe(shared: &Arc<Shared>, vk: &str, tenant: Uuid) -> broadcast::Receiver<Event> {
    let mut topics = shared.status_topics.lock();
    if let Some(tx) = topics.get(vk) {
        return tx.subscribe();
    }
    let (tx, rx) = broadcast::channel(CAPACITY);
    topics.insert(vk.to_owned(), tx.clone());
    drop(topics);
    tokio::spawn(read(shared.clone(), vk.to_owned(), tenant, tx));
    rx
}

/// Starts one WatchObjectStatus stream (the caller was authorized for `vk`).
pub fn start(shared: Arc<Shared>, vk: String, tenant: Uuid) -> StatusStream {
    let mut changes = subscribe(&shared, &vk, tenant);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        // Subscribed: every change from here on reaches this stream.
        if tx.send(Ok(pb::ObjectStatusEvent::default())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = shared.stop.cancelled() => {
                    let _ = tx.send(Err(Status::unavailable("the server is shutting down; watch again"))).await;
                    return;
                }
                _ = tx.closed() => return,
                change = changes.recv() => match change {
                    Ok(event) => {
                        if tx.send(Ok((*event).clone())).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        let _ = tx.send(Err(Status::aborted(format!(
                            "this stream fell {n} status changes behind; read the status again and watch again"
                        )))).await;
                        return;
                    }
                    Err(RecvError::Closed) => {
                        let _ = tx.send(Err(Status::unavailable("the status reader stopped; watch again"))).await;
                        return;
                    }
                },
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// The statuses of one object, as GetObjectStatus answers them.
pub fn status_protos(
    rows: Vec<(String, ObjectState, DateTime<Utc>)>,
    offline: &[String],
) -> Vec<pb::ObjectStatus> {
    rows.into_iter()
        .map(|(site, s, time)| pb::ObjectStatus {
            r#ref: Some(pb::ObjectRef {
                virtual_cluster: s.key.virtual_cluster,
                api_version: s.key.api_version,
                kind: s.key.kind,
                namespace: s.key.namespace,
                name: s.key.name,
            }),
            status: to_struct(&s.status),
            observed_revision: s.observed_revision,
            update_time: Some(ts(time)),
            failure: s.failure.as_ref().map(|f| f.to_proto()),
            site_offline: offline.contains(&site),
            site,
        })
        .collect()
}

type ObjectId = (String, String, String, String);

/// One vK8s's reader: runs while any stream follows the vK8s.
async fn read(shared: Arc<Shared>, vk: String, tenant: Uuid, tx: broadcast::Sender<Event>) {
    let mut notices = shared.status_hub.subscribe();
    let name = vk.clone();
    let mut cursor = manifold_db::transaction!(
        shared.db,
        "replication_status_head",
        Scope::Tenant(tenant),
        ReplicationError,
        |t| { Ok(storage::objects::last_change(t).await?) }
    )
    .unwrap_or(0);
    let mut since = Utc::now() - LOOK_BACK;
    // What was sent within the look-back: object → its statuses (without
    // store times) and when.
    let mut sent: HashMap<ObjectId, (Vec<pb::ObjectStatus>, DateTime<Utc>)> = HashMap::new();
    loop {
        {
            let mut topics = shared.status_topics.lock();
            if tx.receiver_count() == 0 {
                if topics.get(&vk).is_some_and(|t| t.same_channel(&tx)) {
                    topics.remove(&vk);
                }
                return;
            }
        }
        let read_at = Utc::now();
        let (after, from) = (cursor, since);
        let read = manifold_db::transaction!(
            shared.db,
            "replication_status_changes",
            Scope::Tenant(tenant),
            ReplicationError,
            |t| { Ok(storage::objects::changed_since(t, &name, after, from).await?) }
        );
        match read {
            Ok(changed) => {
                cursor = cursor.max(changed.last);
                since = read_at - LOOK_BACK;
                sent.retain(|_, (_, at)| *at >= since);
                let mut sites: Vec<String> = changed
                    .objects
                    .iter()
                    .flat_map(|rows| rows.iter().map(|r| r.0.clone()))
                    .collect();
                sites.sort_unstable();
                sites.dedup();
                let offline = if sites.is_empty() {
                    Vec::new()
                } else {
                    manifold_db::transaction!(
                        shared.db,
                        "replication_status_sites",
                        Scope::System,
                        ReplicationError,
                        |t| { Ok(storage::sites::offline_among(t, &sites).await?) }
                    )
                    .unwrap_or_default()
                };
                for rows in changed.objects {
                    let statuses = status_protos(rows, &offline);
                    let Some(r#ref) = statuses.first().and_then(|s| s.r#ref.clone()) else {
                        continue;
                    };
                    let id = (
                        group_of(&r#ref.api_version).to_owned(),
                        r#ref.kind.clone(),
                        r#ref.namespace.clone(),
                        r#ref.name.clone(),
                    );
                    let said = without_times(&statuses);
                    if sent.get(&id).is_some_and(|(before, _)| *before == said) {
                        continue;
                    }
                    sent.insert(id, (said, read_at));
                    let _ = tx.send(Arc::new(pb::ObjectStatusEvent {
                        r#ref: Some(r#ref),
                        statuses,
                    }));
                }
            }
            Err(e) => tracing::warn!(error = %e, vk, "reading status changes; retrying"),
        }
        let deadline = tokio::time::sleep(POLL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = shared.stop.cancelled() => return,
                _ = &mut deadline => break,
                n = notices.recv() => match n {
                    Ok(changed) if *changed == *vk || &*changed == "*" => break,
                    Ok(_) => {
                        if tx.receiver_count() == 0 {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => {
                        (&mut deadline).await;
                        break;
                    }
                },
            }
        }
    }
}

/// What an event says, without the store times (which move on every
/// report, changed or not).
fn without_times(statuses: &[pb::ObjectStatus]) -> Vec<pb::ObjectStatus> {
    statuses
        .iter()
        .map(|s| pb::ObjectStatus {
            update_time: None,
            ..s.clone()
        })
        .collect()
}
