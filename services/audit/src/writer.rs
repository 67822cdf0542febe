//! The batch writer: drains the process's audit queue into `audit.events`.
//!
//! A batch closes after [`BATCH_WINDOW`] or [`MAX_BATCH`] records, so a call's
//! row is normally visible well within a second. A batch that cannot be stored
//! is retried with backoff for a few seconds and then given up (counted in
//! `manifold_audit_events_write_failed_total`); meanwhile new records wait in
//! the bounded queue, and once that is full they are dropped (counted in
//! `manifold_audit_events_dropped_total`), never blocking a request.

use std::time::Duration;

use manifold_db::{Db, Scope};
use manifold_telemetry::AuditRecord;
use manifold_telemetry::audit::AuditReceiver;

use crate::AuditError;
use crate::store;

pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
pub const MAX_BATCH: usize = 500;
const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Runs until every sender is gone, then writes what is left and returns.
pub async fn run(db: Db, mut queue: AuditReceiver) {
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(MAX_BATCH);
    loop {
        let Some(first) = queue.recv().await else {
            return;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        let mut closed = false;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(record)) => batch.push(record),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let n = batch.len() as i64;
        queue.metrics.queued.dec_by(n);
        if write(&db, &batch).await {
            queue.metrics.written.inc_by(n as u64);
        } else {
            queue.metrics.write_failed.inc_by(n as u64);
        }
        batch.clear();
        if closed {
            return;
        }
    }
}

async fn write(db: &Db, batch: &[AuditRecord]) -> bool {
    for (attempt, delay) in std::iter::once(Duration::ZERO)
        .chain(RETRY_DELAYS)
        .enumerate()
    {
        tokio::time::sleep(delay).await;
        let result =
            manifold_db::transaction!(db, "audit_insert", Scope::System, AuditError, |tx| {
                store::insert(tx, batch).await?;
                Ok(())
            });
        match result {
            Ok(()) => return true,
            Err(error) if attempt < RETRY_DELAYS.len() => {
                tracing::warn!(%error, records = batch.len(), attempt, "storing audit records failed; retrying");
            }
            Err(error) => {
                tracing::error!(%error, records = batch.len(), "storing audit records failed; they are lost");
            }
        }
    }
    false
}
