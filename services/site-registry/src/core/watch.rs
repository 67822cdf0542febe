//! Placement change detection across replicas: one Postgres `LISTEN` per
//! process (started with the first watcher, stopped after the last), fanned
//! out to every placement watch, plus a bounded periodic re-check so a lost
//! notification only delays an event.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use manifold_db::{Db, sqlx::postgres::PgListener};
use tokio::sync::{Mutex, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Core;
use super::virtual_sites::{Placement, PlacementScope, PlacementSnapshot};
use crate::error::SiteError;
use crate::store::{CHANGE_CHANNEL, Change};

/// What the listener tells watchers.
#[derive(Debug, Clone)]
pub enum Notice {
    Change(Change),
    /// Notifications may have been lost (reconnect): recompute.
    Resync,
}

/// A placement watch's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementUpdate {
    pub placement: Placement,
    /// The virtual site was deleted (`placement.sites` is empty).
    pub deleted: bool,
}

/// How long a new listener may take to start before watchers go on with the
/// periodic re-check alone.
const LISTEN_START_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle listener checks whether anyone still listens.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The running listener (by generation) and its sender, if any.
type Current = Arc<Mutex<Option<(u64, broadcast::Sender<Notice>)>>>;

/// The process-wide fan-out of `sites_changed` notifications.
pub struct Hub {
    db: Db,
    shutdown: CancellationToken,
    current: Current,
}

impl Hub {
    pub fn new(db: Db, shutdown: CancellationToken) -> Self {
        Self {
            db,
            shutdown,
            current: Arc::new(Mutex::new(None)),
        }
    }

    /// Subscribes to change notices, starting the listener when none runs.
    /// Once this returns, the listener is `LISTEN`ing (or failed to start, in
    /// which case the periodic re-check covers).
    pub async fn subscribe(&self) -> broadcast::Receiver<Notice> {
        let mut current = self.current.lock().await;
        if let Some((_, sender)) = current.as_ref() {
            return sender.subscribe();
        }
        let generation = rand::random::<u64>();
        let (sender, receiver) = broadcast::channel(256);
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(listen(
            self.db.clone(),
            sender.clone(),
            self.current.clone(),
            generation,
            self.shutdown.clone(),
            ready_tx,
        ));
        *current = Some((generation, sender));
        let _ = tokio::time::timeout(LISTEN_START_TIMEOUT, ready_rx).await;
        receiver
    }
}

/// Forwards notifications until shutdown, an error, or no subscriber is left.
async fn listen(
    db: Db,
    sender: broadcast::Sender<Notice>,
    current: Current,
    generation: u64,
    shutdown: CancellationToken,
    ready: oneshot::Sender<()>,
) {
    let started = async {
        let mut l = PgListener::connect_with(db.pool()).await?;
        l.listen(CHANGE_CHANNEL).await?;
        Ok::<_, manifold_db::sqlx::Error>(l)
    }
    .await;
    let _ = ready.send(());
    let mut listener = match started {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "placement listener could not start; relying on re-checks");
            None
        }
    };
    let mut idle = tokio::time::interval(IDLE_CHECK);
    idle.tick().await;
    while let Some(l) = listener.as_mut() {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            received = l.try_recv() => match received {
                Ok(Some(n)) => match Change::parse(n.payload()) {
                    Some(change) => {
                        let _ = sender.send(Notice::Change(change));
                    }
                    None => {
                        let _ = sender.send(Notice::Resync);
                    }
                },
                // The connection was lost and re-established.
                Ok(None) => {
                    let _ = sender.send(Notice::Resync);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "placement listener failed; the next watcher restarts it");
                    let _ = sender.send(Notice::Resync);
                    listener = None;
                }
            },
            _ = idle.tick() => {
                if sender.receiver_count() == 0 {
                    let mut guard = current.lock().await;
                    if sender.receiver_count() == 0 {
                        if guard.as_ref().is_some_and(|(g, _)| *g == generation) {
                            *guard = None;
                        }
                        return;
                    }
                }
            }
        }
    }
    let mut guard = current.lock().await;
    if guard.as_ref().is_some_and(|(g, _)| *g == generation) {
        *guard = None;
    }
}

impl Core {
    /// Starts a placement watch: the current placement of every virtual site
    /// in `scope` first, then an update whenever one changes. Ends when the
    /// receiver is dropped or the process shuts down.
    pub async fn watch_placement(
        self: &Arc<Self>,
        scope: PlacementScope,
    ) -> Result<mpsc::Receiver<PlacementUpdate>, SiteError> {
        // Listen before the first snapshot, so no change falls in between.
        let notices = self.hub.subscribe().await;
        let initial = self.placements(&scope).await?;
        let (tx, rx) = mpsc::channel(64);
        let core = self.clone();
        tokio::spawn(async move { core.run_watch(scope, initial, notices, tx).await });
        Ok(rx)
    }

    async fn run_watch(
        &self,
        scope: PlacementScope,
        initial: PlacementSnapshot,
        notices: broadcast::Receiver<Notice>,
        out: mpsc::Sender<PlacementUpdate>,
    ) {
        let mut last: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if !emit(&mut last, initial, &out).await {
            return;
        }
        let mut notices = Some(notices);
        let mut recheck = tokio::time::interval(self.options.placement_recheck);
        recheck.tick().await;
        loop {
            let dirty = tokio::select! {
                _ = self.options.shutdown.cancelled() => return,
                _ = out.closed() => return,
                _ = recheck.tick() => {
                    if notices.is_none() {
                        notices = Some(self.hub.subscribe().await);
                    }
                    true
                }
                notice = next_notice(notices.as_mut()) => match notice {
                    Ok(Notice::Change(c)) => scope.affected_by(c.tenant),
                    Ok(Notice::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => {
                        // The listener stopped; re-checks cover until the next
                        // tick subscribes again.
                        notices = None;
                        true
                    }
                },
            };
            if !dirty {
                continue;
            }
            // Coalesce a burst of notices into one recomputation.
            if let Some(rx) = notices.as_mut() {
                while rx.try_recv().is_ok() {}
            }
            match self.placements(&scope).await {
                Ok(now) => {
                    if !emit(&mut last, now, &out).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "placement re-check failed; retrying later");
                }
            }
        }
    }
}

/// Sends what differs from `last` (new, changed and deleted virtual sites).
/// False when the receiver is gone.
async fn emit(
    last: &mut BTreeMap<String, Vec<String>>,
    now: PlacementSnapshot,
    out: &mpsc::Sender<PlacementUpdate>,
) -> bool {
    let revision = now.revision;
    let mut updates = Vec::new();
    let mut seen = BTreeSet::new();
    for p in now.placements {
        seen.insert(p.virtual_site.clone());
        if last.get(&p.virtual_site) != Some(&p.sites) {
            last.insert(p.virtual_site.clone(), p.sites.clone());
            updates.push(PlacementUpdate {
                placement: p,
                deleted: false,
            });
        }
    }
    last.retain(|vs, _| {
        let keep = seen.contains(vs);
        if !keep {
            updates.push(PlacementUpdate {
                placement: Placement {
                    virtual_site: vs.clone(),
                    sites: Vec::new(),
                    revision,
                },
                deleted: true,
            });
        }
        keep
    });
    for u in updates {
        if out.send(u).await.is_err() {
            return false;
        }
    }
    true
}

/// The next notice, or never when there is no subscription.
async fn next_notice(
    rx: Option<&mut broadcast::Receiver<Notice>>,
) -> Result<Notice, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
