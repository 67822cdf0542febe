//! Routing of pod logs: a StreamLogs call registers a route under a fresh
//! request id, the agent's LogChunks of that id are delivered to it. The
//! agent stream's reader never waits for a slow log reader: when a route's
//! buffer is full the request is ended with RESOURCE_EXHAUSTED (and
//! cancelled on the site).

use std::{collections::HashMap, sync::Mutex};

use manifold_proto::replication::v1 as pb;
use tokio::sync::mpsc;

/// Chunks a route buffers before its reader is considered stuck.
pub const ROUTE_BUFFER: usize = 256;

pub type Chunk = Result<pb::LogChunk, tonic::Status>;

struct Route {
    site: String,
    tx: mpsc::Sender<Chunk>,
}

#[derive(Default)]
pub struct LogRoutes {
    routes: Mutex<HashMap<String, Route>>,
}

/// What became of a delivered chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Nobody waits for it (the reader left): cancel it on the site.
    Unrouted,
    /// The reader is too slow: the request was ended; cancel it on the site.
    Overflow,
}

impl LogRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new route for a request to `site`.
    pub fn open(&self, site: &str) -> (String, mpsc::Receiver<Chunk>) {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = mpsc::channel(ROUTE_BUFFER);
        self.lock().insert(
            id.clone(),
            Route {
                site: site.to_owned(),
                tx,
            },
        );
        (id, rx)
    }

    pub fn close(&self, request_id: &str) {
        self.lock().remove(request_id);
    }

    /// A chunk from `site`'s agent. Chunks of other sites' requests are
    /// refused (an agent can only answer its own requests).
    pub fn deliver(&self, site: &str, chunk: pb::LogChunk) -> Delivery {
        let mut routes = self.lock();
        let Some(route) = routes.get(&chunk.request_id) else {
            return Delivery::Unrouted;
        };
        if route.site != site {
            return Delivery::Unrouted;
        }
        let last = chunk.eof || !chunk.error.is_empty();
        let id = chunk.request_id.clone();
        let result = if chunk.error.is_empty() {
            Ok(chunk)
        } else {
            Err(tonic::Status::failed_precondition(format!(
                "the site could not read the log: {}",
                chunk.error
            )))
        };
        let outcome = match route.tx.try_send(result) {
            Ok(()) => Delivery::Delivered,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                routes.remove(&id);
                return Delivery::Unrouted;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let _ = route.tx.try_send(Err(tonic::Status::resource_exhausted(
                    "the log reader fell too far behind",
                )));
                routes.remove(&id);
                return Delivery::Overflow;
            }
        };
        if last {
            routes.remove(&id);
        }
        outcome
    }

    /// The site's stream ended: its requests fail.
    pub fn end_site(&self, site: &str) {
        let mut routes = self.lock();
        routes.retain(|_, r| {
            if r.site == site {
                let _ = r.tx.try_send(Err(tonic::Status::unavailable(
                    "the site's agent disconnected; retry",
                )));
                false
            } else {
                true
            }
        });
    }
}
