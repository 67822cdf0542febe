//! The real site agent (`manifold-site-agent`, simulated clusters) against the real
//! replication service: each agent registers with a one-time token, connects over
//! mTLS, receives a Deployment applied with kubectl, and reports Running pods, two
//! per site, on its own nodes; pod deletion, logs and scaling go through it too.
//!
//! Until the all-in-one mounts replication (and SiteSync shares its listener), the
//! agent registers at the all-in-one and streams to the replication server the
//! `replication` harness runs beside it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use manifold_integration_tests::authed;
use manifold_proto::{replication::v1 as rpb, sites::v1 as spb};
use manifold_site_agent::{
    AgentConfig, AgentError, SimulatedBackend, SimulatedOptions, SimulatedSite,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::replication::{Harness, VK, harness};

const SITES: [&str; 2] = ["pa2-par", "ny8-nyc"];

fn deployment(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"
    )
}

async fn registration_token(h: &Harness, site: &str) -> String {
    spb::site_service_client::SiteServiceClient::new(h.ch.clone())
        .create_registration_token(authed(
            &h.admin,
            spb::CreateRegistrationTokenRequest {
                site: format!("sites/{site}"),
                ttl_seconds: 0,
            },
        ))
        .await
        .expect("registration token")
        .into_inner()
        .token
}

/// Creates `site` (env=edge), registers a real agent with a fresh token and runs it
/// on a simulated cluster of two nodes.
async fn start_agent(
    h: &Harness,
    site: &str,
    shutdown: &CancellationToken,
) -> JoinHandle<Result<(), AgentError>> {
    h.create_site(site, &[("env", "edge")]).await;
    let token = registration_token(h, site).await;
    let mut config = AgentConfig::new(site, format!("https://{}", h.app.grpc_addr), h.app.ca_pem());
    config.registration_token = Some(token.clone().into());
    config.heartbeat_interval = Duration::from_secs(1);
    config.status_debounce = Duration::from_millis(100);
    config.reconnect_max = Duration::from_secs(1);
    let identity = manifold_site_agent::register(&config)
        .await
        .expect("register");

    // The token is spent.
    let again = manifold_site_agent::register(&config).await;
    assert!(
        matches!(again, Err(AgentError::RegistrationRefused(_))),
        "{again:?}"
    );

    config.endpoint = format!("https://{}", h.repl_addr);
    config.identity = Some(identity);
    config.registration_token = None;
    let backend = Arc::new(SimulatedBackend::new(site, 2, SimulatedOptions::default()));
    tokio::spawn(manifold_site_agent::run(config, backend, shutdown.clone()))
}

async fn list_pods(h: &Harness) -> Vec<rpb::Pod> {
    let mut api = h.replication().await;
    api.list_pods(authed(
        &h.admin,
        rpb::ListPodsRequest {
            virtual_cluster: VK.into(),
            ..Default::default()
        },
    ))
    .await
    .expect("list pods")
    .into_inner()
    .pods
}

/// Running pods by site.
fn running_by_site(pods: &[rpb::Pod]) -> BTreeMap<String, Vec<rpb::Pod>> {
    let mut by_site: BTreeMap<String, Vec<rpb::Pod>> = BTreeMap::new();
    for p in pods.iter().filter(|p| p.phase == "Running") {
        by_site.entry(p.site.clone()).or_default().push(p.clone());
    }
    by_site
}

