//! Every kubectl in the supported range (1.27 → 1.37) against one control
//! plane with simulated sites: each version gets its own namespace and vK8s
//! and runs the same sequence (apply create / unchanged / configured,
//! `get -o wide`, `diff`, `scale`, `wait`, `explain`, `get -w`, `delete`).
//!
//! Versions come from the machine image (`/usr/lib/google-cloud-sdk/bin/kubectl.1.*`),
//! from `MANIFOLD_KUBECTL_MATRIX` (extra binaries, separated by `:`), and the
//! pinned `.tools/bin/kubectl`, which is mandatory. A version missing on this
//! machine is printed and skipped.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use manifold_integration_tests::{TestApp, authed, tool};
use manifold_proto::sites::v1 as spb;
use manifold_site_agent::{AgentConfig, SimulatedOptions, SimulatedSite};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::vk8s_grpc::{create_namespace, create_tenant, create_vk8s, get_kubeconfig};

/// Where the Google Cloud SDK image keeps its versioned kubectls.
const SDK_BIN: &str = "/usr/lib/google-cloud-sdk/bin";
/// The image's versions: reported when absent.
const IMAGE_MINORS: std::ops::RangeInclusive<u32> = 27..=33;
/// Longest one kubectl call may take.
const CALL: Duration = Duration::from_secs(90);

/// One kubectl binary of the matrix.
struct Client {
    label: String,
    binary: PathBuf,
}

/// The binaries to test, and the versions reported missing.
fn matrix() -> (Vec<Client>, Vec<String>) {
    let mut clients = Vec::new();
    let mut missing = Vec::new();
    for minor in IMAGE_MINORS {
        let path = Path::new(SDK_BIN).join(format!("kubectl.1.{minor}"));
        if path.is_file() {
            clients.push(Client {
                label: format!("1.{minor}"),
                binary: path,
            });
        } else {
            missing.push(path.display().to_string());
        }
    }
    if let Ok(extra) = std::env::var("MANIFOLD_KUBECTL_MATRIX") {
        for p in extra.split(':').filter(|p| !p.trim().is_empty()) {
            let path = PathBuf::from(p.trim());
            if path.is_file() {
                clients.push(Client {
                    label: path.display().to_string(),
                    binary: path,
                });
            } else {
                missing.push(format!("{} (from MANIFOLD_KUBECTL_MATRIX)", path.display()));
            }
        }
    }
    clients.push(Client {
        label: "pinned".into(),
        binary: tool("kubectl").expect("the pinned kubectl (.tools/bin/kubectl) is mandatory"),
    });
    (clients, missing)
}

/// kubectl with one binary, kubeconfig and HOME, in one namespace.
struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
    namespace: String,
    label: String,
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args(["-n", &self.namespace])
            .args(args)
            .args(
                std::env::var("MANIFOLD_KUBECTL_MATRIX_VERBOSE")
                    .ok()
                    .map(|v| format!("-v={v}")),
            )
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env_remove("KUBE_EDITOR")
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command(args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        tokio::time::timeout(CALL, child.wait_with_output())
            .await
            .expect("kubectl finished in time")
            .expect("kubectl ran")
    }

    async fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, None).await
    }

    async fn ok_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(args, stdin).await;
        assert!(
            o.status.success(),
            "kubectl {} {args:?} failed: {}",
            self.label,
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    async fn apply(&self, yaml: &str) -> String {
        self.ok_stdin(&["apply", "-f", "-"], Some(yaml)).await
    }
}

fn deployment(replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: {image}
        ports:
        - containerPort: 8080
"
    )
}

