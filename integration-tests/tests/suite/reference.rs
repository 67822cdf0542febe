//! The reference scenario through the real kubectl: three simulated sites
//! (pa2-par, ny8-nyc, ams9-ams; env=edge, two nodes each) behind virtual site
//! `all-edges`, vK8s `demo`. A Deployment with `replicas: 2` rolls out
//! (`rollout status`), reads READY 6/6, and `get pods -o wide` shows two pods
//! per site on that site's nodes, with a SITE column; logs, pod deletion,
//! scaling, an image change and a site leaving the virtual site follow.
//!
//! Everything runs in the all-in-one (`manifold::start`): the gateway reads
//! observed state from the replication service on the same listener, and the
//! simulated agents stream to it over mTLS like remote ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use manifold_integration_tests::{TestApp, authed, tool};
use manifold_proto::{sites::v1 as spb, tenancy::v1 as tpb, vk8s::v1 as vpb};
use manifold_site_agent::{AgentConfig, SimulatedOptions, SimulatedSite};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const VK: &str = "tenants/acme/namespaces/shop/virtualClusters/demo";

const SITES: [&str; 3] = ["pa2-par", "ny8-nyc", "ams9-ams"];
/// Longest any condition is waited for.
const WAIT: Duration = Duration::from_secs(60);

/// Deployment `productpage` with `replicas` and `image`.
pub(crate) fn deployment(replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: productpage
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: productpage}}
  template:
    metadata:
      labels: {{app: productpage}}
    spec:
      containers:
      - name: productpage
        image: {image}
"
    )
}

/// Tenant `acme`, namespace `shop`, virtual site `all-edges` (env=edge) and
/// vK8s `demo` spanning it; returns a kubeconfig for `demo`.
pub(crate) async fn scenario(ch: &Channel, admin: &str, dir: &Path) -> PathBuf {
    scenario_split(ch, ch, admin, dir).await
}