/// Waits (up to 60 s) until each of `sites` runs exactly `n` pods, no other site
/// runs any, and `extra` holds.
async fn wait_for_pods_on(
    h: &Harness,
    sites: &[&str],
    n: usize,
    extra: impl Fn(&[rpb::Pod]) -> bool,
) -> Vec<rpb::Pod> {
    let mut last = Vec::new();
    for _ in 0..300 {
        last = list_pods(h).await;
        let by_site = running_by_site(&last);
        let every_site = sites
            .iter()
            .all(|s| by_site.get(*s).is_some_and(|p| p.len() == n));
        if every_site && last.len() == n * sites.len() && extra(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "expected {n} running pods on each of {sites:?}, got {:?}",
        last.iter()
            .map(|p| format!("{}@{} {}", p.name, p.site, p.phase))
            .collect::<Vec<_>>()
    );
}

async fn wait_for_pods(
    h: &Harness,
    n: usize,
    extra: impl Fn(&[rpb::Pod]) -> bool,
) -> Vec<rpb::Pod> {
    wait_for_pods_on(h, &SITES, n, extra).await
}

#[tokio::test]
async fn real_agents_run_a_deployment_on_every_site() {
    let h = harness(&[], |_| {}).await;
    let shutdown = CancellationToken::new();
    let mut agents = Vec::new();
    for site in SITES {
        agents.push(start_agent(&h, site, &shutdown).await);
    }
    h.scenario(&[("all-edges", "env=edge")], &["all-edges"])
        .await;
    h.apply(&deployment(2)).await;

    let pods = wait_for_pods(&h, 2, |_| true).await;
    for p in &pods {
        assert!(
            p.node.starts_with(&format!("{}-node-", p.site)),
            "{} on {}",
            p.name,
            p.node
        );
        assert!(p.name.starts_with("web-"), "{}", p.name);
        assert_eq!(p.namespace, "shop");
        assert_eq!(p.owner_kind, "ReplicaSet");
        assert!(!p.pod_ip.is_empty());
        let labels = format!(
            "{:?}",
            p.object.as_ref().expect("pod object").fields["metadata"]
        );
        assert!(labels.contains("manifold.dev/site"), "{labels}");
    }
    // Two pods per site, spread over the site's two nodes.
    for (site, on_site) in running_by_site(&pods) {
        let nodes: std::collections::BTreeSet<&str> =
            on_site.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(nodes.len(), 2, "{site}: {nodes:?}");
    }

    // Each site reports the Deployment's status.
    let mut api = h.replication().await;
    let mut ready_sites = 0;
    for _ in 0..100 {
        let statuses = api
            .get_object_status(authed(
                &h.admin,
                rpb::GetObjectStatusRequest {
                    r#ref: Some(rpb::ObjectRef {
                        virtual_cluster: VK.into(),
                        api_version: "apps/v1".into(),
                        kind: "Deployment".into(),
                        namespace: "shop".into(),
                        name: "web".into(),
                    }),
                },
            ))
            .await
            .expect("object status")
            .into_inner()
            .statuses;
        ready_sites = statuses
            .iter()
            .filter(|s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.fields.get("readyReplicas"))
                    .and_then(|v| match v.kind {
                        Some(prost_types::value::Kind::NumberValue(n)) => Some(n),
                        _ => None,
                    })
                    == Some(2.0)
            })
            .count();
        if ready_sites == SITES.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready_sites, SITES.len());

    // Logs are read from the site that runs the pod.
    let pod = pods[0].clone();
    let mut logs = api
        .stream_logs(authed(
            &h.admin,
            rpb::StreamLogsRequest {
                virtual_cluster: VK.into(),
                namespace: "shop".into(),
                pod: pod.name.clone(),
                tail_lines: 3,
                site: pod.site.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("stream logs")
        .into_inner();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), logs.message())
        .await
        .expect("log chunk in time")
        .expect("log stream")
    {
        assert!(chunk.error.is_empty(), "{}", chunk.error);
        text.push_str(&String::from_utf8_lossy(&chunk.data));
        if chunk.eof {
            break;
        }
    }
    assert!(text.contains(&format!("pod={}", pod.name)), "{text}");

    // A deleted pod is replaced by its site's controller.
    api.delete_pod(authed(
        &h.admin,
        rpb::DeletePodRequest {
            virtual_cluster: VK.into(),
            namespace: "shop".into(),
            name: pod.name.clone(),
            site: pod.site.clone(),
        },
    ))
    .await
    .expect("delete pod");
    wait_for_pods(&h, 2, |now| now.iter().all(|p| p.name != pod.name)).await;

    // Scaling follows on every site.
    h.apply(&deployment(3)).await;
    wait_for_pods(&h, 3, |_| true).await;

    shutdown.cancel();
    for agent in agents {
        tokio::time::timeout(Duration::from_secs(10), agent)
            .await
            .expect("agent stops")
            .expect("agent task")
            .expect("agent ran cleanly");
    }
}

#[tokio::test]
async fn a_fleet_of_simulated_sites_follows_placement() {
    let h = harness(&[], |_| {}).await;
    let shutdown = CancellationToken::new();
    let names = ["pa2-par", "ny8-nyc", "ams9-ams"];
    let mut base = AgentConfig::new(
        "unused",
        format!("https://{}", h.app.grpc_addr),
        h.app.ca_pem(),
    );
    base.sync_endpoint = Some(format!("https://{}", h.repl_addr));
    base.heartbeat_interval = Duration::from_secs(1);
    base.status_debounce = Duration::from_millis(100);
    let fleet = manifold_site_agent::start_simulated_sites(
        h.ch.clone(),
        &h.admin,
        &base,
        names.iter().map(|n| SimulatedSite::edge(*n)).collect(),
        SimulatedOptions::default(),
        shutdown.clone(),
    )
    .await
    .expect("fleet");
    assert_eq!(fleet.len(), 3);
    h.scenario(&[("all-edges", "env=edge")], &["all-edges"])
        .await;
    h.apply(&deployment(2)).await;
    wait_for_pods_on(&h, &names, 2, |_| true).await;

    // The failure knob: one site's pods crash-loop, and the restarts show.
    fleet.backends["ams9-ams"].set_crash_loop("shop", "web", true);
    let mut crashing = false;
    for _ in 0..100 {
        let pods = list_pods(&h).await;
        crashing = pods
            .iter()
            .filter(|p| p.site == "ams9-ams")
            .any(|p| p.restarts > 0);
        if crashing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(crashing, "restarts are reported");
    fleet.backends["ams9-ams"].set_crash_loop("shop", "web", false);

    // A site that leaves the virtual site loses the Deployment and its pods.
    h.relabel_site("ny8-nyc", &[("env", "lab")]).await;
    wait_for_pods_on(&h, &["pa2-par", "ams9-ams"], 2, |_| true).await;
    assert!(fleet.backends["ny8-nyc"].object_keys().is_empty());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), fleet.wait())
        .await
        .expect("fleet stops");
}
