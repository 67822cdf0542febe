//! Load tool for replication: N simulated sites against a control plane,
//! beside a raw-tonic fan-out baseline measured in the same run.
//!
//! `manifold-load [--sites 100] [--changes 30] [--idle-secs 10]`
//!
//! 1. Starts `manifold serve` (the all-in-one, built by `make build` or
//!    `cargo build --workspace --bins`) as its own process on a fresh
//!    database of the server DATABASE_URL names, and creates the reference
//!    scenario (tenant acme, virtual site all-edges = env=edge, vK8s demo).
//! 2. Starts N simulated sites in this process, each a real agent with its
//!    own mTLS gRPC stream (its own TCP connection), and lets them idle:
//!    control-plane RSS and CPU, and this process's RSS growth per agent.
//! 3. Changes a ConfigMap through the vK8s Kubernetes API `--changes` times,
//!    one at a time, and times each from the API call until every site has
//!    applied it (the agent acks right after applying): p50/p99.
//! 4. Baseline: a bare tonic server (TLS, grpc.health.v1 Watch) with N
//!    watchers on N connections; the time from flipping the status until
//!    all N have seen it, the same number of times — the cost of fanning a
//!    message out to N TLS streams on this machine, without Manifold.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use manifold_integration_tests::{
    Service, binary, free_port, fresh_database, percentile_ms, wait_for_port,
};
use manifold_site_agent::{AgentConfig, Fleet, SimulatedOptions, SimulatedSite};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

struct Args {
    sites: usize,
    changes: usize,
    idle_secs: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        sites: 100,
        changes: 30,
        idle_secs: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sites" => args.sites = value.parse().context("--sites: a count")?,
            "--changes" => args.changes = value.parse().context("--changes: a count")?,
            "--idle-secs" => args.idle_secs = value.parse().context("--idle-secs: seconds")?,
            other => bail!("unknown flag {other}; known: --sites N --changes N --idle-secs S"),
        }
    }
    if args.sites == 0 || args.changes == 0 {
        bail!("--sites and --changes must be at least 1");
    }
    Ok(args)
}

/// Resident set size of a process, in KiB (`VmRSS` in /proc).
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS in /proc/<pid>/status")
}

