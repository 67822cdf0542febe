//! One site's API server stops for 30 s: the site is reported DEGRADED with the
//! agent's error (its stream stays up), the other site keeps converging, and once
//! the API server is back the site catches up and is ONLINE again. Then its
//! agent stops: the site goes OFFLINE and the vK8s says what is known of it.

use std::time::Duration;

use manifold_integration_tests::kube_site::Component;
use manifold_proto::sites::v1::site::State;

use super::{Plane, RealEnv};
use crate::reference::deployment;

const SITES: [&str; 2] = ["pa2-par", "ny8-nyc"];

#[tokio::test]
async fn an_api_server_outage_degrades_one_site_and_it_catches_up() {
    let env = RealEnv::start(&SITES, Plane::AllInOne).await;
    let kc = &env.kube;
    kc.apply(&deployment(2, "nginx:1.27")).await;
    kc.wait_ready("4/4").await;

    env.cluster("ny8-nyc").stop(Component::Apiserver);
    let stopped = tokio::time::Instant::now();
    env.wait_for("ny8-nyc DEGRADED", || async {
        env.site("ny8-nyc").await.state == State::Degraded as i32
    })
    .await;
    let site = env.site("ny8-nyc").await;
    assert!(
        site.state_message.contains("API server") || site.state_message.contains("connect"),
        "{site:?}"
    );
    assert_eq!(env.site("pa2-par").await.state, State::Online as i32);
    assert_eq!(site.nodes.len(), 2, "the node list is kept while unknown");

    // The other site keeps converging.
    kc.ok(&["scale", "deployment/productpage", "--replicas=3"])
        .await;
    env.wait_for("pa2-par runs three", || async {
        env.physical("pa2-par").await.running().len() == 3
    })
    .await;
    // And a new object lands there while ny8-nyc cannot take it.
    kc.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: during}\ndata: {k: v}\n")
        .await;

    let elapsed = stopped.elapsed();
    if elapsed < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(30) - elapsed).await;
    }
    env.cluster("ny8-nyc")
        .restart(Component::Apiserver)
        .await
        .expect("API server back");
    env.wait_for("ny8-nyc ONLINE and caught up", || async {
        env.site("ny8-nyc").await.state == State::Online as i32
            && env.physical("ny8-nyc").await.running().len() == 3
    })
    .await;
    kc.wait_ready("6/6").await;
    kc.wait_pods(&SITES, 3, |_| true).await;
    let cm: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(env.site_client("ny8-nyc").await, super::PHYSICAL_NS);
    assert!(cm.get_opt("during").await.unwrap().is_some());

    // The agent of ny8-nyc goes away: once the heartbeat timeout passes the
    // site is OFFLINE, its pods show their last state as Unknown/SiteOffline
    // with no container ready, READY counts only pa2-par, and the Deployment
    // has a condition naming the site.
    env.stop_agent("ny8-nyc").await;
    env.wait_for("ny8-nyc OFFLINE", || async {
        env.site("ny8-nyc").await.state == State::Offline as i32
    })
    .await;
    env.wait_for("ny8-nyc's pods shown as SiteOffline", || async {
        let table = kc.ok(&["get", "pods", "-l", "app=productpage"]).await;
        let offline: Vec<&str> = table
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|n| n.ends_with(".ny8-nyc"))
            })
            .collect();
        offline.len() == 3
            && offline
                .iter()
                .all(|l| l.contains("SiteOffline") && l.contains(" 0/1 "))
    })
    .await;
    kc.wait_ready("3/6").await;
    let deploy: serde_json::Value =
        serde_json::from_str(&kc.ok(&["get", "deploy", "productpage", "-o", "json"]).await)
            .unwrap();
    let condition = deploy["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "SitesOnline")
        .cloned()
        .unwrap_or_else(|| panic!("no SitesOnline condition: {deploy}"));
    assert_eq!(condition["status"], "False", "{condition}");
    assert!(
        condition["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ny8-nyc"),
        "{condition}"
    );
    // Its nodes are Unknown, the others' Ready.
    let nodes = kc.ok(&["get", "nodes", "-L", "manifold.dev/site"]).await;
    for row in nodes.lines().skip(1) {
        let status = if row.ends_with("ny8-nyc") {
            "Unknown"
        } else {
            "Ready"
        };
        assert_eq!(row.split_whitespace().nth(1), Some(status), "{nodes}");
    }
    // Back: everything is known again.
    env.start_agent("ny8-nyc", &env.cluster("ny8-nyc").kubeconfig())
        .await;
    kc.wait_ready("6/6").await;
    env.wait_for("ny8-nyc's nodes Ready again", || async {
        let nodes = kc.ok(&["get", "nodes"]).await;
        nodes.lines().count() == 1 + 2 * SITES.len()
            && nodes.lines().skip(1).all(|l| l.contains(" Ready "))
    })
    .await;
    let deploy = kc.ok(&["get", "deploy", "productpage", "-o", "json"]).await;
    assert!(!deploy.contains("SitesOnline"), "{deploy}");
}
