//! Real Kubernetes clusters as sites, on 127.0.0.1, without a container runtime.
//!
//! A [`RealCluster`] is five processes of the project-built `kube-site` binary
//! (`scripts/install-kube-site.sh`): etcd → kube-apiserver → kube-controller-manager,
//! kube-scheduler and kwok, which runs the fake nodes (two by default) and their
//! kubelets: real controllers create ReplicaSets and Pods, the real scheduler binds
//! them, kwok marks nodes Ready and pods Running and serves `kubectl logs` from
//! files. Each cluster has its own PKI (made here with rcgen), ports, data
//! directory and admin kubeconfig.
//!
//! Processes die with their parent ([`crate::spawner`]); dropping a cluster stops
//! them (SIGTERM, then SIGKILL after a grace period). Used by the integration
//! tests, by `manifold-sites` (`MANIFOLD_SITES=kube make run`) and by people.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;

use crate::spawner;

/// The Kubernetes version `kube-site` is built at.
pub const KUBERNETES_VERSION: &str = "v1.37.2";

/// Longest a cluster may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long stopped processes get before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Start attempts (a port picked as free may be taken before the process binds it).
const START_ATTEMPTS: usize = 3;

/// Path of the `kube-site` binary: `MANIFOLD_KUBE_SITE`, else `.tools/bin/kube-site`
/// (which `scripts/install-kube-site.sh`, run by `make tools`, links).
pub fn kube_site_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MANIFOLD_KUBE_SITE") {
        return Ok(PathBuf::from(path));
    }
    let path = crate::tool("kube-site").context(
        "the real-cluster binary is missing: run `make tools` (scripts/install-kube-site.sh \
         builds it from Go modules; it needs Go 1.26 and the Go module proxy)",
    )?;
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

/// One process of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Etcd,
    Apiserver,
    ControllerManager,
    Scheduler,
    Kwok,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::Etcd,
        Component::Apiserver,
        Component::ControllerManager,
        Component::Scheduler,
        Component::Kwok,
    ];

    /// The `kube-site` subcommand (also the log file's stem).
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::Apiserver => "apiserver",
            Component::ControllerManager => "controller-manager",
            Component::Scheduler => "scheduler",
            Component::Kwok => "kwok",
        }
    }
}

/// How a cluster is made.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Fake nodes, named `<cluster>-node-<i>`.
    pub nodes: usize,
    /// `--allow-privileged` on the API server (a site that refuses privileged pods
    /// leaves it off).
    pub allow_privileged: bool,
    /// Extra kube-apiserver flags.
    pub apiserver_args: Vec<String>,
    /// Keep etcd's data durable (`manifold-sites` keeps clusters across runs); tests
    /// turn fsync off.
    pub durable: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 2,
            allow_privileged: true,
            apiserver_args: Vec::new(),
            durable: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    kwok: u16,
}

impl Ports {
    fn pick() -> Result<Self> {
        Ok(Self {
            etcd_client: crate::free_port()?,
            etcd_peer: crate::free_port()?,
            apiserver: crate::free_port()?,
            kwok: crate::free_port()?,
        })
    }
}

/// A running real cluster.
pub struct RealCluster {
    name: String,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    bin: PathBuf,
    options: ClusterOptions,
    ports: Ports,
    procs: Mutex<BTreeMap<Component, Child>>,
}

