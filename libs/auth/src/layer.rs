//! A tower layer for tonic servers: every call except the health service (and
//! any other path the server lists as public) must carry a valid bearer token.
//! The resolved principal is put in the request's extensions for handlers,
//! and the response body is re-checked while it streams (see [`crate::recheck`]):
//! a stream ends with UNAUTHENTICATED once its token is revoked or expires.

use std::{
    collections::HashSet,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::recheck::{DEFAULT_STREAM_RECHECK, Lapse, Recheck, Rechecked};
use crate::{Authenticator, StreamLimiter, bearer_from_header};

#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<dyn Authenticator>,
    public_prefixes: Arc<Vec<String>>,
    recheck: Recheck,
    /// Per-principal limit on the listed streaming method paths.
    streams: Option<(StreamLimiter, Arc<HashSet<String>>)>,
}

impl AuthLayer {
    /// `public_prefixes`: gRPC path prefixes served without a token, e.g.
    /// `/grpc.health.v1.Health/`. Streams are re-checked every
    /// [`DEFAULT_STREAM_RECHECK`] unless [`AuthLayer::with_stream_recheck`]
    /// says otherwise.
    pub fn new(authenticator: Arc<dyn Authenticator>, public_prefixes: Vec<String>) -> Self {
        Self {
            recheck: Recheck::new(authenticator.clone(), DEFAULT_STREAM_RECHECK),
            authenticator,
            public_prefixes: Arc::new(public_prefixes),
            streams: None,
        }
    }

    /// Calls to `streaming_paths` (`/pkg.Service/Method`) hold a slot of
    /// `limiter` for their caller while their response streams; past the
    /// limit they are refused with RESOURCE_EXHAUSTED naming it.
    pub fn with_stream_limit(
        mut self,
        limiter: StreamLimiter,
        streaming_paths: Arc<HashSet<String>>,
    ) -> Self {
        self.streams = Some((limiter, streaming_paths));
        self
    }

    /// How often a streaming response re-checks its caller's token (zero:
    /// never).
    pub fn with_stream_recheck(mut self, interval: Duration) -> Self {
        self.recheck = Recheck::new(self.authenticator.clone(), interval);
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B, RB> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: http_body::Body + Unpin + Default + Send + 'static,
{
    type Response = http::Response<Rechecked<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // Take the service that was driven to readiness, leave a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let path = req.uri().path();
            if layer
                .public_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
            {
                return Ok(inner.call(req).await?.map(Rechecked::passthrough));
            }
            let result = match bearer_from_header(req.headers().get(http::header::AUTHORIZATION)) {
                Ok(token) => layer
                    .authenticator
                    .authenticate(token)
                    .await
                    .map(|p| (p, token.to_owned())),
                Err(e) => Err(e),
            };
            match result {
                Ok((principal, token)) => {
                    let permit = match &layer.streams {
                        Some((limiter, paths)) if paths.contains(req.uri().path()) => match limiter
                            .acquire(&principal)
                        {
                            Ok(permit) => Some(permit),
                            Err(e) => {
                                return Ok(status_response(e.into()).map(Rechecked::passthrough));
                            }
                        },
                        _ => None,
                    };
                    let expire = principal.token_expire_time;
                    let opened = principal.clone();
                    req.extensions_mut().insert(principal);
                    let response = inner.call(req).await?;
                    Ok(response.map(|body| {
                        let body = layer
                            .recheck
                            .guard(body, &token, Some(expire), Lapse::GrpcStatus)
                            .under(&opened.bindings);
                        match permit {
                            Some(p) => body.with_permit(p),
                            None => body,
                        }
                    }))
                }
                Err(e) => Ok(status_response(e.into()).map(Rechecked::passthrough)),
            }
        })
    }
}

fn status_response<RB: Default>(status: tonic::Status) -> http::Response<RB> {
    let mut response = http::Response::new(RB::default());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    // `add_header` writes grpc-status and grpc-message as trailers-only.
    let _ = status.add_header(headers);
    response
}
