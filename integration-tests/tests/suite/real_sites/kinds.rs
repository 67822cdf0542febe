//! Every kind a vK8s serves lands on a real cluster as the user wrote it (in the
//! mapped namespace), status flows back for the workload kinds, and `kubectl
//! logs` (`--tail`, `-c`, `-f`) of a pod on a real site comes through kwok's log
//! simulation.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use super::{PHYSICAL_NS, Plane, RealEnv, WAIT};
use manifold_integration_tests::tool;

const SITES: [&str; 2] = ["pa2-par", "ny8-nyc"];

const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {app: shop}}
data: {mode: fast, greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
type: Opaque
stringData: {password: s3cret}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: worker}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: worker
      containers:
      - {name: web, image: nginx:1.27, env: [{name: MODE, value: fast}]}
      - {name: sidecar, image: busybox:1.36}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres:16}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: busybox:1.36}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  completions: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: busybox:1.36}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: \"0 3 * * *\"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: report, image: busybox:1.36}]
";

fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn physical(env: &RealEnv, site: &str, ar: &ApiResource, name: &str) -> Option<Value> {
    let client = env.site_client(site).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client, PHYSICAL_NS, ar);
    let obj = api.get_opt(name).await.ok().flatten()?;
    serde_json::to_value(obj).ok()
}

fn vk_status(text: &str) -> Value {
    serde_json::from_str::<Value>(text).expect("JSON")["status"].clone()
}

