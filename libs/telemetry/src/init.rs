//! Process-wide tracing setup: `EnvFilter` + fmt output, plus OpenTelemetry OTLP export of
//! traces and metrics when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::{LogFormat, Result, TelemetryError};

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a previous `init` installed the subscriber.
static INITIALIZED: Mutex<bool> = Mutex::new(false);

/// Keeps the OpenTelemetry pipelines alive; dropping it flushes and shuts them down.
/// Prefer `guard.shutdown().await` at the end of an async `main`.
#[must_use = "dropping the guard shuts telemetry export down"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Whether this guard owns an OTLP export pipeline.
    pub fn otel_enabled(&self) -> bool {
        self.tracer.is_some() || self.meter.is_some()
    }

    /// Flushes and shuts down export without blocking the async runtime.
    pub async fn shutdown(mut self) {
        let (tracer, meter) = (self.tracer.take(), self.meter.take());
        if tracer.is_none() && meter.is_none() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || shutdown_providers(tracer, meter)).await;
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let (tracer, meter) = (self.tracer.take(), self.meter.take());
        if tracer.is_none() && meter.is_none() {
            return;
        }
        let run = move || shutdown_providers(tracer, meter);
        // The exporters' I/O runs on the Tokio runtime: on a multi-threaded runtime,
        // give this worker's other tasks away while waiting. Either way it is bounded.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }
}

fn shutdown_providers(tracer: Option<SdkTracerProvider>, meter: Option<SdkMeterProvider>) {
    if let Some(tracer) = tracer {
        let _ = tracer.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
    }
    if let Some(meter) = meter {
        let _ = meter.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
    }
}

/// Whether OTLP export is requested by the standard environment variables.
fn otel_requested() -> bool {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    let disabled = std::env::var("OTEL_SDK_DISABLED")
        .map(|v| v.trim().eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    !endpoint.trim().is_empty() && !disabled
}

fn env_filter(filter: &str) -> Result<EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(rust_log) if !rust_log.trim().is_empty() => {
            EnvFilter::try_new(&rust_log).map_err(|e| TelemetryError::Filter {
                filter: format!("RUST_LOG={rust_log}"),
                message: e.to_string(),
            })
        }
        _ => EnvFilter::try_new(filter).map_err(|e| TelemetryError::Filter {
            filter: filter.to_owned(),
            message: e.to_string(),
        }),
    }
}

/// Spans of the exporter's own transport must not be exported (that would feed itself).
fn exportable_target(target: &str) -> bool {
    let crate_name = target.split("::").next().unwrap_or(target);
    !matches!(
        crate_name,
        "h2" | "hyper"
            | "hyper_util"
            | "tonic"
            | "tower"
            | "opentelemetry"
            | "opentelemetry_sdk"
            | "opentelemetry_otlp"
    )
}

/// Installs the global tracing subscriber. `filter` holds `EnvFilter` directives, and
/// `RUST_LOG` wins when set. With `OTEL_EXPORTER_OTLP_ENDPOINT` set (and
/// `OTEL_SDK_DISABLED` not `true`), traces and metrics are exported over OTLP/gRPC; this
/// then has to run inside a Tokio runtime. The W3C trace-context propagator is installed
/// globally. A second call (or a call after another subscriber was installed) is a no-op
/// returning an empty guard.
pub fn init(service_name: &str, format: LogFormat, filter: &str) -> Result<TelemetryGuard> {
    let mut initialized = INITIALIZED.lock().unwrap_or_else(|e| e.into_inner());
    if *initialized || tracing::dispatcher::has_been_set() {
        return Ok(TelemetryGuard::default());
    }
    let env_filter = env_filter(filter)?;

    let mut guard = TelemetryGuard::default();
    if otel_requested() {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TelemetryError::NoRuntime);
        }
        // OTEL_SERVICE_NAME, the standard override, wins over the built-in name
        // (two processes of one binary running different services).
        let service_name = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| service_name.to_owned());
        let resource = Resource::builder().with_service_name(service_name).build();
        let spans = SpanExporter::builder().with_tonic().build()?;
        guard.tracer = Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .with_resource(resource.clone())
                .build(),
        );
        let metrics = MetricExporter::builder().with_tonic().build()?;
        guard.meter = Some(
            SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(metrics).build())
                .with_resource(resource)
                .build(),
        );
    }

    let otel_layer = guard.tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service_name.to_owned()))
            .with_filter(filter_fn(|meta| exportable_target(meta.target())))
    });
    let fmt_layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(env_filter)
        .with(otel_layer)
        .with(fmt_layer)
        .try_init();
    if installed.is_err() {
        // Someone else installed a global subscriber first: leave theirs in place.
        return Ok(TelemetryGuard::default());
    }
    *initialized = true;

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(tracer) = &guard.tracer {
        opentelemetry::global::set_tracer_provider(tracer.clone());
    }
    if let Some(meter) = &guard.meter {
        opentelemetry::global::set_meter_provider(meter.clone());
    }
    tracing::debug!(
        service = service_name,
        otlp = guard.otel_enabled(),
        "telemetry initialised"
    );
    Ok(guard)
}

/// [`init`] from the `[telemetry]` settings section.
pub fn init_from_settings(
    service_name: &str,
    settings: &manifold_config::Telemetry,
) -> Result<TelemetryGuard> {
    init(service_name, settings.log_format, &settings.log_filter)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bad_filter_is_reported() {
        if std::env::var_os("RUST_LOG").is_none() {
            let err = super::env_filter("info,[bad").unwrap_err();
            assert!(err.to_string().contains("[bad"), "{err}");
        }
        assert!(super::env_filter("info,manifold=debug").is_ok());
    }

    #[test]
    fn exporter_transport_spans_are_not_exported() {
        assert!(!super::exportable_target("h2::proto"));
        assert!(!super::exportable_target("tonic"));
        assert!(!super::exportable_target("opentelemetry_sdk"));
        assert!(super::exportable_target("manifold_tenancy::grpc"));
        assert!(super::exportable_target("h2o"));
    }
}
