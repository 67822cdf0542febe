//! End-to-end OTLP export: a child process (this test binary, re-run with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set) initialises telemetry, serves one call through the
//! gRPC layer and shuts down; a fake collector here must receive its span and metrics.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use manifold_telemetry::{GrpcMetricsLayer, LogFormat, Metrics};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tower::{Layer, Service, ServiceExt};

const CHILD_VAR: &str = "MANIFOLD_TELEMETRY_OTLP_CHILD";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[derive(Default, Clone)]
struct Collector {
    /// (service.name, span name, trace id hex)
    spans: Arc<Mutex<Vec<(String, String, String)>>>,
    metrics: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let trace_id: String =
                        span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    self.spans
                        .lock()
                        .unwrap()
                        .push((service.clone(), span.name, trace_id));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_metrics {
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    self.metrics.lock().unwrap().push(metric.name);
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_the_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );

    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("child timed out")
        .unwrap();
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let spans = collector.spans.lock().unwrap().clone();
    assert!(
        spans
            .iter()
            .any(|(service, name, trace_id)| service == "otlp-test"
                && name == "/t.Svc/Get"
                && trace_id == TRACE_ID),
        "spans received: {spans:?}"
    );
    let metrics = collector.metrics.lock().unwrap().clone();
    assert!(
        metrics.iter().any(|m| m == "rpc.server.call.duration"),
        "metrics received: {metrics:?}"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// The child half; a no-op unless started by the test above.
#[test]
fn child_process() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let guard = manifold_telemetry::init("otlp-test", LogFormat::Json, "info").unwrap();
        assert!(guard.otel_enabled());
        let metrics = Metrics::new();
        let inner = tower::service_fn(|_request: http::Request<()>| async {
            tracing::info!("handling");
            Ok::<_, Infallible>(http::Response::new(Full::new(&b""[..])))
        });
        let mut service = GrpcMetricsLayer::new(metrics).layer(inner);
        let request = http::Request::builder()
            .uri("/t.Svc/Get")
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .body(())
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        response.into_body().collect().await.unwrap();
        guard.shutdown().await;
    });
}