/// User + system CPU time of a process (clock ticks of 1/100 s).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').context("/proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn summary(mut latencies: Vec<Duration>) -> (f64, f64, f64) {
    latencies.sort();
    (
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    manifold_pki::install_default_crypto_provider();
    let url = fresh_database().await?;
    let dir = tempfile::tempdir()?;
    let grpc_port = free_port()?;
    let kube_port = free_port()?;
    let admin_port = free_port()?;
    let log = dir.path().join("manifold.log");
    let server = Service::start(
        &binary("manifold")?,
        &["serve"],
        &[
            ("DATABASE_URL", url.clone()),
            ("MANIFOLD__DATA_DIR", dir.path().display().to_string()),
            ("MANIFOLD__GRPC__LISTEN", format!("127.0.0.1:{grpc_port}")),
            (
                "MANIFOLD__KUBE_API__LISTEN",
                format!("127.0.0.1:{kube_port}"),
            ),
            (
                "MANIFOLD__KUBE_API__PUBLIC_URL",
                format!("https://127.0.0.1:{kube_port}"),
            ),
            ("MANIFOLD__ADMIN__LISTEN", format!("127.0.0.1:{admin_port}")),
            ("RUST_LOG", "warn".into()),
        ],
        &log,
    )?;
    let pid = server.pid().context("control-plane pid")?;
    wait_for_port(([127, 0, 0, 1], grpc_port).into(), Duration::from_secs(60))
        .await
        .with_context(|| server.log())?;
    wait_for_port(([127, 0, 0, 1], kube_port).into(), Duration::from_secs(30)).await?;
    // Listeners are bound before the bootstrap token is written.
    for _ in 0..600 {
        if dir.path().join("admin.token").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let token = std::fs::read_to_string(dir.path().join("admin.token"))?
        .trim()
        .to_owned();
    let ca_pem = std::fs::read_to_string(dir.path().join("ca.crt"))?;
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{grpc_port}"))?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca_pem))
                .domain_name("localhost"),
        )?
        .connect()
        .await?;
    let kubeconfig = manifold::demo::ensure(channel.clone(), &token, dir.path()).await?;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let cp_rss_empty = rss_kib(pid)?;
    let own_rss_before = rss_kib(std::process::id())?;

    // ---- N sites ----
    let started = Instant::now();
    let stop = CancellationToken::new();
    let mut base = AgentConfig::new(
        "-",
        format!("https://127.0.0.1:{grpc_port}"),
        ca_pem.clone(),
    );
    base.heartbeat_interval = Duration::from_secs(5);
    let fleet = manifold_site_agent::start_simulated_sites(
        channel.clone(),
        &token,
        &base,
        (1..=args.sites)
            .map(|i| SimulatedSite::edge(format!("site-{i}")))
            .collect(),
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await?;
    let registered = started.elapsed();

    // Idle: every agent connected, nothing to do.
    let kube = kube_client(&kubeconfig).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(kube, "shop");
    change(&config_maps, 0).await?;
    wait_everywhere(&fleet, 0, Duration::from_secs(300)).await?;
    let connected = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pg = manifold_db::sqlx::PgPool::connect(&url).await?;
    let xacts_before = committed(&pg).await?;
    let cpu_before = cpu_ticks(pid)?;
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle_elapsed = idle_started.elapsed().as_secs_f64();
    let cp_idle_cpu = (cpu_ticks(pid)? - cpu_before) as f64 / 100.0 / idle_elapsed;
    // Minus the two reads of the counter itself.
    let idle_xacts = (committed(&pg).await? - xacts_before - 2).max(0) as f64 / idle_elapsed;
    pg.close().await;
    let cp_rss_idle = rss_kib(pid)?;
    let own_rss_idle = rss_kib(std::process::id())?;
    let per_agent = own_rss_idle.saturating_sub(own_rss_before) as f64 / args.sites as f64;

    // ---- propagation ----
    let cpu_before = cpu_ticks(pid)?;
    let changes_started = Instant::now();
    let mut latencies = Vec::with_capacity(args.changes);
    for i in 1..=args.changes {
        let t = Instant::now();
        change(&config_maps, i).await?;
        wait_everywhere(&fleet, i, Duration::from_secs(120)).await?;
        latencies.push(t.elapsed());
    }
    let busy_cpu =
        (cpu_ticks(pid)? - cpu_before) as f64 / 100.0 / changes_started.elapsed().as_secs_f64();
    let cp_rss_busy = rss_kib(pid)?;
    let (p50, p99, max) = summary(latencies);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), fleet.wait()).await;
    drop(server);

    // ---- baseline: raw tonic fan-out to N TLS streams ----
    let (b50, b99, bmax) = tonic_fan_out(args.sites, args.changes, dir.path()).await?;

    println!(
        "\n## manifold-load --sites {} --changes {}\n",
        args.sites, args.changes
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| sites registered (token + CSR each) / all streaming and synced | {:.1} s / {:.1} s |",
        registered.as_secs_f64(),
        connected.as_secs_f64()
    );
    println!(
        "| propagation, API call → applied on all {} sites: p50 / p99 / max | {p50:.1} / {p99:.1} / {max:.1} ms |",
        args.sites
    );
    println!(
        "| baseline: bare tonic TLS fan-out to {} streams: p50 / p99 / max | {b50:.1} / {b99:.1} / {bmax:.1} ms |",
        args.sites
    );
    println!(
        "| control-plane RSS: no sites / {} idle sites / after the changes | {} / {} / {} MiB |",
        args.sites,
        cp_rss_empty / 1024,
        cp_rss_idle / 1024,
        cp_rss_busy / 1024
    );
    println!(
        "| control-plane CPU: idle with {} sites / during the changes | {:.1} % / {:.1} % of one core |",
        args.sites,
        cp_idle_cpu * 100.0,
        busy_cpu * 100.0
    );
    println!(
        "| Postgres transactions committed per second with {} idle sites (the control plane's database) | {idle_xacts:.1} |",
        args.sites
    );
    println!("| agent RSS per idle site (in-process agents, growth / N) | {per_agent:.0} KiB |");
    Ok(())
}

