//! One session's view of the feed: the shared ring when the session is
//! caught up, otherwise a private `ObjectFeed.Watch` from its own position
//! (bounded in number by a semaphore, so a thousand lagging sites cannot
//! exhaust the gateway's streams), switching back to the ring as soon as it
//! reaches it.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ring::{Read, Ring};
use super::{Batch, Change, FeedError};
use crate::upstream::Upstream;
use manifold_proto::vk8s::v1 as pb;

struct Private {
    stream: tonic::Streaming<pb::ObjectEvent>,
    _permit: OwnedSemaphorePermit,
}

pub struct Source {
    ring: Arc<Ring>,
    upstream: Arc<Upstream>,
    permits: Arc<Semaphore>,
    generation: Option<u64>,
    private: Option<Private>,
}

impl Source {
    pub fn new(ring: Arc<Ring>, upstream: Arc<Upstream>, permits: Arc<Semaphore>) -> Self {
        Self {
            ring,
            upstream,
            permits,
            generation: None,
            private: None,
        }
    }

    /// Forget the position's history: the session took a snapshot.
    pub fn reset(&mut self) {
        self.generation = None;
        self.private = None;
    }

    /// The next changes after `pos` (at most `max`). Cancel-safe: dropping
    /// the future loses nothing.
    pub async fn next(&mut self, pos: i64, max: usize) -> Result<Batch, FeedError> {
        loop {
            if let Some(p) = self.private.as_mut() {
                if self.ring.try_join(pos, &mut self.generation) {
                    self.private = None;
                    continue;
                }
                return match p.stream.message().await {
                    Ok(Some(event)) => {
                        let upto = event.revision.max(pos);
                        Ok(Batch {
                            changes: Change::from_event(event)
                                .filter(|c| c.revision > pos)
                                .map(Arc::new)
                                .into_iter()
                                .collect(),
                            upto,
                        })
                    }
                    Ok(None) => {
                        self.private = None;
                        Err(FeedError::Unavailable("the catch-up stream ended".into()))
                    }
                    Err(s) => {
                        self.private = None;
                        Err(FeedError::from_status(&s))
                    }
                };
            }
            let mut changed = self.ring.subscribe();
            match self.ring.read(pos, max, &mut self.generation) {
                Read::Items { changes, upto } => return Ok(Batch { changes, upto }),
                Read::Wait => {
                    if changed.changed().await.is_err() {
                        return Err(FeedError::Unavailable("the feed stopped".into()));
                    }
                }
                Read::Failed => {
                    self.generation = None;
                    return Err(FeedError::OutOfRange);
                }
                Read::Behind => {
                    let permit = self
                        .permits
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| FeedError::Unavailable("shutting down".into()))?;
                    let stream = self
                        .upstream
                        .feed()
                        .watch(
                            self.upstream
                                .request(pb::WatchRequest { from_revision: pos }),
                        )
                        .await
                        .map_err(|s| FeedError::from_status(&s))?
                        .into_inner();
                    self.generation = None;
                    self.private = Some(Private {
                        stream,
                        _permit: permit,
                    });
                }
            }
        }
    }
}
