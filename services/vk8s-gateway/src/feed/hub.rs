//! The per-process change hub: wakes on `NOTIFY vk8s_changes` (and on a
//! short poll, in case a notification is lost while the listener
//! reconnects), reads new log rows in revision order and broadcasts them to
//! every watcher of this process.

use std::sync::Arc;
use std::time::Duration;

use manifold_db::{Db, DbError, Scope, sqlx::postgres::PgListener};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::domain::Change;
use crate::encryption::Encryption;
use crate::error::GatewayError;
use crate::storage::{changes, objects::NOTIFY_CHANNEL};

/// What watchers receive, in revision order.
#[derive(Debug, Clone)]
pub enum FeedMessage {
    Change(Arc<Change>),
    /// Every change up to this revision has been broadcast.
    Progress(i64),
    /// The hub fell behind the compactor: changes were lost to it, so every
    /// watcher must start over from a fresh list.
    Reset,
}

const BATCH: i64 = 512;
const CAPACITY: usize = 8192;

struct Inner {
    tx: broadcast::Sender<FeedMessage>,
    wake: Notify,
}

/// Cloneable handle to the hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            inner: Arc::new(Inner {
                tx,
                wake: Notify::new(),
            }),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FeedMessage> {
        self.inner.tx.subscribe()
    }

    /// Reads the log now rather than at the next notification or poll
    /// (called after this process commits a change).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs until `shutdown`: a listener task plus the read loop.
    pub async fn run(
        self,
        db: Db,
        encryption: Arc<Encryption>,
        poll: Duration,
        shutdown: CancellationToken,
    ) {
        let mut last = loop {
            let head =
                manifold_db::transaction!(db, "vk8s_feed_head", Scope::System, DbError, |tx| {
                    changes::revisions(tx).await
                });
            match head {
                Ok((head, _)) => break head,
                Err(e) => {
                    tracing::warn!(error = %e, "change hub: reading the head revision");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let listener = tokio::spawn(listen(db.clone(), self.clone(), shutdown.clone()));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            if let Err(e) = self.drain(&db, &encryption, &mut last).await {
                tracing::warn!(error = %e, "change hub: reading the change log");
            }
        }
        let _ = listener.await;
    }

    async fn drain(&self, db: &Db, enc: &Encryption, last: &mut i64) -> Result<(), GatewayError> {
        let start = *last;
        loop {
            let after = *last;
            let read = manifold_db::transaction!(
                db,
                "vk8s_feed_read",
                Scope::System,
                GatewayError,
                |tx| { changes::read_after(tx, enc, None, after, BATCH).await }
            )?;
            let Some(first) = read.changes.first() else {
                if read.head > *last && read.compacted > *last {
                    tracing::warn!(
                        from = *last,
                        compacted = read.compacted,
                        "change hub fell behind compaction"
                    );
                    let _ = self.inner.tx.send(FeedMessage::Reset);
                    *last = read.head;
                }
                break;
            };
            if first.revision != *last + 1 {
                tracing::warn!(
                    from = *last,
                    next = first.revision,
                    "change hub fell behind compaction"
                );
                let _ = self.inner.tx.send(FeedMessage::Reset);
            }
            let n = read.changes.len() as i64;
            for change in read.changes {
                *last = change.revision;
                // No receivers is fine: nobody watches right now.
                let _ = self.inner.tx.send(FeedMessage::Change(Arc::new(change)));
            }
            if n < BATCH {
                break;
            }
        }
        if *last != start {
            let _ = self.inner.tx.send(FeedMessage::Progress(*last));
        }
        Ok(())
    }
}

/// Turns notifications into wake-ups, reconnecting with back-off.
async fn listen(db: Db, hub: Hub, shutdown: CancellationToken) {
    let mut delay = Duration::from_millis(200);
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(db.pool()).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, manifold_db::sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = shutdown.cancelled() => return,
            l = connected => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "change hub: LISTEN failed; polling until it works");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        delay = Duration::from_millis(200);
        // Anything committed while we were not listening.
        hub.wake();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.try_recv() => match n {
                    Ok(Some(_)) => hub.wake(),
                    // Connection lost; the listener reconnects on the next call.
                    Ok(None) => hub.wake(),
                    Err(e) => {
                        tracing::warn!(error = %e, "change hub: notification stream failed");
                        break;
                    }
                },
            }
        }
    }
}
