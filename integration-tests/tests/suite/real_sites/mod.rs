//! The `kube` backend on real Kubernetes sites: each site is a real cluster
//! (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok with two
//! Ready nodes; `manifold_integration_tests::kube_site`) on 127.0.0.1, and each
//! agent is a `manifold-site-agent --backend kube` process registered the way an
//! operator registers one. What lands is checked through each cluster's own API.

mod kinds;
mod outage;
mod placement;
mod podsecurity;
mod rbac;
mod reference;
mod refusals;
mod restarts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use manifold_integration_tests::agents::{self, ControlPlane};
use manifold_integration_tests::kube_site::{ClusterOptions, RealCluster, RealSites};
use manifold_integration_tests::{Service, TestApp, free_port, wait_for_port};
use manifold_proto::sites::v1 as spb;
use tonic::transport::Channel;

use super::reference::{Kube, scenario};

/// The physical namespace of vK8s `tenants/acme/namespaces/shop/virtualClusters/demo`.
pub const PHYSICAL_NS: &str = "mf-acme-shop-demo";
/// Longest any condition on a real site is waited for.
pub const WAIT: Duration = Duration::from_secs(120);

/// How the control plane runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// Every service in this process.
    AllInOne,
    /// Replication as its own process on a fixed port (so it can be killed and
    /// started again on the same address), the rest in this process.
    SplitReplication,
}

/// A control plane, real clusters, one agent process per cluster, and the
/// reference scenario's vK8s (tenant acme, namespace shop, virtual site
/// all-edges = env=edge, vK8s demo) with a kubeconfig for the real kubectl.
pub struct RealEnv {
    pub app: TestApp,
    pub sites: RealSites,
    pub ch: Channel,
    pub kube: Kube,
    pub cp: ControlPlane,
    agents: Mutex<BTreeMap<String, Service>>,
    replication: Mutex<Option<Service>>,
    replication_port: Option<u16>,
    dir: tempfile::TempDir,
    restarts: Mutex<usize>,
}

impl RealEnv {
    pub async fn start(names: &[&str], plane: Plane) -> RealEnv {
        Self::start_with(names, plane, ClusterOptions::default()).await
    }

