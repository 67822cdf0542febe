//! Workloads on shared sites, through the real kubectl: each site's Pod
//! Security level (operator-controlled, stored in the registry) bounds what
//! a vK8s placed on it may run; the gateway refuses a violating workload
//! with kube-apiserver's PodSecurity wording plus the site and its level;
//! a placement change onto a stricter site that a stored workload violates
//! is FAILED_PRECONDITION; Services may not carry externalIPs or
//! loadBalancerIP; another tenant's private site neither places nor
//! constrains a tenant.

use manifold_integration_tests::authed;
use manifold_proto::sites::v1 as spb;
use manifold_proto::vk8s::v1 as vpb;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::kubectl::Kubectl;
use crate::vk8s_grpc::{DEMO, create_tenant, scenario};

async fn create_site(
    ch: &Channel,
    token: &str,
    id: &str,
    owner: &str,
    labels: &[(&str, &str)],
    level: spb::PodSecurityLevel,
) -> spb::Site {
    spb::site_service_client::SiteServiceClient::new(ch.clone())
        .create_site(authed(
            token,
            spb::CreateSiteRequest {
                site_id: id.into(),
                site: Some(spb::Site {
                    owner: owner.into(),
                    labels: labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                    pod_security: level as i32,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("create site {id}: {e:?}"))
        .into_inner()
}

async fn create_virtual_site(ch: &Channel, token: &str, id: &str, selector: &str) {
    spb::virtual_site_service_client::VirtualSiteServiceClient::new(ch.clone())
        .create_virtual_site(authed(
            token,
            spb::CreateVirtualSiteRequest {
                parent: "tenants/acme/namespaces/shop".into(),
                virtual_site_id: id.into(),
                virtual_site: Some(spb::VirtualSite {
                    site_selector: selector.into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("virtual site");
}

async fn place(ch: &Channel, token: &str, virtual_sites: &[&str]) -> Result<(), tonic::Status> {
    vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch.clone())
        .update_virtual_cluster(authed(
            token,
            vpb::UpdateVirtualClusterRequest {
                virtual_cluster: Some(vpb::VirtualCluster {
                    name: DEMO.into(),
                    virtual_sites: virtual_sites.iter().map(|s| (*s).into()).collect(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["virtual_sites".into()],
                }),
            },
        ))
        .await
        .map(|_| ())
}

async fn set_level(
    ch: &Channel,
    token: &str,
    site: &str,
    level: spb::PodSecurityLevel,
) -> Result<spb::Site, tonic::Status> {
    spb::site_service_client::SiteServiceClient::new(ch.clone())
        .update_site(authed(
            token,
            spb::UpdateSiteRequest {
                site: Some(spb::Site {
                    name: format!("sites/{site}"),
                    pod_security: level as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["pod_security".into()],
                }),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

const PRIVILEGED: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: root
spec:
  replicas: 1
  selector:
    matchLabels: {app: root}
  template:
    metadata:
      labels: {app: root}
    spec:
      hostNetwork: true
      volumes:
      - name: h
        hostPath: {path: /}
      containers:
      - name: x
        image: busybox
        securityContext: {privileged: true}
";

const PLAIN: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
";

#[tokio::test]
async fn pod_security_levels_of_the_placement_bound_workloads() {
    let s = scenario().await;
    let (ch, admin) = (&s.channel, s.admin.as_str());
    // Provider sites: the default is baseline; one operator-made restricted.
    let edge = create_site(
        ch,
        admin,
        "pa2-par",
        "",
        &[("env", "edge")],
        spb::PodSecurityLevel::Unspecified,
    )
    .await;
    assert_eq!(edge.pod_security(), spb::PodSecurityLevel::Baseline);
    create_site(
        ch,
        admin,
        "ny8-nyc",
        "",
        &[("env", "strict")],
        spb::PodSecurityLevel::Restricted,
    )
    .await;
    // Another tenant's private site matching acme's selector, restricted:
    // it must neither place acme's workloads nor judge them.
    create_tenant(ch, admin, "globex").await;
    create_site(
        ch,
        admin,
        "globex-edge",
        "tenants/globex",
        &[("env", "edge")],
        spb::PodSecurityLevel::Restricted,
    )
    .await;
    create_virtual_site(ch, admin, "edges", "env=edge").await;
    create_virtual_site(ch, admin, "strict", "env=strict").await;
    place(ch, admin, &["edges"]).await.expect("place on edges");

    let k = Kubectl::new(&s.kubeconfig, s.dir.path());
    // A privileged workload is refused with the admission's words, the
    // site and its level.
    let err = k.fails_stdin(&["apply", "-f", "-"], PRIVILEGED).await;
    for want in [
        "Forbidden",
        r#"deployments.apps "root" is forbidden: violates PodSecurity "baseline:latest""#,
        "host namespaces (hostNetwork=true)",
        r#"privileged (container "x" must not set securityContext.privileged=true)"#,
        r#"hostPath volumes (volume "h")"#,
        r#"site "pa2-par" enforces Pod Security level "baseline""#,
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    // Server-side apply and create take the same path.
    let err = k
        .fails_stdin(&["apply", "--server-side", "-f", "-"], PRIVILEGED)
        .await;
    assert!(err.contains("violates PodSecurity"), "{err}");
    // nodeName and catch-all tolerations bypass the site's scheduler/taints.
    let pinned = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: pinned}\nspec:\n  template:\n    spec:\n      \
                  restartPolicy: Never\n      nodeName: node-1\n      tolerations: [{operator: Exists}]\n      \
                  containers: [{name: c, image: nginx}]\n";
    let err = k.fails_stdin(&["create", "-f", "-"], pinned).await;
    assert!(
        err.contains("nodeName (pod must not set spec.nodeName"),
        "{err}"
    );
    assert!(
        err.contains("tolerations (operator Exists with an empty key"),
        "{err}"
    );

    // A baseline workload is fine; patching it privileged is refused.
    k.ok_stdin(&["apply", "-f", "-"], PLAIN).await;
    let err = k
        .fails(&[
            "patch", "deployment", "web", "--type=json", "-p",
            r#"[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}}]"#,
        ])
        .await;
    assert!(err.contains(r#"privileged (container "web""#), "{err}");
    // Metadata-only changes of the workload stay possible.
    k.ok(&["label", "deployment", "web", "tier=front"]).await;

    // Placement onto the restricted site is refused while `web` violates it.
    let err = place(ch, admin, &["edges", "strict"]).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("deployments.apps/web"),
        "{}",
        err.message()
    );
    assert!(
        err.message()
            .contains(r#"violates PodSecurity "restricted:latest""#),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains(r#"site "ny8-nyc""#),
        "{}",
        err.message()
    );
    let pf = err
        .get_details_precondition_failure()
        .expect("precondition failure");
    assert_eq!(pf.violations[0].subject, "deployments.apps/web");
    assert!(
        pf.violations[0]
            .description
            .starts_with("spec.template.spec."),
        "{pf:?}"
    );

    // Services: externalIPs (CVE-2020-8554) and loadBalancerIP are 422.
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: web}\n  \
               ports: [{port: 80}]\n  externalIPs: [203.0.113.7]\n  type: LoadBalancer\n  loadBalancerIP: 198.51.100.1\n";
    let err = k.fails_stdin(&["apply", "-f", "-"], svc).await;
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("spec.externalIPs[0]: Forbidden"), "{err}");
    assert!(err.contains("spec.loadBalancerIP: Forbidden"), "{err}");

    // A tenant admin cannot lower a provider site's level; the operator can,
    // and it is reported in status.
    let err = set_level(ch, &s.editor, "pa2-par", spb::PodSecurityLevel::Privileged)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let site = set_level(ch, admin, "pa2-par", spb::PodSecurityLevel::Privileged)
        .await
        .expect("operator sets privileged");
    assert_eq!(site.pod_security(), spb::PodSecurityLevel::Privileged);
    // globex's restricted private site still does not judge acme's workloads.
    k.ok_stdin(&["apply", "-f", "-"], PRIVILEGED).await;
}

#[tokio::test]
async fn a_stricter_site_level_binds_the_next_template_change() {
    let s = scenario().await;
    let (ch, admin) = (&s.channel, s.admin.as_str());
    create_site(
        ch,
        admin,
        "pa2-par",
        "",
        &[("env", "edge")],
        spb::PodSecurityLevel::Baseline,
    )
    .await;
    create_virtual_site(ch, admin, "edges", "env=edge").await;
    place(ch, admin, &["edges"]).await.expect("place on edges");
    let k = Kubectl::new(&s.kubeconfig, s.dir.path());
    k.ok_stdin(&["apply", "-f", "-"], PLAIN).await;

    // The operator makes the site restricted: the stored workload stays
    // (documented), metadata changes stay possible, and the next change of
    // its pod template meets the new level.
    set_level(ch, admin, "pa2-par", spb::PodSecurityLevel::Restricted)
        .await
        .expect("operator raises the level");
    k.ok(&["label", "deployment", "web", "tier=front"]).await;
    let err = k
        .fails(&["set", "image", "deployment/web", "web=nginx:1.27"])
        .await;
    for want in [
        r#"deployments.apps "web" is forbidden: violates PodSecurity "restricted:latest""#,
        "allowPrivilegeEscalation != false",
        r#"site "pa2-par" enforces Pod Security level "restricted""#,
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    // A workload written for restricted is accepted.
    let hardened = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: hard}\nspec:\n  \
                    selector: {matchLabels: {app: hard}}\n  template:\n    metadata: {labels: {app: hard}}\n    \
                    spec:\n      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n      \
                    containers:\n      - name: c\n        image: nginx\n        securityContext:\n          \
                    allowPrivilegeEscalation: false\n          capabilities: {drop: [ALL]}\n";
    k.ok_stdin(&["apply", "-f", "-"], hardened).await;
}

/// Random-looking text Postgres cannot compress much.
fn noise(len: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize])
        })
        .collect()
}

#[tokio::test]
async fn fair_use_quotas_objects_bytes_and_watches() {
    let app = manifold_integration_tests::TestApp::spawn_with(&[
        ("vk8s.max_objects", "6".into()),
        ("vk8s.max_bytes", "40000".into()),
        ("vk8s.max_watches_per_principal", "1".into()),
    ])
    .await
    .expect("spawn the control plane");
    let s = crate::vk8s_grpc::scenario_on(app).await;
    let k = Kubectl::new(&s.kubeconfig, s.dir.path());

    // Bytes: growing an object past the total is refused, as is a new one.
    k.ok(&["create", "configmap", "grow", "--from-literal=a=b"])
        .await;
    let big = format!("--from-literal=blob={}", noise(60_000));
    let cm = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"grow\"}},\"data\":{{\"blob\":\"{}\"}}}}",
        noise(60_000)
    );
    let err = k.fails_stdin(&["apply", "-f", "-"], &cm).await;
    assert!(
        err.contains(r#"configmaps "grow" is forbidden: exceeded quota: vk8s"#),
        "{err}"
    );
    assert!(err.contains("limited: bytes=40000"), "{err}");
    let err = k.fails(&["create", "configmap", "big", &big]).await;
    assert!(err.contains("limited: bytes=40000"), "{err}");
    assert!(k.run(&["get", "configmap", "big"]).await.status.code() != Some(0));

    // Objects: creating stops at the limit with ResourceQuota's words.
    let mut refused = None;
    for i in 0..10 {
        let out = k.run(&["create", "configmap", &format!("c{i}")]).await;
        if !out.status.success() {
            refused = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let err = refused.expect("the object quota refused a create within 10");
    assert!(err.contains(r#"configmaps "c"#), "{err}");
    assert!(
        err.contains(
            "exceeded quota: vk8s, requested: objects=1, used: objects=6, limited: objects=6"
        ),
        "{err}"
    );
    // Deleting frees room.
    k.ok(&["delete", "configmap", "grow", "--wait=false"]).await;
    k.ok(&["create", "configmap", "again"]).await;
    // Concurrent creates cannot race past the limit: each write counts
    // after taking the revision lock, so with room for one, exactly one
    // of six simultaneous creates lands.
    k.ok(&["delete", "configmap", "again", "--wait=false"])
        .await;
    let names: Vec<String> = (0..6).map(|i| format!("race{i}")).collect();
    let kr = &k;
    let runs = futures::future::join_all(
        names
            .iter()
            .map(|n| async move { kr.run(&["create", "configmap", n]).await }),
    )
    .await;
    let landed = runs.iter().filter(|o| o.status.success()).count();
    assert_eq!(landed, 1, "creates that landed with room for one");
    for o in runs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("exceeded quota: vk8s"), "{err}");
    }

    // Watches: one open per principal; the second is 429 until it closes.
    // The first watch: started again while the gateway still holds the
    // slot of an earlier watch it has not seen end.
    let mut child = None;
    for _ in 0..20 {
        let mut first = k.command(&["get", "configmaps", "--watch", "--request-timeout=60s"]);
        first
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut c = first.spawn().expect("spawn the first watch");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        if c.try_wait().expect("poll the first watch").is_none() {
            child = Some(c);
            break;
        }
    }
    let mut child = child.expect("the first watch runs");
    let mut limited = None;
    let mut last = String::new();
    for _ in 0..40 {
        let out = k
            .run(&["get", "configmaps", "--watch", "--request-timeout=2s"])
            .await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.contains("too many open watches") {
            limited = Some(stderr);
            break;
        }
        last = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let err = limited
        .unwrap_or_else(|| panic!("the second watch was not refused while the first ran: {last}"));
    assert!(
        err.contains("TooManyRequests") || err.contains("429"),
        "{err}"
    );
    assert!(err.contains("limit 1"), "{err}");
    child.kill().await.expect("stop the first watch");
    assert!(
        watch_opens(&k).await,
        "a watch opens again once the first one closed"
    );
}

/// Whether a short watch of this principal runs (retried for ten seconds:
/// the gateway frees a slot once it notices the client left).
async fn watch_opens(k: &Kubectl) -> bool {
    for _ in 0..40 {
        let out = k
            .run(&["get", "configmaps", "--watch", "--request-timeout=1s"])
            .await;
        if out.status.success() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    false
}

/// Pods per site: the replicas a vK8s's workloads ask of each site are
/// bounded; creating, scaling and patching past the limit is refused with
/// ResourceQuota's words, scaling down always works, nothing is stored.
#[tokio::test]
async fn fair_use_quota_bounds_the_pods_asked_of_each_site() {
    let app =
        manifold_integration_tests::TestApp::spawn_with(&[("vk8s.max_pods_per_site", "5".into())])
            .await
            .expect("spawn the control plane");
    let s = crate::vk8s_grpc::scenario_on(app).await;
    let k = Kubectl::new(&s.kubeconfig, s.dir.path());

    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=3",
    ])
    .await;
    // A second workload that would bring the total to 6.
    let err = k
        .fails(&[
            "create",
            "deployment",
            "api",
            "--image=nginx:1.27",
            "--replicas=3",
        ])
        .await;
    assert!(
        err.contains(r#"deployments.apps "api" is forbidden: exceeded quota: vk8s, requested: pods=3, used: pods=3, limited: pods=5 per site"#),
        "{err}"
    );
    assert!(k.run(&["get", "deployment", "api"]).await.status.code() != Some(0));
    // Scaling past it is refused; the stored object keeps its replicas.
    let err = k
        .fails(&["scale", "deployment", "web", "--replicas=6"])
        .await;
    assert!(err.contains("limited: pods=5 per site"), "{err}");
    let replicas = k
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas.trim(), "3");
    // A Job's parallelism counts too; a bare ConfigMap never does.
    let err = k
        .fails_stdin(
            &["apply", "-f", "-"],
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: batch\nspec:\n  parallelism: 4\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox:1.36\n",
        )
        .await;
    assert!(err.contains(r#"jobs.batch "batch" is forbidden"#), "{err}");
    k.ok(&["create", "configmap", "plain"]).await;
    // Down is always allowed, and frees room.
    k.ok(&["scale", "deployment", "web", "--replicas=1"]).await;
    k.ok(&[
        "create",
        "deployment",
        "api",
        "--image=nginx:1.27",
        "--replicas=3",
    ])
    .await;
}
