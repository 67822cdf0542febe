//! The reference scenario on three real clusters: productpage (replicas 2)
//! → READY 6/6 and six pods on the clusters' own node names with the SITE column;
//! an image change is a real rolling update on every site (a new ReplicaSet
//! there, the old one scaled to zero); scaling; deletion removes everything from
//! every physical cluster, as their own API servers tell. `kubectl get nodes`
//! lists the clusters' own nodes.

use std::collections::BTreeSet;

use super::{PHYSICAL_NS, Plane, RealEnv, image};
use crate::reference::deployment;

const SITES: [&str; 3] = ["pa2-par", "ny8-nyc", "ams9-ams"];

#[tokio::test]
async fn the_reference_scenario_on_three_real_clusters() {
    let env = RealEnv::start(&SITES, Plane::AllInOne).await;
    let kc = &env.kube;

    kc.apply(&deployment(2, "nginx:1.27")).await;
    kc.rollout().await;
    kc.wait_ready("6/6").await;
    let by_site = kc.wait_pods(&SITES, 2, |_| true).await;
    let wide = kc.ok(&["get", "pods", "-o", "wide"]).await;
    let header = wide.lines().next().unwrap_or_default();
    assert!(header.contains("NODE") && header.contains("SITE"), "{wide}");
    for (site, pods) in &by_site {
        let nodes = env.cluster(site).node_names();
        for p in pods {
            let name = p["metadata"]["name"].as_str().unwrap();
            let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
            assert!(
                nodes.iter().any(|n| n == node),
                "{name} on {node}, not a node of {site}"
            );
            let row = wide
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{name} in:\n{wide}"));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert!(cells.contains(&node), "{row}");
            assert_eq!(cells.last(), Some(&site.as_str()), "{row}");
        }
    }
    // SITES in `get deploy -o wide` and describe: 2/2 on each cluster.
    crate::reference::each_site_shows_its_ready_pods(kc).await;
    // `kubectl get nodes` lists exactly the clusters' nodes, each with its
    // site, all Ready as the clusters' own node controllers say.
    let table = kc.ok(&["get", "nodes", "-L", "manifold.dev/site"]).await;
    let listed: BTreeSet<(String, String, String)> = table
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c[0].to_owned(), c[1].to_owned(), c[c.len() - 1].to_owned())
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = SITES
        .iter()
        .flat_map(|site| {
            env.cluster(site)
                .node_names()
                .into_iter()
                .map(|n| (n, "Ready".to_owned(), site.to_string()))
        })
        .collect();
    assert_eq!(listed, expected, "{table}");
    // What each site's own API server holds: the Deployment as written, one
    // ReplicaSet made by the site's controller, two Running pods scheduled by its
    // scheduler on its nodes; the vK8s shows exactly those pods.
    let mut first_rs = std::collections::BTreeMap::new();
    for site in SITES {
        let p = env.physical(site).await;
        assert_eq!(p.deployments.len(), 1, "{site}");
        let d = &p.deployments[0];
        assert_eq!(d.spec.replicas, Some(2), "{site}");
        assert_eq!(p.replica_sets.len(), 1, "{site}");
        first_rs.insert(site, p.replica_sets[0].metadata.name.clone().unwrap());
        let running = p.running();
        assert_eq!(running.len(), 2, "{site}");
        let physical: BTreeSet<String> = running
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        // Each shown as `{name on the site}.{site}`.
        let shown: BTreeSet<String> = by_site[site]
            .iter()
            .map(|p| {
                let name = p["metadata"]["name"].as_str().unwrap();
                let site_pod = p["metadata"]["annotations"]["manifold.dev/site-pod-name"]
                    .as_str()
                    .unwrap();
                assert_eq!(name, format!("{site_pod}.{site}"));
                site_pod.to_owned()
            })
            .collect();
        assert_eq!(physical, shown, "{site}");
    }

    // A new image: a real rolling update on every site.
    kc.ok(&[
        "set",
        "image",
        "deployment/productpage",
        "productpage=nginx:1.28",
    ])
    .await;
    kc.rollout().await;
    kc.wait_ready("6/6").await;
    env.wait_for("the new image everywhere", || async {
        for site in SITES {
            let p = env.physical(site).await;
            let running = p.running();
            if running.len() != 2 || running.iter().any(|p| image(p) != "nginx:1.28") {
                return false;
            }
        }
        true
    })
    .await;
    for site in SITES {
        let p = env.physical(site).await;
        assert_eq!(p.replica_sets.len(), 2, "{site}: old and new ReplicaSet");
        let old = p
            .replica_sets
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(first_rs[site].as_str()))
            .unwrap_or_else(|| panic!("{site}: the first ReplicaSet is kept (rollout history)"));
        assert_eq!(old.spec.replicas, Some(0), "{site}");
        let new = p
            .replica_sets
            .iter()
            .find(|r| r.metadata.name.as_deref() != Some(first_rs[site].as_str()))
            .unwrap();
        assert_eq!(
            new.status.as_ref().unwrap().ready_replicas,
            Some(2),
            "{site}"
        );
    }

    // Scale: every site runs three.
    kc.ok(&["scale", "deployment/productpage", "--replicas=3"])
        .await;
    kc.wait_ready("9/9").await;
    kc.wait_pods(&SITES, 3, |_| true).await;
    for site in SITES {
        let p = env.physical(site).await;
        assert_eq!(p.deployments[0].spec.replicas, Some(3), "{site}");
    }

    // Delete: gone from every physical cluster (Deployment, ReplicaSets, pods).
    kc.ok(&["delete", "deployment", "productpage", "--timeout=60s"])
        .await;
    env.wait_for("nothing left on any site", || async {
        for site in SITES {
            let p = env.physical(site).await;
            if !p.deployments.is_empty() || !p.replica_sets.is_empty() || !p.running().is_empty() {
                return false;
            }
        }
        true
    })
    .await;
    // The sites report their pods gone on their own schedule: the vK8s
    // follows them, it does not guess.
    env.wait_for("no pods left in the vK8s", || async {
        kc.ok(&["get", "pods", "-o", "name"])
            .await
            .trim()
            .is_empty()
    })
    .await;
    // The vK8s holds nothing else: its physical namespace goes too.
    env.wait_for("the namespace removed from every site", || async {
        for site in SITES {
            let client = env.site_client(site).await;
            let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
            if ns.get_opt(PHYSICAL_NS).await.ok().flatten().is_some() {
                return false;
            }
        }
        true
    })
    .await;
}
