//! Snapshots of the whole store (`ObjectFeed.Snapshot`). One recent
//! snapshot is kept in memory when it is small enough, so a crowd of agents
//! connecting at once (a replica restart) costs one read of the store, not
//! one each. Larger stores are streamed per session, a few at a time.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use super::{Change, FeedError, Ring};
use crate::upstream::Upstream;
use manifold_proto::vk8s::v1 as pb;

/// How long a snapshot is shared. A kept snapshot is only handed to a
/// reader whose position it does not predate, and only while no change after
/// it is known: an agent prunes what a snapshot does not name, so a stale one
/// (followed by a replay of what came after) would delete objects and recreate
/// them a moment later (pods with new uids on a real site).
const CACHE_TTL: Duration = Duration::from_secs(5);

pub struct Cached {
    revision: i64,
    items: Vec<Arc<Change>>,
    taken: Instant,
}

pub struct Snapshots {
    upstream: Arc<Upstream>,
    ring: Arc<Ring>,
    permits: Arc<Semaphore>,
    cache: Mutex<Option<Arc<Cached>>>,
    max_cache_bytes: usize,
}

/// The objects of one snapshot, in order.
pub enum SnapshotReader {
    Cached {
        snap: Arc<Cached>,
        next: usize,
    },
    Streaming {
        revision: i64,
        buffered: VecDeque<Arc<Change>>,
        stream: Option<Box<tonic::Streaming<pb::SnapshotChunk>>>,
        _permit: OwnedSemaphorePermit,
    },
}

impl SnapshotReader {
    pub fn revision(&self) -> i64 {
        match self {
            SnapshotReader::Cached { snap, .. } => snap.revision,
            SnapshotReader::Streaming { revision, .. } => *revision,
        }
    }

    /// The next object, None at the end.
    pub async fn next(&mut self) -> Result<Option<Arc<Change>>, FeedError> {
        match self {
            SnapshotReader::Cached { snap, next } => {
                let item = snap.items.get(*next).cloned();
                *next += 1;
                Ok(item)
            }
            SnapshotReader::Streaming {
                buffered, stream, ..
            } => loop {
                if let Some(c) = buffered.pop_front() {
                    return Ok(Some(c));
                }
                let Some(s) = stream.as_mut() else {
                    return Ok(None);
                };
                match s.message().await {
                    Ok(Some(chunk)) => buffered.extend(changes(chunk)),
                    Ok(None) => *stream = None,
                    Err(e) => return Err(FeedError::from_status(&e)),
                }
            },
        }
    }
}

fn changes(chunk: pb::SnapshotChunk) -> impl Iterator<Item = Arc<Change>> {
    chunk
        .objects
        .into_iter()
        .filter_map(Change::from_event)
        .map(Arc::new)
}

impl Snapshots {
    /// `concurrency`: snapshot streams open at once (each holds a database
    /// transaction in the gateway).
    pub fn new(
        upstream: Arc<Upstream>,
        ring: Arc<Ring>,
        concurrency: usize,
        max_cache_bytes: usize,
    ) -> Self {
        Self {
            upstream,
            ring,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            cache: Mutex::new(None),
            max_cache_bytes,
        }
    }

    /// A reader over a snapshot at `min_revision` or later. `fresh`: do not
    /// reuse a kept one (the log after it was found compacted).
    pub async fn open(&self, min_revision: i64, fresh: bool) -> Result<SnapshotReader, FeedError> {
        // One fetch at a time: whoever waits here gets the fresh cache.
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && !fresh
            && c.revision >= min_revision
            && c.taken.elapsed() < CACHE_TTL
            && self.ring.may_continue_from(c.revision)
            && self.ring.nothing_after(c.revision)
        {
            return Ok(SnapshotReader::Cached {
                snap: c.clone(),
                next: 0,
            });
        }
        *cache = None;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FeedError::Unavailable("shutting down".into()))?;
        let taken = Instant::now();
        let mut stream = self
            .upstream
            .feed()
            .snapshot(self.upstream.request(pb::SnapshotRequest {}))
            .await
            .map_err(|s| FeedError::from_status(&s))?
            .into_inner();
        let mut revision = None;
        let mut items: Vec<Arc<Change>> = Vec::new();
        let mut bytes = 0usize;
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    revision.get_or_insert(chunk.revision);
                    for c in changes(chunk) {
                        bytes += c.size();
                        items.push(c);
                    }
                    if bytes > self.max_cache_bytes {
                        // Too big to keep: this session streams the rest.
                        return Ok(SnapshotReader::Streaming {
                            revision: revision.unwrap_or_default(),
                            buffered: items.into(),
                            stream: Some(Box::new(stream)),
                            _permit: permit,
                        });
                    }
                }
                Ok(None) => break,
                Err(s) => return Err(FeedError::from_status(&s)),
            }
        }
        let revision = revision
            .ok_or_else(|| FeedError::Unavailable("the snapshot stream was empty".into()))?;
        let snap = Arc::new(Cached {
            revision,
            items,
            taken,
        });
        *cache = Some(snap.clone());
        Ok(SnapshotReader::Cached { snap, next: 0 })
    }
}
