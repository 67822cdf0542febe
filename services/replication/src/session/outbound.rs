//! The outbound half of a session: decides, for every change of the feed,
//! what the site must do, and sends it under the per-site window. Also
//! sends snapshots (on connect when needed, when the log no longer reaches
//! back, and when the site's placement changes) and the commands other
//! parts queue for the agent (logs, pod deletions, renewals).

use std::{collections::VecDeque, sync::Arc, sync::atomic::Ordering, time::Duration};

use manifold_proto::replication::v1 as pb;
use pb::control_message::Msg;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tonic::Status;

use super::SessionHandle;
use crate::Shared;
use crate::domain::{Decision, Membership};
use crate::feed::{Change, FeedError, Source};
use crate::placement::PlacementView;
use crate::storage::sites::StoredCursor;

/// Changes taken from the feed at once.
const BATCH: usize = 256;
/// How long the stream must be quiet before a Progress is sent.
const PROGRESS_DELAY: Duration = Duration::from_millis(200);

pub struct Outbound {
    shared: Arc<Shared>,
    handle: Arc<SessionHandle>,
    out: mpsc::Sender<Result<pb::ControlMessage, Status>>,
    commands: mpsc::Receiver<pb::ControlMessage>,
    acks: watch::Receiver<i64>,
    placement: watch::Receiver<Arc<PlacementView>>,
    source: Source,
    window: usize,
    /// The placement decisions are made with.
    membership: Arc<Membership>,
    /// The placement the site's acknowledged state was reached under.
    cursor_membership: Arc<Membership>,
    /// Snapshots sent but not acknowledged: (end revision, placement).
    unconfirmed: VecDeque<(i64, Arc<Membership>)>,
    /// While a snapshot is being sent: the position before it.
    in_snapshot: Option<i64>,
    /// A snapshot is due; the placement the site had before it.
    resync: Option<Arc<Membership>>,
    /// The due snapshot must be taken now (the log after a kept one may be
    /// compacted).
    resync_fresh: bool,
    /// Every change up to here has been decided and sent (or skipped).
    pos: i64,
    /// The revision of the last counted message sent.
    last_counted: i64,
    acked: i64,
    /// Revisions of counted messages not yet acknowledged.
    /// Counted messages not yet acknowledged: (revision, when sent, an object change).
    in_flight: VecDeque<(i64, std::time::Instant, bool)>,
    /// Changes taken from the feed and not yet decided.
    pending: VecDeque<Arc<Change>>,
    pending_upto: i64,
    progress_at: Option<Instant>,
    backoff: Duration,
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn object_ref(c: &Change) -> pb::ObjectRef {
    pb::ObjectRef {
        virtual_cluster: c.key.virtual_cluster.clone(),
        api_version: c.key.api_version.clone(),
        kind: c.key.kind.clone(),
        namespace: c.key.namespace.clone(),
        name: c.key.name.clone(),
    }
}

fn apply(c: &Change) -> Msg {
    Msg::Apply(pb::Apply {
        revision: c.revision,
        r#ref: Some(object_ref(c)),
        object: c.object.clone(),
    })
}

fn delete(c: &Change) -> Msg {
    Msg::Delete(pb::Delete {
        revision: c.revision,
        r#ref: Some(object_ref(c)),
    })
}

impl Outbound {
    pub fn new(
        shared: Arc<Shared>,
        handle: Arc<SessionHandle>,
        out: mpsc::Sender<Result<pb::ControlMessage, Status>>,
        commands: mpsc::Receiver<pb::ControlMessage>,
        acks: watch::Receiver<i64>,
    ) -> Self {
        let source = Source::new(
            shared.ring.clone(),
            shared.upstream.clone(),
            shared.catch_up.clone(),
        );
        Self {
            placement: shared.placement.subscribe(),
            window: shared.config.window.max(1),
            shared,
            handle,
            out,
            commands,
            acks,
            source,
            membership: Arc::default(),
            cursor_membership: Arc::default(),
            unconfirmed: VecDeque::new(),
            in_snapshot: None,
            resync: None,
            resync_fresh: false,
            pos: 0,
            last_counted: 0,
            acked: 0,
            in_flight: VecDeque::new(),
            pending: VecDeque::new(),
            pending_upto: 0,
            progress_at: None,
            backoff: Duration::from_millis(200),
        }
    }

