//! The sites' status changes of each vK8s, as replication pushes them
//! (WatchObjectStatus), shared by every workload watch of this gateway
//! process: one upstream stream per followed vK8s, however many kubectl
//! watches follow it, so watches never queue behind the HTTP/2 stream limit
//! of the one connection to replication.
//!
//! The upstream stream is opened with the bearer token of the watch that
//! first needed it. Every subscriber was authorized for the vK8s itself when
//! its watch started (and its own response re-checks its own token), and
//! the stream carries only what any reader of the vK8s may read. When the
//! upstream ends (that token revoked, replication restarting, the stream
//! falling behind), its subscribers are told (the channel closes) and
//! subscribe again, which opens a new upstream with their own token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use manifold_proto::replication::v1 as pb;
use tokio::sync::{Mutex, broadcast};

use super::ReplicationClient;
use crate::domain::VirtualCluster;
use crate::error::GatewayError;

/// Changes buffered for a slow watch; one that falls further behind
/// re-reads its objects' status.
const CAPACITY: usize = 1024;
/// How often an upstream with no change checks whether anyone still
/// follows it.
const IDLE_CHECK: Duration = Duration::from_secs(30);

pub type StatusEvent = Arc<pb::ObjectStatusEvent>;

/// The upstreams of this process, by vK8s.
#[derive(Default)]
pub struct StatusPush {
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<StatusEvent>>>>,
}

impl StatusPush {
    /// Every change of `vc`'s status from now on; `None` when replication
    /// cannot push them (an older replication service).
    pub async fn subscribe(
        &self,
        client: &ReplicationClient,
        vc: &VirtualCluster,
        token: &str,
    ) -> Result<Option<broadcast::Receiver<StatusEvent>>, GatewayError> {
        let vk = vc.name.resource_name();
        // Held across the upstream's start, so two first watches of a vK8s
        // do not open two upstreams.
        let mut topics = self.topics.lock().await;
        if let Some(tx) = topics.get(&vk)
            && tx.receiver_count() > 0
        {
            return Ok(Some(tx.subscribe()));
        }
        let Some(stream) = client.watch_object_status(vc, token).await? else {
            return Ok(None);
        };
        let (tx, rx) = broadcast::channel(CAPACITY);
        topics.insert(vk.clone(), tx.clone());
        drop(topics);
        tokio::spawn(forward(self.topics.clone(), vk, stream, tx));
        Ok(Some(rx))
    }
}

/// Relays one upstream to its subscribers until it ends or nobody follows.
async fn forward(
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<StatusEvent>>>>,
    vk: String,
    mut stream: tonic::Streaming<pb::ObjectStatusEvent>,
    tx: broadcast::Sender<StatusEvent>,
) {
    let mut idle = tokio::time::interval(IDLE_CHECK);
    idle.tick().await;
    loop {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(event)) => {
                    if tx.send(Arc::new(event)).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::info!(%vk, code = ?status.code(), "status push ended; its watches subscribe again");
                    break;
                }
            },
            _ = idle.tick() => {
                if tx.receiver_count() == 0 {
                    break;
                }
            }
        }
    }
    let mut topics = topics.lock().await;
    if topics.get(&vk).is_some_and(|t| t.same_channel(&tx)) {
        topics.remove(&vk);
    }
}
