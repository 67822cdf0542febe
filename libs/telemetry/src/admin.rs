//! The admin HTTP endpoint: `/metrics`, `/healthz`, `/readyz`. Plain HTTP only on
//! loopback; anywhere else it requires TLS.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        state.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// The admin routes, for embedding in another server.
pub fn admin_router(metrics: Metrics, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AdminState { metrics, ready })
}

/// Binds `listen` and serves the admin endpoint until `shutdown` resolves. Serves HTTPS
/// with `tls`; without it, refuses any address but loopback.
pub async fn serve_admin(
    listen: SocketAddr,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    check_plain_allowed(listen, tls.is_some())?;
    let listener = TcpListener::bind(listen).await?;
    serve_admin_on(listener, metrics, ready, tls, shutdown).await
}

/// [`serve_admin`] on an already bound listener (tests bind port 0 and read the address).
pub async fn serve_admin_on(
    listener: TcpListener,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    check_plain_allowed(listener.local_addr()?, tls.is_some())?;
    let router = admin_router(metrics, ready);
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => serve_tls(listener, router, TlsAcceptor::from(config), shutdown).await,
    }
}

fn check_plain_allowed(addr: SocketAddr, tls: bool) -> io::Result<()> {
    if tls || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("admin endpoint on non-loopback address {addr} requires TLS"),
        ))
    }
}

async fn serve_tls(
    listener: TcpListener,
    router: Router,
    acceptor: TlsAcceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // As on the gRPC and Kubernetes listeners
    // (manifold_auth::limits::MAX_CONCURRENT_STREAMS_PER_CONNECTION; this
    // crate sits below it).
    builder.http2().max_concurrent_streams(250);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Transient (e.g. EMFILE): keep serving.
                    tracing::warn!(%error, "admin endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        // The handshake runs in the connection's task so a slow client blocks no one.
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%peer, %error, "admin endpoint: TLS handshake failed");
                    return;
                }
            };
            let connection = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "admin endpoint: connection error");
            }
        });
    }
    // Let in-flight requests finish, briefly.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}
