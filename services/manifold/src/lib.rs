//! The all-in-one control plane: every Manifold service in one process, on one
//! TLS gRPC listener, plus the admin endpoint. The integration tests start it
//! through [`start`] exactly as `manifold serve` does.
#![forbid(unsafe_code)]

pub mod demo;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
};

use manifold_config::Settings;
use manifold_server::{GrpcServer, ServeError, TlsMaterial, bind, connect_db};
use manifold_telemetry::Metrics;
use manifold_tenancy::Tenancy;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A running control plane.
pub struct Running {
    pub grpc_addr: SocketAddr,
    /// The Kubernetes API of the vK8s gateway (bound only where the gateway
    /// runs; otherwise the configured, unbound address).
    pub kube_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub tls: TlsMaterial,
    pub settings: Settings,
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), ServeError>>,
}

impl Running {
    /// Asks every part to stop and waits until they have drained.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the process is told to stop (or a part fails).
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        let mut first_error = None;
        while let Some(done) = self.tasks.join_next().await {
            let result = done.unwrap_or_else(|e| Err(ServeError::Io(std::io::Error::other(e))));
            if let Err(e) = result {
                tracing::error!(error = %e, "a control-plane part stopped with an error");
                // One part failing takes the whole process down, cleanly.
                self.shutdown.cancel();
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// A TLS channel to this process's own gRPC listener, as any client
    /// would connect: trusting only the control-plane CA.
    pub fn channel(&self) -> Result<tonic::transport::Channel, ServeError> {
        own_channel(self.grpc_addr, &self.tls.ca_pem)
    }
}

/// `addr` with an unspecified IP (0.0.0.0) replaced by loopback, for dialling.
fn loopback(addr: SocketAddr) -> SocketAddr {
    let mut own = addr;
    if own.ip().is_unspecified() {
        own.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    own
}

/// A TLS channel to another control-plane process at `url`, trusting the
/// control-plane CA (the server name is the URL's host).
fn remote_channel(url: &str, ca_pem: &str) -> Result<tonic::transport::Channel, ServeError> {
    tls_channel(url.to_owned(), ca_pem, None)
}

/// A lazily connecting TLS channel to `url` that trusts only `ca_pem`;
/// `domain` overrides the server name checked in the certificate.
fn tls_channel(
    url: String,
    ca_pem: &str,
    domain: Option<&str>,
) -> Result<tonic::transport::Channel, ServeError> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem));
    if let Some(domain) = domain {
        tls = tls.domain_name(domain);
    }
    Ok(tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| ServeError::Io(std::io::Error::other(format!("{url}: {e}"))))?
        .tls_config(tls)?
        .connect_lazy())
}

/// Every service this process runs must reach the ones it depends on:
/// here, or at a configured upstream.
fn check_upstreams(settings: &Settings, options: &StartOptions) -> Result<(), ServeError> {
    const NEEDS: [(&str, &[&str]); 3] = [
        ("sites", &["tenancy"]),
        ("gateway", &["tenancy", "replication", "sites"]),
        ("replication", &["tenancy", "sites", "gateway"]),
    ];
    let serve = &settings.serve;
    for (service, needs) in NEEDS {
        if !serve.runs(service) {
            continue;
        }
        for need in needs {
            if !serve.runs(need) && settings.upstream.url(need).is_none() {
                return Err(ServeError::Io(std::io::Error::other(format!(
                    "{service} needs {need}: set upstream.{need} (MANIFOLD__UPSTREAM__{}) \
                     to its https:// URL, or add {need} to serve.services",
                    need.to_uppercase()
                ))));
            }
        }
    }
    let sites_here = serve.runs("sites") && serve.runs("replication");
    if !options.simulated_sites.is_empty() && !sites_here {
        return Err(ServeError::Io(std::io::Error::other(
            "simulated sites need the sites and replication services in this process \
             (serve.services)",
        )));
    }
    Ok(())
}

fn own_channel(addr: SocketAddr, ca_pem: &str) -> Result<tonic::transport::Channel, ServeError> {
    tls_channel(
        format!("https://{}", loopback(addr)),
        ca_pem,
        Some("localhost"),
    )
}

