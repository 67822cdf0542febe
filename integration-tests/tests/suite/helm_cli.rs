//! The real Helm CLI (built from helm.sh/helm/v4 by `scripts/install-helm.sh`,
//! linked as `.tools/bin/helm`): install, upgrade, rollback and uninstall of a
//! small chart into a vK8s (Helm keeps each release revision as a labelled
//! Secret, found again by label selector), and `helm template` of both project
//! charts piped to `kubectl apply -f -` against a real site.
//!
//! Without a helm binary these tests print why and pass, unless
//! `MANIFOLD_REQUIRE_HELM` is set (then a missing binary fails them).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use manifold_integration_tests::kube_site::{ClusterOptions, RealCluster};
use manifold_integration_tests::{TestApp, tool};
use manifold_site_agent::{AgentConfig, SimulatedOptions, SimulatedSite};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::kubectl_matrix::namespace_with_vk8s;
use crate::vk8s_grpc::create_tenant;

/// Longest one helm or kubectl call may take.
const CALL: Duration = Duration::from_secs(120);

/// The helm binary: `MANIFOLD_HELM`, else `.tools/bin/helm`. `None` (after
/// saying so) when it is absent and not required.
fn helm_binary() -> Option<PathBuf> {
    let found = match std::env::var_os("MANIFOLD_HELM") {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => tool("helm").ok(),
    };
    if found.is_none() {
        assert!(
            std::env::var_os("MANIFOLD_REQUIRE_HELM").is_none(),
            "MANIFOLD_REQUIRE_HELM is set but the helm CLI is missing: run scripts/install-helm.sh (make tools)"
        );
        println!(
            "helm CLI not installed (scripts/install-helm.sh, run by `make tools`, builds it); skipping"
        );
    }
    found
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `program` with a private HOME (helm's cache, config and data live
/// under it) and one kubeconfig; stdout of a command that must succeed.
async fn run(
    program: &Path,
    home: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> String {
    let out = run_output(program, home, kubeconfig, args, stdin).await;
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn run_output(
    program: &Path,
    home: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    tokio::time::timeout(CALL, child.wait_with_output())
        .await
        .expect("finished in time")
        .expect("ran")
}

/// A chart with a ConfigMap and a Deployment whose content follows `color`,
/// and a pre-install/pre-upgrade hook (a ConfigMap Helm creates before the
/// release's objects and replaces on each run).
fn write_chart(dir: &Path) -> PathBuf {
    let chart = dir.join("colors");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: colors\nversion: 0.1.0\nappVersion: \"1.0\"\n",
    )
    .unwrap();
    std::fs::write(chart.join("values.yaml"), "color: blue\nreplicas: 1\n").unwrap();
    std::fs::write(
        chart.join("templates/configmap.yaml"),
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
  labels:
    app.kubernetes.io/instance: {{ .Release.Name }}
data:
  color: {{ .Values.color | quote }}
",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/hook.yaml"),
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-hook
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-delete-policy: before-hook-creation
data:
  revision: {{ .Release.Revision | quote }}
",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/deployment.yaml"),
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app: {{ .Release.Name }}-web
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}-web
    spec:
      containers:
      - name: web
        image: registry.example/web:{{ .Values.color }}
",
    )
    .unwrap();
    chart
}

/// helm and kubectl in one vK8s namespace.
struct Clients<'a> {
    helm: PathBuf,
    kubectl: PathBuf,
    home: &'a Path,
    kubeconfig: &'a Path,
    namespace: &'a str,
}

impl Clients<'_> {
    async fn helm(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["-n", self.namespace]);
        run(&self.helm, self.home, self.kubeconfig, &all, None).await
    }

    async fn kubectl(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["-n", self.namespace]);
        run(&self.kubectl, self.home, self.kubeconfig, &all, None).await
    }

    /// stderr of a kubectl command that must fail.
    async fn kubectl_fails(&self, args: &[&str]) -> String {
        let out = run_output(&self.kubectl, self.home, self.kubeconfig, args, None).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    async fn jsonpath(&self, what: &str, path: &str) -> String {
        let path = format!("jsonpath={path}");
        self.kubectl(&["get", what, "-o", &path]).await
    }

    /// `version:status` of each release record (Secret `owner=helm,name=demo`).
    async fn records(&self) -> String {
        self.kubectl(&[
            "get",
            "secrets",
            "-l",
            "owner=helm,name=demo",
            "--sort-by=.metadata.labels.version",
            "-o",
            "jsonpath={range .items[*]}{.type}/{.metadata.labels.version}:{.metadata.labels.status} {end}",
        ])
        .await
        .trim()
        .to_owned()
    }
}

