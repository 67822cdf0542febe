//! The real kubectl (pinned in `.tools/bin`) against a virtual cluster,
//! driven by the kubeconfig `GetKubeconfig` returned: discovery, create,
//! apply (client- and server-side), get in every output, watch, label,
//! annotate, scale, all patch types, edit, delete, wait, explain, and the
//! errors users meet.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use manifold_integration_tests::tool;
use manifold_proto::tenancy::v1 as tpb;
use tokio::io::AsyncWriteExt;

use crate::vk8s_grpc::{DEMO, create_tenant, scenario, user_with_role};

/// Runs kubectl with one kubeconfig and a private HOME (its cache).
pub(crate) struct Kubectl {
    kubeconfig: PathBuf,
    home: PathBuf,
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
    pub(crate) fn new(kubeconfig: &Path, dir: &Path) -> Self {
        Self {
            kubeconfig: kubeconfig.to_owned(),
            home: dir.to_owned(),
        }
    }

    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(tool("kubectl").expect("kubectl"));
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env_remove("KUBE_EDITOR")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub(crate) async fn run_with(
        &self,
        mut cmd: tokio::process::Command,
        stdin: Option<&str>,
    ) -> Output {
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finished in time")
            .expect("kubectl ran")
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Output {
        self.run_with(self.command(args), None).await
    }

    /// stdout of a command that must succeed.
    pub(crate) async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.status.success(), "kubectl {args:?} failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub(crate) async fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let o = self.run_with(self.command(args), Some(stdin)).await;
        assert!(o.status.success(), "kubectl {args:?} failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// stderr of a command that must fail.
    pub(crate) async fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            !o.status.success(),
            "kubectl {args:?} should have failed: {}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub(crate) async fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        let o = self.run_with(self.command(args), Some(stdin)).await;
        assert!(
            !o.status.success(),
            "kubectl {args:?} should have failed: {}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub(crate) async fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        let expr = format!("jsonpath={path}");
        args.extend(["-o", expr.as_str()]);
        self.ok(&args).await
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: productpage
  labels:
    app: productpage
spec:
  replicas: 2
  selector:
    matchLabels:
      app: productpage
  template:
    metadata:
      labels:
        app: productpage
    spec:
      containers:
      - name: productpage
        image: docker.io/istio/examples-bookinfo-productpage-v1:1.20.1
        ports:
        - containerPort: 9080
";

async fn kubectl_for_demo() -> (crate::vk8s_grpc::Scenario, Kubectl) {
    let s = scenario().await;
    let k = Kubectl::new(&s.kubeconfig, s.dir.path());
    (s, k)
}

#[tokio::test]
async fn kubectl_discovery_version_and_explain() {
    let (_s, k) = kubectl_for_demo().await;
    let version = k.ok(&["version"]).await;
    assert!(version.contains("Server Version: v1."), "{version}");
    let resources = k.ok(&["api-resources"]).await;
    for line in [
        "deployments",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "jobs",
        "cronjobs",
        "services",
        "configmaps",
        "secrets",
        "persistentvolumeclaims",
        "serviceaccounts",
        "events",
        "pods",
    ] {
        assert!(
            resources.lines().any(|l| l.starts_with(line)),
            "{line} missing:\n{resources}"
        );
    }
    assert!(
        resources.contains("deploy") && resources.contains("apps/v1"),
        "{resources}"
    );
    let explain = k.ok(&["explain", "deployment"]).await;
    assert!(
        explain.contains("KIND:       Deployment") || explain.contains("KIND:     Deployment"),
        "{explain}"
    );
    let explain = k.ok(&["explain", "deployment.spec.replicas"]).await;
    assert!(explain.contains("integer"), "{explain}");
    let ns = k.ok(&["get", "namespaces"]).await;
    assert!(ns.contains("shop") && ns.contains("Active"), "{ns}");
    assert_eq!(ns.lines().count(), 2, "{ns}");
}

#[tokio::test]
async fn kubectl_create_apply_and_get_in_every_output() {
    let (_s, k) = kubectl_for_demo().await;
    let out = k.ok_stdin(&["create", "-f", "-"], DEPLOYMENT).await;
    assert!(out.contains("deployment.apps/productpage created"), "{out}");
    let again = k.fails_stdin(&["create", "-f", "-"], DEPLOYMENT).await;
    assert!(
        again.contains("AlreadyExists") || again.contains("already exists"),
        "{again}"
    );

    let table = k.ok(&["get", "deployments"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(
        table.contains("productpage") && table.contains("0/2"),
        "{table}"
    );
    let wide = k.ok(&["get", "deploy", "-o", "wide"]).await;
    assert!(
        wide.contains("CONTAINERS") && wide.contains("IMAGES") && wide.contains("SELECTOR"),
        "{wide}"
    );
    assert!(wide.contains("app=productpage"), "{wide}");
    let yaml = k.ok(&["get", "deploy", "productpage", "-o", "yaml"]).await;
    let object: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(object["metadata"]["namespace"], "shop");
    assert_eq!(object["metadata"]["generation"], 1);
    assert!(
        object["metadata"]["uid"].is_string()
            && object["metadata"]["creationTimestamp"].is_string()
    );
    assert!(
        object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .is_ok()
    );
    assert_eq!(
        k.jsonpath(&["deploy", "productpage"], "{.spec.replicas}")
            .await,
        "2"
    );

    // Client-side apply: create, re-apply unchanged, change configured.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n";
    assert!(
        k.ok_stdin(&["apply", "-f", "-"], cm)
            .await
            .contains("configmap/settings created")
    );
    assert!(
        k.ok_stdin(&["apply", "-f", "-"], cm)
            .await
            .contains("configmap/settings unchanged")
    );
    let red = cm.replace("blue", "red");
    assert!(
        k.ok_stdin(&["apply", "-f", "-"], &red)
            .await
            .contains("configmap/settings configured")
    );
    assert_eq!(
        k.jsonpath(&["cm", "settings"], "{.data.color}").await,
        "red"
    );
    let scaled = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    assert!(
        k.ok_stdin(&["apply", "-f", "-"], &scaled)
            .await
            .contains("configured")
    );
    assert_eq!(
        k.jsonpath(
            &["deploy", "productpage"],
            "{.spec.replicas} {.metadata.generation}"
        )
        .await,
        "3 2"
    );

    // Server-side apply, with managed fields.
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: productpage\n  ports:\n  - port: 80\n    targetPort: 9080\n";
    assert!(
        k.ok_stdin(&["apply", "--server-side", "-f", "-"], svc)
            .await
            .contains("serverside-applied")
    );
    assert!(
        k.ok_stdin(
            &["apply", "--server-side", "-f", "-"],
            &svc.replace("port: 80", "port: 8080")
        )
        .await
        .contains("serverside-applied")
    );
    let managers = k
        .jsonpath(
            &["svc", "web", "--show-managed-fields"],
            "{.metadata.managedFields[*].manager}",
        )
        .await;
    assert_eq!(managers, "kubectl");
    assert_eq!(
        k.jsonpath(&["svc", "web"], "{.spec.ports[0].port}").await,
        "8080"
    );
    // Another manager changing a field kubectl owns conflicts; --force-conflicts takes it.
    let theirs = svc
        .replace("port: 80", "port: 8080")
        .replace("targetPort: 9080", "targetPort: 9999");
    let conflict = k
        .fails_stdin(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            &theirs,
        )
        .await;
    assert!(
        conflict.contains("conflict") && conflict.contains("targetPort"),
        "{conflict}"
    );
    k.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &theirs,
    )
    .await;
    assert_eq!(
        k.jsonpath(&["svc", "web"], "{.spec.ports[0].targetPort}")
            .await,
        "9999"
    );
}

#[tokio::test]
async fn kubectl_label_annotate_scale_patch_and_edit() {
    let (s, k) = kubectl_for_demo().await;
    k.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT).await;
    assert!(
        k.ok(&["label", "deploy", "productpage", "tier=web"])
            .await
            .contains("labeled")
    );
    assert!(
        k.ok(&["annotate", "deploy", "productpage", "note=hello"])
            .await
            .contains("annotated")
    );
    assert_eq!(
        k.jsonpath(
            &["deploy", "productpage"],
            "{.metadata.labels.tier} {.metadata.annotations.note} {.metadata.generation}"
        )
        .await,
        "web hello 1",
        "metadata changes leave generation alone"
    );
    assert_eq!(
        k.ok(&["get", "deploy", "-l", "tier=web", "-o", "name"])
            .await
            .trim(),
        "deployment.apps/productpage"
    );
    assert_eq!(
        k.ok(&["get", "deploy", "-l", "tier in (db,cache)", "-o", "name"])
            .await
            .trim(),
        ""
    );
    assert_eq!(
        k.ok(&["get", "deploy", "-l", "!tier", "-o", "name"])
            .await
            .trim(),
        ""
    );

    assert!(
        k.ok(&["scale", "deploy", "productpage", "--replicas=5"])
            .await
            .contains("scaled")
    );
    assert_eq!(
        k.jsonpath(
            &["deploy", "productpage"],
            "{.spec.replicas} {.metadata.generation}"
        )
        .await,
        "5 2"
    );
    // A write based on an old resourceVersion conflicts.
    let old = k.ok(&["get", "deploy", "productpage", "-o", "yaml"]).await;
    k.ok(&["label", "deploy", "productpage", "step=two"]).await;
    let stale = k.fails_stdin(&["replace", "-f", "-"], &old).await;
    assert!(
        stale.contains("Conflict") && stale.contains("the object has been modified"),
        "{stale}"
    );

    k.ok(&[
        "patch",
        "deploy",
        "productpage",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "deploy",
        "productpage",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":6}]"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "deploy",
        "productpage",
        "--type",
        "strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
    ])
    .await;
    let containers = k
        .jsonpath(
            &["deploy", "productpage"],
            "{.spec.replicas} {.spec.template.spec.containers[*].name}",
        )
        .await;
    assert!(
        containers.starts_with("6 ")
            && containers.contains("sidecar")
            && containers.contains("productpage"),
        "{containers}"
    );
    let failed = k
        .fails(&[
            "patch",
            "deploy",
            "productpage",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":1}]"#,
        ])
        .await;
    assert!(
        failed.contains("invalid") && failed.contains("/spec/replicas"),
        "{failed}"
    );

    // kubectl edit with a non-interactive editor.
    let editor = s.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 6/replicas: 7/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = k.command(&["edit", "deploy", "productpage"]);
    cmd.env("KUBE_EDITOR", &editor);
    let o = k.run_with(cmd, None).await;
    assert!(o.status.success(), "edit: {}", text(&o));
    assert_eq!(
        k.jsonpath(&["deploy", "productpage"], "{.spec.replicas}")
            .await,
        "7"
    );

    // dry-run stores nothing.
    k.ok(&[
        "scale",
        "deploy",
        "productpage",
        "--replicas=9",
        "--dry-run=server",
    ])
    .await;
    assert_eq!(
        k.jsonpath(&["deploy", "productpage"], "{.spec.replicas}")
            .await,
        "7"
    );
}

#[tokio::test]
async fn kubectl_watch_delete_and_wait() {
    let (_s, k) = kubectl_for_demo().await;
    k.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT).await;
    let mut watch = k.command(&[
        "get",
        "deploy",
        "--watch",
        "--output-watch-events",
        "--request-timeout=8s",
    ]);
    watch.stdout(Stdio::piped()).stderr(Stdio::piped());
    let watching = tokio::spawn({
        let child = watch.spawn().unwrap();
        async move { child.wait_with_output().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    k.ok(&["scale", "deploy", "productpage", "--replicas=3"])
        .await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unrelated\n";
    k.ok_stdin(&["apply", "-f", "-"], cm).await;

    let waiter = {
        let cmd = k.command(&[
            "wait",
            "--for=delete",
            "deploy/productpage",
            "--timeout=30s",
        ]);
        let kubectl = Kubectl {
            kubeconfig: k.kubeconfig.clone(),
            home: k.home.clone(),
        };
        tokio::spawn(async move { kubectl.run_with(cmd, None).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deleted = k.ok(&["delete", "deploy", "productpage"]).await;
    assert!(deleted.contains("deleted"), "{deleted}");
    let waited = waiter.await.unwrap();
    assert!(waited.status.success(), "wait: {}", text(&waited));
    assert!(String::from_utf8_lossy(&waited.stdout).contains("condition met"));

    let events = watching.await.unwrap();
    let events = String::from_utf8_lossy(&events.stdout).into_owned();
    let lines: Vec<&str> = events.lines().collect();
    assert!(
        lines[0].starts_with("EVENT") && lines[0].contains("READY"),
        "{events}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ADDED") && l.contains("0/2")),
        "{events}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("MODIFIED") && l.contains("0/3")),
        "{events}"
    );
    assert!(lines.iter().any(|l| l.starts_with("DELETED")), "{events}");
    assert!(!events.contains("unrelated"), "{events}");

    let missing = k.fails(&["get", "deploy", "productpage"]).await;
    assert!(
        missing.contains("NotFound") && missing.contains("\"productpage\" not found"),
        "{missing}"
    );
    let pod = k.fails(&["delete", "pod", "nope"]).await;
    assert!(pod.contains("NotFound"), "{pod}");
    assert!(k.ok(&["get", "pods"]).await.trim().is_empty());
}

#[tokio::test]
async fn kubectl_errors_users_meet() {
    let (s, k) = kubectl_for_demo().await;
    // An invalid object: 422 naming the field.
    let bad = DEPLOYMENT.replace("replicas: 2", "replicas: -1");
    let invalid = k.fails_stdin(&["apply", "-f", "-"], &bad).await;
    assert!(
        invalid.contains("spec.replicas") && invalid.contains("is invalid"),
        "{invalid}"
    );
    // Unknown fields with the default strict validation.
    let unknown = k
        .fails_stdin(
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: u\nbogus: 1\n",
        )
        .await;
    assert!(unknown.contains("unknown field \"bogus\""), "{unknown}");
    // Bodies above 3 MiB are refused, as kube-apiserver does.
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  a: {}\n",
        "x".repeat(4 << 20)
    );
    let too_large = k.fails_stdin(&["create", "-f", "-"], &big).await;
    assert!(too_large.contains("RequestEntityTooLarge"), "{too_large}");
    // Any other namespace does not exist.
    let other_ns = k.fails(&["get", "deploy", "-n", "other"]).await;
    assert!(
        other_ns.contains("NotFound") && other_ns.contains("namespaces \"other\" not found"),
        "{other_ns}"
    );
    // A token that is not one (kubectl without any credentials prompts for
    // a password; the kube client test covers requests without a token).
    let unknown = k
        .fails(&["get", "deploy", "--token", "mft_0000000000000000_nope"])
        .await;
    assert!(
        unknown.contains("Unauthorized") || unknown.contains("logged in"),
        "{unknown}"
    );
    // Another tenant's token sees nothing at all.
    create_tenant(&s.channel, &s.admin, "globex").await;
    let bob = user_with_role(
        &s.channel,
        &s.admin,
        "globex",
        "bob",
        tpb::Role::TenantAdmin,
        "tenants/globex",
    )
    .await;
    let other = k.fails(&["get", "deploy", "--token", &bob]).await;
    assert!(other.contains("NotFound"), "{other}");
    // A viewer reads but may not write.
    let viewer = user_with_role(
        &s.channel,
        &s.admin,
        "acme",
        "vic",
        tpb::Role::NamespaceViewer,
        "tenants/acme/namespaces/shop",
    )
    .await;
    k.ok(&["get", "deploy", "--token", &viewer]).await;
    let forbidden = k
        .fails_stdin(&["apply", "--token", &viewer, "-f", "-"], DEPLOYMENT)
        .await;
    assert!(
        forbidden.contains("Forbidden") || forbidden.contains("forbidden"),
        "{forbidden}"
    );
}

#[tokio::test]
async fn kubectl_imperative_creates_and_auth_can_i() {
    // These go through client-go's typed clients, which send protobuf bodies.
    let (s, k) = kubectl_for_demo().await;
    k.ok(&["create", "configmap", "c1", "--from-literal=a=b"])
        .await;
    k.ok(&["create", "secret", "generic", "s1", "--from-literal=a=b"])
        .await;
    k.ok(&[
        "create",
        "deployment",
        "d1",
        "--image=nginx",
        "--replicas=3",
        "--port=80",
    ])
    .await;
    k.ok(&["create", "service", "clusterip", "svc1", "--tcp=80:8080"])
        .await;
    k.ok(&["create", "job", "j1", "--image=busybox", "--", "echo", "hi"])
        .await;
    k.ok(&[
        "create",
        "cronjob",
        "cj1",
        "--image=busybox",
        "--schedule=*/5 * * * *",
        "--",
        "echo",
        "hi",
    ])
    .await;
    k.ok(&["create", "serviceaccount", "sa1"]).await;
    assert_eq!(k.jsonpath(&["secret", "s1"], "{.data.a}").await, "Yg==");
    assert_eq!(
        k.jsonpath(
            &["deploy", "d1"],
            "{.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort}"
        )
        .await,
        "3 80"
    );
    assert_eq!(
        k.jsonpath(&["svc", "svc1"], "{.spec.ports[0].targetPort}")
            .await,
        "8080"
    );
    let names = k
        .ok(&["get", "cm,secret,deploy,svc,job,cronjob,sa", "-o", "name"])
        .await;
    for n in [
        "configmap/c1",
        "secret/s1",
        "deployment.apps/d1",
        "service/svc1",
        "job.batch/j1",
        "cronjob.batch/cj1",
        "serviceaccount/sa1",
    ] {
        assert!(names.lines().any(|l| l == n), "{n} missing in {names}");
    }
    assert_eq!(
        k.ok(&["auth", "can-i", "create", "deployments"])
            .await
            .trim(),
        "yes"
    );
    let viewer = user_with_role(
        &s.channel,
        &s.admin,
        "acme",
        "vic",
        tpb::Role::NamespaceViewer,
        "tenants/acme/namespaces/shop",
    )
    .await;
    assert_eq!(
        k.ok(&["auth", "can-i", "list", "deployments", "--token", &viewer])
            .await
            .trim(),
        "yes"
    );
    let o = k
        .run(&["auth", "can-i", "create", "deployments", "--token", &viewer])
        .await;
    let answer = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(answer.starts_with("no"), "{answer}");
}

#[tokio::test]
async fn kubeconfig_from_grpcurl_drives_kubectl() {
    let s = scenario().await;
    let request = format!(r#"{{"name":"{DEMO}"}}"#);
    let out = s
        .app
        .grpcurl(
            Some(&s.editor),
            &[
                "-d",
                &request,
                "manifold.vk8s.v1.VirtualClusterService/GetKubeconfig",
            ],
        )
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = s.dir.path().join("grpcurl.kubeconfig");
    std::fs::write(&path, reply["kubeconfig"].as_str().unwrap()).unwrap();
    let k = Kubectl::new(&path, s.dir.path());
    k.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT).await;
    assert!(k.ok(&["get", "deploy"]).await.contains("productpage"));
    let watch = k.ok(&["get", "deploy", "-w", "--request-timeout=2s"]).await;
    assert!(watch.contains("productpage"), "{watch}");
    k.ok(&["delete", "deploy", "productpage"]).await;
    assert!(
        k.ok(&["get", "deploy", "-o", "name"])
            .await
            .trim()
            .is_empty()
    );
}
