//! What every Manifold process does to serve: connect to Postgres, load or
//! create its TLS identity, and run a gRPC server that has reflection (v1 and
//! v1alpha), the standard health service, per-call authentication and
//! metrics, with graceful shutdown.
#![forbid(unsafe_code)]

pub mod audit;

pub use manifold_auth::limits::MAX_CONCURRENT_STREAMS_PER_CONNECTION;

use std::{
    collections::HashSet,
    future::Future,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

use manifold_auth::{AuthLayer, Authenticator, StreamLimiter};
use manifold_config::{ExposeSecret, Settings};
use manifold_db::{ConnectOptions, Db, DbMetrics};
use manifold_pki::{Ca, CertifiedKeyPem};
use manifold_telemetry::{AuditSink, GrpcMetricsLayer, Metrics};
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("database: {0}")]
    Db(#[from] manifold_db::DbError),
    #[error("TLS: {0}")]
    Pki(#[from] manifold_pki::PkiError),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The certificates a process serves with.
#[derive(Clone)]
pub struct TlsMaterial {
    /// PEM of the CA clients trust (also the CA agent certificates chain to).
    pub ca_pem: String,
    /// Present when this process holds the CA key (it issues certificates).
    pub ca: Option<Arc<Ca>>,
    pub identity: CertifiedKeyPem,
}

impl TlsMaterial {
    /// Uses `tls.cert_file`/`tls.key_file` when configured; otherwise creates
    /// (first start) or loads the CA under the data directory and a server
    /// certificate for `tls.server_names`.
    pub fn load_or_create(settings: &Settings) -> Result<Self, ServeError> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| ServeError::Read {
                path: path.clone(),
                source,
            })
        };
        if let (Some(cert), Some(key)) = (&settings.tls.cert_file, &settings.tls.key_file) {
            let ca_file = settings.ca_file();
            let ca_pem = read(&ca_file)?;
            // With the CA key beside the bundle this process can sign too.
            let ca_key = ca_file.with_extension("key");
            let ca = match std::fs::read_to_string(&ca_key) {
                Ok(key) => Some(Arc::new(Ca::from_pem(&ca_pem, &key)?)),
                Err(_) => None,
            };
            return Ok(Self {
                ca_pem,
                ca,
                identity: CertifiedKeyPem {
                    cert_pem: read(cert)?,
                    key_pem: read(key)?,
                },
            });
        }
        let ca = Ca::load_or_create(&settings.data_dir)?;
        let (ips, dns): (Vec<_>, Vec<_>) = settings
            .tls
            .server_names
            .iter()
            .partition(|n| n.parse::<IpAddr>().is_ok());
        let ips: Vec<IpAddr> = ips.iter().filter_map(|n| n.parse().ok()).collect();
        let dns: Vec<String> = dns.into_iter().cloned().collect();
        let identity =
            manifold_pki::load_or_create_server_identity(&settings.data_dir, &ca, &dns, &ips)?;
        Ok(Self {
            ca_pem: ca.cert_pem().to_owned(),
            ca: Some(Arc::new(ca)),
            identity,
        })
    }
}

/// Connects to the configured database (waiting for it, creating it and
/// migrating it) and returns the service's storage handle.
pub async fn connect_db(settings: &Settings, metrics: &Metrics) -> Result<Db, ServeError> {
    let pool = manifold_db::connect(&ConnectOptions {
        url: settings.database.url.expose_secret().to_owned(),
        max_connections: settings.database.max_connections,
        wait: settings.database.connect_timeout(),
    })
    .await?;
    let db_metrics = DbMetrics::new();
    db_metrics.register(&mut metrics.registry());
    register_pool_metrics(metrics, &pool, settings.database.max_connections);
    Ok(Db::new(pool, db_metrics))
}

/// `manifold_db_pool_connections{state="idle"|"in_use"}` and
/// `manifold_db_pool_max_connections`, read from the pool at each scrape.
fn register_pool_metrics(metrics: &Metrics, pool: &manifold_db::sqlx::PgPool, max: u32) {
    use prometheus_client::metrics::{family::Family, gauge::Gauge};
    let connections = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
    metrics.register(
        "manifold_db_pool_connections",
        "Connections of the database pool by state (idle, in_use)",
        connections.clone(),
    );
    metrics
        .register_gauge(
            "manifold_db_pool_max_connections",
            "Most connections the database pool opens",
        )
        .set(i64::from(max));
    let pool = pool.clone();
    metrics.on_scrape(move || {
        let size = i64::from(pool.size());
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        connections
            .get_or_create(&vec![("state", "idle")])
            .set(idle);
        connections
            .get_or_create(&vec![("state", "in_use")])
            .set((size - idle).max(0));
    });
}

