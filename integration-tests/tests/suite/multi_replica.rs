//! Two replicas of the gateway and two of replication against one Postgres,
//! each its own `manifold serve --services …` process, behind TCP balancers
//! (what a Kubernetes Service does). Tenancy and the site registry run in the
//! test process. Four simulated agents spread over the replication replicas;
//! kubectl writes through one gateway and reads and watches through the
//! other; the reference scenario converges. Then one replication replica is
//! killed with SIGKILL: its agents reconnect through the balancer to the
//! survivor, and a scale-up made through the other gateway reaches all sites.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use manifold_integration_tests::{Balancer, Service, TestApp, authed, free_port, wait_for_port};
use manifold_proto::replication::v1 as rpb;
use manifold_site_agent::{AgentConfig, SimulatedOptions, SimulatedSite};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::reference::{Kube, deployment, scenario_split};

const SITES: [&str; 4] = ["pa2-par", "ny8-nyc", "ams9-ams", "sin1-sgp"];
const WAIT: Duration = Duration::from_secs(60);

async fn channel(app: &TestApp, port: u16) -> Channel {
    app.channel_to(([127, 0, 0, 1], port).into())
        .await
        .expect("channel")
}

async fn up(service: &Service, port: u16) {
    wait_for_port(([127, 0, 0, 1], port).into(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", service.log()));
}

/// The replica holding each site's stream.
async fn sessions(app: &TestApp, replication: &Channel) -> Vec<rpb::Session> {
    rpb::replication_service_client::ReplicationServiceClient::new(replication.clone())
        .list_sessions(authed(&app.admin_token, rpb::ListSessionsRequest {}))
        .await
        .expect("list sessions")
        .into_inner()
        .sessions
}

/// Waits until all four sites stream to a replica other than `not`
/// (`None`: any), and returns the replicas in use.
async fn wait_sessions(app: &TestApp, ch: &Channel, not: Option<&str>) -> BTreeSet<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let live = sessions(app, ch).await;
        let sites: BTreeSet<_> = live
            .iter()
            .filter(|s| not != Some(s.replica.as_str()))
            .map(|s| s.site.clone())
            .collect();
        if sites.len() == SITES.len() && live.len() == SITES.len() {
            return live.into_iter().map(|s| s.replica).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions never settled: {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn log(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}.log"))
}

#[tokio::test]
async fn two_gateways_and_two_replication_replicas_converge_and_survive_a_kill() {
    let app = TestApp::spawn_with(&[("serve.services", "tenancy,sites".into())])
        .await
        .expect("tenancy + site registry");
    let logs = tempfile::tempdir().unwrap();
    let (g1, g2, r1, r2) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let gateways = Balancer::start(vec![
        ([127, 0, 0, 1], g1).into(),
        ([127, 0, 0, 1], g2).into(),
    ])
    .await
    .unwrap();
    let replicas = Balancer::start(vec![
        ([127, 0, 0, 1], r1).into(),
        ([127, 0, 0, 1], r2).into(),
    ])
    .await
    .unwrap();
    let gateway_url = format!("https://127.0.0.1:{}", gateways.addr.port());
    let replication_url = format!("https://127.0.0.1:{}", replicas.addr.port());

    let mut kube_ports = Vec::new();
    let mut gateway_processes = Vec::new();
    for (i, port) in [g1, g2].into_iter().enumerate() {
        let kube_port = free_port().unwrap();
        kube_ports.push(kube_port);
        let process = app
            .start_service(
                "gateway",
                port,
                &[
                    (
                        "MANIFOLD__KUBE_API__LISTEN",
                        format!("127.0.0.1:{kube_port}"),
                    ),
                    (
                        "MANIFOLD__KUBE_API__PUBLIC_URL",
                        format!("https://127.0.0.1:{kube_port}"),
                    ),
                    ("MANIFOLD__UPSTREAM__TENANCY", app.url()),
                    ("MANIFOLD__UPSTREAM__SITES", app.url()),
                    ("MANIFOLD__UPSTREAM__REPLICATION", replication_url.clone()),
                ],
                &log(logs.path(), &format!("gateway-{i}")),
            )
            .expect("gateway process");
        gateway_processes.push(process);
    }
    let mut replication_processes = Vec::new();
    for (i, port) in [r1, r2].into_iter().enumerate() {
        let process = app
            .start_service(
                "replication",
                port,
                &[
                    ("MANIFOLD__UPSTREAM__TENANCY", app.url()),
                    ("MANIFOLD__UPSTREAM__SITES", app.url()),
                    ("MANIFOLD__UPSTREAM__GATEWAY", gateway_url.clone()),
                    (
                        "MANIFOLD__SERVE__ADVERTISE_URL",
                        format!("https://127.0.0.1:{port}"),
                    ),
                    ("MANIFOLD__SITES__HEARTBEAT_TIMEOUT_SECS", "5".into()),
                ],
                &log(logs.path(), &format!("replication-{i}")),
            )
            .expect("replication process");
        replication_processes.push(process);
    }
    for (p, port) in gateway_processes.iter().zip([g1, g2]) {
        up(p, port).await;
    }
    for (p, port) in replication_processes.iter().zip([r1, r2]) {
        up(p, port).await;
    }

    // Tenant, namespace and virtual site at the core, the vK8s at gateway 1.
    let core = app.channel().await.expect("core channel");
    let home = tempfile::tempdir().unwrap();
    let through_g1 = scenario_split(
        &core,
        &channel(&app, g1).await,
        &app.admin_token,
        home.path(),
    )
    .await;
    // The same vK8s through gateway 2: its own kubeconfig (its own address).
    let g2_dir = home.path().join("g2");
    std::fs::create_dir_all(&g2_dir).unwrap();
    let text = std::fs::read_to_string(&through_g1).unwrap();
    std::fs::write(
        g2_dir.join("demo.kubeconfig"),
        text.replace(
            &format!("127.0.0.1:{}", kube_ports[0]),
            &format!("127.0.0.1:{}", kube_ports[1]),
        ),
    )
    .unwrap();
    let kube1 = Kube {
        home: home.path().to_owned(),
        config: through_g1,
    };
    let kube2 = Kube {
        home: home.path().to_owned(),
        config: g2_dir.join("demo.kubeconfig"),
    };

    // Four agents register at the core and stream through the balancer.
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let mut base = AgentConfig::new("unused", app.url(), app.ca_pem());
    base.sync_endpoint = Some(replication_url.clone());
    base.heartbeat_interval = Duration::from_secs(1);
    base.status_debounce = Duration::from_millis(100);
    base.reconnect_max = Duration::from_secs(1);
    let _fleet = manifold_site_agent::start_simulated_sites(
        core.clone(),
        &app.admin_token,
        &base,
        SITES.iter().map(|n| SimulatedSite::edge(*n)).collect(),
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await
    .expect("simulated sites");
    let r1_channel = channel(&app, r1).await;
    let in_use = wait_sessions(&app, &r1_channel, None).await;
    assert_eq!(
        in_use.len(),
        2,
        "agents spread over both replicas: {in_use:?}"
    );

    // Write through gateway 1; read and watch through gateway 2.
    kube1.apply(&deployment(2, "productpage:v1")).await;
    let out = kube2
        .ok(&[
            "rollout",
            "status",
            "deployment/productpage",
            "--timeout=60s",
        ])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    kube2.wait_pods(&SITES, 2, |_| true).await;
    kube1.wait_pods(&SITES, 2, |_| true).await;

    // Replica 1 dies; its agents move to replica 2 through the balancer.
    let mut processes = replication_processes.into_iter();
    let victim = processes.next().unwrap();
    let survivor = processes.next().unwrap();
    victim.kill().await.expect("kill -9 replica 1");
    let r2_channel = channel(&app, r2).await;
    // Every site ends up on one replica (the survivor).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let live = sessions(&app, &r2_channel).await;
        let replicas: BTreeSet<_> = live.iter().map(|s| s.replica.clone()).collect();
        if live.len() == SITES.len() && replicas.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "agents did not all move to the surviving replica: {live:?}\n{}",
            survivor.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A change made through gateway 2 reaches every site.
    kube2
        .ok(&["scale", "deployment/productpage", "--replicas=3"])
        .await;
    kube1.wait_pods(&SITES, 3, |_| true).await;
    let text = kube1.ok(&["get", "deploy", "productpage"]).await;
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("12/12")),
        "{text}"
    );
    drop(survivor);
    drop(gateway_processes);
}
