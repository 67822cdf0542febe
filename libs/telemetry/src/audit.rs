//! The audit trail's hand-off point: what the request paths record (one
//! [`AuditRecord`] per mutating call) and the bounded queue that carries records
//! to the writer, which stores them in batches off the request path.
//!
//! Recording never waits: when the queue is full (the database is slow or down)
//! the record is dropped and counted in `manifold_audit_events_dropped_total`.
//!
//! Records of anonymous calls (no valid credential: anyone can make them, by
//! the thousand) have their own, smaller queue
//! ([`ANONYMOUS_QUEUE_FRACTION`] of the capacity), and the writer drains the
//! authenticated queue first: an anonymous flood can fill only its own queue
//! and never pushes a user's or a site's write out of the trail.

use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;

use crate::Metrics;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// A user's bearer token.
    User,
    /// A site agent's client certificate.
    Site,
    /// No valid credential.
    Anonymous,
}

impl ActorKind {
    /// The stored spelling: `user`, `site`, `anonymous`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Site => "site",
            ActorKind::Anonymous => "anonymous",
        }
    }
}

/// Which API the call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditSource {
    Grpc,
    Kubernetes,
}

impl AuditSource {
    /// The stored spelling: `grpc`, `kubernetes`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditSource::Grpc => "grpc",
            AuditSource::Kubernetes => "kubernetes",
        }
    }
}

/// One mutating call: who, what, when and how it ended. Never holds request
/// bodies or credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When the call arrived.
    pub time: SystemTime,
    /// The tenant name (`acme`) the call belongs to; `None` for system-level calls.
    pub tenant: Option<String>,
    /// `users/u`, `tenants/t/users/u`, `sites/s`, or empty.
    pub actor: String,
    pub actor_kind: ActorKind,
    pub source: AuditSource,
    /// gRPC: `pkg.Service/Method`; Kubernetes: the verb (`create`, `patch`, ...).
    pub method: String,
    /// The resource the call named (may be empty).
    pub resource: String,
    /// Kubernetes only: HTTP method and path without the query.
    pub http_method: String,
    pub path: String,
    /// gRPC status code name (`OK`) or HTTP status (`201`).
    pub code: String,
    pub success: bool,
    /// Error message of a failed call, at most [`MAX_MESSAGE_BYTES`].
    pub message: String,
    pub request_id: String,
    pub trace_id: String,
}

/// Longest error message kept in a record.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message` cut to at most [`MAX_MESSAGE_BYTES`] on a character boundary.
pub fn truncate_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

/// The anonymous queue holds this fraction (1/n) of the authenticated one.
pub const ANONYMOUS_QUEUE_FRACTION: usize = 10;

/// Counters shared by the queue and the writer.
#[derive(Clone, Debug)]
pub struct AuditMetrics {
    /// Records refused because the queue was full or the writer gone.
    pub dropped: Counter,
    /// Of those, records of anonymous calls (their own queue was full).
    pub dropped_anonymous: Counter,
    /// Records stored.
    pub written: Counter,
    /// Records lost because their batch could not be stored.
    pub write_failed: Counter,
    /// Records waiting in the queue.
    pub queued: Gauge,
}

impl AuditMetrics {
    fn register(metrics: &Metrics) -> Self {
        Self {
            dropped: metrics.register_counter(
                "manifold_audit_events_dropped",
                "Audit records dropped because the write queue was full or closed",
            ),
            dropped_anonymous: metrics.register_counter(
                "manifold_audit_anonymous_events_dropped",
                "Audit records of anonymous calls dropped because their own queue was full or closed",
            ),
            written: metrics.register_counter(
                "manifold_audit_events_written",
                "Audit records stored in audit.events",
            ),
            write_failed: metrics.register_counter(
                "manifold_audit_events_write_failed",
                "Audit records lost because their batch could not be stored after retries",
            ),
            queued: metrics.register_gauge(
                "manifold_audit_queue_length",
                "Audit records waiting to be written",
            ),
        }
    }
}

/// Where the request paths put audit records; cheap to clone. Recording never
/// blocks (see the module documentation).
#[derive(Clone, Debug)]
pub struct AuditSink {
    sender: Option<mpsc::Sender<AuditRecord>>,
    /// Records whose actor is [`ActorKind::Anonymous`].
    anonymous: Option<mpsc::Sender<AuditRecord>>,
    metrics: Option<AuditMetrics>,
}

/// The writer's end of the queues.
pub struct AuditReceiver {
    pub receiver: mpsc::Receiver<AuditRecord>,
    pub anonymous: mpsc::Receiver<AuditRecord>,
    pub metrics: AuditMetrics,
}