/// The encryption keys of Secrets at rest: `encryption.key_files`, or
/// `<data_dir>/encryption.key`, created (mode 0600) when `create` and it is
/// missing, as the data-directory CA is.
pub fn encryption(
    settings: &Settings,
    create: bool,
) -> Result<Arc<manifold_vk8s_gateway::encryption::Encryption>, ServeError> {
    use manifold_vk8s_gateway::encryption::{Encryption, KeyFiles};
    let io = |e: manifold_vk8s_gateway::encryption::KeyFileError| {
        ServeError::Io(std::io::Error::other(e.to_string()))
    };
    if !settings.encryption.key_files.is_empty() {
        return Ok(Arc::new(
            Encryption::from_key_files(&settings.encryption.key_files).map_err(io)?,
        ));
    }
    let path = settings.default_encryption_key_file();
    let keys = if create {
        let (keys, created) = KeyFiles::load_or_create(&path).map_err(io)?;
        if created {
            tracing::info!(
                path = %path.display(),
                "created the key that encrypts Secrets at rest (encryption.key_files was empty)"
            );
        }
        keys
    } else {
        KeyFiles::load(std::slice::from_ref(&path))
            .map_err(|mut e| {
                e.setting = "the default encryption key (encryption.key_files is empty)".into();
                e
            })
            .map_err(io)?
    };
    Ok(Arc::new(Encryption::new(Arc::new(keys))))
}

/// Re-encrypts every stored Secret not sealed with the primary key of
/// `encryption.key_files` (`manifold rotate-encryption`), or with
/// `dry_run` only reports which keys they use.
pub async fn rotate_encryption(
    settings: &Settings,
    dry_run: bool,
) -> Result<RotationOutcome, ServeError> {
    let encryption = encryption(settings, false)?;
    let metrics = Metrics::new();
    let db = connect_db(settings, &metrics).await?;
    let fail = |e: manifold_vk8s_gateway::GatewayError| {
        ServeError::Io(std::io::Error::other(e.to_string()))
    };
    if dry_run {
        let usage = manifold_vk8s_gateway::secret_key_usage(&db, &encryption)
            .await
            .map_err(fail)?;
        return Ok(RotationOutcome {
            primary: encryption.primary(),
            report: None,
            usage,
        });
    }
    let report = manifold_vk8s_gateway::reencrypt_secrets(&db, &encryption)
        .await
        .map_err(fail)?;
    Ok(RotationOutcome {
        primary: encryption.primary(),
        usage: report.usage.clone(),
        report: Some(report),
    })
}

/// What `manifold rotate-encryption` found and did.
#[derive(Debug, Clone)]
pub struct RotationOutcome {
    pub primary: manifold_vk8s_gateway::encryption::KeyInfo,
    /// `None` for a dry run.
    pub report: Option<manifold_vk8s_gateway::ReencryptReport>,
    /// Which keys the stored Secrets use now.
    pub usage: Vec<manifold_vk8s_gateway::SecretKeyUsage>,
}

impl RotationOutcome {
    /// Every stored Secret is sealed with the primary key and nothing
    /// failed: the other keys can be removed.
    pub fn complete(&self) -> bool {
        self.usage.iter().all(|u| u.primary) && self.report.as_ref().is_none_or(|r| r.failed == 0)
    }
}

/// Runs the database migrations of every service and returns (the
/// `manifold migrate` step of an upgrade; `start` also migrates).
pub async fn migrate(settings: &Settings) -> Result<(), ServeError> {
    let metrics = Metrics::new();
    connect_db(settings, &metrics).await.map(drop)
}

/// Starts every service. Listeners are bound before anything is served, so a
/// port-0 address in `settings` is replaced by the real one in
/// [`Running::settings`].
pub async fn start(settings: Settings) -> Result<Running, ServeError> {
    start_with(settings, StartOptions::default()).await
}

/// What the all-in-one runs besides the control-plane services.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// In-process simulated sites (labelled `env=edge`, two nodes each), each
    /// a real agent on its own TLS gRPC stream.
    pub simulated_sites: Vec<String>,
}