impl RealCluster {
    /// Starts cluster `name` in a fresh temporary directory.
    pub async fn start(name: &str, options: ClusterOptions) -> Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix(&format!("kube-site-{name}-"))
            .tempdir()?;
        let dir = temp.path().to_owned();
        let mut cluster = Self::start_in(name, &dir, options).await?;
        cluster._temp = Some(temp);
        Ok(cluster)
    }

    /// Starts cluster `name` with its state in `dir` (created if missing; an
    /// existing PKI and etcd data are reused, so a cluster survives restarts).
    pub async fn start_in(name: &str, dir: &Path, options: ClusterOptions) -> Result<Self> {
        let bin = kube_site_binary()?;
        std::fs::create_dir_all(dir.join("logs"))?;
        Pki::load_or_create(dir, name)?;
        let mut last = None;
        for attempt in 1..=START_ATTEMPTS {
            let cluster = Self {
                name: name.to_owned(),
                dir: dir.to_owned(),
                _temp: None,
                bin: bin.clone(),
                options: options.clone(),
                ports: Ports::pick()?,
                procs: Mutex::new(BTreeMap::new()),
            };
            match cluster.boot().await {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    let logs = cluster.log_tails(15);
                    cluster.stop_all();
                    let in_use = logs.contains("address already in use");
                    let e = e.context(format!(
                        "starting cluster {name} (attempt {attempt}); logs:\n{logs}"
                    ));
                    if !in_use {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("starting cluster {name}")))
    }

    /// The cluster's name (its nodes are `<name>-node-<i>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its PKI, kubeconfig, data and logs live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig (a `system:masters` client certificate).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The API server's URL.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }

    /// The cluster CA (PEM file).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// The names of its nodes.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.options.nodes)
            .map(|i| format!("{}-node-{i}", self.name))
            .collect()
    }

    /// The pod log file kwok serves for every container without a file of its own
    /// (CRI log lines; append to it to feed `kubectl logs -f`).
    pub fn pod_log_file(&self) -> PathBuf {
        self.dir.join("podlogs/default.log")
    }

    /// A kube-rs client with the admin credentials.
    pub async fn client(&self) -> Result<kube::Client> {
        client_for(&self.kubeconfig()).await
    }

    async fn boot(&self) -> Result<()> {
        self.write_kubeconfig()?;
        self.write_kwok_config()?;
        self.spawn(Component::Etcd)?;
        crate::wait_for_port(
            ([127, 0, 0, 1], self.ports.etcd_client).into(),
            START_TIMEOUT,
        )
        .await
        .context("etcd did not listen")?;
        self.spawn(Component::Apiserver)?;
        let client = self.wait_apiserver(START_TIMEOUT).await?;
        for c in [
            Component::ControllerManager,
            Component::Scheduler,
            Component::Kwok,
        ] {
            self.spawn(c)?;
        }
        self.create_nodes(&client).await?;
        self.wait_ready(&client).await
    }

    fn args(&self, component: Component) -> Vec<String> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        let kubeconfig = d("kubeconfig");
        let p = self.ports;
        let mut args: Vec<String> = match component {
            Component::Etcd => {
                let mut a = vec![
                    "--name".into(),
                    self.name.clone(),
                    "--data-dir".into(),
                    d("etcd"),
                    "--listen-client-urls".into(),
                    format!("http://127.0.0.1:{}", p.etcd_client),
                    "--advertise-client-urls".into(),
                    format!("http://127.0.0.1:{}", p.etcd_client),
                    "--listen-peer-urls".into(),
                    format!("http://127.0.0.1:{}", p.etcd_peer),
                    "--initial-advertise-peer-urls".into(),
                    format!("http://127.0.0.1:{}", p.etcd_peer),
                    "--initial-cluster".into(),
                    format!("{}=http://127.0.0.1:{}", self.name, p.etcd_peer),
                    "--listen-metrics-urls".into(),
                    String::new(),
                    "--quota-backend-bytes".into(),
                    (2u64 << 30).to_string(),
                    "--log-level".into(),
                    "warn".into(),
                ];
                if !self.options.durable {
                    a.push("--unsafe-no-fsync".into());
                }
                a
            }
            Component::Apiserver => {
                let mut a = vec![
                    format!("--etcd-servers=http://127.0.0.1:{}", p.etcd_client),
                    "--bind-address=127.0.0.1".into(),
                    "--advertise-address=127.0.0.1".into(),
                    // 1.37 refuses a loopback advertise address with the default
                    // endpoint reconciler.
                    "--endpoint-reconciler-type=none".into(),
                    format!("--secure-port={}", p.apiserver),
                    format!("--tls-cert-file={}", d("pki/apiserver.crt")),
                    format!("--tls-private-key-file={}", d("pki/apiserver.key")),
                    format!("--client-ca-file={}", d("pki/ca.crt")),
                    format!("--kubelet-certificate-authority={}", d("pki/ca.crt")),
                    format!("--kubelet-client-certificate={}", d("pki/admin.crt")),
                    format!("--kubelet-client-key={}", d("pki/admin.key")),
                    format!("--service-account-key-file={}", d("pki/sa.pub")),
                    format!("--service-account-signing-key-file={}", d("pki/sa.key")),
                    "--service-account-issuer=https://kubernetes.default.svc".into(),
                    "--service-cluster-ip-range=10.96.0.0/16".into(),
                    "--authorization-mode=Node,RBAC".into(),
                    "--profiling=false".into(),
                ];
                if self.options.allow_privileged {
                    a.push("--allow-privileged=true".into());
                }
                a.extend(self.options.apiserver_args.iter().cloned());
                a
            }
            Component::ControllerManager => vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                // No HTTPS endpoint: one port less per site; readiness is observed
                // through the API (the default ServiceAccount appears).
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                format!("--root-ca-file={}", d("pki/ca.crt")),
                format!("--service-account-private-key-file={}", d("pki/sa.key")),
                "--use-service-account-credentials=true".into(),
                "--profiling=false".into(),
            ],
            Component::Scheduler => vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--profiling=false".into(),
            ],
            Component::Kwok => vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--config={}", d("kwok.yaml")),
            ],
        };
        args.insert(0, component.name().to_owned());
        args
    }

    fn spawn(&self, component: Component) -> Result<()> {
        let log_path = self.dir.join(format!("logs/{}.log", component.name()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(self.args(component))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawner::spawn(cmd)
            .with_context(|| format!("starting {} of {}", component.name(), self.name))?;
        lock(&self.procs).insert(component, child);
        Ok(())
    }

    /// Stops one component (SIGTERM, SIGKILL after the grace period), e.g. the API
    /// server for an outage.
    pub fn stop(&self, component: Component) {
        if let Some(child) = lock(&self.procs).remove(&component) {
            stop_children(vec![child]);
        }
    }

    /// Starts a component stopped by [`RealCluster::stop`] again, on the same ports.
    pub async fn restart(&self, component: Component) -> Result<()> {
        self.stop(component);
        self.spawn(component)?;
        if component == Component::Apiserver {
            self.wait_apiserver(START_TIMEOUT).await?;
        }
        Ok(())
    }

    /// Whether every component still runs.
    pub fn running(&self) -> bool {
        lock(&self.procs)
            .values_mut()
            .all(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `lines` lines of each component's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for c in Component::ALL {
            let path = self.dir.join(format!("logs/{}.log", c.name()));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            if tail.is_empty() {
                continue;
            }
            out.push_str(&format!("--- {} {}:\n", self.name, c.name()));
            for l in tail.iter().rev() {
                let cut: String = l.chars().take(400).collect();
                out.push_str(&cut);
                out.push('\n');
            }
        }
        out
    }

    fn stop_all(&self) {
        let mut procs = lock(&self.procs);
        // Dependents first, etcd last.
        let children: Vec<Child> = std::mem::take(&mut *procs).into_values().rev().collect();
        drop(procs);
        stop_children(children);
    }

    fn write_kubeconfig(&self) -> Result<()> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {
                "server": self.server(),
                "certificate-authority": d("pki/ca.crt"),
            }}],
            "users": [{"name": format!("{}-admin", self.name), "user": {
                "client-certificate": d("pki/admin.crt"),
                "client-key": d("pki/admin.key"),
            }}],
            "contexts": [{"name": self.name, "context": {
                "cluster": self.name, "user": format!("{}-admin", self.name),
            }}],
            "current-context": self.name,
        });
        write_private(
            &self.dir.join("kubeconfig"),
            serde_yaml_ng::to_string(&config)?.as_bytes(),
        )
    }

    fn write_kwok_config(&self) -> Result<()> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        std::fs::create_dir_all(self.dir.join("podlogs"))?;
        let default_log = self.pod_log_file();
        if !default_log.exists() {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let lines: String = (1..=5)
                .map(|i| format!("{now} stdout F site={} line={i}\n", self.name))
                .collect();
            std::fs::write(&default_log, lines)?;
        }
        let stages = std::process::Command::new(&self.bin)
            .arg("kwok-stages")
            .output()
            .context("reading kwok's default stages")?;
        if !stages.status.success() {
            bail!(
                "kube-site kwok-stages failed: {}",
                String::from_utf8_lossy(&stages.stderr)
            );
        }
        let config = json!({
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokConfiguration",
            "options": {
                "cidr": "10.244.0.0/16",
                "nodeIP": "127.0.0.1",
                "nodePort": self.ports.kwok,
                "serverAddress": format!("127.0.0.1:{}", self.ports.kwok),
                "tlsCertFile": d("pki/kwok.crt"),
                "tlsPrivateKeyFile": d("pki/kwok.key"),
                "manageAllNodes": true,
                "enableDebuggingHandlers": true,
                "podPlayStageParallelism": 4,
                "nodePlayStageParallelism": 4,
                "nodeLeaseDurationSeconds": 40,
                "nodeLeaseParallelism": 4,
                "podsOnNodeSyncParallelism": 1,
                "enablePodsOnNodeSyncListPager": true,
                "enablePodsOnNodeSyncStreamWatch": false,
            },
        });
        let logs = json!({
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": "default"},
            "spec": {"logs": [{
                "containers": [],
                "logsFile": default_log.display().to_string(),
                "previousLogsFile": default_log.display().to_string(),
                "follow": true,
            }]},
        });
        let mut text = serde_yaml_ng::to_string(&config)?;
        text.push_str("---\n");
        text.push_str(&serde_yaml_ng::to_string(&logs)?);
        text.push_str(&String::from_utf8_lossy(&stages.stdout));
        std::fs::write(self.dir.join("kwok.yaml"), text)?;
        Ok(())
    }

    async fn wait_apiserver(&self, limit: Duration) -> Result<kube::Client> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if !self.running() {
                bail!("a component of {} exited", self.name);
            }
            let last = match self.client().await {
                Ok(client) => {
                    let req = http::Request::get("/readyz").body(Vec::new())?;
                    match client.request_text(req).await {
                        Ok(body) if body.trim() == "ok" => return Ok(client),
                        Ok(body) => body,
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the API server of {} is not ready after {limit:?}: {last}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn create_nodes(&self, client: &kube::Client) -> Result<()> {
        let api: Api<Node> = Api::all(client.clone());
        for name in self.node_names() {
            if api.get_opt(&name).await?.is_some() {
                continue;
            }
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "node.alpha.kubernetes.io/ttl": "0",
                        "kwok.x-k8s.io/node": "fake",
                    },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        "topology.kubernetes.io/zone": self.name,
                    },
                },
            }))?;
            api.create(&PostParams::default(), &node).await?;
        }
        Ok(())
    }

    /// Every node Ready (kwok runs) and the `default` ServiceAccount exists in
    /// namespace `default` (the controller manager runs).
    async fn wait_ready(&self, client: &kube::Client) -> Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if !self.running() {
                bail!("a component of {} exited", self.name);
            }
            let ready = nodes
                .list(&Default::default())
                .await?
                .items
                .iter()
                .filter(|n| node_ready(n))
                .count();
            let sa = sas.get_opt("default").await?.is_some();
            if ready >= self.options.nodes && sa {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{}: {ready}/{} nodes Ready, default ServiceAccount {}",
                    self.name,
                    self.options.nodes,
                    if sa { "present" } else { "missing" }
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Several clusters started together.
pub struct RealSites {
    pub clusters: Vec<RealCluster>,
}

impl RealSites {
    /// Starts one cluster per name (concurrently), each in a temporary directory.
    pub async fn start(names: &[&str], options: ClusterOptions) -> Result<Self> {
        let started =
            futures::future::join_all(names.iter().map(|n| RealCluster::start(n, options.clone())))
                .await;
        let mut clusters = Vec::new();
        for c in started {
            clusters.push(c?);
        }
        Ok(Self { clusters })
    }

    pub fn get(&self, name: &str) -> &RealCluster {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
    }

    /// Every cluster's log tails, for a failing test's message.
    pub fn log_tails(&self, lines: usize) -> String {
        self.clusters.iter().map(|c| c.log_tails(lines)).collect()
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A kube-rs client for a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGTERM to each, then SIGKILL to whatever still runs after the grace period;
/// reaps them all.
fn stop_children(mut children: Vec<Child>) {
    for c in &children {
        spawner::signal(c.id(), libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while std::time::Instant::now() < deadline
        && children
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in &mut children {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A cluster's PKI under `<dir>/pki`: CA, API server and kwok serving
/// certificates, an admin client certificate (`O=system:masters`) and the
/// service-account signing key. Made once; reused while every file exists.
struct Pki;

impl Pki {
    const FILES: [&str; 9] = [
        "ca.crt",
        "ca.key",
        "apiserver.crt",
        "apiserver.key",
        "admin.crt",
        "admin.key",
        "kwok.crt",
        "sa.key",
        "sa.pub",
    ];

    fn load_or_create(dir: &Path, name: &str) -> Result<()> {
        let pki = dir.join("pki");
        if Self::FILES.iter().all(|f| pki.join(f).is_file()) {
            return Ok(());
        }
        std::fs::create_dir_all(&pki)?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name}-ca"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut ca, 3650);
        let ca_cert = ca.self_signed(&ca_key)?;
        write_private(&pki.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
        std::fs::write(pki.join("ca.crt"), ca_cert.pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |cn: &str,
                    org: Option<&str>,
                    dns: &[&str],
                    ips: &[IpAddr],
                    usage: ExtendedKeyUsagePurpose,
                    stem: &str|
         -> Result<()> {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::default();
            p.distinguished_name = DistinguishedName::new();
            p.distinguished_name.push(DnType::CommonName, cn);
            if let Some(o) = org {
                p.distinguished_name.push(DnType::OrganizationName, o);
            }
            for d in dns {
                p.subject_alt_names
                    .push(SanType::DnsName((*d).to_owned().try_into()?));
            }
            p.subject_alt_names
                .extend(ips.iter().copied().map(SanType::IpAddress));
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![usage];
            p.use_authority_key_identifier_extension = true;
            validity(&mut p, 3650);
            let cert = p.signed_by(&key, &issuer)?;
            write_private(
                &pki.join(format!("{stem}.key")),
                key.serialize_pem().as_bytes(),
            )?;
            std::fs::write(pki.join(format!("{stem}.crt")), cert.pem())?;
            Ok(())
        };
        let loopback = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1)),
        ];
        leaf(
            "kube-apiserver",
            None,
            &[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            &loopback,
            ExtendedKeyUsagePurpose::ServerAuth,
            "apiserver",
        )?;
        leaf(
            "kubernetes-admin",
            Some("system:masters"),
            &[],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            "admin",
        )?;
        leaf(
            "kwok",
            None,
            &["localhost"],
            &loopback[..1],
            ExtendedKeyUsagePurpose::ServerAuth,
            "kwok",
        )?;
        // The service-account token signing key (ECDSA P-256, PKCS#8) and its
        // public half, which the API server verifies tokens with.
        let sa = KeyPair::generate()?;
        write_private(&pki.join("sa.key"), sa.serialize_pem().as_bytes())?;
        std::fs::write(pki.join("sa.pub"), sa.public_key_pem())?;
        Ok(())
    }
}

fn validity(p: &mut CertificateParams, days: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + now.saturating_sub(Duration::from_secs(3600));
    p.not_after = epoch + now + Duration::from_secs(days * 86_400);
}
