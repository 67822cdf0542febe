//! `manifold-sites`: real Kubernetes clusters on 127.0.0.1 as Manifold sites.
//!
//! ```text
//! manifold-sites [--dir .manifold/sites] [--nodes 2] [--labels env=edge]
//!                [--control-plane https://127.0.0.1:7443 --ca-file .manifold/ca.crt
//!                 --token-file .manifold/admin.token] NAME...
//! ```
//!
//! Starts one cluster per NAME (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok with `--nodes` Ready nodes, from the project-built
//! `kube-site` binary) with its state in `<dir>/<NAME>` (kept across runs), and
//! prints each cluster's kubeconfig. With `--control-plane`, it also creates each
//! site in the registry (provider-owned, with `--labels`) and runs one
//! `manifold-site-agent --backend kube` process per cluster, registering it with a
//! one-time token on first start (identity kept in `<dir>/<NAME>/agent`).
//! Stays in the foreground; Ctrl-C or SIGTERM stops the agents, then the
//! clusters. `<dir>/ready` is written once everything runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use manifold_integration_tests::agents::{self, ControlPlane};
use manifold_integration_tests::kube_site::{ClusterOptions, RealCluster};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

struct Args {
    dir: PathBuf,
    nodes: usize,
    labels: HashMap<String, String>,
    control_plane: Option<String>,
    ca_file: PathBuf,
    token_file: PathBuf,
    names: Vec<String>,
}

const USAGE: &str = "usage: manifold-sites [--dir DIR] [--nodes N] [--labels k=v,...] \
    [--control-plane URL --ca-file FILE --token-file FILE] NAME...";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        dir: PathBuf::from(".manifold/sites"),
        nodes: 2,
        labels: HashMap::from([("env".to_owned(), "edge".to_owned())]),
        control_plane: None,
        ca_file: PathBuf::from(".manifold/ca.crt"),
        token_file: PathBuf::from(".manifold/admin.token"),
        names: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--dir" => args.dir = value("--dir")?.into(),
            "--nodes" => {
                args.nodes = value("--nodes")?
                    .parse()
                    .context("--nodes: a count of nodes per cluster")?
            }
            "--labels" => {
                args.labels = value("--labels")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .with_context(|| format!("--labels: {kv:?} is not key=value"))
                    })
                    .collect::<Result<_>>()?
            }
            "--control-plane" => args.control_plane = Some(value("--control-plane")?),
            "--ca-file" => args.ca_file = value("--ca-file")?.into(),
            "--token-file" => args.token_file = value("--token-file")?.into(),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            flag if flag.starts_with('-') => bail!("unknown flag {flag}\n{USAGE}"),
            name => {
                manifold_pki::validate_site_name(name)
                    .map_err(|e| anyhow::anyhow!("site name {name:?}: {e}"))?;
                args.names.push(name.to_owned());
            }
        }
    }
    if args.names.is_empty() {
        bail!("name at least one cluster\n{USAGE}");
    }
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    manifold_pki::install_default_crypto_provider();
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let _ = std::fs::remove_file(dir.join("ready"));
    let options = ClusterOptions {
        nodes: args.nodes,
        durable: true,
        ..Default::default()
    };
    eprintln!(
        "manifold-sites: starting {} real cluster(s) in {}",
        args.names.len(),
        dir.display()
    );
    let started = tokio::select! {
        r = futures::future::join_all(
            args.names.iter().map(|n| {
                let (dir, options) = (dir.join(n), options.clone());
                async move { RealCluster::start_in(n, &dir, options).await }
            }),
        ) => r,
        _ = manifold_server::shutdown_signal() => {
            eprintln!("manifold-sites: interrupted while starting; stopping");
            return Ok(());
        }
    };
    let mut clusters = Vec::new();
    for c in started {
        clusters.push(c?);
    }

    let mut agents = Vec::new();
    if let Some(endpoint) = &args.control_plane {
        let ca_pem = std::fs::read_to_string(&args.ca_file)
            .with_context(|| format!("--ca-file {}", args.ca_file.display()))?;
        let admin_token = std::fs::read_to_string(&args.token_file)
            .with_context(|| format!("--token-file {}", args.token_file.display()))?
            .trim()
            .to_owned();
        let channel = Endpoint::from_shared(endpoint.clone())?
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&ca_pem))
                    .domain_name("localhost"),
            )?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("connecting to the control plane at {endpoint}"))?;
        let cp = ControlPlane {
            endpoint: endpoint.clone(),
            ca_file: std::fs::canonicalize(&args.ca_file)?,
            admin_token: admin_token.clone(),
        };
        for c in &clusters {
            agents::ensure_site(&channel, &admin_token, c.name(), &args.labels).await?;
            let agent = agents::start_kube_agent(
                &channel,
                &cp,
                c.name(),
                &c.kubeconfig(),
                &c.dir().join("agent"),
                &[],
                &c.dir().join("logs/agent.log"),
            )
            .await?;
            agents.push((c.name().to_owned(), agent));
        }
    }

    let mut summary = String::new();
    for c in &clusters {
        summary.push_str(&format!(
            "  {name:<10} {server}  nodes {nodes}\n             kubeconfig {kc}\n",
            name = c.name(),
            server = c.server(),
            nodes = c.node_names().join(", "),
            kc = c.kubeconfig().display(),
        ));
    }
    let agent_note = if agents.is_empty() {
        String::new()
    } else {
        format!(
            "One manifold-site-agent (--backend kube) per cluster; logs in {}/<site>/logs/agent.log.\n",
            dir.display()
        )
    };
    println!(
        "\nReal clusters (Kubernetes {}) are up:\n{summary}{agent_note}\
         Look at what landed on a site, e.g.:\n  kubectl --kubeconfig {} get deploy,pods -A -o wide\n",
        manifold_integration_tests::kube_site::KUBERNETES_VERSION,
        clusters[0].kubeconfig().display()
    );
    std::fs::write(dir.join("ready"), &summary)?;

    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut reported = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = manifold_server::shutdown_signal() => break,
            _ = tick.tick() => {
                for c in &clusters {
                    if !c.running() && reported.insert(c.name().to_owned()) {
                        eprintln!("manifold-sites: a process of cluster {} exited:\n{}", c.name(), c.log_tails(10));
                    }
                }
                for (name, agent) in &mut agents {
                    if agent.exited() && reported.insert(format!("agent {name}")) {
                        eprintln!("manifold-sites: the agent of {name} exited:\n{}", agent.log());
                    }
                }
            }
        }
    }
    eprintln!("manifold-sites: stopping agents and clusters");
    let _ = std::fs::remove_file(dir.join("ready"));
    for (_, agent) in agents {
        agent.terminate(Duration::from_secs(10)).await;
    }
    drop(clusters);
    Ok(())
}