/// A control plane with simulated edge sites `sites` and, in namespace `shop`
/// of tenant acme, vK8s `matrix` on all of them (see
/// `kubectl_matrix::namespace_with_vk8s`).
/// Fields drop in order: the sites stop before the control plane.
struct Env {
    _stop: tokio_util::sync::DropGuard,
    _fleet: manifold_site_agent::Fleet,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    _app: TestApp,
}

async fn env(sites: &[&str]) -> Env {
    let app = TestApp::spawn().await.expect("control plane");
    let ch = app.channel().await.expect("channel");
    let stop = CancellationToken::new();
    let mut base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    base.heartbeat_interval = Duration::from_secs(1);
    base.status_debounce = Duration::from_millis(100);
    let fleet = manifold_site_agent::start_simulated_sites(
        ch.clone(),
        &app.admin_token,
        &base,
        sites.iter().map(|s| SimulatedSite::edge(*s)).collect(),
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await
    .expect("simulated sites");
    create_tenant(&ch, &app.admin_token, "acme").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = namespace_with_vk8s(&ch, &app.admin_token, "shop", dir.path()).await;
    Env {
        _stop: stop.drop_guard(),
        _fleet: fleet,
        dir,
        kubeconfig,
        _app: app,
    }
}

/// Install (with a hook), upgrade, rollback, `upgrade --install` of an
/// existing release, status, history, list and uninstall, each checked with
/// kubectl. Two simulated sites run the vK8s's workloads.
#[tokio::test]
async fn helm_install_upgrade_rollback_uninstall_into_a_vk8s() {
    let Some(helm) = helm_binary() else { return };
    let e = env(&["pa2-par", "ny8-nyc"]).await;
    let home = e.dir.path();
    let chart = write_chart(home);
    let chart = chart.to_str().unwrap();
    let c = Clients {
        helm,
        kubectl: tool("kubectl").expect("kubectl"),
        home,
        kubeconfig: &e.kubeconfig,
        namespace: "shop",
    };

    let installed = c.helm(&["install", "demo", chart]).await;
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert_eq!(
        c.jsonpath("cm/demo-settings", "{.data.color}").await,
        "blue"
    );
    assert_eq!(c.jsonpath("cm/demo-hook", "{.data.revision}").await, "1");
    // Helm 4 applies server-side, as field manager "helm".
    let managers = c
        .jsonpath("cm/demo-settings", "{.metadata.managedFields[*].manager}")
        .await;
    assert_eq!(managers, "helm", "{managers}");
    // The release record: a Secret of type helm.sh/release.v1 labelled
    // owner=helm, name=demo, version=1, found again by label selector.
    assert_eq!(c.records().await, "helm.sh/release.v1/1:deployed");

    let upgraded = c
        .helm(&[
            "upgrade",
            "demo",
            chart,
            "--set",
            "color=red",
            "--set",
            "replicas=2",
        ])
        .await;
    assert!(upgraded.contains("REVISION: 2"), "{upgraded}");
    assert_eq!(c.jsonpath("cm/demo-settings", "{.data.color}").await, "red");
    assert_eq!(c.jsonpath("cm/demo-hook", "{.data.revision}").await, "2");
    assert_eq!(c.jsonpath("deploy/demo-web", "{.spec.replicas}").await, "2");
    // `helm --wait` (kstatus) never sees a Deployment of a vK8s on more
    // than one site as ready: its status sums the sites (4 replicas for
    // spec.replicas 2), which kstatus reads as pods pending termination.
    // `kubectl rollout status` compares the sums with each other.
    let rolled_out = c
        .kubectl(&["rollout", "status", "deploy/demo-web", "--timeout=60s"])
        .await;
    assert!(
        rolled_out.contains("successfully rolled out"),
        "{rolled_out}"
    );
    assert_eq!(
        c.jsonpath("deploy/demo-web", "{.status.readyReplicas}")
            .await,
        "4",
        "two replicas on each of two sites"
    );
    assert_eq!(
        c.records().await,
        "helm.sh/release.v1/1:superseded helm.sh/release.v1/2:deployed"
    );

    let rolled = c.helm(&["rollback", "demo", "1"]).await;
    assert!(rolled.contains("Rollback was a success"), "{rolled}");
    assert_eq!(
        c.jsonpath("cm/demo-settings", "{.data.color}").await,
        "blue"
    );
    assert_eq!(c.jsonpath("deploy/demo-web", "{.spec.replicas}").await, "1");
    assert_eq!(
        c.jsonpath(
            "deploy/demo-web",
            "{.spec.template.spec.containers[0].image}"
        )
        .await,
        "registry.example/web:blue"
    );

    // upgrade --install of a release that exists upgrades it.
    let again = c
        .helm(&[
            "upgrade",
            "--install",
            "demo",
            chart,
            "--set",
            "color=green",
        ])
        .await;
    assert!(again.contains("REVISION: 4"), "{again}");
    assert_eq!(
        c.jsonpath("cm/demo-settings", "{.data.color}").await,
        "green"
    );

    let history = c.helm(&["history", "demo"]).await;
    assert_eq!(
        history.lines().count(),
        5,
        "header and four revisions:\n{history}"
    );
    assert!(history.contains("Rollback to 1"), "{history}");
    let status = c.helm(&["status", "demo"]).await;
    assert!(status.contains("REVISION: 4"), "{status}");
    let manifest = c.helm(&["get", "manifest", "demo"]).await;
    assert!(manifest.contains("color: \"green\""), "{manifest}");
    let list = c.helm(&["list", "-o", "json"]).await;
    let list: serde_json::Value = serde_json::from_str(&list).expect("helm list -o json");
    assert_eq!(list[0]["name"], "demo", "{list}");
    assert_eq!(list[0]["status"], "deployed", "{list}");
    assert_eq!(list[0]["revision"], "4", "{list}");

    let gone = c.helm(&["uninstall", "demo", "--wait"]).await;
    assert!(gone.contains("release \"demo\" uninstalled"), "{gone}");
    // The hook stays (Helm leaves hooks to their delete policy); the release's
    // objects and every release record are gone.
    assert_eq!(
        c.kubectl(&["get", "cm,deploy,secrets", "-o", "name"])
            .await
            .trim(),
        "configmap/demo-hook"
    );
    assert_eq!(c.helm(&["list", "-q"]).await.trim(), "");

    // Helm 3's way, still an option: create, then three-way strategic merge
    // patches; and a server-side dry run that stores nothing.
    let old = c
        .helm(&[
            "install",
            "old",
            chart,
            "--server-side=false",
            "--create-namespace",
        ])
        .await;
    assert!(old.contains("STATUS: deployed"), "{old}");
    let dry = c
        .helm(&[
            "upgrade",
            "old",
            chart,
            "--set",
            "color=red",
            "--dry-run=server",
        ])
        .await;
    assert!(dry.contains("color: \"red\""), "{dry}");
    assert_eq!(c.jsonpath("cm/old-settings", "{.data.color}").await, "blue");
    c.helm(&[
        "upgrade",
        "old",
        chart,
        "--set",
        "color=red",
        "--set",
        "replicas=3",
    ])
    .await;
    assert_eq!(c.jsonpath("cm/old-settings", "{.data.color}").await, "red");
    assert_eq!(c.jsonpath("deploy/old-web", "{.spec.replicas}").await, "3");
    let values = c.helm(&["get", "values", "old", "-o", "json"]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&values).unwrap(),
        serde_json::json!({"color": "red", "replicas": 3})
    );
    c.helm(&["uninstall", "old"]).await;
    assert_eq!(
        c.kubectl(&["get", "deploy,secrets", "-o", "name"])
            .await
            .trim(),
        ""
    );
}

