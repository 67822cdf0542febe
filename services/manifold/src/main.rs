//! `manifold serve`: the all-in-one control plane.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "manifold",
    version,
    about = "Manifold control plane (all services in one process)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control-plane services (all of them by default) until
    /// SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Apply the database migrations and exit (run once per upgrade, e.g. as
    /// a Helm hook Job, before new replicas start).
    Migrate(MigrateArgs),
    /// Re-encrypt every stored Secret (object table and change log) with the
    /// first key of encryption.key_files, in place, then report which keys
    /// are still in use. Run it after every replica has the new key first;
    /// afterwards the old keys can be removed. Exit status 2: some Secrets
    /// are still under another key or do not decrypt.
    RotateEncryption(RotateArgs),
}

#[derive(clap::Args)]
struct RotateArgs {
    /// TOML settings file (then MANIFOLD__SECTION__KEY variables override it).
    #[arg(long, env = "MANIFOLD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (its encryption.key is used when encryption.key_files
    /// is empty).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Only report which keys the stored Secrets use; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// TOML settings file (then MANIFOLD__SECTION__KEY variables override it).
    #[arg(long, env = "MANIFOLD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML settings file (then MANIFOLD__SECTION__KEY variables override it).
    #[arg(long, env = "MANIFOLD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: CA, server certificate, admin token, kubeconfigs.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC listen address (all services, TLS).
    #[arg(long)]
    grpc_listen: Option<String>,
    /// Run only these services (comma-separated: tenancy, sites, gateway,
    /// replication); reach the others at upstream.<service> (e.g.
    /// MANIFOLD__UPSTREAM__TENANCY=https://tenancy:8443). Default: all.
    #[arg(long, value_name = "LIST")]
    services: Option<String>,
    /// Create (idempotently) the reference scenario: tenant acme, namespace
    /// shop, vK8s demo, and its kubeconfig in the data directory.
    #[arg(long)]
    reference_scenario: bool,
    /// Run simulated sites in-process, each a real agent on its own TLS gRPC
    /// stream: a comma-separated list of names (`pa2-par,ny8-nyc`) or a count
    /// (`100` → site-1 … site-100). Labelled env=edge, two nodes each.
    #[arg(long, value_name = "NAMES|COUNT")]
    simulated_sites: Option<String>,
}

fn simulated_site_names(spec: &str) -> Vec<String> {
    match spec.trim().parse::<usize>() {
        Ok(n) => (1..=n).map(|i| format!("site-{i}")).collect(),
        Err(_) => spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Migrate(args) => migrate(args),
        Command::RotateEncryption(args) => rotate_encryption(args),
    }
}

fn rotate_encryption(args: RotateArgs) -> anyhow::Result<()> {
    let mut overrides = Vec::new();
    if let Some(dir) = &args.data_dir {
        overrides.push(("data_dir", dir.display().to_string()));
    }
    let settings = manifold_config::load_with(args.config.as_deref(), &overrides)
        .context("invalid settings")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let outcome = runtime.block_on(async move {
        let _telemetry = manifold_telemetry::init_from_settings(
            "manifold-rotate-encryption",
            &settings.telemetry,
        )
        .context("initialising telemetry")?;
        manifold::rotate_encryption(&settings, args.dry_run)
            .await
            .context("re-encrypting Secrets")
    })?;
    println!("primary key: {}", outcome.primary);
    if let Some(report) = &outcome.report {
        println!(
            "re-encrypted {} Secrets and {} change-log entries ({} of deleted Secrets had their data removed)",
            report.objects, report.changes, report.scrubbed
        );
        for failure in &report.failures {
            println!("does not decrypt: {failure}");
        }
        if report.failed > report.failures.len() as u64 {
            println!(
                "... and {} more that do not decrypt",
                report.failed - report.failures.len() as u64
            );
        }
    }
    println!("stored Secrets by key:");
    if outcome.usage.is_empty() {
        println!("  none");
    }
    for usage in &outcome.usage {
        println!("  {usage}");
    }
    if outcome.complete() {
        println!(
            "every stored Secret is encrypted with the primary key; the other keys may be removed"
        );
        Ok(())
    } else {
        println!(
            "some stored Secrets are not encrypted with the primary key yet; keep every key they use"
        );
        std::process::exit(2);
    }
}

fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let settings =
        manifold_config::load_with(args.config.as_deref(), &[]).context("invalid settings")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let _telemetry =
            manifold_telemetry::init_from_settings("manifold-migrate", &settings.telemetry)
                .context("initialising telemetry")?;
        manifold::migrate(&settings)
            .await
            .context("migrating the database")?;
        println!("database migrated");
        Ok(())
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut overrides = Vec::new();
    if let Some(dir) = &args.data_dir {
        overrides.push(("data_dir", dir.display().to_string()));
    }
    if let Some(listen) = &args.grpc_listen {
        overrides.push(("grpc.listen", listen.clone()));
    }
    if let Some(services) = &args.services {
        overrides.push(("serve.services", services.clone()));
    }
    let settings = manifold_config::load_with(args.config.as_deref(), &overrides)
        .context("invalid settings")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        // One service name per deployment shape, so traces show which
        // process a span came from (OTEL_SERVICE_NAME overrides it).
        let service_name = if settings.serve.services.len() == manifold_config::SERVICES.len() {
            "manifold".to_owned()
        } else {
            format!("manifold-{}", settings.serve.services.join("-"))
        };
        let _telemetry = manifold_telemetry::init_from_settings(&service_name, &settings.telemetry)
            .context("initialising telemetry")?;
        let options = manifold::StartOptions {
            simulated_sites: args
                .simulated_sites
                .as_deref()
                .map(simulated_site_names)
                .unwrap_or_default(),
        };
        let mut running = manifold::start_with(settings, options)
            .await
            .context("starting manifold")?;
        let kubeconfig = if args.reference_scenario {
            let token = std::fs::read_to_string(running.settings.bootstrap_token_file())
                .context("reading the admin token to create the reference scenario")?;
            Some(
                manifold::demo::ensure(
                    running.channel()?,
                    token.trim(),
                    &running.settings.data_dir,
                )
                .await
                .context("creating the reference scenario")?,
            )
        } else {
            None
        };
        print_next_steps(&running, kubeconfig.as_deref());
        let token = running.shutdown_token();
        tokio::spawn(async move {
            manifold_server::shutdown_signal().await;
            token.cancel();
        });
        running.wait().await.context("serving")?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn print_next_steps(running: &manifold::Running, kubeconfig: Option<&std::path::Path>) {
    let s = &running.settings;
    let ca = s.ca_file();
    let token = s.bootstrap_token_file();
    let addr = running.grpc_addr;
    println!(
        "\nManifold is up.\n\
         \n  gRPC (TLS):   {addr}\n  admin:        http://{admin}/metrics\n  CA bundle:    {ca}\n  admin token:  {token}\n  Secrets key:  {key}\n\
         \nTry it (grpcurl from .tools/bin after `make tools`):\n\
         \n  grpcurl -cacert {ca} -H \"authorization: Bearer $(cat {token})\" {addr} list\
         \n  grpcurl -cacert {ca} -H \"authorization: Bearer $(cat {token})\" \\\n      -d '{{\"tenant_id\":\"acme\",\"tenant\":{{\"display_name\":\"Acme\"}}}}' \\\n      {addr} manifold.tenancy.v1.TenantService/CreateTenant\
         \n  grpcurl -cacert {ca} -H \"authorization: Bearer $(cat {token})\" {addr} manifold.tenancy.v1.TenantService/ListTenants\n\
         {kube}\nPress Ctrl-C to stop.\n",
        kube = kubeconfig
            .map(|k| kubectl_steps(k, running.kube_addr))
            .unwrap_or_default(),
        admin = running.admin_addr,
        ca = ca.display(),
        token = token.display(),
        key = s
            .encryption
            .key_files
            .first()
            .cloned()
            .unwrap_or_else(|| s.default_encryption_key_file())
            .display(),
    );
}

fn kubectl_steps(kubeconfig: &std::path::Path, kube_addr: std::net::SocketAddr) -> String {
    let k = kubeconfig.display();
    format!(
        "\nThe reference scenario is ready: tenant acme, namespace shop, vK8s demo\n\
         (Kubernetes API on https://{kube_addr}). With kubectl from .tools/bin:\n\
         \n  export KUBECONFIG={k}\
         \n  kubectl version\
         \n  kubectl create deployment productpage --image=nginx:1.27 --replicas=2\
         \n  kubectl get deploy productpage\
         \n  kubectl get pods -o wide\
         \n  kubectl get deploy productpage -o yaml\
         \n  kubectl delete deployment productpage\n"
    )
}