/// Namespace `ns` of tenant acme with virtual site `all-edges` (env=edge) and
/// vK8s `matrix`; returns its kubeconfig (a namespace editor's token).
pub(crate) async fn namespace_with_vk8s(
    ch: &Channel,
    admin: &str,
    ns: &str,
    dir: &Path,
) -> PathBuf {
    create_namespace(ch, admin, "acme", ns).await;
    let parent = format!("tenants/acme/namespaces/{ns}");
    spb::virtual_site_service_client::VirtualSiteServiceClient::new(ch.clone())
        .create_virtual_site(authed(
            admin,
            spb::CreateVirtualSiteRequest {
                parent: parent.clone(),
                virtual_site_id: "all-edges".into(),
                virtual_site: Some(spb::VirtualSite {
                    site_selector: "env=edge".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("virtual site");
    create_vk8s(ch, admin, &parent, "matrix")
        .await
        .expect("create vk8s");
    let editor = crate::vk8s_grpc::user_with_role(
        ch,
        admin,
        "acme",
        &format!("user-{ns}"),
        manifold_proto::tenancy::v1::Role::NamespaceEditor,
        &parent,
    )
    .await;
    let yaml = get_kubeconfig(ch, &editor, &format!("{parent}/virtualClusters/matrix"))
        .await
        .kubeconfig;
    let path = dir.join(format!("{ns}.kubeconfig"));
    std::fs::write(&path, yaml).expect("write kubeconfig");
    path
}

/// The sequence every version runs.
async fn exercise(k: &Kubectl) {
    let version = k.ok(&["version", "--client"]).await;
    println!(
        "kubectl {}: {}",
        k.label,
        version.lines().next().unwrap_or("")
    );

    // apply: create, unchanged, configured.
    let v1 = deployment(1, "registry.example/web:1");
    assert!(k.apply(&v1).await.contains("deployment.apps/web created"));
    assert!(k.apply(&v1).await.contains("deployment.apps/web unchanged"));
    let two = deployment(2, "registry.example/web:1");
    assert!(
        k.apply(&two)
            .await
            .contains("deployment.apps/web configured")
    );
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n";
    assert!(k.apply(cm).await.contains("configmap/settings created"));
    assert!(k.apply(cm).await.contains("configmap/settings unchanged"));
    assert!(
        k.apply(&cm.replace("blue", "red"))
            .await
            .contains("configmap/settings configured")
    );

    // get -o wide: the Table's priority columns.
    let wide = k.ok(&["get", "deploy", "-o", "wide"]).await;
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR",
            "SITES"
        ],
        "{wide}"
    );
    assert!(
        wide.contains("registry.example/web:1") && wide.contains("app=web"),
        "{wide}"
    );

    // diff compares the live object (status included) with a dry-run's
    // answer read a moment later: wait until the sites' pods are all ready,
    // so the merged status cannot change between the two reads.
    k.ok(&[
        "wait",
        "--for=jsonpath={.status.readyReplicas}=4",
        "deploy/web",
        "--timeout=60s",
    ])
    .await;
    // diff: exit 0 when equal, 1 with a unified diff when not.
    let same = k.run(&["diff", "-f", "-"], Some(&two)).await;
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    let changed = k
        .run(
            &["diff", "-f", "-"],
            Some(&deployment(2, "registry.example/web:2")),
        )
        .await;
    assert_eq!(changed.status.code(), Some(1), "{}", text(&changed));
    let diff = String::from_utf8_lossy(&changed.stdout);
    assert!(
        diff.contains("-      - image: registry.example/web:1")
            && diff.contains("+      - image: registry.example/web:2")
            && !diff.contains("status:"),
        "{diff}"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ])
        .await,
        "registry.example/web:1",
        "diff's dry run stored nothing"
    );

    // scale, then wait for the simulated sites to make it Available.
    assert!(
        k.ok(&["scale", "deploy", "web", "--replicas=3"])
            .await
            .contains("deployment.apps/web scaled")
    );
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "3"
    );
    let waited = k
        .ok(&[
            "wait",
            "--for=condition=Available",
            "deploy/web",
            "--timeout=60s",
        ])
        .await;
    assert!(waited.contains("condition met"), "{waited}");

    // explain: schemas from the server's OpenAPI.
    let explain = k.ok(&["explain", "deployment.spec.replicas"]).await;
    assert!(
        explain.contains("integer") && explain.contains("replicas"),
        "{explain}"
    );
    let explain = k.ok(&["explain", "configmap"]).await;
    assert!(explain.contains("ConfigMap"), "{explain}");

    // get -w: the list, then a change arriving as a watch event.
    let mut watch = k.command(&[
        "get",
        "configmap",
        "--watch",
        "--output-watch-events",
        "--request-timeout=6s",
    ]);
    let watching = watch.spawn().expect("spawn kubectl get -w");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    k.ok(&["label", "configmap", "settings", "step=watched"])
        .await;
    let events = tokio::time::timeout(CALL, watching.wait_with_output())
        .await
        .expect("watch ended")
        .expect("watch ran");
    let events = String::from_utf8_lossy(&events.stdout).into_owned();
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("ADDED") && l.contains("settings")),
        "{}: {events}",
        k.label
    );
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("MODIFIED") && l.contains("settings")),
        "{}: {events}",
        k.label
    );

    // delete, and wait --for=delete on what is gone.
    assert!(
        k.ok(&["delete", "deploy", "web"])
            .await
            .contains("deployment.apps \"web\" deleted")
    );
    k.ok(&["delete", "configmap", "settings"]).await;
    k.ok(&["wait", "--for=delete", "deploy/web", "--timeout=30s"])
        .await;
    assert_eq!(k.ok(&["get", "deploy,cm", "-o", "name"]).await.trim(), "");
}

#[tokio::test]
async fn every_supported_kubectl_against_a_vk8s() {
    let (clients, missing) = matrix();
    for m in &missing {
        println!("kubectl matrix: {m} is not on this machine; skipped");
    }
    let app = TestApp::spawn().await.expect("control plane");
    let ch = app.channel().await.expect("channel");
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let mut base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    base.heartbeat_interval = Duration::from_secs(1);
    base.status_debounce = Duration::from_millis(100);
    let _fleet = manifold_site_agent::start_simulated_sites(
        ch.clone(),
        &app.admin_token,
        &base,
        ["pa2-par", "ny8-nyc"]
            .iter()
            .map(|n| SimulatedSite::edge(*n))
            .collect(),
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await
    .expect("simulated sites");
    create_tenant(&ch, &app.admin_token, "acme").await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, client) in clients.iter().enumerate() {
        let ns = format!("matrix-{i}");
        let kubeconfig = namespace_with_vk8s(&ch, &app.admin_token, &ns, dir.path()).await;
        let home = dir.path().join(format!("home-{i}"));
        std::fs::create_dir_all(&home).unwrap();
        println!(
            "kubectl matrix: {} ({}) in namespace {ns}",
            client.label,
            client.binary.display()
        );
        exercise(&Kubectl {
            binary: client.binary.clone(),
            kubeconfig,
            home,
            namespace: ns,
            label: client.label.clone(),
        })
        .await;
    }
}
