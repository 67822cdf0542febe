//! Observability end to end: the stable metric names on `/metrics` after real
//! traffic (a simulated site, a kubectl write, gRPC calls), and traces that
//! span two control-plane processes, received by a real OTLP receiver
//! (`rotel-agent`, pinned in `.tools/bin`).

use std::time::{Duration, Instant};

use manifold_integration_tests::{Service, TestApp, authed, free_port, tool, wait_for_port};
use manifold_proto::sites::v1 as spb;
use manifold_site_agent::{AgentConfig, SimulatedOptions, SimulatedSite};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::kubectl::Kubectl;
use crate::vk8s_grpc::{create_namespace, create_tenant};

async fn scrape(app: &TestApp) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.admin_addr)
        .await
        .expect("admin endpoint");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("response");
    body
}

/// The value of the first sample line starting with `prefix` (name and labels).
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn metrics_with_stable_names_after_traffic() {
    let app = TestApp::spawn().await.expect("control plane");
    let ch = app.channel().await.expect("channel");
    let home = tempfile::tempdir().expect("home");
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let mut base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    base.heartbeat_interval = Duration::from_secs(1);
    let _fleet = manifold_site_agent::start_simulated_sites(
        ch.clone(),
        &app.admin_token,
        &base,
        vec![SimulatedSite::edge("obs-1")],
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await
    .expect("simulated site");
    let kubeconfig = crate::reference::scenario(&ch, &app.admin_token, home.path()).await;
    let kubectl = Kubectl::new(&kubeconfig, home.path());

    // Live changes reach the site and are acknowledged: propagation samples.
    // (The first ones may travel in the snapshot the site gets when the vK8s
    // is placed on it, which is not sampled; so keep writing.)
    let started = Instant::now();
    let mut written = 0;
    let metrics = loop {
        let name = format!("observed-{written}");
        kubectl
            .ok(&["create", "configmap", &name, "--from-literal=a=1"])
            .await;
        written += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = scrape(&app).await;
        if sample(&metrics, "manifold_propagation_latency_seconds_count").unwrap_or(0.0) > 0.0 {
            break metrics;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no propagation sample:\n{metrics}"
        );
    };

    assert_eq!(
        sample(&metrics, "manifold_sites_connected "),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "manifold_site_pending_acks{site=\"obs-1\"}").is_some(),
        "{metrics}"
    );
    for name in [
        "manifold_propagation_latency_seconds_bucket{le=",
        "manifold_propagation_latency_seconds_sum",
        // gRPC by service, method and code.
        "rpc_requests_total{service=\"manifold.tenancy.v1.TenantService\",method=\"CreateTenant\",code=\"OK\"}",
        "rpc_duration_seconds_count{service=\"manifold.tenancy.v1.TenantService\",method=\"CreateTenant\",code=\"OK\"}",
        // The Kubernetes API by route template.
        "http_requests_total{route=\"/vk8s/{tenant}/{namespace}/{vk8s}/api/v1/namespaces/{namespace}/configmaps\",method=\"POST\",code=\"201\"}",
        "http_duration_seconds_bucket{",
        "manifold_db_pool_connections{state=\"idle\"}",
        "manifold_db_pool_connections{state=\"in_use\"}",
        "manifold_db_pool_max_connections ",
        "manifold_db_transaction_duration_seconds_bucket{",
        "manifold_audit_events_written_total ",
        "manifold_audit_events_dropped_total ",
        "manifold_audit_events_write_failed_total ",
        "manifold_audit_queue_length ",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert!(sample(&metrics, "manifold_audit_events_written_total ").unwrap_or(0.0) > 0.0);

    // The Grafana dashboard queries only names this process exports.
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../helm/manifold/dashboards/manifold.json"),
    )
    .expect("dashboard JSON");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("manifold_")
                    || word.starts_with("rpc_")
                    || word.starts_with("http_")
                {
                    used.insert(word.to_owned());
                }
            }
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    for name in &used {
        assert!(
            metrics.lines().any(|l| l.starts_with(name.as_str())),
            "the dashboard uses {name}, which /metrics does not have"
        );
    }
    assert_eq!(
        sample(&metrics, "manifold_audit_events_dropped_total "),
        Some(0.0)
    );
}

