//! Faults: the replication service is killed (SIGKILL) in the middle of a
//! rollout and started again; more changes land while it is down. Every site
//! must end with exactly the desired objects — nothing lost, nothing left
//! over — and the pods of the final spec.
//!
//! The control plane runs split, as in a real deployment: tenancy, the site
//! registry and the gateway in this test process; replication as a separate
//! `manifold serve --services replication` process on a fixed port, so the
//! simulated agents (in this process, each on its own mTLS stream) reconnect
//! to the same address when it comes back.

use std::collections::BTreeSet;
use std::time::Duration;

use manifold_integration_tests::{Service, TestApp, free_port, wait_for_port};
use manifold_site_agent::{AgentConfig, Fleet, SimulatedOptions, SimulatedSite};
use tokio_util::sync::CancellationToken;

use super::reference::{Kube, deployment, scenario};

const SITES: [&str; 3] = ["pa2-par", "ny8-nyc", "ams9-ams"];
const WAIT: Duration = Duration::from_secs(90);

/// ConfigMaps `cm-<i>` for every `i` in `ids`, as one multi-document YAML.
fn config_maps(ids: impl IntoIterator<Item = u32>) -> String {
    ids.into_iter()
        .map(|i| {
            format!(
                "apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{i}
data:
  index: \"{i}\"
"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The replication service as its own process on `port`, sharing the test
/// control plane's database and CA, calling it for everything else.
fn start_replication(app: &TestApp, port: u16, log: &std::path::Path) -> Service {
    app.start_service(
        "replication",
        port,
        &[
            ("MANIFOLD__UPSTREAM__TENANCY", app.url()),
            ("MANIFOLD__UPSTREAM__SITES", app.url()),
            ("MANIFOLD__UPSTREAM__GATEWAY", app.url()),
            ("MANIFOLD__SITES__HEARTBEAT_TIMEOUT_SECS", "5".into()),
        ],
        log,
    )
    .expect("replication process")
}

/// What each site's simulated cluster holds, as (kind, name) pairs.
fn held(fleet: &Fleet, site: &str) -> BTreeSet<(String, String)> {
    fleet.backends[site]
        .object_keys()
        .into_iter()
        .map(|k| (k.kind, k.name))
        .collect()
}

fn desired(config_maps: impl IntoIterator<Item = u32>) -> BTreeSet<(String, String)> {
    let mut want: BTreeSet<_> = config_maps
        .into_iter()
        .map(|i| ("ConfigMap".to_owned(), format!("cm-{i}")))
        .collect();
    want.insert(("Deployment".into(), "productpage".into()));
    want
}

/// The Deployment's spec on `site`: (replicas, image).
fn deployment_on(fleet: &Fleet, site: &str) -> Option<(i64, String)> {
    let key = fleet.backends[site]
        .object_keys()
        .into_iter()
        .find(|k| k.kind == "Deployment" && k.name == "productpage")?;
    let object = fleet.backends[site].object(&key)?;
    let spec = &object["spec"];
    Some((
        spec["replicas"].as_i64().unwrap_or(-1),
        spec["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}

/// Waits until every site holds exactly `want` and the Deployment there has
/// `replicas` and `image`.
async fn converge(fleet: &Fleet, want: &BTreeSet<(String, String)>, replicas: i64, image: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let done = SITES.iter().all(|s| {
            &held(fleet, s) == want && deployment_on(fleet, s) == Some((replicas, image.to_owned()))
        });
        if done {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            for s in SITES {
                let have = held(fleet, s);
                eprintln!(
                    "{s}: missing {:?}, extra {:?}, deployment {:?}",
                    want.difference(&have).collect::<Vec<_>>(),
                    have.difference(want).collect::<Vec<_>>(),
                    deployment_on(fleet, s)
                );
            }
            panic!("the sites did not converge on the desired set within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn replication_killed_mid_rollout_restarts_and_every_site_converges() {
    let port = free_port().expect("port");
    let app = TestApp::spawn_with(&[
        ("serve.services", "tenancy,sites,gateway".into()),
        ("upstream.replication", format!("https://127.0.0.1:{port}")),
    ])
    .await
    .expect("control plane");
    let logs = tempfile::tempdir().expect("log dir");
    let replication = start_replication(&app, port, &logs.path().join("replication-1.log"));
    wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", replication.log()));

    let ch = app.channel().await.expect("channel");
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let mut base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    base.sync_endpoint = Some(format!("https://127.0.0.1:{port}"));
    base.heartbeat_interval = Duration::from_secs(1);
    base.status_debounce = Duration::from_millis(100);
    base.reconnect_max = Duration::from_secs(1);
    let fleet = manifold_site_agent::start_simulated_sites(
        ch.clone(),
        &app.admin_token,
        &base,
        SITES.iter().map(|n| SimulatedSite::edge(*n)).collect(),
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await
    .expect("simulated sites");
    let home = tempfile::tempdir().expect("home");
    let kube = Kube {
        home: home.path().to_owned(),
        config: scenario(&ch, &app.admin_token, home.path()).await,
    };

    // A settled starting point: the Deployment and ten ConfigMaps everywhere.
    kube.apply(&deployment(2, "productpage:v1")).await;
    kube.apply(&config_maps(0..10)).await;
    converge(&fleet, &desired(0..10), 2, "productpage:v1").await;
    kube.wait_pods(&SITES, 2, |_| true).await;

    // Mid-rollout: a new image, thirty more objects and five deletions are
    // in flight when the replication process dies.
    kube.apply(&deployment(2, "productpage:v2")).await;
    kube.apply(&config_maps(10..40)).await;
    kube.ok(&[
        "delete",
        "configmap",
        "cm-0",
        "cm-1",
        "cm-2",
        "cm-3",
        "cm-4",
    ])
    .await;
    let first_log = replication.log();
    replication.kill().await.expect("kill -9 replication");

    // While it is down the gateway still takes changes.
    kube.apply(&deployment(3, "productpage:v3")).await;
    kube.ok(&["delete", "configmap", "cm-10", "cm-39"]).await;
    kube.apply(&config_maps(40..45)).await;
    let want = desired((5..10).chain(11..39).chain(40..45));

    // Back on the same address: agents reconnect, resume from their last
    // acked revision and end with exactly the desired set.
    let replication = start_replication(&app, port, &logs.path().join("replication-2.log"));
    converge(&fleet, &want, 3, "productpage:v3").await;
    let by_site = kube
        .wait_pods(&SITES, 3, |by_site| {
            by_site
                .values()
                .flatten()
                .all(|p| p["spec"]["containers"][0]["image"].as_str() == Some("productpage:v3"))
        })
        .await;
    assert_eq!(by_site.values().map(Vec::len).sum::<usize>(), 9);
    // Nothing duplicated: pod names are unique across the vK8s.
    let names: BTreeSet<_> = by_site
        .values()
        .flatten()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(
        !first_log.contains("panicked"),
        "the first replication process panicked:\n{first_log}"
    );
    drop(replication);
}
