//! Tracing, OpenTelemetry export, trace-context propagation over gRPC, Prometheus
//! metrics, and the admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
#![forbid(unsafe_code)]

mod admin;
pub mod audit;
mod error;
mod grpc_layer;
mod init;
mod metrics;
mod propagation;

#[cfg(test)]
mod tests;

pub use admin::{admin_router, serve_admin, serve_admin_on};
pub use audit::{AuditRecord, AuditSink};
pub use error::TelemetryError;
pub use grpc_layer::{GrpcMetricsLayer, GrpcMetricsService, MeteredBody};
pub use init::{TelemetryGuard, init, init_from_settings};
pub use manifold_config::LogFormat;
pub use metrics::{Metrics, grpc_code_name};
pub use propagation::{extract_context, inject_context, trace_interceptor};

/// Result alias for this crate.
pub type Result<T, E = TelemetryError> = std::result::Result<T, E>;
