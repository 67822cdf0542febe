//! Prometheus metrics (prometheus-client) shared by every part of a process, mirrored into
//! OpenTelemetry instruments so they are exported over OTLP when that is configured.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::KeyValue;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use tonic::Code;

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    code: String,
}

type DurationFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct OtelInstruments {
    rpc_requests: opentelemetry::metrics::Counter<u64>,
    rpc_duration: opentelemetry::metrics::Histogram<f64>,
    http_requests: opentelemetry::metrics::Counter<u64>,
    http_duration: opentelemetry::metrics::Histogram<f64>,
}

impl OtelInstruments {
    fn new() -> Self {
        let meter = opentelemetry::global::meter("manifold");
        let bounds = DURATION_BUCKETS.to_vec();
        Self {
            rpc_requests: meter
                .u64_counter("rpc.server.requests")
                .with_description("gRPC requests handled")
                .build(),
            rpc_duration: meter
                .f64_histogram("rpc.server.call.duration")
                .with_unit("s")
                .with_description("gRPC request duration")
                .with_boundaries(bounds.clone())
                .build(),
            http_requests: meter
                .u64_counter("http.server.requests")
                .with_description("HTTP requests handled")
                .build(),
            http_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("HTTP request duration")
                .with_boundaries(bounds)
                .build(),
        }
    }
}

/// Refreshes gauges from live state just before they are encoded.
type ScrapeHook = Box<dyn Fn() + Send + Sync>;

struct Inner {
    registry: Mutex<Registry>,
    on_scrape: Mutex<Vec<ScrapeHook>>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: DurationFamily<RpcLabels>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: DurationFamily<HttpLabels>,
    otel: OtelInstruments,
}

/// A process's metrics registry with the standard RPC and HTTP series. Cheap to clone.
///
/// The OpenTelemetry mirror binds to the global meter provider current at construction:
/// create `Metrics` after [`crate::init`].
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let rpc_duration: DurationFamily<RpcLabels> =
            Family::new_with_constructor(duration_histogram);
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration: DurationFamily<HttpLabels> =
            Family::new_with_constructor(duration_histogram);
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "rpc_requests",
            "gRPC requests handled, by service, method and status code",
            rpc_requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "gRPC request duration in seconds",
            rpc_duration.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests handled, by route, method and status code",
            http_requests.clone(),
        );
        registry.register(
            "http_duration_seconds",
            "HTTP request duration in seconds",
            http_duration.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                on_scrape: Mutex::new(Vec::new()),
                rpc_requests,
                rpc_duration,
                http_requests,
                http_duration,
                otel: OtelInstruments::new(),
            }),
        }
    }

    /// Records one finished gRPC call.
    pub fn record_rpc(&self, service: &str, method: &str, code: Code, duration: Duration) {
        let code = grpc_code_name(code);
        let labels = RpcLabels {
            service: service.to_owned(),
            method: method.to_owned(),
            code: code.to_owned(),
        };
        let secs = duration.as_secs_f64();
        self.inner.rpc_requests.get_or_create(&labels).inc();
        self.inner.rpc_duration.get_or_create(&labels).observe(secs);
        let attributes = [
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", labels.service),
            KeyValue::new("rpc.method", labels.method),
            KeyValue::new("rpc.grpc.status_code", code),
        ];
        self.inner.otel.rpc_requests.add(1, &attributes);
        self.inner.otel.rpc_duration.record(secs, &attributes);
    }

    /// Records one finished HTTP request. `route` is the route template
    /// (`/vk8s/{tenant}/...`), never the raw path, to keep label cardinality bounded.
    pub fn record_http(&self, route: &str, method: &str, status: u16, duration: Duration) {
        let labels = HttpLabels {
            route: route.to_owned(),
            method: method.to_owned(),
            code: status.to_string(),
        };
        let secs = duration.as_secs_f64();
        self.inner.http_requests.get_or_create(&labels).inc();
        self.inner
            .http_duration
            .get_or_create(&labels)
            .observe(secs);
        let attributes = [
            KeyValue::new("http.route", labels.route),
            KeyValue::new("http.request.method", labels.method),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        self.inner.otel.http_requests.add(1, &attributes);
        self.inner.otel.http_duration.record(secs, &attributes);
    }

    /// The registry, for registering a crate's own metrics (families, histograms, ...).
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `metric` (keep a clone to update it) under `name`.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry().register(name, help, metric);
    }

    /// Registers and returns a new gauge.
    pub fn register_gauge(&self, name: &str, help: &str) -> Gauge {
        let gauge = Gauge::default();
        self.register(name, help, gauge.clone());
        gauge
    }

    /// Registers and returns a new counter (exported as `<name>_total`).
    pub fn register_counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.register(name, help, counter.clone());
        counter
    }

    /// Runs `hook` before every [`Metrics::encode`], to set gauges from state
    /// that is cheaper to read on demand than to track (pool use, sessions).
    pub fn on_scrape(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.inner
            .on_scrape
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(hook));
    }

    /// Everything registered, in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        for hook in self
            .inner
            .on_scrape
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            hook();
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}

/// The canonical upper-case name of a gRPC status code (`OK`, `NOT_FOUND`, ...).
pub fn grpc_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
