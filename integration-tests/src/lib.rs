//! The test harness: a fresh database per test, the all-in-one control plane
//! on 127.0.0.1 port-0 listeners with TLS, and the real client binaries
//! (kubectl, grpcurl, terraform) installed by `make test` into `.tools/bin`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Output,
    sync::Once,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub mod agents;
pub mod kube_site;
pub mod process;
pub mod proxy;
pub mod spawner;
pub use process::{Service, binary, free_port, wait_for_port};
pub use proxy::Balancer;

/// The Postgres server the tests use (`make test` starts one and exports it).
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: run the tests through `make test`, or point DATABASE_URL at a Postgres server where the login may create databases")
    })
}

/// Creates a fresh, empty database and returns its URL.
pub async fn fresh_database() -> Result<String> {
    let base = server_url();
    let name = format!("mf_test_{}", uuid::Uuid::new_v4().simple());
    let url = with_database(&base, &name);
    let opts: manifold_db::sqlx::postgres::PgConnectOptions = url.parse()?;
    manifold_db::create_database(&opts).await?;
    Ok(url)
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    // postgres://user@host:port/db — the last path segment after the authority.
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ =
            manifold_telemetry::init("manifold-tests", manifold_config::LogFormat::Text, &filter);
    });
}

/// A running all-in-one control plane on its own database.
pub struct TestApp {
    pub grpc_addr: SocketAddr,
    /// The Kubernetes API (the vK8s gateway).
    pub kube_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub database_url: String,
    pub data_dir: tempfile::TempDir,
    pub admin_token: String,
    running: Option<manifold::Running>,
}

impl TestApp {
    /// A control plane on a fresh database and data directory.
    pub async fn spawn() -> Result<TestApp> {
        let url = fresh_database().await?;
        let dir = tempfile::tempdir()?;
        Self::start(url, dir).await
    }

    /// A control plane with extra settings (dotted keys, e.g. `auth.cache_ttl_secs`).
    pub async fn spawn_with(overrides: &[(&str, String)]) -> Result<TestApp> {
        let url = fresh_database().await?;
        let dir = tempfile::tempdir()?;
        Self::start_with(url, dir, overrides).await
    }

    /// Starts (or restarts) on an existing database and data directory.
    pub async fn start(database_url: String, data_dir: tempfile::TempDir) -> Result<TestApp> {
        Self::start_with(database_url, data_dir, &[]).await
    }

    async fn start_with(
        database_url: String,
        data_dir: tempfile::TempDir,
        overrides: &[(&str, String)],
    ) -> Result<TestApp> {
        init_tracing();
        let settings = Self::settings(&database_url, data_dir.path(), overrides)?;
        let running = manifold::start(settings)
            .await
            .context("starting manifold")?;
        let admin_token = std::fs::read_to_string(data_dir.path().join("admin.token"))
            .context("reading the bootstrap admin token")?
            .trim()
            .to_owned();
        Ok(TestApp {
            grpc_addr: running.grpc_addr,
            kube_addr: running.kube_addr,
            admin_addr: running.admin_addr,
            database_url,
            data_dir,
            admin_token,
            running: Some(running),
        })
    }

    fn settings(
        url: &str,
        dir: &Path,
        extra: &[(&str, String)],
    ) -> Result<manifold_config::Settings> {
        let env = std::collections::HashMap::new();
        let mut overrides = vec![
            ("database.url", url.to_owned()),
            ("database.max_connections", "10".into()),
            ("data_dir", dir.display().to_string()),
            ("grpc.listen", "127.0.0.1:0".into()),
            ("kube_api.listen", "127.0.0.1:0".into()),
            ("admin.listen", "127.0.0.1:0".into()),
            ("auth.cache_ttl_secs", "1".into()),
        ];
        overrides.extend(extra.iter().cloned());
        Ok(manifold_config::load_from(None, &overrides, &env)?)
    }

    /// Stops the process and starts it again on the same database and data
    /// directory (new ports).
    pub async fn restart(self) -> Result<TestApp> {
        self.restart_with(&[]).await
    }

