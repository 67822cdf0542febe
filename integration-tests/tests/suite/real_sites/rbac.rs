//! The agent runs with exactly the permissions the `helm/site-agent` chart grants:
//! the chart's ServiceAccount, ClusterRole and binding are applied to a real
//! cluster, the agent authenticates with a token of that ServiceAccount (not the
//! admin certificate), and the reference scenario passes without a single 403.
//! Every manifest both charts render is accepted by a real API server
//! (`--dry-run=server`).

use std::time::Duration;

use serde_json::{Value, json};

use super::{Plane, RealEnv};
use crate::helm::{agent_values, render};
use crate::reference::deployment;
use manifold_integration_tests::tool;

const SITE: &str = "pa2-par";

/// kubectl against the site's own API server with its admin kubeconfig.
async fn site_kubectl(env: &RealEnv, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(tool("kubectl").unwrap());
    cmd.args(args)
        .env("KUBECONFIG", env.cluster(SITE).kubeconfig())
        .env("HOME", &env.kube.home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).await.unwrap();
    }
    drop(pipe);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("kubectl in time")
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn yaml_stream(objects: &[&Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml_ng::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test]
async fn the_agent_needs_nothing_beyond_the_charts_rbac_and_both_charts_apply() {
    let env = RealEnv::start(&[SITE], Plane::AllInOne).await;
    let kc = &env.kube;

    // The chart as an operator installs it (release mf in namespace manifold).
    let chart = render("site-agent", agent_values()).unwrap().ok();
    site_kubectl(&env, &["create", "namespace", "manifold"], None)
        .await
        .unwrap();
    let rbac: Vec<&Value> = chart
        .objects
        .iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("ServiceAccount" | "ClusterRole" | "ClusterRoleBinding")
            )
        })
        .collect();
    assert_eq!(
        rbac.len(),
        3,
        "ServiceAccount, ClusterRole, ClusterRoleBinding"
    );
    site_kubectl(&env, &["apply", "-f", "-"], Some(&yaml_stream(&rbac)))
        .await
        .unwrap();
    let token = site_kubectl(
        &env,
        &[
            "create",
            "token",
            "mf-site-agent",
            "-n",
            "manifold",
            "--duration=2h",
        ],
        None,
    )
    .await
    .unwrap();
    let cluster = env.cluster(SITE);
    let kubeconfig = env.kube.home.join("agent-sa.kubeconfig");
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": SITE, "cluster": {
            "server": cluster.server(),
            "certificate-authority": cluster.ca_file().display().to_string()}}],
        "users": [{"name": "mf-site-agent", "user": {"token": token.trim()}}],
        "contexts": [{"name": SITE, "context": {"cluster": SITE, "user": "mf-site-agent"}}],
        "current-context": SITE,
    });
    std::fs::write(&kubeconfig, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    // The token can do what the chart grants and nothing more.
    let can = |verb: &'static str, resource: &'static str| {
        let kubeconfig = kubeconfig.clone();
        let home = env.kube.home.clone();
        async move {
            let out = tokio::process::Command::new(tool("kubectl").unwrap())
                .args(["auth", "can-i", verb, resource, "--all-namespaces"])
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", &home)
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == "yes"
        }
    };
    assert!(can("patch", "deployments.apps").await);
    assert!(!can("create", "clusterroles.rbac.authorization.k8s.io").await);
    assert!(!can("get", "nodes").await, "nodes: list and watch only");

    // The agent, now with the ServiceAccount's token instead of the admin cert.
    env.stop_agent(SITE).await;
    env.start_agent(SITE, &kubeconfig).await;
    kc.apply(&deployment(2, "nginx:1.27")).await;
    kc.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {k: v}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: productpage}\nspec: {selector: {app: productpage}, ports: [{port: 80}]}\n")
        .await;
    kc.rollout().await;
    kc.wait_ready("2/2").await;
    let by_site = kc.wait_pods(&[SITE], 2, |_| true).await;
    let pod = by_site[SITE][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = kc.ok(&["logs", &pod, "--tail=1"]).await;
    assert!(logs.contains(&format!("site={SITE}")), "{logs}");
    kc.ok(&["delete", "pod", &pod, "--timeout=60s"]).await;
    kc.wait_pods(&[SITE], 2, |now| {
        now.values()
            .flatten()
            .all(|p| p["metadata"]["name"] != pod.as_str())
    })
    .await;
    kc.ok(&[
        "set",
        "image",
        "deployment/productpage",
        "productpage=nginx:1.28",
    ])
    .await;
    kc.rollout().await;
    // A restart (snapshot, pruning, namespace clean-up) under the same rights.
    env.stop_agent(SITE).await;
    env.start_agent(SITE, &kubeconfig).await;
    env.wait_for("the restarted agent applied its snapshot", || async {
        env.agent_log(SITE).contains("snapshot applied")
    })
    .await;
    kc.ok(&["delete", "deployment", "productpage", "--timeout=60s"])
        .await;
    kc.ok(&["delete", "configmap", "settings"]).await;
    kc.ok(&["delete", "service", "productpage"]).await;
    env.wait_for("the namespace removed with the last object", || async {
        site_kubectl(&env, &["get", "namespace", super::PHYSICAL_NS], None)
            .await
            .is_err()
    })
    .await;
    let log = env.agent_log(SITE);
    for word in ["403", "forbidden", "Forbidden"] {
        assert!(!log.contains(word), "the agent hit {word}:\n{log}");
    }

    // Every manifest of both charts is accepted by a real API server.
    let manifold = render("manifold", json!({})).unwrap().ok();
    for (name, r) in [("manifold", &manifold), ("site-agent", &chart)] {
        let all: Vec<&Value> = r.objects.iter().collect();
        let out = site_kubectl(
            &env,
            &["apply", "--dry-run=server", "-n", "manifold", "-f", "-"],
            Some(&yaml_stream(&all)),
        )
        .await
        .unwrap_or_else(|e| panic!("chart {name} refused by a real API server: {e}"));
        assert_eq!(
            out.lines()
                .filter(|l| l.contains("(server dry run)"))
                .count(),
            all.len(),
            "{name}: {out}"
        );
    }
}
