//! Load tool: measures the control plane against a same-machine baseline.
//!
//! `manifold-bench tenancy [--clients 50] [--seconds 10]` starts the
//! all-in-one server on a fresh database (DATABASE_URL names the server) and
//! reports p50/p99 latency and throughput of Authorize (warm cache and cold:
//! cache disabled) and GetTenant, then runs pgbench's select-only workload on
//! the same Postgres server with the same client count as the baseline.
//!
//! `manifold-bench watch-status [--clients 100] [--deployments 100]
//! [--seconds 20]` runs three simulated sites, `--deployments` Deployments
//! and `--clients` concurrent `watch` streams of them through the vK8s
//! Kubernetes API, and reports the Postgres transactions per second of the
//! control plane's database idle, with the watches polling status (the
//! baseline: `vk8s.status_push=false`, the behaviour before the push) and
//! with status pushed, plus how long one scale-up takes to reach every
//! watch.

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use manifold_integration_tests::{TestApp, authed, fresh_database, percentile_ms};
use manifold_proto::tenancy::v1::*;
use tonic::transport::Channel;

#[path = "manifold-bench/watch_status.rs"]
mod watch_status;

struct Args {
    clients: usize,
    seconds: u64,
    deployments: usize,
}

fn parse_args() -> Result<(String, Args)> {
    let mut it = std::env::args().skip(1);
    let what = it.next().unwrap_or_else(|| "tenancy".into());
    let mut args = Args {
        clients: 50,
        seconds: 10,
        deployments: 100,
    };
    while let Some(a) = it.next() {
        let v = it.next().context("flag needs a value")?;
        match a.as_str() {
            "--clients" => args.clients = v.parse()?,
            "--seconds" => args.seconds = v.parse()?,
            "--deployments" => args.deployments = v.parse()?,
            other => {
                bail!("unknown flag {other}; known: --clients N --seconds S --deployments N")
            }
        }
    }
    Ok((what, args))
}

#[tokio::main]
async fn main() -> Result<()> {
    let (what, args) = parse_args()?;
    match what.as_str() {
        "tenancy" => tenancy(&args).await,
        "watch-status" => watch_status::run(args.clients, args.deployments, args.seconds).await,
        other => bail!("unknown benchmark {other}; known: tenancy, watch-status"),
    }
}

/// Latencies of one scenario.
struct Sample {
    name: String,
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Sample {
    fn report(&mut self) -> String {
        self.latencies.sort();
        let pct = |p: f64| percentile_ms(&self.latencies, p);
        format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            self.name,
            self.latencies.len(),
            self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            self.errors
        )
    }
}

/// Runs `call` from `clients` concurrent tasks for `seconds`.
async fn drive<F, Fut>(name: &str, clients: usize, seconds: u64, call: F) -> Sample
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                if call(c * 1_000_000 + i).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut sample = Sample {
        name: name.into(),
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (lat, errors) = t.await.expect("client task");
        sample.latencies.extend(lat);
        sample.errors += errors;
    }
    sample.elapsed = started.elapsed();
    sample
}

async fn tenancy(args: &Args) -> Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token.clone();
    let channel = app.channel().await?;
    let mut tenants = tenant_service_client::TenantServiceClient::new(channel.clone());
    tenants
        .create_tenant(authed(
            &admin,
            CreateTenantRequest {
                tenant_id: "bench".into(),
                tenant: None,
            },
        ))
        .await?;
    let token = Arc::new(admin.clone());

    let mut rows = Vec::new();
    rows.push(
        authorize_run("Authorize, warm cache", &channel, token.clone(), args)
            .await
            .report(),
    );
    rows.push(get_tenant_run(&channel, token.clone(), args).await.report());
    drop(app);

    // Cold: the same server with the authentication cache disabled, so every
    // call resolves the token in Postgres.
    let cold = TestApp::spawn_with(&[("auth.cache_ttl_secs", "0".into())]).await?;
    let cold_channel = cold.channel().await?;
    let cold_token = Arc::new(cold.admin_token.clone());
    rows.push(
        authorize_run(
            "Authorize, cold (no cache)",
            &cold_channel,
            cold_token,
            args,
        )
        .await
        .report(),
    );
    drop(cold);

    let pgbench = pgbench(args)?;
    println!("| scenario | requests | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("{pgbench}");
    Ok(())
}

async fn authorize_run(name: &str, channel: &Channel, token: Arc<String>, args: &Args) -> Sample {
    let client = authorization_service_client::AuthorizationServiceClient::new(channel.clone());
    drive(name, args.clients, args.seconds, move |_| {
        let mut client = client.clone();
        let token = token.clone();
        async move {
            client
                .authorize(tonic::Request::new(AuthorizeRequest {
                    token: token.as_str().to_owned(),
                    permission: Permission::Read as i32,
                    resource: "tenants/bench".into(),
                }))
                .await
                .is_ok()
        }
    })
    .await
}

async fn get_tenant_run(channel: &Channel, token: Arc<String>, args: &Args) -> Sample {
    let client = tenant_service_client::TenantServiceClient::new(channel.clone());
    drive("GetTenant", args.clients, args.seconds, move |_| {
        let mut client = client.clone();
        let token = token.clone();
        async move {
            client
                .get_tenant(authed(
                    &token,
                    GetTenantRequest {
                        name: "tenants/bench".into(),
                    },
                ))
                .await
                .is_ok()
        }
    })
    .await
}

/// pgbench select-only on a fresh database of the same server, same client count.
fn pgbench(args: &Args) -> Result<String> {
    let url = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(fresh_database())
    })?;
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin/pgbench"))
                .find(|p| p.exists())
        })
        .context("pgbench not found under /usr/lib/postgresql/*/bin")?;
    let init = Command::new(&bin)
        .args(["-i", "-q", "-s", "1", &url])
        .output()?;
    if !init.status.success() {
        bail!("pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    }
    let run = Command::new(&bin)
        .args([
            "-S",
            "-n",
            "-c",
            &args.clients.to_string(),
            "-j",
            "2",
            "-T",
            &args.seconds.to_string(),
            "-r",
            &url,
        ])
        .output()?;
    let out = String::from_utf8_lossy(&run.stdout);
    let tps = out
        .lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or("tps = ?")
        .to_owned();
    let lat = out
        .lines()
        .find(|l| l.contains("latency average"))
        .unwrap_or("latency average = ?")
        .to_owned();
    Ok(format!(
        "| pgbench -S (baseline, same server, {} clients) | — | {} | avg {} | — | — |",
        args.clients,
        tps.split_whitespace().nth(2).unwrap_or("?"),
        lat.split('=').nth(1).map(str::trim).unwrap_or("?"),
    ))
}