    /// Like [`TestApp::restart`], with extra settings for the new start
    /// (dotted keys, e.g. `encryption.key_files`).
    pub async fn restart_with(mut self, overrides: &[(&str, String)]) -> Result<TestApp> {
        if let Some(r) = self.running.take() {
            r.stop().await?;
        }
        let url = self.database_url.clone();
        let dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir()?);
        Self::start_with(url, dir, overrides).await
    }

    /// `manifold serve --services <services>` as its own process on
    /// 127.0.0.1:`grpc_port`, sharing this control plane's database and data
    /// directory (its CA and server certificate); `env` adds settings such as
    /// `MANIFOLD__UPSTREAM__*`. Logs go to `log`.
    pub fn start_service(
        &self,
        services: &str,
        grpc_port: u16,
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<Service> {
        let mut all = vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("MANIFOLD__DATABASE__MAX_CONNECTIONS", "10".into()),
            (
                "MANIFOLD__DATA_DIR",
                self.data_dir.path().display().to_string(),
            ),
            ("MANIFOLD__GRPC__LISTEN", format!("127.0.0.1:{grpc_port}")),
            ("MANIFOLD__ADMIN__LISTEN", "127.0.0.1:0".into()),
            ("MANIFOLD__AUTH__CACHE_TTL_SECS", "1".into()),
            ("RUST_LOG", "warn".into()),
        ];
        all.extend(env.iter().cloned());
        Service::start(
            &binary("manifold")?,
            &["serve", "--services", services],
            &all,
            log,
        )
    }

    /// This control plane's gRPC URL, for other processes' `upstream.*`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_addr.port())
    }

    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.path().join("ca.crt")
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_file()).expect("CA bundle")
    }

    /// A TLS channel to the gRPC listener, trusting only the control-plane CA.
    pub async fn channel(&self) -> Result<Channel> {
        self.channel_to(self.grpc_addr).await
    }

    /// A TLS channel to any process sharing this control plane's CA (a
    /// [`TestApp::start_service`] process, say).
    pub async fn channel_to(&self, addr: SocketAddr) -> Result<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca_pem()))
            .domain_name("localhost");
        Ok(Endpoint::from_shared(format!("https://{addr}"))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?)
    }

    /// Runs the real grpcurl against the gRPC listener, with `token` as bearer.
    /// Async, so the in-process server keeps running while it waits.
    pub async fn grpcurl(&self, token: Option<&str>, args: &[&str]) -> Result<Output> {
        let mut cmd = tokio::process::Command::new(tool("grpcurl")?);
        cmd.arg("-cacert").arg(self.ca_file());
        if let Some(t) = token {
            cmd.arg("-H").arg(format!("authorization: Bearer {t}"));
        }
        cmd.args(["-max-time", "20"]);
        let addr = self.grpc_addr.to_string();
        // grpcurl wants the address before the method; args hold options first.
        let (opts, rest): (Vec<&str>, Vec<&str>) = split_grpcurl_args(args);
        cmd.args(&opts).arg(&addr).args(&rest).kill_on_drop(true);
        Ok(tokio::time::timeout(Duration::from_secs(30), cmd.output()).await??)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown_token().cancel();
        }
    }
}

/// Splits grpcurl arguments into options (`-x`, `-d value`) and the rest
/// (`list`, method names).
fn split_grpcurl_args<'a>(args: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut opts = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a.starts_with('-') {
            opts.push(a);
            if matches!(a, "-d" | "-H" | "-format" | "-rpc-header" | "-max-time")
                && i + 1 < args.len()
            {
                opts.push(args[i + 1]);
                i += 1;
            }
        } else {
            rest.push(a);
        }
        i += 1;
    }
    (opts, rest)
}

/// The `p` quantile (0..=1, nearest rank) of `sorted` latencies, in
/// milliseconds; the load tools report with it.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Path of a project-installed client binary (`.tools/bin/NAME`).
pub fn tool(name: &str) -> Result<PathBuf> {
    let dir = std::env::var("MANIFOLD_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin"));
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: run `make tools` (or `make test`, which runs it)",
            path.display()
        );
    }
    Ok(path)
}

/// Adds `authorization: Bearer` to a request.
pub fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("token is ASCII"),
    );
    r
}
