//! Restarting an agent (a snapshot, which prunes) and killing the replication
//! process (agents reconnect and resume) leave every pod and every ReplicaSet on
//! every real site as it was: same uids, nothing pruned that the user still wants,
//! and the vK8s's pod watch sees no pod vanish and come back.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{Plane, RealEnv};
use crate::reference::deployment;
use manifold_integration_tests::tool;

const SITES: [&str; 2] = ["pa2-par", "ny8-nyc"];

const CONFIG: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
";

#[tokio::test]
async fn restarts_keep_every_pod_and_replica_set() {
    let env = RealEnv::start(&SITES, Plane::SplitReplication).await;
    let kc = &env.kube;
    kc.apply(&deployment(2, "nginx:1.27")).await;
    kc.apply(CONFIG).await;
    kc.rollout().await;
    kc.wait_ready("4/4").await;
    kc.wait_pods(&SITES, 2, |_| true).await;
    let mut before = std::collections::BTreeMap::new();
    for site in SITES {
        let p = env.physical(site).await;
        assert_eq!(p.replica_sets.len(), 1);
        assert_eq!(p.running().len(), 2);
        before.insert(site, p.uids());
    }

    // Every pod event the vK8s serves from here on.
    let mut watch = tokio::process::Command::new(tool("kubectl").unwrap())
        .args([
            "-n",
            "shop",
            "get",
            "pods",
            "-w",
            "--output-watch-events",
            "-o",
            "name",
        ])
        .env("KUBECONFIG", &kc.config)
        .env("HOME", &kc.home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut watch_out = watch.stdout.take().unwrap();

    // 1. An agent restarts: it starts from nothing and gets a snapshot.
    env.stop_agent("pa2-par").await;
    env.start_agent("pa2-par", &env.cluster("pa2-par").kubeconfig())
        .await;
    env.wait_for("the restarted agent applied its snapshot", || async {
        env.agent_log("pa2-par").contains("snapshot applied")
    })
    .await;
    // 2. The replication process dies (SIGKILL) and comes back on its address.
    env.restart_replication().await;
    env.wait_for("both sites online again", || async {
        let mut online = true;
        for site in SITES {
            let s = env.site(site).await;
            online &= s.state == manifold_proto::sites::v1::site::State::Online as i32;
        }
        online
    })
    .await;
    // Let every agent report again after its reconnect.
    tokio::time::sleep(Duration::from_secs(5)).await;
    kc.wait_ready("4/4").await;

    for site in SITES {
        let p = env.physical(site).await;
        assert_eq!(
            p.uids(),
            before[site],
            "{site}: a pod or ReplicaSet was recreated\n{}",
            env.diagnostics()
        );
    }
    let log = env.agent_log("pa2-par");
    assert!(log.contains("pruned=0"), "nothing pruned:\n{log}");
    assert!(!log.contains(" pruned site="), "nothing pruned:\n{log}");
    let cm = kc.ok(&["get", "configmap", "settings", "-o", "name"]).await;
    assert_eq!(cm.trim(), "configmap/settings");

    watch.start_kill().ok();
    let mut events = String::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        watch_out.read_to_string(&mut events),
    )
    .await;
    assert!(
        !events.contains("DELETED"),
        "the vK8s saw pods vanish during the restarts:\n{events}"
    );
}
