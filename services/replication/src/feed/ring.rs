//! The shared ring: the most recent changes of the whole store, kept in
//! memory once per process and read by every session that is caught up.
//! Its size is bounded; a session that falls behind its oldest entry reads
//! the log on its own (see `Source`), so a slow site costs nothing here.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{Change, FeedError};
use crate::placement::Placement;
use crate::upstream::Upstream;
use manifold_proto::vk8s::v1 as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Not started: the first reader starts it at its position.
    Idle,
    Running,
    /// Continuity was lost (the hub fell behind compaction): readers that
    /// were on it must take a snapshot; the next fresh reader restarts it.
    Failed,
}

struct State {
    status: Status,
    /// Bumped whenever continuity is lost.
    generation: u64,
    /// Every change in (base, head] is in `items`.
    base: i64,
    head: i64,
    items: VecDeque<Arc<Change>>,
}

/// What a read found.
pub enum Read {
    Items {
        changes: Vec<Arc<Change>>,
        upto: i64,
    },
    /// Nothing after the position yet.
    Wait,
    /// The position is older than the ring's oldest entry.
    Behind,
    /// The reader's continuity was lost.
    Failed,
}

pub struct Ring {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    start: Notify,
    capacity: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                status: Status::Idle,
                generation: 0,
                base: 0,
                head: 0,
                items: VecDeque::new(),
            }),
            changed: watch::channel(0).0,
            start: Notify::new(),
            capacity: capacity.max(16),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that wakes on any change of the ring.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Starts the ring at `pos` when it is idle (or failed and the reader
    /// has no generation: it just took a snapshot).
    fn start_at(&self, s: &mut State, pos: i64) {
        s.status = Status::Running;
        s.generation += 1;
        s.base = pos;
        s.head = pos;
        s.items.clear();
        self.start.notify_one();
    }

    /// Changes after `pos`, at most `max`. `generation` is the reader's: None
    /// for a reader that is not on the ring yet.
    pub fn read(&self, pos: i64, max: usize, generation: &mut Option<u64>) -> Read {
        let mut s = self.lock();
        match (s.status, *generation) {
            (Status::Running, Some(g)) if g != s.generation => return Read::Failed,
            (Status::Failed, Some(_)) => return Read::Failed,
            (Status::Idle | Status::Failed, None) => {
                self.start_at(&mut s, pos);
                *generation = Some(s.generation);
                return Read::Wait;
            }
            (Status::Idle, Some(_)) => return Read::Failed,
            (Status::Running, _) => {}
        }
        if pos < s.base {
            return Read::Behind;
        }
        *generation = Some(s.generation);
        // Items are in revision order: skip what the reader has.
        let first = s.items.partition_point(|c| c.revision <= pos);
        let available = s.items.len() - first;
        if available == 0 {
            return if s.head > pos {
                Read::Items {
                    changes: Vec::new(),
                    upto: s.head,
                }
            } else {
                Read::Wait
            };
        }
        let take = available.min(max.max(1));
        let changes: Vec<Arc<Change>> = s.items.range(first..first + take).cloned().collect();
        let upto = if take == available {
            s.head
        } else {
            changes.last().map_or(pos, |c| c.revision)
        };
        Read::Items { changes, upto }
    }

    /// Whether a reader starting at `pos` will read from the ring (it is
    /// idle, or running and still holds everything after `pos`).
    pub fn may_continue_from(&self, pos: i64) -> bool {
        let s = self.lock();
        match s.status {
            Status::Idle | Status::Failed => true,
            Status::Running => pos >= s.base,
        }
    }

    /// Whether the ring runs and knows of no change after `pos` (a snapshot at
    /// `pos` is still the whole truth).
    pub fn nothing_after(&self, pos: i64) -> bool {
        let s = self.lock();
        matches!(s.status, Status::Running) && s.head <= pos
    }

    /// Whether a reader at `pos` (reading the log on its own) may switch to
    /// the ring now; sets its generation when it may.
    pub fn try_join(&self, pos: i64, generation: &mut Option<u64>) -> bool {
        let mut s = self.lock();
        match s.status {
            Status::Running if pos >= s.base => {
                *generation = Some(s.generation);
                true
            }
            Status::Idle | Status::Failed => {
                self.start_at(&mut s, pos);
                *generation = Some(s.generation);
                true
            }
            Status::Running => false,
        }
    }

    fn push(&self, change: Change) {
        {
            let mut s = self.lock();
            if change.revision <= s.head {
                return;
            }
            s.head = change.revision;
            s.items.push_back(Arc::new(change));
            while s.items.len() > self.capacity {
                if let Some(old) = s.items.pop_front() {
                    s.base = old.revision;
                }
            }
        }
        self.bump();
    }

    fn progress(&self, revision: i64) {
        {
            let mut s = self.lock();
            if revision <= s.head {
                return;
            }
            s.head = revision;
        }
        self.bump();
    }

    fn fail(&self) {
        {
            let mut s = self.lock();
            s.status = Status::Failed;
            s.generation += 1;
            s.items.clear();
        }
        self.bump();
    }

    fn running_from(&self) -> Option<i64> {
        let s = self.lock();
        (s.status == Status::Running).then_some(s.head)
    }
}

