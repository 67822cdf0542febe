//! A development server: tenancy plus the vK8s gateway on one TLS gRPC
//! listener and the Kubernetes API on another, on the database named by
//! `DATABASE_URL`.
//!
//! ```text
//! DATABASE_URL=postgres://app@127.0.0.1:55470/gwdev \
//!   cargo run -p manifold-vk8s-gateway --example dev_server -- /tmp/gwdev [GRPC_PORT KUBE_PORT]
//! ```
//!
//! The directory receives `ca.crt`, `admin.token`, `encryption.key` and
//! `endpoints.env`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use manifold_db::{ConnectOptions, Db, DbMetrics};
use manifold_server::{GrpcServer, TlsMaterial};
use manifold_vk8s_gateway::encryption::{Encryption, KeyFiles};
use manifold_vk8s_gateway::{Gateway, GatewayConfig};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,tower_http=debug".into()),
        )
        .init();
    manifold_pki::install_default_crypto_provider();
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: dev_server DIR [GRPC_PORT KUBE_PORT]")?,
    );
    let grpc_port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(0);
    let kube_port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(0);
    std::fs::create_dir_all(&dir)?;

    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let pool = manifold_db::connect(&ConnectOptions {
        url,
        max_connections: 20,
        wait: Duration::from_secs(10),
    })
    .await?;
    let db = Db::new(pool, DbMetrics::new());

    let tenancy = manifold_tenancy::Tenancy::new(db.clone(), Duration::from_secs(2));
    tenancy.bootstrap(&dir.join("admin.token")).await?;

    let ca = manifold_pki::Ca::load_or_create(&dir)?;
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let identity = manifold_pki::load_or_create_server_identity(
        &dir,
        &ca,
        &["localhost".into()],
        &[localhost],
    )?;
    let ca_pem = ca.cert_pem().to_owned();
    let tls = TlsMaterial {
        ca_pem: ca_pem.clone(),
        ca: Some(Arc::new(ca)),
        identity: identity.clone(),
    };

    let grpc = tokio::net::TcpListener::bind(SocketAddr::new(localhost, grpc_port)).await?;
    let kube = tokio::net::TcpListener::bind(SocketAddr::new(localhost, kube_port)).await?;
    let grpc_addr = grpc.local_addr()?;
    let kube_addr = kube.local_addr()?;

    let channel = Endpoint::from_shared(format!("https://{grpc_addr}"))?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca_pem))
                .domain_name("localhost"),
        )?
        .connect_lazy();
    let (keys, _) = KeyFiles::load_or_create(&dir.join("encryption.key"))?;
    let encryption = Arc::new(Encryption::new(Arc::new(keys)));
    let mut config = GatewayConfig::new(format!("https://{kube_addr}"), ca_pem.clone(), encryption);
    if let Ok(keep) = std::env::var("VK8S_RETENTION") {
        config.log_retention_revisions = keep.parse()?;
        config.compaction_interval = Duration::from_secs(1);
    }
    let gateway = Gateway::new(db.clone(), channel, tenancy.authenticator(), config).await?;

    let shutdown = CancellationToken::new();
    let mut server = GrpcServer::new();
    server.mount(
        |r| tenancy.add_to(r),
        manifold_tenancy::SERVICE_NAMES,
        manifold_tenancy::PUBLIC_PATHS,
    );
    server.mount(|r| gateway.add_to(r), Gateway::SERVICE_NAMES, &[]);
    let background = gateway.spawn_background(shutdown.clone());
    let token = shutdown.clone();
    let grpc_serving = server.serve(
        grpc,
        &tls,
        tenancy.authenticator(),
        manifold_telemetry::Metrics::new(),
        async move { token.cancelled().await },
    );
    let server_tls = manifold_pki::server_config(&identity, Some(&ca_pem), &[b"h2", b"http/1.1"])?;
    let token = shutdown.clone();
    let gw = gateway.clone();
    let kube_task = tokio::spawn(async move {
        gw.serve_kube_api(kube, server_tls, async move { token.cancelled().await })
            .await
    });

    std::fs::write(
        dir.join("endpoints.env"),
        format!("GRPC={grpc_addr}\nKUBE=https://{kube_addr}\n"),
    )?;
    println!(
        "gRPC {grpc_addr}  Kubernetes API https://{kube_addr}  dir {}",
        dir.display()
    );

    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    };
    let (served, ()) = tokio::join!(grpc_serving, stop);
    served?;
    let _ = kube_task.await;
    let _ = background.await;
    Ok(())
}