    pub async fn start_with(names: &[&str], plane: Plane, options: ClusterOptions) -> RealEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        // The clusters start while the control plane does.
        let clusters = tokio::spawn({
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            async move {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                RealSites::start(&names, options).await
            }
        });
        let (app, replication, replication_port) = match plane {
            Plane::AllInOne => (
                TestApp::spawn_with(&[
                    ("sites.heartbeat_timeout_secs", "5".into()),
                    ("sites.certificate_recheck_secs", "2".into()),
                ])
                .await
                .expect("control plane"),
                None,
                None,
            ),
            Plane::SplitReplication => {
                let port = free_port().expect("port");
                let app = TestApp::spawn_with(&[
                    ("serve.services", "tenancy,sites,gateway".into()),
                    ("upstream.replication", format!("https://127.0.0.1:{port}")),
                ])
                .await
                .expect("control plane");
                let r = start_replication(&app, port, &dir.path().join("replication-0.log"));
                wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(60))
                    .await
                    .unwrap_or_else(|e| panic!("{e}\n{}", r.log()));
                (app, Some(r), Some(port))
            }
        };
        let sites = clusters
            .await
            .expect("cluster start task")
            .unwrap_or_else(|e| panic!("starting the real clusters: {e:#}"));
        let ch = app.channel().await.expect("channel");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let kube = Kube {
            home: home.clone(),
            config: scenario(&ch, &app.admin_token, &home).await,
        };
        let cp = ControlPlane {
            endpoint: format!("https://{}", app.grpc_addr),
            ca_file: app.ca_file(),
            admin_token: app.admin_token.clone(),
        };
        let env = RealEnv {
            app,
            sites,
            ch,
            kube,
            cp,
            agents: Mutex::new(BTreeMap::new()),
            replication: Mutex::new(replication),
            replication_port,
            dir,
            restarts: Mutex::new(0),
        };
        for c in &env.sites.clusters {
            env.start_agent(c.name(), &c.kubeconfig()).await;
        }
        env.wait_online(names).await;
        env
    }

    /// Environment of an agent process beyond the defaults of `agents`.
    fn agent_env(&self) -> Vec<(&'static str, String)> {
        match self.replication_port {
            Some(port) => vec![(
                "MANIFOLD_SYNC_ENDPOINT",
                format!("https://127.0.0.1:{port}"),
            )],
            None => Vec::new(),
        }
    }

    fn agent_dir(&self, site: &str) -> PathBuf {
        self.dir.path().join("agents").join(site)
    }

    /// Starts (or replaces) the agent of `site` against `kubeconfig`.
    pub async fn start_agent(&self, site: &str, kubeconfig: &Path) {
        agents::ensure_site(
            &self.ch,
            &self.app.admin_token,
            site,
            &[("env".to_owned(), "edge".to_owned())].into(),
        )
        .await
        .expect("site");
        let n = {
            let mut r = self.restarts.lock().unwrap();
            *r += 1;
            *r
        };
        let env = self.agent_env();
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        let agent = agents::start_kube_agent(
            &self.ch,
            &self.cp,
            site,
            kubeconfig,
            &self.agent_dir(site),
            &env,
            &self.dir.path().join(format!("agent-{site}-{n}.log")),
        )
        .await
        .expect("agent process");
        self.agents.lock().unwrap().insert(site.to_owned(), agent);
    }

    /// Stops the agent of `site` the way a supervisor would (SIGTERM).
    pub async fn stop_agent(&self, site: &str) {
        let agent = self.agents.lock().unwrap().remove(site);
        if let Some(a) = agent {
            a.terminate(Duration::from_secs(10)).await;
        }
    }

    /// Kills the replication process (SIGKILL) and starts it again on the same
    /// address.
    pub async fn restart_replication(&self) {
        let port = self.replication_port.expect("a split control plane");
        let old = self.replication.lock().unwrap().take();
        if let Some(r) = old {
            r.kill().await.expect("kill replication");
        }
        let n = {
            let mut r = self.restarts.lock().unwrap();
            *r += 1;
            *r
        };
        let r = start_replication(
            &self.app,
            port,
            &self.dir.path().join(format!("replication-{n}.log")),
        );
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", r.log()));
        *self.replication.lock().unwrap() = Some(r);
    }

    pub fn cluster(&self, site: &str) -> &RealCluster {
        self.sites.get(site)
    }

    /// A client of `site`'s own API server (admin credentials).
    pub async fn site_client(&self, site: &str) -> kube::Client {
        self.cluster(site).client().await.expect("site client")
    }

    /// The site registry's view of `site`.
    pub async fn site(&self, site: &str) -> spb::Site {
        spb::site_service_client::SiteServiceClient::new(self.ch.clone())
            .get_site(manifold_integration_tests::authed(
                &self.app.admin_token,
                spb::GetSiteRequest {
                    name: format!("sites/{site}"),
                },
            ))
            .await
            .expect("get site")
            .into_inner()
    }

    async fn wait_online(&self, names: &[&str]) {
        self.wait_for("every site ONLINE with its nodes", || async {
            for n in names {
                let s = self.site(n).await;
                if s.state != spb::site::State::Online as i32 || s.nodes.len() < 2 {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// Polls `check` every half second until it holds; panics with the logs of
    /// every agent and cluster after [`WAIT`].
    pub async fn wait_for<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if check().await {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{what}: not reached within {WAIT:?}\n{}",
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The logs worth reading when a test fails.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (site, a) in self.agents.lock().unwrap().iter() {
            let log = a.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!("--- agent {site}:\n"));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        if let Some(r) = self.replication.lock().unwrap().as_ref() {
            let log = r.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out.push_str("--- replication:\n");
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out.push_str(&self.sites.log_tails(8));
        out
    }

    /// The log of `site`'s current agent process.
    pub fn agent_log(&self, site: &str) -> String {
        self.agents
            .lock()
            .unwrap()
            .get(site)
            .map(Service::log)
            .unwrap_or_default()
    }

    /// Deployments, ReplicaSets and Pods of the physical namespace on `site`.
    pub async fn physical(&self, site: &str) -> Physical {
        let client = self.site_client(site).await;
        let lp = ListParams::default();
        let deployments = Api::<Deployment>::namespaced(client.clone(), PHYSICAL_NS)
            .list(&lp)
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), PHYSICAL_NS)
            .list(&lp)
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let pods = Api::<Pod>::namespaced(client, PHYSICAL_NS)
            .list(&lp)
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        Physical {
            deployments,
            replica_sets,
            pods,
        }
    }
}

/// What a site's own API server holds in the vK8s's physical namespace.
pub struct Physical {
    pub deployments: Vec<Deployment>,
    pub replica_sets: Vec<ReplicaSet>,
    pub pods: Vec<Pod>,
}

impl Physical {
    /// Running pods (not being deleted).
    pub fn running(&self) -> Vec<&Pod> {
        self.pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect()
    }

    /// (kind/name → uid) of every ReplicaSet and Pod.
    pub fn uids(&self) -> BTreeMap<String, String> {
        let rs = self.replica_sets.iter().map(|r| {
            (
                format!("ReplicaSet/{}", r.metadata.name.clone().unwrap_or_default()),
                r.metadata.uid.clone().unwrap_or_default(),
            )
        });
        let pods = self.pods.iter().map(|p| {
            (
                format!("Pod/{}", p.metadata.name.clone().unwrap_or_default()),
                p.metadata.uid.clone().unwrap_or_default(),
            )
        });
        rs.chain(pods).collect()
    }
}

/// The image of a pod's first container.
pub fn image(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// The replication service as its own process on `port`.
fn start_replication(app: &TestApp, port: u16, log: &Path) -> Service {
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

/// Deployment `name` with `replicas`, `image` and extra container YAML.
pub fn deployment_yaml(name: &str, replicas: u32, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: {name}
        image: {image}
{extra}"
    )
}
