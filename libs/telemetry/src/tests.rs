//! Metrics encoding, the gRPC layer (with a trivial tower service and with a real tonic
//! server), trace-context propagation, the admin endpoint, and `init` idempotence.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use opentelemetry::trace::TraceContextExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;
use tower::{Layer, Service, ServiceExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::*;

#[test]
fn metrics_encode_contains_series() {
    let metrics = Metrics::new();
    metrics.record_rpc(
        "manifold.tenancy.v1.Tenants",
        "GetTenant",
        Code::Ok,
        Duration::from_millis(3),
    );
    metrics.record_rpc(
        "manifold.tenancy.v1.Tenants",
        "GetTenant",
        Code::NotFound,
        Duration::from_millis(1),
    );
    metrics.record_http("/vk8s/{tenant}", "GET", 200, Duration::from_millis(20));
    let sites = metrics.register_gauge("connected_sites", "Agents connected");
    sites.set(3);
    let applied = metrics.register_counter("objects_applied", "Objects applied");
    applied.inc_by(2);

    let text = metrics.encode();
    for expected in [
        r#"rpc_requests_total{service="manifold.tenancy.v1.Tenants",method="GetTenant",code="OK"} 1"#,
        r#"rpc_requests_total{service="manifold.tenancy.v1.Tenants",method="GetTenant",code="NOT_FOUND"} 1"#,
        r#"rpc_duration_seconds_bucket{le="0.0005",service="manifold.tenancy.v1.Tenants",method="GetTenant",code="OK"} 0"#,
        r#"rpc_duration_seconds_bucket{le="10.0",service="manifold.tenancy.v1.Tenants",method="GetTenant",code="OK"} 1"#,
        r#"http_requests_total{route="/vk8s/{tenant}",method="GET",code="200"} 1"#,
        r#"http_duration_seconds_count{route="/vk8s/{tenant}",method="GET",code="200"} 1"#,
        "connected_sites 3",
        "objects_applied_total 2",
        "# EOF",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Metrics>();
    check::<GrpcMetricsLayer>();
}

#[test]
fn grpc_code_names() {
    assert_eq!(grpc_code_name(Code::Ok), "OK");
    assert_eq!(grpc_code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
    assert_eq!(grpc_code_name(Code::Unauthenticated), "UNAUTHENTICATED");
}

type TestBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<&'static [u8]>, Infallible>>>>;

/// A stand-in gRPC server: `/t.Svc/Ok` succeeds with `grpc-status: 0` in the trailers,
/// `/t.Svc/Missing` answers trailers-only NOT_FOUND, `/t.Svc/Broken` fails in the trailers.
async fn fake_grpc(request: http::Request<()>) -> Result<http::Response<TestBody>, Infallible> {
    let trailers = |code: i32| {
        let mut map = http::HeaderMap::new();
        map.insert("grpc-status", code.to_string().parse().unwrap());
        Frame::trailers(map)
    };
    let response = match request.uri().path() {
        "/t.Svc/Ok" => http::Response::new(StreamBody::new(futures::stream::iter(vec![
            Ok(Frame::data(&b"\0\0\0\0\0"[..])),
            Ok(trailers(0)),
        ]))),
        "/t.Svc/Missing" => {
            let mut response = http::Response::new(StreamBody::new(futures::stream::iter(vec![])));
            response
                .headers_mut()
                .insert("grpc-status", "5".parse().unwrap());
            response
        }
        _ => http::Response::new(StreamBody::new(futures::stream::iter(vec![
            Ok(Frame::data(&b"\0\0\0\0\0"[..])),
            Ok(trailers(13)),
        ]))),
    };
    Ok(response)
}

#[tokio::test]
async fn layer_records_ok_and_error_codes() {
    let metrics = Metrics::new();
    let mut service = GrpcMetricsLayer::new(metrics.clone()).layer(tower::service_fn(fake_grpc));
    for path in ["/t.Svc/Ok", "/t.Svc/Ok", "/t.Svc/Missing", "/t.Svc/Broken"] {
        let request = http::Request::builder().uri(path).body(()).unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    // A response dropped before its end counts as CANCELLED.
    let request = http::Request::builder().uri("/t.Svc/Ok").body(()).unwrap();
    drop(service.ready().await.unwrap().call(request).await.unwrap());

    let text = metrics.encode();
    for expected in [
        r#"rpc_requests_total{service="t.Svc",method="Ok",code="OK"} 2"#,
        r#"rpc_requests_total{service="t.Svc",method="Missing",code="NOT_FOUND"} 1"#,
        r#"rpc_requests_total{service="t.Svc",method="Broken",code="INTERNAL"} 1"#,
        r#"rpc_requests_total{service="t.Svc",method="Ok",code="CANCELLED"} 1"#,
        r#"rpc_duration_seconds_count{service="t.Svc",method="Ok",code="OK"} 2"#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// Random paths (a flood of unauthenticated calls) all land in one series.
#[tokio::test]
async fn unknown_paths_share_one_label_value() {
    let metrics = Metrics::new();
    let known = Arc::new(std::collections::HashSet::from(["/t.Svc/Ok".to_owned()]));
    let mut service = GrpcMetricsLayer::new(metrics.clone())
        .with_known_methods(known)
        .layer(tower::service_fn(fake_grpc));
    for i in 0..200 {
        let path = format!("/random{i}.Svc/M{i}");
        let request = http::Request::builder().uri(path).body(()).unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    let request = http::Request::builder().uri("/t.Svc/Ok").body(()).unwrap();
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"rpc_requests_total{service="unknown",method="unknown",code="INTERNAL"} 200"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"rpc_requests_total{service="t.Svc",method="Ok",code="OK"} 1"#));
    assert!(!text.contains("random"), "{text}");
}

/// A subscriber with an OpenTelemetry layer (no exporter), so spans get trace ids.
fn otel_subscriber() -> impl tracing::Subscriber + Send + Sync {
    use opentelemetry::trace::TracerProvider as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
}

#[test]
fn inject_and_extract_round_trip() {
    let _default = tracing::subscriber::set_default(otel_subscriber());
    let span = tracing::info_span!("client call");
    let _entered = span.enter();
    let trace_id = span.context().span().span_context().trace_id();

    let request = trace_interceptor(tonic::Request::new(())).unwrap();
    let traceparent = request
        .metadata()
        .get("traceparent")
        .expect("traceparent injected")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(traceparent.contains(&trace_id.to_string()), "{traceparent}");

    let headers = request.into_parts().0.into_headers();
    let extracted = extract_context(&headers);
    assert_eq!(extracted.span().span_context().trace_id(), trace_id);
    assert!(extracted.span().span_context().is_remote());

    // Nothing to propagate without a span.
    drop(_entered);
    let mut empty = tonic::metadata::MetadataMap::new();
    inject_context(&mut empty);
    assert!(empty.get("traceparent").is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn layer_span_continues_the_callers_trace() {
    let _default = tracing::subscriber::set_default(otel_subscriber());
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen_inner = seen.clone();
    let inner = tower::service_fn(move |_request: http::Request<()>| {
        let trace_id = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id();
        *seen_inner.lock().unwrap() = Some(trace_id);
        async { Ok::<_, Infallible>(http::Response::new(Full::new(&b""[..]))) }
    });
    let mut service = GrpcMetricsLayer::new(Metrics::new()).layer(inner);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = http::Request::builder()
        .uri("/t.Svc/Ok")
        .header("traceparent", traceparent)
        .body(())
        .unwrap();
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(
        seen.lock().unwrap().unwrap().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

#[tokio::test]
async fn layer_works_in_a_real_tonic_server() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let metrics = Metrics::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("manifold.test", tonic_health::ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(GrpcMetricsLayer::new(metrics.clone()))
            .add_service(health)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::with_interceptor(channel, trace_interceptor);
    client
        .check(HealthCheckRequest {
            service: "manifold.test".into(),
        })
        .await
        .unwrap();
    let err = client
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let text = metrics.encode();
    for expected in [
        r#"rpc_requests_total{service="grpc.health.v1.Health",method="Check",code="OK"} 1"#,
        r#"rpc_requests_total{service="grpc.health.v1.Health",method="Check",code="NOT_FOUND"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A minimal HTTP/1.1 GET over any stream; returns (status, body).
async fn http_get<S>(mut stream: S, path: &str) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify; what was read is still the answer.
    let _ = stream.read_to_end(&mut raw).await;
    let raw = String::from_utf8(raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn admin_server_answers() {
    let metrics = Metrics::new();
    metrics.record_rpc("s.S", "M", Code::Ok, Duration::from_millis(1));
    let ready = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_admin_on(
        listener,
        metrics,
        ready.clone(),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let get = |path: &'static str| async move {
        http_get(TcpStream::connect(addr).await.unwrap(), path).await
    };

    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 503);
    ready.store(true, Ordering::Release);
    assert_eq!(get("/readyz").await.0, 200);
    let (status, body) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"rpc_requests_total{service="s.S",method="M",code="OK"} 1"#),
        "{body}"
    );
    assert_eq!(get("/nope").await.0, 404);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn admin_server_needs_tls_off_loopback() {
    let any: SocketAddr = (Ipv4Addr::UNSPECIFIED, 0).into();
    let err = serve_admin(
        any,
        Metrics::new(),
        Arc::new(AtomicBool::new(true)),
        None,
        async {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn admin_server_over_tls() {
    let ca = manifold_pki::Ca::generate().unwrap();
    let identity = ca
        .issue_server_cert(&["localhost".into()], &[Ipv4Addr::LOCALHOST.into()])
        .unwrap();
    let tls = manifold_pki::server_config(&identity, None, &[b"http/1.1"]).unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_admin_on(
        listener,
        Metrics::new(),
        Arc::new(AtomicBool::new(true)),
        Some(tls),
        async {
            let _ = stopped.await;
        },
    ));

    let client = manifold_pki::client_config(ca.cert_pem(), None).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(client)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(http_get(stream, "/readyz").await.0, 200);

    // Plain HTTP to the TLS port gets nothing useful.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /readyz HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn init_twice_is_a_no_op() {
    // OTLP stays off unless the environment asks for it; the second call must not fail.
    let first = init("manifold-test", LogFormat::Text, "info").unwrap();
    let second = init("manifold-test", LogFormat::Json, "debug").unwrap();
    assert!(!second.otel_enabled());
    tracing::info!("telemetry test log line");
    second.shutdown().await;
    first.shutdown().await;
}
