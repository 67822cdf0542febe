//! The all-in-one control plane: every Manifold service in one process, on one
//! TLS gRPC listener, plus the admin endpoint. The integration tests start it
//! through [`start`] exactly as `manifold serve` does.
#![forbid(unsafe_code)]

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
}

/// Starts every service. Listeners are bound before anything is served, so a
/// port-0 address in `settings` is replaced by the real one in
/// [`Running::settings`].
pub async fn start(mut settings: Settings) -> Result<Running, ServeError> {
    manifold_pki::install_default_crypto_provider();
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));

    let grpc_listener = bind(settings.grpc.listen).await?;
    let admin_listener = bind(settings.admin.listen).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    settings.grpc.listen = grpc_addr;
    settings.admin.listen = admin_addr;

    std::fs::create_dir_all(&settings.data_dir)?;
    let tls = TlsMaterial::load_or_create(&settings)?;
    let db = connect_db(&settings, &metrics).await?;

    let tenancy = Tenancy::new(db.clone(), settings.auth.cache_ttl());
    tenancy
        .bootstrap(&settings.bootstrap_token_file())
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?;

    let mut grpc = GrpcServer::new();
    grpc.mount(
        |routes| tenancy.add_to(routes),
        manifold_tenancy::SERVICE_NAMES,
        manifold_tenancy::PUBLIC_PATHS,
    );

    let shutdown = CancellationToken::new();

    // ---- site registry (manifold.sites.v1) ----
    // Tenancy is reached over gRPC, as from any other process: this server's
    // own listener, trusting the control-plane CA.
    let tenancy_channel = {
        let mut own = grpc_addr;
        if own.ip().is_unspecified() {
            own.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        tonic::transport::Endpoint::from_shared(format!("https://{own}"))?
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
                    .domain_name("localhost"),
            )?
            .connect_lazy()
    };
    let site_registry = manifold_site_registry::SiteRegistry::new(
        db.clone(),
        tenancy_channel.clone(),
        tls.ca.clone(),
        tls.ca_pem.clone(),
        manifold_site_registry::SiteRegistryOptions {
            shutdown: shutdown.clone(),
            auth_cache_ttl: settings.auth.cache_ttl(),
            ..Default::default()
        },
    );
    grpc.mount(
        |routes| site_registry.add_to(routes),
        manifold_site_registry::SERVICE_NAMES,
        manifold_site_registry::PUBLIC_PATHS,
    );
    // ---- end site registry ----

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
        tasks.spawn(async move {
            manifold_telemetry::serve_admin_on(admin_listener, metrics, ready, None, async move {
                token.cancelled().await
            })
            .await
            .map_err(ServeError::from)
        });
    }
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(grpc = %grpc_addr, admin = %admin_addr, "manifold control plane serving");
    Ok(Running {
        grpc_addr,
        admin_addr,
        tls,
        settings,
        shutdown,
        tasks,
    })
}