/// Feeds the ring from `ObjectFeed.Watch` while it runs; reconnects from its
/// head after errors (with back-off), fails it on OUT_OF_RANGE.
pub async fn run_hub(
    ring: Arc<Ring>,
    upstream: Arc<Upstream>,
    placement: Arc<Placement>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(from) = ring.running_from() else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ring.start.notified() => continue,
                // Belt and braces: a missed notification costs a second.
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        };
        let mut client = upstream.feed();
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            r = client.watch(upstream.request(pb::WatchRequest { from_revision: from })) => r,
        };
        let outcome = match opened {
            Ok(stream) => {
                delay = Duration::from_millis(100);
                consume(&ring, &placement, stream.into_inner(), &stop).await
            }
            Err(s) => Err(FeedError::from_status(&s)),
        };
        match outcome {
            Ok(()) => return,
            Err(FeedError::OutOfRange) => {
                tracing::warn!(
                    from,
                    "the shared feed fell behind compaction; sessions re-snapshot"
                );
                ring.fail();
            }
            Err(FeedError::Unavailable(m)) => {
                tracing::warn!(error = %m, "object feed interrupted; reconnecting");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Ok(()) only on shutdown.
async fn consume(
    ring: &Ring,
    placement: &Placement,
    mut stream: tonic::Streaming<pb::ObjectEvent>,
    stop: &CancellationToken,
) -> Result<(), FeedError> {
    let generation = ring.lock().generation;
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = stream.message() => m,
        };
        if ring.lock().generation != generation {
            // Restarted elsewhere (failed and re-started by a reader).
            return Err(FeedError::Unavailable("the ring was restarted".into()));
        }
        match msg {
            Ok(Some(event)) => {
                let revision = event.revision;
                match Change::from_event(event) {
                    Some(change) => {
                        if !placement
                            .current()
                            .clusters
                            .contains(&change.key.virtual_cluster)
                        {
                            // A vK8s the index has not seen: read it early.
                            placement.nudge();
                        }
                        ring.push(change)
                    }
                    None => ring.progress(revision),
                }
            }
            Ok(None) => return Err(FeedError::Unavailable("the feed stream ended".into())),
            Err(s) => return Err(FeedError::from_status(&s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ObjectKey;

    fn change(revision: i64) -> Change {
        Change {
            revision,
            deleted: false,
            key: ObjectKey {
                virtual_cluster: "tenants/a/namespaces/b/virtualClusters/c".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: "b".into(),
                name: format!("cm{revision}"),
            },
            object: None,
            narrowing: None,
        }
    }

    #[test]
    fn readers_start_read_and_fall_behind() {
        let ring = Ring::new(16);
        let mut g = None;
        assert!(matches!(ring.read(10, 100, &mut g), Read::Wait));
        for r in 11..=40 {
            ring.push(change(r));
        }
        // 16 kept: 25..=40, base 24.
        let mut g2 = None;
        assert!(matches!(ring.read(20, 100, &mut g2), Read::Behind));
        match ring.read(30, 4, &mut g) {
            Read::Items { changes, upto } => {
                assert_eq!(changes.len(), 4);
                assert_eq!(changes[0].revision, 31);
                assert_eq!(upto, 34);
            }
            _ => panic!("items expected"),
        }
        ring.progress(45);
        match ring.read(40, 4, &mut g) {
            Read::Items { changes, upto } => {
                assert!(changes.is_empty());
                assert_eq!(upto, 45);
            }
            _ => panic!("progress expected"),
        }
        assert!(!ring.try_join(20, &mut g2));
        assert!(ring.try_join(24, &mut g2));
        ring.fail();
        assert!(matches!(ring.read(45, 4, &mut g), Read::Failed));
        // A reader fresh from a snapshot restarts it.
        let mut fresh = None;
        assert!(matches!(ring.read(50, 4, &mut fresh), Read::Wait));
        assert!(matches!(ring.read(45, 4, &mut g), Read::Failed));
    }
}