/// On a vK8s of one site the summed status is that site's, and `helm
/// --wait` (kstatus) sees the Deployment become Current. `--create-namespace`
/// (a server-side apply of the namespace) finds the vK8s's namespace existing.
#[tokio::test]
async fn helm_wait_on_a_one_site_vk8s() {
    let Some(helm) = helm_binary() else { return };
    let e = env(&["pa2-par"]).await;
    let home = e.dir.path();
    let chart = write_chart(home);
    let chart = chart.to_str().unwrap();
    let c = Clients {
        helm,
        kubectl: tool("kubectl").expect("kubectl"),
        home,
        kubeconfig: &e.kubeconfig,
        namespace: "shop",
    };
    let installed = c
        .helm(&[
            "install",
            "demo",
            chart,
            "--create-namespace",
            "--wait",
            "--timeout",
            "60s",
        ])
        .await;
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert_eq!(
        c.jsonpath("deploy/demo-web", "{.status.readyReplicas}")
            .await,
        "1"
    );
    let upgraded = c
        .helm(&[
            "upgrade",
            "demo",
            chart,
            "--set",
            "replicas=2",
            "--wait",
            "--timeout",
            "60s",
        ])
        .await;
    assert!(upgraded.contains("REVISION: 2"), "{upgraded}");
    assert_eq!(
        c.jsonpath("deploy/demo-web", "{.status.readyReplicas}")
            .await,
        "2"
    );
    // The vK8s's namespace exists and stays Manifold's: created again it
    // already exists; any other namespace write is refused.
    let again = c.kubectl_fails(&["create", "namespace", "shop"]).await;
    assert!(
        again.contains("(AlreadyExists)") && again.contains("namespaces \"shop\" already exists"),
        "{again}"
    );
    let applied = c.kubectl_fails(&["create", "namespace", "other"]).await;
    assert!(applied.contains("(MethodNotAllowed)"), "{applied}");
    let labelled = c
        .kubectl_fails(&["label", "namespace", "shop", "team=web"])
        .await;
    assert!(labelled.contains("(MethodNotAllowed)"), "{labelled}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test]
async fn helm_template_of_both_charts_applies_to_a_real_site() {
    let Some(helm) = helm_binary() else { return };
    let kubectl = tool("kubectl").expect("kubectl");
    let home = tempfile::tempdir().expect("home");
    let site = RealCluster::start("helm-site", ClusterOptions::default())
        .await
        .expect("a real site (kube-site; see docs/real-sites.md)");
    let kc = site.kubeconfig();
    let home = home.path();
    run(
        &kubectl,
        home,
        &kc,
        &["create", "namespace", "manifold"],
        None,
    )
    .await;
    run(
        &kubectl,
        home,
        &kc,
        &["create", "namespace", "manifold-agent"],
        None,
    )
    .await;

    let manifold = repo().join("helm/manifold");
    let rendered = run(
        &helm,
        home,
        &kc,
        &[
            "template",
            "mf",
            manifold.to_str().unwrap(),
            "-n",
            "manifold",
        ],
        None,
    )
    .await;
    let applied = run(
        &kubectl,
        home,
        &kc,
        &["apply", "-n", "manifold", "-f", "-"],
        Some(&rendered),
    )
    .await;
    assert!(applied.contains("created"), "{applied}");
    assert!(!applied.contains("unchanged"), "{applied}");

    let values = home.join("agent-values.json");
    std::fs::write(&values, crate::helm::agent_values().to_string()).unwrap();
    let agent = repo().join("helm/site-agent");
    let rendered = run(
        &helm,
        home,
        &kc,
        &[
            "template",
            "agent",
            agent.to_str().unwrap(),
            "-n",
            "manifold-agent",
            "-f",
            values.to_str().unwrap(),
        ],
        None,
    )
    .await;
    let applied = run(
        &kubectl,
        home,
        &kc,
        &["apply", "-n", "manifold-agent", "-f", "-"],
        Some(&rendered),
    )
    .await;
    assert!(applied.contains("created"), "{applied}");
    // Re-applying the same render changes nothing.
    let again = run(
        &kubectl,
        home,
        &kc,
        &["apply", "-n", "manifold-agent", "-f", "-"],
        Some(&rendered),
    )
    .await;
    // Every line but the StatefulSet's says unchanged: client-side apply
    // replaces volumeClaimTemplates (a list without a merge key) whenever the
    // API server's defaults in it differ from the applied one, so
    // kube-apiserver reports a StatefulSet with claim templates as
    // configured on every apply.
    for line in again.lines() {
        assert!(
            line.ends_with(" unchanged")
                || (line.starts_with("statefulset.apps/") && line.ends_with(" configured")),
            "{again}"
        );
    }
    // What the site's API holds: the four services of the control plane
    // chart, the migration Job (a hook, which `helm template` renders too)
    // and the agent's StatefulSet.
    let deployments = run(
        &kubectl,
        home,
        &kc,
        &["get", "deploy,job", "-n", "manifold", "-o", "name"],
        None,
    )
    .await;
    assert_eq!(deployments.lines().count(), 5, "{deployments}");
    let agent = run(
        &kubectl,
        home,
        &kc,
        &["get", "statefulsets", "-n", "manifold-agent", "-o", "name"],
        None,
    )
    .await;
    assert_eq!(agent.lines().count(), 1, "{agent}");
}
