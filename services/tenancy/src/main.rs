//! `manifold-tenancy`: the tenancy service on its own (one Deployment in a
//! production install), on the same settings as the all-in-one binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use manifold_server::{GrpcServer, TlsMaterial, bind, connect_db, shutdown_signal};
use manifold_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "manifold-tenancy", version, about = "Manifold tenancy service")]
struct Args {
    /// TOML settings file (then MANIFOLD__SECTION__KEY variables override it).
    #[arg(long, env = "MANIFOLD_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = manifold_config::load(args.config.as_deref()).context("invalid settings")?;
    let _telemetry =
        manifold_telemetry::init_from_settings("manifold-tenancy", &settings.telemetry)?;
    manifold_pki::install_default_crypto_provider();
    let metrics = Metrics::new();
    let listener = bind(settings.grpc.listen).await?;
    let admin = bind(settings.admin.listen).await?;
    let tls = TlsMaterial::load_or_create(&settings)?;
    let db = connect_db(&settings, &metrics).await?;
    let audit = manifold_audit::Audit::start(db.clone(), &metrics);
    let tenancy = manifold_tenancy::Tenancy::new(db, settings.auth.cache_ttl());
    tenancy
        .bootstrap(&settings.bootstrap_token_file())
        .await
        .context("bootstrapping the operator token")?;
    let mut server = GrpcServer::new();
    server
        .audit(audit.sink())
        .stream_recheck(settings.auth.stream_recheck());
    server.mount(
        |routes| tenancy.add_to(routes),
        manifold_tenancy::SERVICE_NAMES,
        manifold_tenancy::PUBLIC_PATHS,
    );
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let shutdown = CancellationToken::new();
    let admin_task = tokio::spawn(manifold_telemetry::serve_admin_on(
        admin,
        metrics.clone(),
        ready,
        None,
        shutdown.clone().cancelled_owned(),
    ));
    tracing::info!(grpc = %settings.grpc.listen, "manifold-tenancy serving");
    let serve = server.serve(listener, &tls, tenancy.authenticator(), metrics, {
        let s = shutdown.clone();
        async move {
            shutdown_signal().await;
            s.cancel();
        }
    });
    serve.await?;
    shutdown.cancel();
    admin_task.await??;
    Ok(())
}
