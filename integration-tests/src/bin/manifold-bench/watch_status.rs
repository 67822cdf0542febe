//! `manifold-bench watch-status`: what workload watches cost Postgres,
//! polled (the baseline) against pushed, in the same run on the same
//! machine. See the module documentation of `manifold-bench`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use manifold_integration_tests::{TestApp, percentile_ms};
use manifold_site_agent::{AgentConfig, SimulatedOptions, SimulatedSite};
use tokio_util::sync::CancellationToken;

const SITES: [&str; 3] = ["pa2-par", "ny8-nyc", "ams9-ams"];

/// Transactions committed or rolled back in the app's database so far.
async fn transactions(db: &manifold_db::sqlx::PgPool) -> Result<i64> {
    // A fresh snapshot of the statistics each time.
    manifold_db::sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(db)
        .await?;
    Ok(manifold_db::sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
         WHERE datname = current_database()",
    )
    .fetch_one(db)
    .await?)
}

/// Transactions per second over `seconds` (the statistics lag up to a
/// second, so the window is long).
async fn rate(db: &manifold_db::sqlx::PgPool, seconds: u64) -> Result<f64> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = transactions(db).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = transactions(db).await?;
    Ok((after - before) as f64 / started.elapsed().as_secs_f64())
}

fn deployment(i: usize) -> Result<Deployment> {
    let name = format!("bench-{i}");
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    }))?)
}

struct Row {
    mode: &'static str,
    idle: f64,
    watched: f64,
    reach: Vec<Duration>,
    watchers: usize,
}

pub async fn run(watchers: usize, deployments: usize, seconds: u64) -> Result<()> {
    manifold_pki::install_default_crypto_provider();
    let mut rows = Vec::new();
    for (mode, push) in [("polled (baseline)", false), ("pushed", true)] {
        rows.push(one(mode, push, watchers, deployments, seconds).await?);
    }
    println!(
        "| watches of {deployments} Deployments on {} sites | watches | Postgres tx/s, no watch | tx/s with the watches | per watch | scale-up seen by all watches p50 / p99 ms |",
        SITES.len()
    );
    println!("|---|---|---|---|---|---|");
    for mut r in rows {
        r.reach.sort();
        let extra = (r.watched - r.idle).max(0.0);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.0} / {:.0} |",
            r.mode,
            r.watchers,
            r.idle,
            r.watched,
            extra / r.watchers.max(1) as f64,
            percentile_ms(&r.reach, 0.50),
            percentile_ms(&r.reach, 0.99),
        );
    }
    Ok(())
}

async fn one(
    mode: &'static str,
    push: bool,
    watchers: usize,
    deployments: usize,
    seconds: u64,
) -> Result<Row> {
    let app = TestApp::spawn_with(&[
        ("vk8s.status_push", push.to_string()),
        (
            "vk8s.max_watches_per_principal",
            (watchers + 10).to_string(),
        ),
    ])
    .await?;
    let channel = app.channel().await?;
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    let _fleet = manifold_site_agent::start_simulated_sites(
        channel.clone(),
        &app.admin_token,
        &base,
        SITES.iter().map(|s| SimulatedSite::edge(*s)).collect(),
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = manifold::demo::ensure(channel, &app.admin_token, dir.path()).await?;
    let yaml = std::fs::read_to_string(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&yaml)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let api: Api<Deployment> = Api::namespaced(client, "shop");
    for i in 0..deployments {
        api.create(&PostParams::default(), &deployment(i)?).await?;
    }
    // Every Deployment ready on every site.
    let want = SITES.len() as i32;
    let mut ready = 0;
    for _ in 0..240 {
        ready = api
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(want))
            .count();
        if ready == deployments {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if ready != deployments {
        bail!("{mode}: only {ready} of {deployments} Deployments became ready");
    }
    let db = manifold_db::sqlx::PgPool::connect(&app.database_url).await?;
    let idle = rate(&db, seconds).await?;

    // The watches; each notes when it first sees bench-0 at 2 replicas on
    // every site.
    let target = 2 * want;
    let seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let synced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let api = api.clone();
        let seen = seen.clone();
        let synced = synced.clone();
        tasks.push(tokio::spawn(async move {
            let params = WatchParams::default().timeout(290);
            let Ok(stream) = api.watch(&params, "0").await else {
                return;
            };
            let mut stream = stream.boxed();
            let mut noted = false;
            let mut added = 0;
            while let Ok(Some(event)) = stream.try_next().await {
                if let WatchEvent::Added(_) = &event {
                    added += 1;
                    if added == deployments {
                        synced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                if let WatchEvent::Modified(d) | WatchEvent::Added(d) = event
                    && !noted
                    && d.metadata.name.as_deref() == Some("bench-0")
                    && d.status.as_ref().and_then(|s| s.ready_replicas) == Some(target)
                {
                    noted = true;
                    seen.lock().unwrap().push(Instant::now());
                }
            }
        }));
    }
    // Steady state: every watch has its initial events (what starting
    // them costs is not what this measures).
    let started = Instant::now();
    for _ in 0..1200 {
        if synced.load(std::sync::atomic::Ordering::Relaxed) >= watchers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{mode}: {} of {watchers} watches had their initial events after {:.1} s",
        synced.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let watched = rate(&db, seconds).await?;

    // One scale-up, and how long until every watch saw it.
    let scaled = Instant::now();
    api.patch(
        "bench-0",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
    )
    .await?;
    for _ in 0..600 {
        if seen.lock().unwrap().len() >= watchers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reach: Vec<Duration> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(scaled))
        .collect();
    if reach.len() < watchers {
        eprintln!(
            "{mode}: {} of {watchers} watches saw the scale-up within 60 s",
            reach.len()
        );
    }
    for t in tasks {
        t.abort();
    }
    drop(db);
    Ok(Row {
        mode,
        idle,
        watched,
        reach,
        watchers,
    })
}
