//! Load benchmark of a virtual cluster's Kubernetes API, on the all-in-one
//! control plane and real Postgres, next to pgbench on the same database in
//! the same run (not a timed test; run it on purpose):
//!
//! ```text
//! DATABASE_URL=postgres://… cargo bench -p manifold-integration-tests --bench vk8s
//! ```
//!
//! Reports GET p50/p99, LIST of 1,000 objects p99 and create throughput at 50
//! and 200 concurrent clients, then pgbench's select-only and TPC-B-like
//! results. `VK8S_BENCH_SECONDS` sets the length of each timed phase
//! (default 10); `PGBENCH` names the pgbench binary when it is not on PATH.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use manifold_integration_tests::{TestApp, authed};
use manifold_proto::tenancy::v1 as tpb;
use manifold_proto::vk8s::v1 as pb;
use serde_json::json;
use tokio::sync::Semaphore;

const OBJECTS: usize = 1_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn setup(app: &TestApp) -> Result<kube::Client> {
    let ch = app.channel().await?;
    let admin = &app.admin_token;
    tpb::tenant_service_client::TenantServiceClient::new(ch.clone())
        .create_tenant(authed(
            admin,
            tpb::CreateTenantRequest {
                tenant_id: "acme".into(),
                tenant: None,
            },
        ))
        .await?;
    tpb::namespace_service_client::NamespaceServiceClient::new(ch.clone())
        .create_namespace(authed(
            admin,
            tpb::CreateNamespaceRequest {
                parent: "tenants/acme".into(),
                namespace_id: "shop".into(),
                namespace: None,
            },
        ))
        .await?;
    let mut vk8s = pb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch);
    vk8s.create_virtual_cluster(authed(
        admin,
        pb::CreateVirtualClusterRequest {
            parent: "tenants/acme/namespaces/shop".into(),
            virtual_cluster_id: "bench".into(),
            virtual_cluster: None,
        },
    ))
    .await?;
    let yaml = vk8s
        .get_kubeconfig(authed(
            admin,
            pb::GetKubeconfigRequest {
                name: "tenants/acme/namespaces/shop/virtualClusters/bench".into(),
                ttl_seconds: 0,
            },
        ))
        .await?
        .into_inner()
        .kubeconfig;
    manifold_pki::install_default_crypto_provider();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&yaml)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "bench": "true" } },
        "data": { "payload": "x".repeat(256) },
    }))
    .expect("a ConfigMap")
}

/// Creates `count` objects with `clients` concurrent requests; objects/s.
async fn create_throughput(
    api: &Api<ConfigMap>,
    prefix: &str,
    count: usize,
    clients: usize,
) -> Result<f64> {
    let gate = Arc::new(Semaphore::new(clients));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permit = gate.clone().acquire_owned().await?;
        let api = api.clone();
        let name = format!("{prefix}-{i}");
        tasks.push(tokio::spawn(async move {
            let r = api.create(&PostParams::default(), &config_map(&name)).await;
            drop(permit);
            r.map(|_| ())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Runs `op` from `clients` concurrent loops for `duration`; sorted latencies.
async fn latencies<F, Fut>(clients: usize, duration: Duration, op: F) -> Result<Vec<Duration>>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let t = Instant::now();
                op(i).await?;
                out.push(t.elapsed());
                i += clients;
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok(all)
}

fn pgbench_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("PGBENCH") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(out) = std::process::Command::new("which").arg("pgbench").output()
        && out.status.success()
    {
        return Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pgbench"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().context("pgbench not found: set PGBENCH")
}

/// One pgbench run; returns its "tps = …" line.
fn pgbench(url: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(pgbench_binary()?)
        .args(args)
        .arg(url)
        .output()?;
    if !out.status.success() {
        bail!(
            "pgbench {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or("tps = ?")
        .to_owned();
    let latency = text
        .lines()
        .find(|l| l.starts_with("latency average"))
        .unwrap_or("")
        .to_owned();
    Ok(format!("{tps}; {latency}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let seconds: u64 = std::env::var("VK8S_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let phase = Duration::from_secs(seconds);
    let app = TestApp::spawn().await?;
    let client = setup(&app).await?;
    let api: Api<ConfigMap> = Api::namespaced(client, "shop");

    println!("## vK8s gateway ({OBJECTS} ConfigMaps of ~0.5 KiB, {seconds} s per timed phase)\n");
    println!("| clients | create throughput | GET p50 | GET p99 | LIST-{OBJECTS} p99 |");
    println!("|---:|---:|---:|---:|---:|");
    let mut prefix_round = 0;
    for clients in [50usize, 200] {
        prefix_round += 1;
        let prefix = format!("r{prefix_round}");
        let create = create_throughput(&api, &prefix, OBJECTS, clients).await?;
        let get_api = api.clone();
        let get_prefix = prefix.clone();
        let gets = latencies(clients, phase, move |i| {
            let api = get_api.clone();
            let name = format!("{get_prefix}-{}", i % OBJECTS);
            async move {
                api.get(&name).await?;
                Ok(())
            }
        })
        .await?;
        let list_api = api.clone();
        let selector = "bench=true".to_owned();
        // Lists read one round's objects: select them by name prefix through a label.
        let lists = latencies(clients.min(20), phase, move |_| {
            let api = list_api.clone();
            let selector = selector.clone();
            async move {
                let l = api.list(&ListParams::default().labels(&selector)).await?;
                anyhow::ensure!(
                    l.items.len() >= OBJECTS,
                    "list returned {} items",
                    l.items.len()
                );
                Ok(())
            }
        })
        .await?;
        println!(
            "| {clients} | {create:.0} objects/s | {} | {} | {} |",
            ms(percentile(&gets, 0.5)),
            ms(percentile(&gets, 0.99)),
            ms(percentile(&lists, 0.99)),
        );
        // The next round lists its own 1,000 objects only.
        api.delete_collection(
            &Default::default(),
            &ListParams::default().labels("bench=true"),
        )
        .await?;
    }

    println!("\n## pgbench on the same database\n");
    let url = app.database_url.clone();
    pgbench(&url, &["-i", "-q", "-s", "10"])?;
    let duration = seconds.to_string();
    for clients in ["50", "200"] {
        let select = pgbench(&url, &["-S", "-c", clients, "-j", "2", "-T", &duration])?;
        let tpcb = pgbench(&url, &["-c", clients, "-j", "2", "-T", &duration])?;
        println!("- {clients} clients, select-only: {select}");
        println!("- {clients} clients, TPC-B-like: {tpcb}");
    }
    Ok(())
}