    fn site(&self) -> &str {
        &self.handle.site
    }

    /// The site's membership in the newest placement (marks it seen).
    fn latest_membership(&mut self) -> Arc<Membership> {
        let view = self.placement.borrow_and_update().clone();
        view.membership(&self.handle.site)
    }

    /// Runs until the agent goes away (Err carries the status to end with).
    pub async fn run(mut self, hello_revision: i64, stored: StoredCursor) -> Result<(), Status> {
        let current = self.latest_membership();
        let stored_membership = stored.placement.as_ref().and_then(Membership::from_json);
        self.membership = current.clone();
        self.acked = hello_revision;
        // A snapshot must not take the site back behind what it has.
        self.pos = hello_revision;
        if hello_revision > 0 && stored_membership.as_ref() == Some(&*current) {
            self.last_counted = hello_revision;
            self.pending_upto = hello_revision;
            self.cursor_membership = current;
            tracing::debug!(site = %self.site(), from = hello_revision, "replaying");
        } else {
            let before = Arc::new(stored_membership.unwrap_or_default());
            self.cursor_membership = before.clone();
            self.resync = Some(before);
        }
        loop {
            if let Some(before) = self.resync.take() {
                self.snapshot(before).await?;
                continue;
            }
            self.drain().await?;
            self.step().await?;
        }
    }

    async fn send(&mut self, msg: Msg) -> Result<(), Status> {
        self.out
            .send(Ok(pb::ControlMessage { msg: Some(msg) }))
            .await
            .map_err(|_| Status::cancelled("the agent went away"))
    }

    /// Sends a message the window counts.
    async fn send_counted(&mut self, msg: Msg, revision: i64) -> Result<(), Status> {
        let change = matches!(msg, Msg::Apply(_) | Msg::Delete(_));
        self.send(msg).await?;
        self.in_flight
            .push_back((revision, std::time::Instant::now(), change));
        self.last_counted = revision;
        self.handle
            .in_flight
            .store(self.in_flight.len() as i64, Ordering::Relaxed);
        Ok(())
    }

    /// Decides and sends pending changes while the window has room.
    async fn drain(&mut self) -> Result<(), Status> {
        while self.in_flight.len() < self.window {
            let Some(c) = self.pending.pop_front() else {
                break;
            };
            if c.revision <= self.pos {
                continue;
            }
            let vk = &c.key.virtual_cluster;
            let decision = if c.deleted {
                self.membership.decide_delete(vk)
            } else {
                self.membership.decide_upsert(vk, c.narrowing.as_ref())
            };
            match decision {
                Decision::Apply => self.send_counted(apply(&c), c.revision).await?,
                Decision::Delete => self.send_counted(delete(&c), c.revision).await?,
                Decision::Skip => {}
            }
            self.pos = c.revision;
        }
        if self.pending.is_empty() {
            self.pos = self.pos.max(self.pending_upto);
            if self.pos > self.last_counted && self.progress_at.is_none() {
                self.progress_at = Some(Instant::now() + PROGRESS_DELAY);
            }
        }
        Ok(())
    }

    /// Waits for the next thing to do and does it.
    async fn step(&mut self) -> Result<(), Status> {
        let window_open = self.in_flight.len() < self.window;
        let want_feed = window_open && self.pending.is_empty();
        let progress_due = window_open && self.progress_at.is_some();
        tokio::select! {
            biased;
            Some(cmd) = self.commands.recv() => {
                if let Some(msg) = cmd.msg {
                    self.send(msg).await?;
                }
            }
            Ok(()) = self.acks.changed() => self.on_ack(),
            Ok(()) = self.placement.changed() => self.on_placement(),
            _ = sleep_until_opt(self.progress_at), if progress_due => {
                self.progress_at = None;
                if self.pos > self.last_counted {
                    let pos = self.pos;
                    self.send_counted(Msg::Progress(pb::Progress { revision: pos }), pos).await?;
                }
            }
            batch = self.source.next(self.pos, BATCH), if want_feed => match batch {
                Ok(b) => {
                    self.backoff = Duration::from_millis(200);
                    self.pending.extend(b.changes);
                    self.pending_upto = self.pending_upto.max(b.upto);
                }
                Err(FeedError::OutOfRange) => {
                    tracing::info!(site = %self.site(), from = self.pos, "log compacted past the site's position: snapshot");
                    self.resync = Some(self.membership.clone());
                    self.resync_fresh = true;
                }
                Err(FeedError::Unavailable(m)) => {
                    tracing::warn!(site = %self.site(), error = %m, "object feed unavailable; retrying");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                }
            },
        }
        Ok(())
    }

