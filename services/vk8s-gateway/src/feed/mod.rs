//! The runtime around the change log: the per-process hub that fans new
//! changes out, cursors that read the log gap-free from any revision, and
//! the compactor.

mod cursor;
mod hub;

use std::time::Duration;

use manifold_db::{Db, DbError, Scope};
use tokio_util::sync::CancellationToken;

pub use cursor::{Cursor, Filter, Step};
pub use hub::Hub;

use crate::storage::changes;

/// Trims the change log every `interval`, keeping at least `keep`
/// revisions. Replicas take turns through an advisory lock, so running it
/// everywhere is safe.
pub async fn run_compactor(db: Db, keep: i64, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let result = manifold_db::transaction!(db, "vk8s_compact", Scope::System, DbError, |tx| {
            changes::compact(tx, keep).await
        });
        match result {
            Ok(Some(revision)) => tracing::debug!(revision, "compacted the vk8s change log"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "compacting the vk8s change log"),
        }
    }
}
