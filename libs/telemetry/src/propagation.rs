//! W3C trace-context propagation through gRPC metadata and HTTP headers.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

// The W3C propagator is used directly (not the global one) so propagation does not depend
// on whether `init` ran; `init` also installs it globally for other libraries.
fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

/// Writes the current tracing span's trace context (`traceparent`, `tracestate`) into
/// outgoing gRPC metadata. Does nothing when no OpenTelemetry layer is installed.
pub fn inject_context(metadata: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    propagator().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// Reads a remote trace context from incoming headers (an empty context when absent).
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    propagator().extract(&HeaderExtractor(headers))
}

/// A tonic client interceptor that injects the current trace context:
/// `XClient::with_interceptor(channel, manifold_telemetry::trace_interceptor)`.
pub fn trace_interceptor(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    inject_context(request.metadata_mut());
    Ok(request)
}