/// Transactions committed so far in the control plane's database.
async fn committed(pg: &manifold_db::sqlx::PgPool) -> Result<i64> {
    // The statistics are flushed at most once a second; a fresh snapshot
    // makes the two reads comparable.
    let mut c = pg.acquire().await?;
    manifold_db::sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *c)
        .await?;
    let n: i64 = manifold_db::sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *c)
    .await?;
    Ok(n)
}

async fn kube_client(path: &Path) -> Result<kube::Client> {
    let yaml = std::fs::read_to_string(path)?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&yaml)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Sets ConfigMap `load`'s `data.seq` to `seq` (server-side apply).
async fn change(api: &Api<ConfigMap>, seq: usize) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "load"},
        "data": {"seq": seq.to_string()},
    });
    api.patch(
        "load",
        &PatchParams::apply("manifold-load").force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Waits until every site holds ConfigMap `load` with `data.seq == seq`.
async fn wait_everywhere(fleet: &Fleet, seq: usize, limit: Duration) -> Result<()> {
    let want = seq.to_string();
    let deadline = Instant::now() + limit;
    let mut pending: Vec<&String> = fleet.backends.keys().collect();
    loop {
        pending.retain(|site| {
            let backend = &fleet.backends[*site];
            let key = backend
                .object_keys()
                .into_iter()
                .find(|k| k.kind == "ConfigMap" && k.name == "load");
            let seen = key
                .and_then(|k| backend.object(&k))
                .is_some_and(|o| o["data"]["seq"].as_str() == Some(want.as_str()));
            !seen
        });
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} sites never applied change {seq} (e.g. {:?})",
                pending.len(),
                pending.first()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The baseline: a tonic server whose grpc.health.v1 `Watch` streams each
/// status change to N watchers, each on its own TLS connection.
async fn tonic_fan_out(n: usize, changes: usize, dir: &Path) -> Result<(f64, f64, f64)> {
    let ca = manifold_pki::Ca::load_or_create(dir)?;
    let server_identity = manifold_pki::load_or_create_server_identity(
        dir,
        &ca,
        &["localhost".into()],
        &[std::net::Ipv4Addr::LOCALHOST.into()],
    )?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("load", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(
                &server_identity.cert_pem,
                &server_identity.key_pem,
            )))?
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move { server_stop.cancelled().await },
            ),
    );
    let seen = Arc::new(tokio::sync::Notify::new());
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut watchers = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = Endpoint::from_shared(format!("https://{addr}"))?
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca.cert_pem()))
                    .domain_name("localhost"),
            )?
            .connect()
            .await?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let mut stream = client
            .watch(tonic_health::pb::HealthCheckRequest {
                service: "load".into(),
            })
            .await?
            .into_inner();
        stream.message().await?; // the current status
        let (seen, count) = (seen.clone(), count.clone());
        watchers.push(tokio::spawn(async move {
            while let Ok(Some(_)) = stream.message().await {
                if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n {
                    seen.notify_one();
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(changes);
    for i in 0..changes {
        count.store(0, std::sync::atomic::Ordering::SeqCst);
        let status = if i % 2 == 0 {
            tonic_health::ServingStatus::NotServing
        } else {
            tonic_health::ServingStatus::Serving
        };
        let t = Instant::now();
        reporter.set_service_status("load", status).await;
        tokio::time::timeout(Duration::from_secs(60), seen.notified())
            .await
            .context("baseline watchers did not all see the change")?;
        latencies.push(t.elapsed());
    }
    stop.cancel();
    for w in watchers {
        w.abort();
    }
    let _ = server.await;
    Ok(summary(latencies))
}