    fn on_placement(&mut self) {
        let now = self.latest_membership();
        if *now != *self.membership {
            tracing::info!(site = %self.site(), "placement of the site changed: snapshot");
            // The site's state follows the old placement until the snapshot.
            if self.resync.is_none() {
                self.resync = Some(self.membership.clone());
            }
        } else {
            self.membership = now;
        }
    }

    fn on_ack(&mut self) {
        let a = *self.acks.borrow_and_update();
        if a <= self.acked {
            return;
        }
        self.acked = a;
        while self.in_flight.front().is_some_and(|(r, _, _)| *r <= a) {
            if let Some((_, sent, true)) = self.in_flight.pop_front()
                && let Some(latency) = self.shared.propagation.get()
            {
                latency.observe(sent.elapsed().as_secs_f64());
            }
        }
        self.handle
            .in_flight
            .store(self.in_flight.len() as i64, Ordering::Relaxed);
        while let Some((end, m)) = self.unconfirmed.front() {
            if a < *end {
                break;
            }
            self.cursor_membership = m.clone();
            self.unconfirmed.pop_front();
        }
        if self.in_snapshot.is_some_and(|before| a > before) {
            // An ack from inside a snapshot says nothing about the cursor.
            return;
        }
        self.handle.record_ack(a, &self.cursor_membership);
    }

    /// Sends a snapshot: SnapshotBegin, an Apply for every object placed on
    /// the site (and a Delete for every object that was placed under
    /// `before` and is not any more), SnapshotEnd. The feed then resumes
    /// after the snapshot's revision.
    async fn snapshot(&mut self, before: Arc<Membership>) -> Result<(), Status> {
        self.membership = self.latest_membership();
        self.in_snapshot = Some(self.pos);
        let fresh = std::mem::take(&mut self.resync_fresh);
        let mut reader = loop {
            match self.shared.snapshots.open(self.pos, fresh).await {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!(site = %self.site(), error = %e, "snapshot unavailable; retrying");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.backoff = Duration::from_millis(200);
        let revision = reader.revision();
        self.send(Msg::SnapshotBegin(pb::SnapshotBegin { revision }))
            .await?;
        let (mut applies, mut deletes) = (0u64, 0u64);
        loop {
            while let Ok(cmd) = self.commands.try_recv() {
                if let Some(msg) = cmd.msg {
                    self.send(msg).await?;
                }
            }
            if self.acks.has_changed().unwrap_or(false) {
                self.on_ack();
            }
            let next = reader.next().await.map_err(|e| {
                Status::unavailable(format!("the snapshot was interrupted ({e}); reconnect"))
            })?;
            let Some(c) = next else { break };
            let vk = &c.key.virtual_cluster;
            if self.membership.placed(vk, c.narrowing.as_ref()) {
                applies += 1;
                self.send(apply(&c)).await?;
            } else if before.placed(vk, c.narrowing.as_ref()) {
                deletes += 1;
                self.send(delete(&c)).await?;
            }
        }
        self.send(Msg::SnapshotEnd(pb::SnapshotEnd { revision }))
            .await?;
        tracing::info!(site = %self.site(), revision, applies, deletes, "snapshot sent");
        self.in_snapshot = None;
        self.unconfirmed
            .push_back((revision, self.membership.clone()));
        self.pos = revision;
        self.last_counted = revision;
        self.pending.clear();
        self.pending_upto = revision;
        self.in_flight.clear();
        self.handle.in_flight.store(0, Ordering::Relaxed);
        self.progress_at = None;
        self.source.reset();
        Ok(())
    }
}
