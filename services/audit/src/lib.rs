//! The audit log (`audit` schema, `manifold.audit.v1`).
//!
//! - Recording: every process builds one [`Audit`], whose [`AuditSink`] the
//!   gRPC server (`manifold_server::GrpcServer::audit`) and the Kubernetes API
//!   (`Gateway::with_audit`) record mutating calls into; a background task
//!   writes them to `audit.events` in batches (see [`writer`]).
//! - Reading: `AuditService.ListAuditEvents`, newest first, filtered and
//!   paginated, for tenant-admins (their tenant) and system-admins (all).
//!
//! Layout: `domain` (validated queries, page tokens), `store` (SQL),
//! `writer` (the batch writer), `grpc` (the adapter).
#![forbid(unsafe_code)]

mod domain;
mod error;
mod grpc;
mod store;
pub mod writer;

use std::sync::Arc;

use manifold_db::Db;
use manifold_telemetry::{AuditSink, Metrics};

pub use domain::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use error::AuditError;

/// Fully qualified gRPC service names, for the health service.
pub const SERVICE_NAMES: &[&str] = &["manifold.audit.v1.AuditService"];

/// Records waiting for the writer before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 10_000;

/// The audit log of one process; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    api: Arc<grpc::AuditApi>,
    sink: AuditSink,
}

impl Audit {
    /// Creates the queue (registering the `manifold_audit_*` metrics in
    /// `metrics`) and spawns its writer, which runs until every clone of the
    /// sink is dropped and then flushes. Must run inside a Tokio runtime.
    pub fn start(db: Db, metrics: &Metrics) -> Self {
        let (sink, queue) = AuditSink::channel(metrics, QUEUE_CAPACITY);
        tokio::spawn(writer::run(db.clone(), queue));
        Self {
            api: Arc::new(grpc::AuditApi { db }),
            sink,
        }
    }

    /// Where this process records mutating calls.
    pub fn sink(&self) -> AuditSink {
        self.sink.clone()
    }

    /// Adds `AuditService` to a gRPC server's routes (whose auth layer puts
    /// the caller's principal in the request extensions).
    pub fn add_to(&self, routes: &mut tonic::service::RoutesBuilder) {
        routes.add_service(
            manifold_proto::audit::v1::audit_service_server::AuditServiceServer::from_arc(
                self.api.clone(),
            ),
        );
    }
}