impl AuditReceiver {
    /// The next record, authenticated ones first; `None` once every sink
    /// is dropped and both queues are empty.
    pub async fn recv(&mut self) -> Option<AuditRecord> {
        tokio::select! {
            biased;
            Some(r) = self.receiver.recv() => Some(r),
            Some(r) = self.anonymous.recv() => Some(r),
            else => None,
        }
    }

    /// A record waiting now, authenticated ones first.
    pub fn try_recv(&mut self) -> Option<AuditRecord> {
        self.receiver
            .try_recv()
            .or_else(|_| self.anonymous.try_recv())
            .ok()
    }
}

impl AuditSink {
    /// A queue of `capacity` records (and one of a tenth of it for anonymous
    /// calls); registers the audit metrics in `metrics` (once per process).
    pub fn channel(metrics: &Metrics, capacity: usize) -> (AuditSink, AuditReceiver) {
        let audit_metrics = AuditMetrics::register(metrics);
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let (anonymous_sender, anonymous) =
            mpsc::channel((capacity / ANONYMOUS_QUEUE_FRACTION).max(1));
        (
            AuditSink {
                sender: Some(sender),
                anonymous: Some(anonymous_sender),
                metrics: Some(audit_metrics.clone()),
            },
            AuditReceiver {
                receiver,
                anonymous,
                metrics: audit_metrics,
            },
        )
    }

    /// A sink that discards everything (processes and tests without an audit trail).
    pub fn disabled() -> Self {
        Self {
            sender: None,
            anonymous: None,
            metrics: None,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Queues `record` (anonymous ones in their own queue); drops it (and
    /// counts the drop) when its queue is full.
    pub fn record(&self, record: AuditRecord) {
        let anonymous = record.actor_kind == ActorKind::Anonymous;
        let sender = if anonymous {
            &self.anonymous
        } else {
            &self.sender
        };
        let Some(sender) = sender else {
            return;
        };
        match sender.try_send(record) {
            Ok(()) => {
                if let Some(m) = &self.metrics {
                    m.queued.inc();
                }
            }
            Err(error) => {
                if let Some(m) = &self.metrics {
                    if anonymous {
                        m.dropped_anonymous.inc();
                    }
                    let dropped = m.dropped.inc();
                    // One warning per 1,000 drops is enough to notice.
                    if dropped % 1000 == 0 {
                        let reason = match error {
                            mpsc::error::TrySendError::Full(_) => "queue full",
                            mpsc::error::TrySendError::Closed(_) => "writer stopped",
                        };
                        tracing::warn!(
                            reason,
                            anonymous,
                            dropped = dropped + 1,
                            "audit record dropped"
                        );
                    }
                }
            }
        }
    }
}

/// The W3C trace id (32 hex digits) of the current span, when it is traced.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(method: &str) -> AuditRecord {
        AuditRecord {
            time: SystemTime::now(),
            tenant: None,
            actor: "users/admin".into(),
            actor_kind: ActorKind::User,
            source: AuditSource::Grpc,
            method: method.into(),
            resource: String::new(),
            http_method: String::new(),
            path: String::new(),
            code: "OK".into(),
            success: true,
            message: String::new(),
            request_id: String::new(),
            trace_id: String::new(),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let metrics = Metrics::new();
        let (sink, mut rx) = AuditSink::channel(&metrics, 2);
        for i in 0..5 {
            sink.record(record(&format!("m{i}")));
        }
        assert_eq!(rx.metrics.dropped.get(), 3);
        assert_eq!(rx.try_recv().unwrap().method, "m0");
        assert!(
            metrics
                .encode()
                .contains("manifold_audit_events_dropped_total 3")
        );
    }

    #[tokio::test]
    async fn an_anonymous_flood_never_pushes_out_authenticated_records() {
        let metrics = Metrics::new();
        let (sink, mut rx) = AuditSink::channel(&metrics, 20);
        for i in 0..1000 {
            let mut r = record(&format!("anon{i}"));
            r.actor_kind = ActorKind::Anonymous;
            r.actor = String::new();
            sink.record(r);
        }
        for i in 0..20 {
            sink.record(record(&format!("user{i}")));
        }
        // Only the anonymous queue (2 = 20 / 10) filled up.
        assert_eq!(rx.metrics.dropped.get(), 998);
        assert_eq!(rx.metrics.dropped_anonymous.get(), 998);
        // The writer sees every authenticated record first, then the rest.
        for i in 0..20 {
            assert_eq!(rx.recv().await.unwrap().method, format!("user{i}"));
        }
        assert_eq!(rx.recv().await.unwrap().method, "anon0");
        assert_eq!(rx.recv().await.unwrap().method, "anon1");
        drop(sink);
        assert!(rx.recv().await.is_none());
        assert!(
            metrics
                .encode()
                .contains("manifold_audit_anonymous_events_dropped_total 998")
        );
    }

    #[test]
    fn messages_are_cut_on_char_boundaries() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = truncate_message(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate_message("short"), "short");
    }
}