/// A TLS channel to a control-plane process on 127.0.0.1:`port`.
async fn channel_to(app: &TestApp, port: u16) -> Channel {
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(app.ca_pem()))
                .domain_name("localhost"),
        )
        .expect("tls")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

/// The resource blocks of rotel's debug output that mention `trace_id`, with
/// the service each belongs to.
fn services_with_trace(log: &str, trace_id: &str) -> Vec<String> {
    let mut services = Vec::new();
    let mut current = String::new();
    for line in log.lines() {
        if let Some(i) = line.find("service.name") {
            // `service.name: Str(manifold-sites)` or `service.name=...`.
            let rest = &line[i + "service.name".len()..];
            let name: String = rest
                .trim_start_matches([':', '=', ' '])
                .trim_start_matches("Str(")
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            current = name;
        }
        if line.contains(trace_id) && !current.is_empty() && !services.contains(&current) {
            services.push(current.clone());
        }
    }
    services
}

#[tokio::test]
async fn traces_span_two_processes_in_a_real_otlp_receiver() {
    let app = TestApp::spawn().await.expect("control plane");
    let ch = app.channel().await.expect("channel");
    create_tenant(&ch, &app.admin_token, "acme").await;
    create_namespace(&ch, &app.admin_token, "acme", "shop").await;
    let logs = tempfile::tempdir().expect("logs");

    let otlp_port = free_port().expect("port");
    // Its HTTP receiver is unused, but must not take the fixed default port.
    let otlp_http_port = free_port().expect("port");
    let rotel = Service::start(
        &tool("rotel-agent").expect("rotel-agent"),
        &[
            "start",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{otlp_port}"),
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{otlp_http_port}"),
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
        ],
        &[],
        &logs.path().join("rotel.log"),
    )
    .expect("start rotel-agent");
    wait_for_port(
        format!("127.0.0.1:{otlp_port}").parse().unwrap(),
        Duration::from_secs(20),
    )
    .await
    .expect("rotel listens");

    let otel = |name: &str| {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{otlp_port}"),
            ),
            ("OTEL_SERVICE_NAME", name.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
    };
    let tenancy_port = free_port().expect("port");
    let tenancy = app
        .start_service(
            "tenancy",
            tenancy_port,
            &otel("obs-tenancy"),
            &logs.path().join("tenancy.log"),
        )
        .expect("start tenancy");
    let sites_port = free_port().expect("port");
    let mut sites_env = otel("obs-sites");
    sites_env.push((
        "MANIFOLD__UPSTREAM__TENANCY",
        format!("https://127.0.0.1:{tenancy_port}"),
    ));
    let sites = app
        .start_service(
            "sites",
            sites_port,
            &sites_env,
            &logs.path().join("sites.log"),
        )
        .expect("start sites");
    for port in [tenancy_port, sites_port] {
        if let Err(e) = wait_for_port(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(60),
        )
        .await
        {
            panic!("{e}\ntenancy:\n{}\nsites:\n{}", tenancy.log(), sites.log());
        }
    }

    // The caller starts the trace; the site registry asks tenancy (for the
    // tenant's uid) in the same trace.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let mut request = authed(
        &app.admin_token,
        spb::CreateVirtualSiteRequest {
            parent: "tenants/acme/namespaces/shop".into(),
            virtual_site_id: "edges".into(),
            virtual_site: Some(spb::VirtualSite {
                site_selector: "env=edge".into(),
                ..Default::default()
            }),
        },
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    spb::virtual_site_service_client::VirtualSiteServiceClient::new(
        channel_to(&app, sites_port).await,
    )
    .create_virtual_site(request)
    .await
    .expect("create virtual site through the split site registry");

    let started = Instant::now();
    loop {
        let log = rotel.log();
        let services = services_with_trace(&log, &trace_id);
        if services.iter().any(|s| s == "obs-sites") && services.iter().any(|s| s == "obs-tenancy")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "trace {trace_id} not seen from both services (saw {services:?}); rotel:\n{}\n\
             tenancy:\n{}\nsites:\n{}",
            log.chars()
                .rev()
                .take(20_000)
                .collect::<String>()
                .chars()
                .rev()
                .collect::<String>(),
            tenancy.log(),
            sites.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
