//! `manifold-site-agent`: parses flags, sets up logging, runs the agent until SIGINT
//! or SIGTERM.

use anyhow::Context;
use clap::Parser;
use manifold_site_agent::cli::{self, Cli};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    let _telemetry =
        manifold_telemetry::init("manifold-site-agent", args.log_format(), &args.log_filter)
            .context("setting up logging")?;
    manifold_pki::install_default_crypto_provider();
    let shutdown = CancellationToken::new();
    let signal = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            cli::shutdown_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        })
    };
    let result = cli::run(args, shutdown).await;
    signal.abort();
    result.context("site agent failed")
}
