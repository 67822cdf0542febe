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

    /// Starts the tenant-deletion cleaner until `stop` resolves: every
    /// deleted tenant's name is recorded with its deletion time, so a tenant
    /// later created under that name reads only its own events (the older
    /// ones stay, for operators, in system scope). One replica per pass.
    pub fn spawn_tenant_cleaner(
        &self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let db = self.api.db.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop => {}
                _ = run_tenant_cleaner(db) => {}
            }
        })
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

async fn run_tenant_cleaner(db: Db) {
    use manifold_db::deletions::{self, Cleaner};
    loop {
        tokio::time::sleep(deletions::POLL_INTERVAL).await;
        let result = manifold_db::transaction!(
            db,
            "audit_tenant_deletion",
            manifold_db::Scope::System,
            AuditError,
            |tx| {
                for d in deletions::claim(tx, Cleaner::Audit, None, 32).await? {
                    if d.namespace.is_none() {
                        store::record_tenant_deletion(tx, &d.tenant, d.delete_time).await?;
                    }
                    deletions::done(tx, Cleaner::Audit, d.id).await?;
                }
                Ok(())
            }
        );
        if let Err(e) = result {
            tracing::warn!(error = %e, "recording deleted tenants in the audit log");
        }
    }
}