#[tokio::test]
async fn every_kind_lands_as_written_and_status_flows_back() {
    let env = RealEnv::start(&SITES, Plane::AllInOne).await;
    let kc = &env.kube;
    kc.apply(MANIFEST).await;

    let kinds = [
        ("v1", "ConfigMap", "configmaps", "settings"),
        ("v1", "Secret", "secrets", "creds"),
        ("v1", "ServiceAccount", "serviceaccounts", "worker"),
        ("v1", "Service", "services", "web"),
        ("v1", "Service", "services", "db"),
        (
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "data",
        ),
        ("apps/v1", "Deployment", "deployments", "web"),
        ("apps/v1", "StatefulSet", "statefulsets", "db"),
        ("apps/v1", "DaemonSet", "daemonsets", "agent"),
        ("batch/v1", "Job", "jobs", "migrate"),
        ("batch/v1", "CronJob", "cronjobs", "nightly"),
    ];
    for (api_version, kind, plural, name) in kinds {
        let ar = resource(api_version, kind, plural);
        for site in SITES {
            env.wait_for(&format!("{kind} {name} on {site}"), || async {
                physical(&env, site, &ar, name).await.is_some()
            })
            .await;
            let o = physical(&env, site, &ar, name).await.unwrap();
            // As written, in the mapped namespace, owned by Manifold.
            assert_eq!(o["metadata"]["namespace"], PHYSICAL_NS, "{kind} {name}");
            assert_eq!(
                o["metadata"]["labels"]["manifold.dev/managed-by"], "manifold",
                "{kind} {name} on {site}"
            );
            match kind {
                "ConfigMap" => {
                    assert_eq!(o["data"]["mode"], "fast");
                    assert_eq!(o["metadata"]["labels"]["app"], "shop");
                }
                "Secret" => {
                    // s3cret, base64: what the user wrote as stringData.
                    assert_eq!(o["data"]["password"], "czNjcmV0", "{o}");
                    assert_eq!(o["type"], "Opaque");
                }
                "Service" if name == "web" => {
                    assert_eq!(o["spec"]["ports"][0]["port"], 80);
                    assert_eq!(o["spec"]["ports"][0]["targetPort"], 8080);
                    assert_eq!(o["spec"]["selector"]["app"], "web");
                    // The site assigns its own cluster IP.
                    assert!(
                        o["spec"]["clusterIP"]
                            .as_str()
                            .is_some_and(|ip| ip.starts_with("10.96.")),
                        "{o}"
                    );
                }
                "Service" => assert_eq!(o["spec"]["clusterIP"], "None"),
                "PersistentVolumeClaim" => {
                    assert_eq!(o["spec"]["resources"]["requests"]["storage"], "1Gi")
                }
                "Deployment" => {
                    let c = &o["spec"]["template"]["spec"]["containers"];
                    assert_eq!(c[0]["image"], "nginx:1.27");
                    assert_eq!(c[0]["env"][0]["value"], "fast");
                    assert_eq!(c[1]["name"], "sidecar");
                    assert_eq!(
                        o["spec"]["template"]["spec"]["serviceAccountName"],
                        "worker"
                    );
                }
                "StatefulSet" => assert_eq!(o["spec"]["serviceName"], "db"),
                "CronJob" => assert_eq!(o["spec"]["schedule"], "0 3 * * *"),
                _ => {}
            }
        }
    }

    // Status of the workload kinds, summed over the two sites.
    env.wait_for("workload status from both sites", || async {
        let deploy = vk_status(&kc.ok(&["get", "deploy", "web", "-o", "json"]).await);
        let sts = vk_status(&kc.ok(&["get", "sts", "db", "-o", "json"]).await);
        let ds = vk_status(&kc.ok(&["get", "ds", "agent", "-o", "json"]).await);
        let job = vk_status(&kc.ok(&["get", "job", "migrate", "-o", "json"]).await);
        deploy["readyReplicas"] == 4
            && sts["readyReplicas"] == 4
            && ds["numberReady"] == 4
            && ds["desiredNumberScheduled"] == 4
            && job["succeeded"] == 2
    })
    .await;
    let svc = kc.ok(&["get", "svc", "web", "-o", "json"]).await;
    assert!(svc.contains("\"name\": \"web\""), "{svc}");
    // Pods of every workload, with the site's node names.
    let pods = kc.ok(&["get", "pods", "-o", "wide"]).await;
    for prefix in ["web-", "db-0", "db-1", "agent-", "migrate-"] {
        assert!(
            pods.lines().any(|l| l.starts_with(prefix)),
            "{prefix} in:\n{pods}"
        );
    }

    // kubectl logs through kwok: --tail and -c.
    let web_pod = kc
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .await;
    let json = kc.ok(&["get", "pod", &web_pod, "-o", "json"]).await;
    let site =
        serde_json::from_str::<Value>(&json).unwrap()["metadata"]["labels"]["manifold.dev/site"]
            .as_str()
            .unwrap()
            .to_owned();
    let tail = kc
        .ok(&["logs", &web_pod, "-c", "sidecar", "--tail=2"])
        .await;
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 2, "{tail}");
    assert!(lines[1].contains(&format!("site={site}")), "{tail}");
    let missing = super::super::reference::kubectl(
        &kc.home,
        &kc.config,
        &["logs", &web_pod, "-c", "nope"],
        None,
    )
    .await;
    assert!(missing.is_err(), "an unknown container is an error");

    // -f follows: a line the site's kubelet (kwok) writes later arrives.
    let mut follow = tokio::process::Command::new(tool("kubectl").unwrap())
        .args([
            "-n", "shop", "logs", "-f", &web_pod, "-c", "web", "--tail=1",
        ])
        .env("KUBECONFIG", &kc.config)
        .env("HOME", &kc.home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, out.next_line())
        .await
        .expect("a first line")
        .unwrap();
    assert!(first.is_some());
    let marker = format!("followed-{}", std::process::id());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(env.cluster(&site).pod_log_file())
        .unwrap();
    writeln!(
        file,
        "{} stdout F {marker}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
    .unwrap();
    drop(file);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let line = tokio::time::timeout_at(deadline, out.next_line())
            .await
            .expect("the appended line arrives while following")
            .unwrap()
            .expect("the follow ended early");
        if line.contains(&marker) {
            break;
        }
    }
    follow.kill().await.ok();
    tokio::time::sleep(Duration::from_millis(100)).await;
}
