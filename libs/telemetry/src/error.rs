//! The crate's error type.

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("OTLP export needs a Tokio runtime: call telemetry::init from within one")]
    NoRuntime,
    #[error("installing the tracing subscriber: {0}")]
    Subscriber(String),
}