/// Binds a TCP listener, naming the address on failure.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// A gRPC server under construction.
pub struct GrpcServer {
    routes: tonic::service::RoutesBuilder,
    services: Vec<&'static str>,
    public_paths: Vec<String>,
    audit: AuditSink,
    stream_recheck: std::time::Duration,
}

impl Default for GrpcServer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServer {
    pub fn new() -> Self {
        Self {
            routes: tonic::service::RoutesBuilder::default(),
            services: Vec::new(),
            // Probes have no token.
            public_paths: vec!["/grpc.health.v1.Health/".to_owned()],
            audit: AuditSink::disabled(),
            stream_recheck: manifold_auth::DEFAULT_STREAM_RECHECK,
        }
    }

    /// How often streaming responses re-check the caller's token
    /// (`auth.stream_recheck_secs`); a revoked or expired token's streams
    /// end with UNAUTHENTICATED within it.
    pub fn stream_recheck(&mut self, interval: std::time::Duration) -> &mut Self {
        self.stream_recheck = interval;
        self
    }

    /// Records every mutating call in `sink` (see [`audit`]); without it
    /// nothing is recorded.
    pub fn audit(&mut self, sink: AuditSink) -> &mut Self {
        self.audit = sink;
        self
    }

    /// Mounts services: `add` registers them on the routes; `names` are their
    /// fully qualified names (reported SERVING by the health service);
    /// `public_paths` are method paths served without a caller token.
    pub fn mount(
        &mut self,
        add: impl FnOnce(&mut tonic::service::RoutesBuilder),
        names: &[&'static str],
        public_paths: &[&str],
    ) -> &mut Self {
        add(&mut self.routes);
        self.services.extend_from_slice(names);
        self.public_paths
            .extend(public_paths.iter().map(|p| (*p).to_owned()));
        self
    }

    /// Serves on `listener` over TLS until `shutdown` resolves, then drains.
    /// Client certificates signed by the CA are accepted (agents) but optional.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        tls: &TlsMaterial,
        authenticator: Arc<dyn Authenticator>,
        metrics: Metrics,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        for name in &self.services {
            health
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(manifold_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc error details, so grpcurl can print them.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let v1 = reflection()
            .build_v1()
            .map_err(|e| ServeError::Reflection(e.to_string()))?;
        let v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| ServeError::Reflection(e.to_string()))?;
        self.routes
            .add_service(health_service)
            .add_service(v1)
            .add_service(v1alpha);
        let routes = self.routes.routes();

        let tls_config = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                &tls.identity.cert_pem,
                &tls.identity.key_pem,
            ))
            .client_ca_root(Certificate::from_pem(&tls.ca_pem))
            .client_auth_optional(true);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let audit_plans = Arc::new(audit::AuditPlans::from_descriptors());
        let (known, streaming) = method_paths();
        Server::builder()
            .tls_config(tls_config)?
            .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS_PER_CONNECTION))
            .layer(GrpcMetricsLayer::new(metrics).with_known_methods(Arc::new(known)))
            // Outside authentication, so refused calls are recorded too.
            .layer(audit::AuditLayer::new(self.audit, audit_plans.clone()))
            .layer(
                AuthLayer::new(authenticator, self.public_paths)
                    .with_stream_recheck(self.stream_recheck)
                    .with_stream_limit(StreamLimiter::default(), Arc::new(streaming)),
            )
            .layer(audit::AuditCaptureLayer::new(audit_plans))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                shutdown.await;
                let _ = health; // keep the reporter alive while serving
            })
            .await?;
        Ok(())
    }
}

/// Method paths (`/pkg.Service/Method`) a [`GrpcServer`] may serve: every
/// method of `manifold_proto`, the health service and reflection; and the
/// server-streaming ones among them (whose calls count against the caller's
/// stream limit). Anything else is answered UNIMPLEMENTED (or refused before
/// routing) and is counted in metrics as one `unknown` method.
pub fn method_paths() -> (HashSet<String>, HashSet<String>) {
    use prost::Message;
    let mut all = HashSet::new();
    let mut streaming = HashSet::new();
    for encoded in [
        manifold_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    if method.server_streaming() {
                        streaming.insert(path.clone());
                    }
                    all.insert(path);
                }
            }
        }
    }
    for reflection in ["grpc.reflection.v1", "grpc.reflection.v1alpha"] {
        all.insert(format!(
            "/{reflection}.ServerReflection/ServerReflectionInfo"
        ));
    }
    (all, streaming)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
