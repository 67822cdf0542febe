//! The Kubernetes REST API: one axum route per virtual cluster prefix
//! (`/vk8s/{tenant}/{namespace}/{vk8s}/...`), authentication by bearer
//! token, and the HTTPS server (TLS via rustls, HTTP/2 and HTTP/1.1).

mod access;
mod audit;
mod discovery;
mod events;
#[cfg(test)]
mod fuzz;
mod metrics;
mod namespaces;
mod negotiate;
mod nodes;
mod path;
mod pods;
mod protobuf;
mod query;
mod resources;
mod response;
mod secrets;
mod watch;
mod yaml;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::any;
use http::{HeaderMap, Method, Uri, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use manifold_auth::{Principal, bearer_from_header};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use self::path::Route;
use self::query::Query;
use self::response::error_response;
use crate::core::{Caller, Core};
use crate::domain::names::is_id;
use crate::domain::{ClusterName, VirtualCluster};
use crate::error::GatewayError;

/// Request bodies above this size are refused with 413, as kube-apiserver does.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Clone)]
struct App {
    core: Arc<Core>,
    /// Cancelled at shutdown; open watches end.
    watches: CancellationToken,
}

/// Everything a handler knows about a request once it is authenticated and
/// its cluster resolved.
pub struct Ctx {
    core: Arc<Core>,
    watches: CancellationToken,
    vc: Arc<VirtualCluster>,
    principal: Arc<Principal>,
    method: Method,
    headers: HeaderMap,
    query: Query,
}

impl Ctx {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The caller's bearer token, forwarded to the replication service.
    fn token(&self) -> Result<&str, GatewayError> {
        Ok(bearer_from_header(self.headers.get(header::AUTHORIZATION))?)
    }
}

pub fn router(
    core: Arc<Core>,
    watches: CancellationToken,
    metrics: Option<manifold_telemetry::Metrics>,
    audit: Option<manifold_telemetry::AuditSink>,
) -> Router {
    let router = Router::new()
        .route("/vk8s/{tenant}/{namespace}/{vk8s}/{*rest}", any(entry))
        .route("/vk8s/{tenant}/{namespace}/{vk8s}", any(entry_root))
        .fallback(|| async { error_response(&GatewayError::NoRoute) })
        .with_state(App {
            core: core.clone(),
            watches,
        });
    // Mutating requests go to the audit log, refused ones included.
    let router = match audit {
        Some(sink) => router.layer(axum::middleware::from_fn_with_state(
            audit::AuditState { sink, core },
            audit::record,
        )),
        None => router,
    };
    let router = match metrics {
        Some(m) => router.layer(axum::middleware::from_fn_with_state(m, metrics::record)),
        None => router,
    };
    router.layer(TraceLayer::new_for_http())
}

async fn entry(
    State(app): State<App>,
    Path((tenant, namespace, vk8s, rest)): Path<(String, String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = ClusterName {
        tenant,
        namespace,
        name: vk8s,
    };
    match handle(app, name, &rest, method, &uri, headers, body).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn entry_root(
    State(app): State<App>,
    Path((tenant, namespace, vk8s)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = ClusterName {
        tenant,
        namespace,
        name: vk8s,
    };
    match handle(app, name, "", method, &uri, headers, body).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn handle(
    app: App,
    name: ClusterName,
    rest: &str,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let token = bearer_from_header(headers.get(header::AUTHORIZATION))?;
    let principal = app.core.authenticator.authenticate(token).await?;
    if ![&name.tenant, &name.namespace, &name.name]
        .iter()
        .all(|s| is_id(s))
    {
        return Err(GatewayError::NoRoute);
    }
    let caller = Caller {
        principal: &principal,
        token,
    };
    // Whatever the caller may not see does not exist, for every path.
    let vc = app
        .core
        .resolve_cluster(&caller, &name)
        .await
        .map_err(|e| match e {
            GatewayError::NotFound(_) | GatewayError::Forbidden(_) => GatewayError::NoRoute,
            other => other,
        })?;
    let route = path::parse(rest).ok_or(GatewayError::NoRoute)?;
    // Watches and followed logs hold a slot of the caller's stream limit
    // while they stream.
    let query = Query::parse(uri)?;
    let long_running = method == Method::GET
        && match &route {
            Route::Resource(rp) if rp.name.is_none() => query.flag("watch").unwrap_or(false),
            Route::Resource(rp) => {
                rp.subresource.as_deref() == Some("log") && query.flag("follow").unwrap_or(false)
            }
            _ => false,
        };
    let permit = if long_running {
        Some(
            app.core
                .streams
                .acquire(&principal)
                .map_err(|e| GatewayError::TooManyRequests(e.to_string()))?,
        )
    } else {
        None
    };
    let bearer = token.to_owned();
    let ctx = Ctx {
        core: app.core.clone(),
        watches: app.watches.clone(),
        vc,
        principal: principal.clone(),
        method,
        query,
        headers,
    };
    let response = match route {
        Route::Resource(rp) => resources::handle(&ctx, rp, body).await,
        Route::SelfSubjectAccessReview => access::self_subject_access_review(&ctx, body).await,
        discovery_route => {
            if ctx.method != Method::GET {
                return Err(GatewayError::MethodNotAllowed(
                    "the server does not allow this method on the requested resource".into(),
                ));
            }
            discovery::handle(&ctx, discovery_route)
        }
    }?;
    // A watch or `logs -f` lives on the token it started with only while
    // that token stays valid: once revoked or expired, the stream ends (as
    // kube-apiserver ends a watch) and the client's next request gets 401.
    let expire = principal.token_expire_time;
    Ok(response.map(|b| {
        let body = app
            .core
            .recheck
            .guard(b, &bearer, Some(expire), manifold_auth::Lapse::EndOfBody)
            .under(&principal.bindings);
        Body::new(match permit {
            Some(p) => body.with_permit(p),
            None => body,
        })
    }))
}

/// Reads a request body, refusing more than [`MAX_BODY_BYTES`].
async fn read_body(body: Body) -> Result<axum::body::Bytes, GatewayError> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(GatewayError::TooLarge(MAX_BODY_BYTES))
        }
        Err(e) => Err(GatewayError::BadRequest(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// How long a connection may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    watches: CancellationToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(manifold_auth::limits::MAX_CONCURRENT_STREAMS_PER_CONNECTION);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accepting a Kubernetes API connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "Kubernetes API connection ended");
            }
        });
    }
    watches.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Kubernetes API connections still open after the drain timeout");
    }
    Ok(())
}
