//! `ObjectFeed`: the ordered stream of every object change (and snapshots
//! to start from), for the replication service. System administrators with
//! an unscoped token only: the feed carries every tenant's objects, Secrets
//! included, so a token scoped to one tenant or namespace (the kind
//! `GetKubeconfig` mints, even for an operator) may not read it. Open
//! streams end once the token lapses (the auth layer re-checks it).
//!
//! Secrets are decrypted for it (replication sends them on to the sites
//! over the agents' mTLS streams). One that does not decrypt is left out
//! (and logged), rather than sent as a guess or stopping the feed of every
//! other object; its deletion still goes out.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use manifold_auth::principal;
use manifold_db::Scope;
use manifold_proto::vk8s::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::convert::to_struct;
use crate::core::Core;
use crate::domain::{Change, EventType};
use crate::error::GatewayError;
use crate::feed::{Cursor, Step};
use crate::storage::changes::{Snapshot, SnapshotItem};

pub struct Feed {
    pub core: Arc<Core>,
    pub shutdown: CancellationToken,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ObjectEvent, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

/// With no change for this long the stream carries a PROGRESS event.
const HEARTBEAT: Duration = Duration::from_secs(10);
const SNAPSHOT_CHUNK: i64 = 500;

fn require_system_admin<T>(request: &Request<T>) -> Result<(), Status> {
    let p = principal(request)?;
    if p.is_system_admin() {
        Ok(())
    } else if !p.token_scope.is_empty() {
        Err(GatewayError::Forbidden(format!(
            "a token scoped to {} may not read the object feed: it carries every tenant's objects",
            p.token_scope
        ))
        .into())
    } else {
        Err(GatewayError::Forbidden(format!(
            "{} may not read the object feed: it is internal to the control plane",
            p.user
        ))
        .into())
    }
}

fn api_version(group: &str, kind: &str) -> String {
    manifold_kube_model::kinds::by_group_kind(group, kind)
        .map(|k| k.api_version())
        .unwrap_or_else(|| {
            if group.is_empty() {
                "v1".into()
            } else {
                format!("{group}/v1")
            }
        })
}

/// The feed's event for a change; `None` for an upsert whose body does not
/// decrypt.
fn change_event(c: &Change) -> Option<pb::ObjectEvent> {
    let deleted = c.event == EventType::Deleted;
    if let (Some(why), false) = (&c.unreadable, deleted) {
        tracing::error!(
            revision = c.revision,
            vcluster = %c.vcluster,
            error = %why,
            "left out of the object feed: the change does not decrypt"
        );
        return None;
    }
    Some(pb::ObjectEvent {
        r#type: if deleted {
            pb::object_event::Type::Delete
        } else {
            pb::object_event::Type::Upsert
        } as i32,
        revision: c.revision,
        virtual_cluster: c.vcluster.clone(),
        api_version: api_version(&c.group, &c.kind),
        kind: c.kind.clone(),
        namespace: c.namespace.clone(),
        object_name: c.name.clone(),
        object: if deleted { None } else { to_struct(&c.object) },
    })
}

fn progress(revision: i64) -> pb::ObjectEvent {
    pb::ObjectEvent {
        r#type: pb::object_event::Type::Progress as i32,
        revision,
        ..Default::default()
    }
}

/// The snapshot's event for an object; `None` when it does not decrypt.
fn snapshot_event(item: &SnapshotItem) -> Option<pb::ObjectEvent> {
    if let Some(why) = &item.unreadable {
        tracing::error!(
            vcluster = %item.vcluster,
            error = %why,
            "left out of an object feed snapshot: the object does not decrypt"
        );
        return None;
    }
    let revision = item
        .body
        .pointer("/metadata/resourceVersion")
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    Some(pb::ObjectEvent {
        r#type: pb::object_event::Type::Upsert as i32,
        revision,
        virtual_cluster: item.vcluster.clone(),
        api_version: api_version(&item.group, &item.kind),
        kind: item.kind.clone(),
        namespace: item.namespace.clone(),
        object_name: item.name.clone(),
        object: to_struct(&item.body),
    })
}

async fn pump(
    mut cursor: Cursor,
    tx: mpsc::Sender<Result<pb::ObjectEvent, Status>>,
    shutdown: CancellationToken,
) {
    loop {
        let step = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = tx.send(Err(Status::unavailable("the gateway is shutting down; resume from the last revision"))).await;
                return;
            }
            _ = tx.closed() => return,
            _ = tokio::time::sleep(HEARTBEAT) => match cursor.bookmark() {
                Some(rev) => Ok(Step::Progress(rev)),
                None => continue,
            },
            step = cursor.next() => step,
        };
        let event = match step {
            Ok(Step::Change(c)) => match change_event(&c) {
                Some(event) => Ok(event),
                None => continue,
            },
            Ok(Step::Progress(rev)) => Ok(progress(rev)),
            Err(e) => Err(Status::from(e)),
        };
        let failed = event.is_err();
        if tx.send(event).await.is_err() || failed {
            return;
        }
    }
}

#[tonic::async_trait]
impl pb::object_feed_server::ObjectFeed for Feed {
    type WatchStream = EventStream;
    type SnapshotStream = ChunkStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        require_system_admin(&request)?;
        let from = request.get_ref().from_revision;
        if from < 0 {
            return Err(
                GatewayError::invalid_argument("from_revision", "must not be negative").into(),
            );
        }
        let cursor = Cursor::start(
            &self.core.hub,
            self.core.db.clone(),
            self.core.config.encryption.clone(),
            Scope::System,
            None,
            from,
        )
        .await
            .map_err(|e| match e {
                GatewayError::Gone(_) => Status::out_of_range(format!(
                    "revision {from} was compacted away; re-list with ObjectFeed.Snapshot and watch from its revision"
                )),
                other => other.into(),
            })?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(pump(cursor, tx, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        require_system_admin(&request)?;
        let mut snapshot = Snapshot::open(&self.core.db)
            .await
            .map_err(GatewayError::from)?;
        let (tx, rx) = mpsc::channel(4);
        let encryption = self.core.config.encryption.clone();
        tokio::spawn(async move {
            let revision = snapshot.revision;
            let mut sent_any = false;
            loop {
                let page = match snapshot.next_page(&encryption, SNAPSHOT_CHUNK).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                if page.is_empty() && sent_any {
                    return;
                }
                let last = (page.len() as i64) < SNAPSHOT_CHUNK;
                let chunk = pb::SnapshotChunk {
                    revision,
                    objects: page.iter().filter_map(snapshot_event).collect(),
                };
                if tx.send(Ok(chunk)).await.is_err() || last {
                    return;
                }
                sent_any = true;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