/// [`start`], plus simulated sites.
///
/// `settings.serve.services` picks the services this process runs (all of
/// them by default); the others are reached at `settings.upstream.*`.
/// Tokens are checked against the shared tenancy tables in every process,
/// so a process without the tenancy service still authenticates its callers.
pub async fn start_with(
    mut settings: Settings,
    options: StartOptions,
) -> Result<Running, ServeError> {
    manifold_pki::install_default_crypto_provider();
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let runs = |service: &str| settings.serve.runs(service);
    check_upstreams(&settings, &options)?;

    let grpc_listener = bind(settings.grpc.listen).await?;
    let kube_listener = if runs("gateway") {
        let listener = bind(settings.kube_api.listen).await?;
        let kube_addr = listener.local_addr()?;
        if settings.kube_api.listen.port() == 0 {
            // An ephemeral port: kubeconfigs must name the one actually bound.
            settings.kube_api.public_url = format!("https://{kube_addr}");
        }
        settings.kube_api.listen = kube_addr;
        Some(listener)
    } else {
        None
    };
    let kube_addr = settings.kube_api.listen;
    let admin_listener = bind(settings.admin.listen).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    settings.grpc.listen = grpc_addr;
    settings.admin.listen = admin_addr;
    let runs = |service: &str| settings.serve.runs(service);

    std::fs::create_dir_all(&settings.data_dir)?;
    let tls = TlsMaterial::load_or_create(&settings)?;
    let db = connect_db(&settings, &metrics).await?;
    // A channel to `service`: its configured upstream, or this process.
    let upstream = |service: &str| match settings.upstream.url(service) {
        Some(url) if !runs(service) => remote_channel(url, &tls.ca_pem),
        _ => own_channel(grpc_addr, &tls.ca_pem),
    };

    let tenancy = Tenancy::new(db.clone(), settings.auth.cache_ttl());
    let mut grpc = GrpcServer::new();
    grpc.stream_recheck(settings.auth.stream_recheck());
    if runs("tenancy") {
        tenancy
            .bootstrap(&settings.bootstrap_token_file())
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?;
        grpc.mount(
            |routes| tenancy.add_to(routes),
            manifold_tenancy::SERVICE_NAMES,
            manifold_tenancy::PUBLIC_PATHS,
        );
    }

    let shutdown = CancellationToken::new();

    // ---- audit log (manifold.audit.v1): every process records its mutating calls ----
    let audit = manifold_audit::Audit::start(db.clone(), &metrics);
    grpc.audit(audit.sink()).mount(
        |routes| audit.add_to(routes),
        manifold_audit::SERVICE_NAMES,
        &[],
    );
    // ---- end audit log ----

    // ---- site registry (manifold.sites.v1) ----
    // Tenancy is reached over gRPC, as from any other process. The registry
    // is also built where only replication runs: it verifies and renews
    // agent certificates there, from the shared tables, without a hop.
    let tenancy_channel = upstream("tenancy")?;
    let site_registry = manifold_site_registry::SiteRegistry::new(
        db.clone(),
        tenancy_channel.clone(),
        tls.ca.clone(),
        tls.ca_pem.clone(),
        manifold_site_registry::SiteRegistryOptions {
            shutdown: shutdown.clone(),
            auth_cache_ttl: settings.auth.cache_ttl(),
            renewal_grace: settings.sites.renewal_grace(),
            ..Default::default()
        },
    );
    if runs("sites") {
        grpc.mount(
            |routes| site_registry.add_to(routes),
            manifold_site_registry::SERVICE_NAMES,
            manifold_site_registry::PUBLIC_PATHS,
        );
    }
    // ---- end site registry ----

    // ---- vK8s gateway (manifold.vk8s.v1 + the Kubernetes API) ----
    let gateway = if runs("gateway") {
        let encryption = encryption(&settings, true)?;
        tracing::info!(primary = %encryption.primary(), keys = encryption.keys().len(), "Secrets are encrypted at rest");
        let gateway = manifold_vk8s_gateway::Gateway::new(
            db.clone(),
            tenancy_channel.clone(),
            tenancy.authenticator(),
            manifold_vk8s_gateway::GatewayConfig {
                log_retention_revisions: settings.vk8s.log_retention_revisions,
                compaction_interval: settings.vk8s.compaction_interval(),
                stream_recheck: settings.auth.stream_recheck(),
                status_push: settings.vk8s.status_push,
                quota: manifold_vk8s_gateway::Quota {
                    max_objects: settings.vk8s.max_objects,
                    max_bytes: settings.vk8s.max_bytes,
                    max_pods_per_site: settings.vk8s.max_pods_per_site,
                    max_watches_per_principal: settings.vk8s.max_watches_per_principal,
                },
                ..manifold_vk8s_gateway::GatewayConfig::new(
                    settings.kube_api.public_url.clone(),
                    tls.ca_pem.clone(),
                    encryption,
                )
            },
        )
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?
        // Observed state (pods, per-site status, logs) from ReplicationService,
        // called with each user's own token.
        .with_replication(upstream("replication")?)
        // Pod Security levels of the placement's sites, from the registry,
        // called with each user's own token.
        .with_sites(upstream("sites")?)
        .with_metrics(metrics.clone())
        .with_audit(audit.sink());
        grpc.mount(
            |routes| gateway.add_to(routes),
            manifold_vk8s_gateway::Gateway::SERVICE_NAMES,
            &[],
        );
        Some(gateway)
    } else {
        None
    };
    // ---- end vK8s gateway ----

    // ---- replication (manifold.replication.v1: agents' streams, observed state) ----
    // Replication calls the gateway's ObjectFeed and the registry with its own
    // system identity, over the public API like any other process.
    let internal_token = tenancy
        .service_token("replication")
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?;
    let replication = if runs("replication") {
        let mut config = manifold_replication::ReplicationConfig::new(internal_token.clone());
        config.site_authority = Some(Arc::new(site_registry.clone()));
        config.heartbeat_timeout = settings.sites.heartbeat_timeout();
        config.certificate_recheck = settings.sites.certificate_recheck();
        config.advertise_url = Some(if settings.serve.advertise_url.trim().is_empty() {
            format!("https://{}", loopback(grpc_addr))
        } else {
            settings.serve.advertise_url.trim().to_owned()
        });
        config.peer_ca_pem = Some(tls.ca_pem.clone());
        let replication = manifold_replication::Replication::with_upstreams(
            db.clone(),
            manifold_replication::UpstreamChannels {
                gateway: upstream("gateway")?,
                sites: upstream("sites")?,
                tenancy: tenancy_channel.clone(),
            },
            config,
        );
        replication.register_metrics(&metrics);
        grpc.mount(
            |routes| replication.add_to(routes),
            manifold_replication::SERVICE_NAMES,
            manifold_replication::PUBLIC_PATHS,
        );
        Some(replication)
    } else {
        None
    };
    // ---- end replication ----

    let mut tasks = JoinSet::new();
    {
        let token = shutdown.clone();
        let tls = tls.clone();
        let authenticator = tenancy.authenticator();
        let metrics = metrics.clone();
        tasks.spawn(async move {
            grpc.serve(grpc_listener, &tls, authenticator, metrics, async move {
                token.cancelled().await
            })
            .await
        });
    }
    {
        let token = shutdown.clone();
        let metrics = metrics.clone();
        let ready = ready.clone();
        // Plain HTTP on loopback (a laptop, `make run`); TLS with the server
        // identity anywhere else (a pod's 0.0.0.0, probed by the kubelet).
        let admin_tls = if admin_addr.ip().is_loopback() {
            None
        } else {
            Some(manifold_pki::server_config(
                &tls.identity,
                None,
                &[b"http/1.1"],
            )?)
        };
        tasks.spawn(async move {
            manifold_telemetry::serve_admin_on(
                admin_listener,
                metrics,
                ready,
                admin_tls,
                async move { token.cancelled().await },
            )
            .await
            .map_err(ServeError::from)
        });
    }
    if let (Some(gateway), Some(kube_listener)) = (gateway, kube_listener) {
        let token = shutdown.clone();
        let kube_tls = manifold_pki::server_config(&tls.identity, None, &[b"h2", b"http/1.1"])?;
        let background = gateway.spawn_background(shutdown.clone());
        tasks.spawn(async move {
            let served = gateway
                .serve_kube_api(
                    kube_listener,
                    kube_tls,
                    async move { token.cancelled().await },
                )
                .await;
            let _ = background.await;
            served.map_err(ServeError::from)
        });
    }
    // Tenant deletion: each service purges its own schema of deleted tenants
    // (the gateway's and replication's cleaners run in their background
    // tasks above and below); every process runs the audit log's.
    {
        let mut cleaners = vec![audit.spawn_tenant_cleaner({
            let token = shutdown.clone();
            async move { token.cancelled().await }
        })];
        if runs("sites") {
            cleaners.push(site_registry.spawn_tenant_cleaner(shutdown.clone()));
        }
        tasks.spawn(async move {
            for cleaner in cleaners {
                let _ = cleaner.await;
            }
            Ok(())
        });
    }
    if let Some(replication) = &replication {
        let background = replication.spawn_background(shutdown.clone());
        tasks.spawn(async move {
            let _ = background.await;
            Ok(())
        });
    }
    if !options.simulated_sites.is_empty() {
        // The agents dial the public listener like remote ones would.
        let base = manifold_site_agent::AgentConfig::new(
            "-",
            format!("https://{}", loopback(grpc_addr)),
            tls.ca_pem.clone(),
        );
        let fleet = manifold_site_agent::start_simulated_sites(
            own_channel(grpc_addr, &tls.ca_pem)?,
            &internal_token,
            &base,
            options
                .simulated_sites
                .iter()
                .map(manifold_site_agent::SimulatedSite::edge)
                .collect(),
            manifold_site_agent::SimulatedOptions::default(),
            shutdown.clone(),
        )
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(format!("simulated sites: {e}"))))?;
        tasks.spawn(async move {
            fleet.wait().await;
            Ok(())
        });
    }
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(grpc = %grpc_addr, kube_api = %kube_addr, admin = %admin_addr, "manifold control plane serving");
    Ok(Running {
        grpc_addr,
        kube_addr,
        admin_addr,
        tls,
        settings,
        shutdown,
        tasks,
    })
}
