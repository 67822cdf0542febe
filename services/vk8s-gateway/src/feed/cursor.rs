//! A position in the change log that yields every later change exactly once,
//! in revision order: first from the database (catching up), then from the
//! hub's broadcast, falling back to the database whenever the broadcast
//! lagged.

use std::collections::VecDeque;
use std::sync::Arc;

use manifold_db::{Db, Scope};
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use super::hub::{FeedMessage, Hub};
use crate::domain::Change;
use crate::encryption::Encryption;
use crate::error::GatewayError;
use crate::storage::changes::{self, KindFilter};

const PAGE: i64 = 500;

/// Which changes a cursor yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub vcluster_id: Uuid,
    pub group: String,
    pub kind: String,
}

impl Filter {
    fn matches(&self, c: &Change) -> bool {
        c.vcluster_id == self.vcluster_id && c.group == self.group && c.kind == self.kind
    }
}

/// What a cursor yields.
#[derive(Debug, Clone)]
pub enum Step {
    Change(Arc<Change>),
    /// Nothing more up to this revision (the cursor's filter included).
    Progress(i64),
}

pub struct Cursor {
    db: Db,
    encryption: Arc<Encryption>,
    scope: Scope,
    filter: Option<Filter>,
    rx: broadcast::Receiver<FeedMessage>,
    /// Every matching change up to here was yielded or sits in `pending`.
    seen: i64,
    pending: VecDeque<Arc<Change>>,
    caught_up: bool,
}

fn gone(from: i64, compacted: i64) -> GatewayError {
    GatewayError::Gone(format!(
        "too old resource version: {from} ({compacted}); the change log was compacted, list again"
    ))
}

impl Cursor {
    /// A cursor yielding changes after `from`. `Gone` when the log was
    /// compacted past `from`.
    pub async fn start(
        hub: &Hub,
        db: Db,
        encryption: Arc<Encryption>,
        scope: Scope,
        filter: Option<Filter>,
        from: i64,
    ) -> Result<Self, GatewayError> {
        // Subscribe before reading the database so nothing falls in between.
        let rx = hub.subscribe();
        let mut cursor = Self {
            db,
            encryption,
            scope,
            filter,
            rx,
            seen: from,
            pending: VecDeque::new(),
            caught_up: false,
        };
        cursor.catch_up().await?;
        Ok(cursor)
    }

    /// The revision a bookmark may carry: every matching change up to it has
    /// been yielded.
    pub fn bookmark(&self) -> Option<i64> {
        self.pending.is_empty().then_some(self.seen)
    }

    async fn catch_up(&mut self) -> Result<(), GatewayError> {
        let after = self.seen;
        let filter = self.filter.clone();
        let enc = &*self.encryption;
        let read = manifold_db::transaction!(
            self.db,
            "vk8s_watch_read",
            self.scope,
            GatewayError,
            |tx| {
                let f = filter.as_ref().map(|f| KindFilter {
                    vcluster_id: f.vcluster_id,
                    group: &f.group,
                    kind: &f.kind,
                });
                changes::read_after(tx, enc, f, after, PAGE).await
            }
        )?;
        if after < read.compacted {
            return Err(gone(after, read.compacted));
        }
        let full = read.changes.len() as i64 == PAGE;
        for c in read.changes {
            self.seen = c.revision;
            self.pending.push_back(Arc::new(c));
        }
        if !full {
            self.seen = self.seen.max(read.head);
            self.caught_up = true;
        }
        Ok(())
    }

    /// The next change or progress mark. Cancel-safe.
    pub async fn next(&mut self) -> Result<Step, GatewayError> {
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Ok(Step::Change(c));
            }
            if !self.caught_up {
                self.catch_up().await?;
                continue;
            }
            match self.rx.recv().await {
                Ok(FeedMessage::Change(c)) => {
                    if c.revision <= self.seen {
                        continue;
                    }
                    self.seen = c.revision;
                    if self.filter.as_ref().is_none_or(|f| f.matches(&c)) {
                        return Ok(Step::Change(c));
                    }
                }
                Ok(FeedMessage::Progress(h)) => {
                    self.seen = self.seen.max(h);
                    return Ok(Step::Progress(self.seen));
                }
                Ok(FeedMessage::Reset) => return Err(gone(self.seen, self.seen)),
                Err(RecvError::Lagged(_)) => self.caught_up = false,
                Err(RecvError::Closed) => {
                    return Err(GatewayError::Internal("the change hub stopped".into()));
                }
            }
        }
    }
}
