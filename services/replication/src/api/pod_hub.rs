//! The per-process fan-out of pod change notifications: one `LISTEN`
//! (run by the background task) broadcasts the vK8s names that changed to
//! every WatchPods stream of this process.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Notifications kept for slow watchers; a lagging watcher re-reads.
const CAPACITY: usize = 1024;

pub struct PodHub {
    tx: broadcast::Sender<Arc<str>>,
}

impl Default for PodHub {
    fn default() -> Self {
        Self::new()
    }
}

impl PodHub {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// The pods of `vk` changed (None: maybe anything, e.g. after the
    /// listener reconnected).
    pub fn notify(&self, vk: Option<&str>) {
        let _ = self.tx.send(Arc::from(vk.unwrap_or("*")));
    }
}