/// [`scenario`] with tenancy and the site registry behind `ch` and the
/// gateway behind `gateway` (services deployed apart).
pub(crate) async fn scenario_split(
    ch: &Channel,
    gateway: &Channel,
    admin: &str,
    dir: &Path,
) -> PathBuf {
    tpb::tenant_service_client::TenantServiceClient::new(ch.clone())
        .create_tenant(authed(
            admin,
            tpb::CreateTenantRequest {
                tenant_id: "acme".into(),
                tenant: None,
            },
        ))
        .await
        .expect("tenant");
    tpb::namespace_service_client::NamespaceServiceClient::new(ch.clone())
        .create_namespace(authed(
            admin,
            tpb::CreateNamespaceRequest {
                parent: "tenants/acme".into(),
                namespace_id: "shop".into(),
                namespace: None,
            },
        ))
        .await
        .expect("namespace");
    spb::virtual_site_service_client::VirtualSiteServiceClient::new(ch.clone())
        .create_virtual_site(authed(
            admin,
            spb::CreateVirtualSiteRequest {
                parent: "tenants/acme/namespaces/shop".into(),
                virtual_site_id: "all-edges".into(),
                virtual_site: Some(spb::VirtualSite {
                    site_selector: "env=edge".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("virtual site");
    vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(gateway.clone())
        .create_virtual_cluster(authed(
            admin,
            vpb::CreateVirtualClusterRequest {
                parent: "tenants/acme/namespaces/shop".into(),
                virtual_cluster_id: "demo".into(),
                virtual_cluster: Some(vpb::VirtualCluster {
                    virtual_sites: vec!["all-edges".into()],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("virtual cluster");
    let k = vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(gateway.clone())
        .get_kubeconfig(authed(
            admin,
            vpb::GetKubeconfigRequest {
                name: VK.into(),
                ttl_seconds: 0,
            },
        ))
        .await
        .expect("kubeconfig")
        .into_inner()
        .kubeconfig;
    let path = dir.join("demo.kubeconfig");
    std::fs::write(&path, k).unwrap();
    path
}

/// Replaces the labels of site `id`.
async fn relabel_site(ch: &Channel, admin: &str, id: &str, labels: &[(&str, &str)]) {
    spb::site_service_client::SiteServiceClient::new(ch.clone())
        .update_site(authed(
            admin,
            spb::UpdateSiteRequest {
                site: Some(spb::Site {
                    name: format!("sites/{id}"),
                    labels: labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels".into()],
                }),
            },
        ))
        .await
        .expect("update site");
}

/// kubectl in namespace `shop`; Err(stderr) when it fails.
pub(crate) async fn kubectl(
    home: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(tool("kubectl").expect("kubectl"));
    cmd.args(["-n", "shop"])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("kubectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(WAIT + Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("kubectl in time")
        .expect("kubectl ran");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub(crate) struct Kube {
    pub home: PathBuf,
    pub config: PathBuf,
}

impl Kube {
    pub async fn ok(&self, args: &[&str]) -> String {
        kubectl(&self.home, &self.config, args, None)
            .await
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    /// Runs kubectl expecting it to fail; its stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        match kubectl(&self.home, &self.config, args, None).await {
            Ok(out) => panic!("kubectl {args:?} succeeded: {out}"),
            Err(e) => e,
        }
    }

    pub async fn apply(&self, yaml: &str) {
        kubectl(&self.home, &self.config, &["apply", "-f", "-"], Some(yaml))
            .await
            .unwrap_or_else(|e| panic!("kubectl apply: {e}"));
    }

    /// Running pods (JSON) by site.
    pub async fn running_by_site(&self) -> BTreeMap<String, Vec<Value>> {
        let text = self.ok(&["get", "pods", "-o", "json"]).await;
        let list: Value = serde_json::from_str(&text).expect("pod list JSON");
        let mut by_site: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for p in list["items"].as_array().cloned().unwrap_or_default() {
            if p["status"]["phase"] == "Running" {
                let site = p["metadata"]["labels"]["manifold.dev/site"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                by_site.entry(site).or_default().push(p);
            }
        }
        by_site
    }

    /// Waits until exactly `sites` run `n` Running pods each and `extra` holds.
    pub async fn wait_pods(
        &self,
        sites: &[&str],
        n: usize,
        extra: impl Fn(&BTreeMap<String, Vec<Value>>) -> bool,
    ) -> BTreeMap<String, Vec<Value>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let by_site = self.running_by_site().await;
            let exact = by_site.len() == sites.len()
                && sites
                    .iter()
                    .all(|s| by_site.get(*s).is_some_and(|p| p.len() == n));
            if exact && extra(&by_site) {
                return by_site;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "expected {n} running pods on each of {sites:?}, got {:?}",
                    by_site
                        .iter()
                        .map(|(s, p)| (s, p.len()))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `get deploy productpage` shows READY `ready`.
    pub async fn wait_ready(&self, ready: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.ok(&["get", "deploy", "productpage"]).await;
            if text
                .lines()
                .nth(1)
                .is_some_and(|l| l.split_whitespace().nth(1) == Some(ready))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "READY {ready} expected:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn rollout(&self) {
        let out = self
            .ok(&[
                "rollout",
                "status",
                "deployment/productpage",
                "--timeout=60s",
            ])
            .await;
        assert!(out.contains("successfully rolled out"), "{out}");
    }
}

/// Every site runs `web-0` and `web-1` of the same StatefulSet: each pod is
/// `{ordinal}.{site}` in the vK8s, and get, logs and delete of one reach that
/// site's pod and no other.
async fn statefulset_pods_are_named_per_site(kube: &Kube) {
    kube.apply(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  replicas: 2\n  serviceName: web\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'nginx:1.27'}]}\n",
    )
    .await;
    let expected: BTreeSet<String> = SITES
        .iter()
        .flat_map(|s| [format!("web-0.{s}"), format!("web-1.{s}")])
        .collect();
    let web_pods = || async {
        let text = kube
            .ok(&["get", "pods", "-l", "app=web", "-o", "json"])
            .await;
        let list: Value = serde_json::from_str(&text).expect("pod list");
        list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| {
                (
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    p,
                )
            })
            .collect::<BTreeMap<String, Value>>()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let pods = loop {
        let pods = web_pods().await;
        if pods.keys().cloned().collect::<BTreeSet<_>>() == expected {
            break pods;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "StatefulSet pods {:?}, expected {expected:?}",
            pods.keys()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (name, pod) in &pods {
        let (ordinal, site) = name.split_once('.').unwrap();
        assert_eq!(
            pod["metadata"]["labels"]["manifold.dev/site"], site,
            "{pod}"
        );
        assert_eq!(
            pod["metadata"]["annotations"]["manifold.dev/site-pod-name"], ordinal,
            "{pod}"
        );
    }
    // Each name is one pod: get and logs come from its site.
    let one: Value = serde_json::from_str(
        &kube
            .ok(&["get", "pod", "web-0.ny8-nyc", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(one["metadata"]["labels"]["manifold.dev/site"], "ny8-nyc");
    assert!(
        one["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| n.starts_with("ny8-nyc-node-")),
        "{one}"
    );
    let logs = kube.ok(&["logs", "web-1.ams9-ams", "--tail=2"]).await;
    assert!(
        logs.contains("pod=web-1") && logs.contains("node=ams9-ams-node-"),
        "{logs}"
    );
    // The ordinal alone names no pod of the vK8s.
    let err = kubectl(&kube.home, &kube.config, &["get", "pod", "web-0"], None)
        .await
        .expect_err("web-0 alone is not a vK8s pod name");
    assert!(err.contains("not found"), "{err}");
    // Deleting one site's web-0 replaces that pod only.
    let uid = |p: &Value| p["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    kube.ok(&["delete", "pod", "web-0.ny8-nyc", "--wait=false"])
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = web_pods().await;
        let replaced = now
            .get("web-0.ny8-nyc")
            .is_some_and(|p| uid(p) != uid(&pods["web-0.ny8-nyc"]));
        if replaced {
            for (name, before) in &pods {
                if name != "web-0.ny8-nyc" {
                    assert_eq!(uid(&now[name]), uid(before), "{name} was replaced too");
                }
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "web-0.ny8-nyc never replaced: {:?}",
            now.keys()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    kube.ok(&["delete", "statefulset", "web"]).await;
}

fn image_of(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn the_reference_scenario_through_kubectl() {
    let app = TestApp::spawn().await.expect("control plane");
    let ch = app.channel().await.expect("channel");
    let home = tempfile::tempdir().expect("home");
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let mut base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    base.heartbeat_interval = Duration::from_secs(1);
    base.status_debounce = Duration::from_millis(100);
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
    assert_eq!(fleet.len(), 3);
    let kube = Kube {
        home: home.path().to_owned(),
        config: scenario(&ch, &app.admin_token, home.path()).await,
    };

    // replicas: 2 on three sites: READY 6/6, two pods per site on its nodes.
    kube.apply(&deployment(2, "productpage:v1")).await;
    kube.rollout().await;
    kube.wait_ready("6/6").await;
    let by_site = kube.wait_pods(&SITES, 2, |_| true).await;
    let wide = kube.ok(&["get", "pods", "-o", "wide"]).await;
    let header = wide.lines().next().unwrap_or_default();
    assert!(header.contains("NODE") && header.contains("SITE"), "{wide}");
    for (site, pods) in &by_site {
        for p in pods {
            let name = p["metadata"]["name"].as_str().unwrap();
            let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
            assert!(node.starts_with(&format!("{site}-node-")), "{name}: {node}");
            let row = wide
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{name} in:\n{wide}"));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert!(cells.contains(&node), "{row}");
            assert_eq!(cells.last(), Some(&site.as_str()), "{row}");
        }
    }
    nodes_tell_the_same_story_as_the_pods(&kube, &by_site).await;
    each_site_shows_its_ready_pods(&kube).await;

    // Field selectors over the merged pods.
    let node = by_site["pa2-par"][0]["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_owned();
    let on_node = kube
        .ok(&[
            "get",
            "pods",
            "--field-selector",
            &format!("spec.nodeName={node},status.phase=Running"),
            "-o",
            "name",
        ])
        .await;
    assert!(
        !on_node.trim().is_empty() && on_node.lines().count() <= 2,
        "{on_node}"
    );

    // Logs come from the pod's site.
    let pod = by_site["ny8-nyc"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    // Its name is the site's pod name and the site; the site logs under its
    // own name.
    let site_pod = by_site["ny8-nyc"][0]["metadata"]["annotations"]["manifold.dev/site-pod-name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(pod, format!("{site_pod}.ny8-nyc"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let logs = kube.ok(&["logs", &pod, "--tail=3"]).await;
        if logs.contains(&format!("pod={site_pod}")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "logs of {pod}: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A deleted pod goes and its site's controller replaces it.
    kube.ok(&["delete", "pod", &pod, "--timeout=60s"]).await;
    kube.wait_pods(&SITES, 2, |now| {
        now.values()
            .flatten()
            .all(|p| p["metadata"]["name"] != pod.as_str())
    })
    .await;

    // Scaling follows on every site.
    kube.ok(&["scale", "deployment/productpage", "--replicas=3"])
        .await;
    kube.wait_pods(&SITES, 3, |_| true).await;
    kube.wait_ready("9/9").await;

    // An image change rolls out across the sites.
    kube.ok(&[
        "set",
        "image",
        "deployment/productpage",
        "productpage=productpage:v2",
    ])
    .await;
    kube.rollout().await;
    kube.wait_pods(&SITES, 3, |now| {
        now.values()
            .flatten()
            .all(|p| image_of(p) == "productpage:v2")
    })
    .await;

    statefulset_pods_are_named_per_site(&kube).await;

    // A site that leaves the virtual site loses its pods.
    relabel_site(&ch, &app.admin_token, "ams9-ams", &[("env", "lab")]).await;
    kube.wait_pods(&SITES[..2], 3, |_| true).await;
    // Its nodes go from the vK8s too.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let nodes = kube
            .ok(&["get", "nodes", "-l", "manifold.dev/site", "-o", "name"])
            .await;
        if !nodes.contains("ams9-ams") && nodes.contains("pa2-par") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{nodes}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `get deploy -o wide` has a SITES column with ready/desired per site, and
/// `describe` shows the same (two ready replicas on each of the three sites).
pub(crate) async fn each_site_shows_its_ready_pods(kube: &Kube) {
    let want = "ams9-ams=2/2,ny8-nyc=2/2,pa2-par=2/2";
    let mut wide = String::new();
    for _ in 0..40 {
        wide = kube
            .ok(&["get", "deploy", "productpage", "-o", "wide"])
            .await;
        if wide.contains(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let header = wide.lines().next().unwrap_or_default();
    assert!(header.trim_end().ends_with("SITES"), "{wide}");
    assert!(wide.contains(want), "{wide}");
    let described = kube.ok(&["describe", "deploy", "productpage"]).await;
    assert!(
        described.contains(&format!("manifold.dev/site-ready: {want}")),
        "{described}"
    );
}

/// `kubectl get nodes -L manifold.dev/site` lists the nodes the pods run on,
/// each with its site; tenants read them and cannot change them.
async fn nodes_tell_the_same_story_as_the_pods(
    kube: &Kube,
    by_site: &BTreeMap<String, Vec<Value>>,
) {
    let table = kube.ok(&["get", "nodes", "-L", "manifold.dev/site"]).await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "SITE"],
        "{table}"
    );
    for (site, pods) in by_site {
        for p in pods {
            let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
            let row = table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(node))
                .unwrap_or_else(|| panic!("node {node} of {site} in:\n{table}"));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cells[1], "Ready", "{row}");
            assert_eq!(cells.last(), Some(&site.as_str()), "{row}");
        }
    }
    let node = by_site["pa2-par"][0]["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_owned();
    let one: Value =
        serde_json::from_str(&kube.ok(&["get", "node", &node, "-o", "json"]).await).expect("node");
    assert_eq!(one["metadata"]["labels"]["manifold.dev/site"], "pa2-par");
    assert!(one["status"].get("addresses").is_none(), "{one}");
    let mine = kube
        .ok(&[
            "get",
            "nodes",
            "-l",
            "manifold.dev/site=pa2-par",
            "-o",
            "name",
        ])
        .await;
    assert!(
        mine.lines().all(|l| l.starts_with("node/pa2-par-")) && mine.contains(&node),
        "{mine}"
    );
    let refused = kube.fails(&["delete", "node", &node]).await;
    assert!(refused.contains("read-only"), "{refused}");
    let missing = kube.fails(&["get", "node", "no-such-node"]).await;
    assert!(
        missing.contains("NotFound") || missing.contains("not found"),
        "{missing}"
    );
}
