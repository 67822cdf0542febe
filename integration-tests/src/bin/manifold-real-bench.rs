//! Propagation to real sites beside simulated ones, in the same run:
//!
//! `manifold-real-bench [--real 3] [--simulated 3] [--changes 30]`
//!
//! One all-in-one control plane (in this process, on a fresh database of the
//! server DATABASE_URL names), `--real` real Kubernetes clusters (kube-site:
//! etcd, kube-apiserver, controller-manager, scheduler, kwok) each with a
//! `manifold-site-agent --backend kube` process, and `--simulated` simulated
//! sites (agents in this process), all in the reference scenario's virtual site.
//! A ConfigMap is changed through the vK8s Kubernetes API `--changes` times, one
//! at a time; for each change the time from the API call until every real
//! cluster's own API server has it (a watch on each) and until every simulated
//! site holds it is recorded: p50 / p99 / max per kind of site.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use manifold_integration_tests::agents::{self, ControlPlane};
use manifold_integration_tests::kube_site::{ClusterOptions, RealSites};
use manifold_integration_tests::{TestApp, percentile_ms};
use manifold_site_agent::{AgentConfig, Fleet, SimulatedOptions, SimulatedSite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Args {
    real: usize,
    simulated: usize,
    changes: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        real: 3,
        simulated: 3,
        changes: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n: usize = value.parse().with_context(|| format!("{flag}: a count"))?;
        match flag.as_str() {
            "--real" => args.real = n,
            "--simulated" => args.simulated = n,
            "--changes" => args.changes = n,
            other => bail!("unknown flag {other}; known: --real N --simulated N --changes N"),
        }
    }
    if args.real == 0 || args.simulated == 0 || args.changes == 0 {
        bail!("--real, --simulated and --changes must be at least 1");
    }
    Ok(args)
}

/// Sets ConfigMap `bench`'s `data.seq` to `seq`.
async fn change(api: &Api<ConfigMap>, seq: usize) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bench"},
        "data": {"seq": seq.to_string()},
    });
    api.patch(
        "bench",
        &PatchParams::apply("manifold-real-bench").force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

fn sim_has(fleet: &Fleet, site: &str, seq: usize) -> bool {
    let backend = &fleet.backends[site];
    backend
        .object_keys()
        .into_iter()
        .find(|k| k.kind == "ConfigMap" && k.name == "bench")
        .and_then(|k| backend.object(&k))
        .is_some_and(|o| o["data"]["seq"].as_str() == Some(seq.to_string().as_str()))
}

fn summary(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    (
        percentile_ms(&v, 0.5),
        percentile_ms(&v, 0.99),
        percentile_ms(&v, 1.0),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    manifold_pki::install_default_crypto_provider();
    let real_names: Vec<String> = (1..=args.real).map(|i| format!("real-{i}")).collect();
    let sim_names: Vec<String> = (1..=args.simulated).map(|i| format!("sim-{i}")).collect();
    eprintln!("starting {} real clusters and the control plane", args.real);
    let names: Vec<&str> = real_names.iter().map(String::as_str).collect();
    let (sites, app) = tokio::join!(
        RealSites::start(&names, ClusterOptions::default()),
        TestApp::spawn()
    );
    let (sites, app) = (sites?, app?);
    let ch = app.channel().await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = manifold::demo::ensure(ch.clone(), &app.admin_token, dir.path()).await?;
    let cp = ControlPlane {
        endpoint: format!("https://{}", app.grpc_addr),
        ca_file: app.ca_file(),
        admin_token: app.admin_token.clone(),
    };
    let mut agents_running = Vec::new();
    for c in &sites.clusters {
        agents::ensure_site(
            &ch,
            &app.admin_token,
            c.name(),
            &[("env".to_owned(), "edge".to_owned())].into(),
        )
        .await?;
        agents_running.push(
            agents::start_kube_agent(
                &ch,
                &cp,
                c.name(),
                &c.kubeconfig(),
                &dir.path().join(c.name()),
                &[("RUST_LOG", "warn".to_owned())],
                &dir.path().join(format!("{}.log", c.name())),
            )
            .await?,
        );
    }
    let stop = CancellationToken::new();
    let mut base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    base.status_debounce = Duration::from_millis(100);
    let fleet = manifold_site_agent::start_simulated_sites(
        ch.clone(),
        &app.admin_token,
        &base,
        sim_names.iter().map(SimulatedSite::edge).collect(),
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await?;

    // One watch per real cluster on the ConfigMap; every event goes out with
    // the time it arrived.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(String, usize, Instant)>();
    for c in &sites.clusters {
        let client = c.client().await?;
        let api: Api<ConfigMap> = Api::namespaced(client, "mf-acme-shop-demo");
        let site = c.name().to_owned();
        let tx = seen_tx.clone();
        tokio::spawn(async move {
            let config = watcher::Config::default().fields("metadata.name=bench");
            let mut stream = watcher::watcher(api, config).boxed();
            while let Some(event) = stream.next().await {
                let at = Instant::now();
                let objects = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
                    _ => continue,
                };
                for o in objects {
                    if let Some(seq) = o
                        .data
                        .as_ref()
                        .and_then(|d| d.get("seq"))
                        .and_then(|s| s.parse().ok())
                        && tx.send((site.clone(), seq, at)).is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    let vk8s = {
        let yaml = std::fs::read_to_string(&kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&yaml)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        kube::Client::try_from(config)?
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(vk8s, "shop");

    // Warm-up: change 0 creates the namespace and the object everywhere.
    let mut real_latency = Vec::new();
    let mut sim_latency = Vec::new();
    for seq in 0..=args.changes {
        let started = Instant::now();
        change(&config_maps, seq).await?;
        let deadline = started + Duration::from_secs(120);
        let mut real_done: BTreeMap<String, Instant> = BTreeMap::new();
        let mut sim_done: BTreeMap<String, Instant> = BTreeMap::new();
        while real_done.len() < real_names.len() || sim_done.len() < sim_names.len() {
            if Instant::now() > deadline {
                bail!(
                    "change {seq} not everywhere after 120 s: real {:?}, simulated {:?}",
                    real_done.keys().collect::<Vec<_>>(),
                    sim_done.keys().collect::<Vec<_>>()
                );
            }
            while let Ok((site, s, at)) = seen_rx.try_recv() {
                if s == seq {
                    real_done.entry(site).or_insert(at);
                }
            }
            for site in &sim_names {
                if !sim_done.contains_key(site) && sim_has(&fleet, site, seq) {
                    sim_done.insert(site.clone(), Instant::now());
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if seq > 0 {
            let last = |m: &BTreeMap<String, Instant>| {
                m.values().max().map(|t| *t - started).unwrap_or_default()
            };
            real_latency.push(last(&real_done));
            sim_latency.push(last(&sim_done));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (r50, r99, rmax) = summary(real_latency);
    let (s50, s99, smax) = summary(sim_latency);
    println!(
        "| sites | propagation, API call → applied on all of them: p50 / p99 / max |\n\
         |---|---|\n\
         | {} real (kube-site {}, agent processes, watched through each API server) | {r50:.1} / {r99:.1} / {rmax:.1} ms |\n\
         | {} simulated (in-process agents), same control plane, same changes | {s50:.1} / {s99:.1} / {smax:.1} ms |\n\
         \n{} sequential changes; the slowest site of each kind per change.",
        args.real,
        manifold_integration_tests::kube_site::KUBERNETES_VERSION,
        args.simulated,
        args.changes,
    );
    stop.cancel();
    for a in agents_running {
        a.terminate(Duration::from_secs(5)).await;
    }
    drop(sites);
    Ok(())
}
