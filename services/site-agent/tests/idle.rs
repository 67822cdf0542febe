//! What idle agents cost: many agents, each with a simulated cluster running a
//! Deployment, connected to one control plane in one process. Measured in this
//! process (control-plane side included, so the figures are upper bounds).

mod support;

use std::sync::Arc;
use std::time::Duration;

use manifold_proto::replication::v1 as pb;
use manifold_site_agent::convert::json_to_struct;
use manifold_site_agent::{AgentConfig, SimulatedBackend, SimulatedOptions};
use pb::agent_message::Msg as Up;
use pb::control_message::Msg as Down;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const AGENTS: usize = 200;

/// Resident set size and CPU time (user + system) of this process.
fn usage() -> (u64, Duration) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (rss_kib * 1024, Duration::from_millis(ticks * 10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_agents_are_cheap() {
    let mut cp = support::start("unused", Duration::from_secs(3600)).await;
    let (rss_before, _) = usage();
    let shutdown = CancellationToken::new();
    let mut conns = Vec::new();
    for i in 0..AGENTS {
        let site = format!("site-{i}");
        let mut config = AgentConfig::new(&site, cp.endpoint(), cp.ca_pem.clone());
        config.identity = Some(cp.issue(&site));
        let backend = Arc::new(SimulatedBackend::new(&site, 2, SimulatedOptions::default()));
        tokio::spawn(manifold_site_agent::run(config, backend, shutdown.clone()));
        let conn = cp.accept().await;
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": 1},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
        });
        conn.send(Down::Apply(pb::Apply {
            revision: 1,
            r#ref: Some(pb::ObjectRef {
                virtual_cluster: "tenants/acme/namespaces/shop/virtualClusters/demo".into(),
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: "shop".into(),
                name: "web".into(),
            }),
            object: Some(json_to_struct(&object)),
        }))
        .await;
        conns.push(conn);
    }
    // Every agent acks and reports its two Running pods.
    for conn in &mut conns {
        let mut running = std::collections::BTreeSet::new();
        let mut acked = false;
        while !(acked && running.len() == 2) {
            match conn.recv().await {
                Up::Ack(a) => acked |= a.revision == 1,
                Up::Status(r) => {
                    for p in r.pods {
                        if p.phase == "Running" {
                            running.insert(p.name);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let (rss_after, cpu_start) = usage();
    let idle = Duration::from_secs(5);
    tokio::time::sleep(idle).await;
    let (_, cpu_end) = usage();
    let per_agent = rss_after.saturating_sub(rss_before) / AGENTS as u64;
    let cpu_share = (cpu_end - cpu_start).as_secs_f64() / idle.as_secs_f64();
    println!(
        "{AGENTS} idle agents (agent + control-plane side): {:.0} KiB RSS each, {:.2}% of one CPU in total",
        per_agent as f64 / 1024.0,
        cpu_share * 100.0
    );
    assert!(per_agent < 2 * 1024 * 1024, "{per_agent} bytes per agent");
    assert!(cpu_share < 0.10, "idle CPU {cpu_share}");
    shutdown.cancel();
}
