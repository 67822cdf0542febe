//! A tower layer for tonic servers: per-call metrics and a server span whose parent is the
//! caller's trace context, so traces continue across services.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Metrics;
use crate::metrics::grpc_code_name;
use crate::propagation::extract_context;

/// Wraps every gRPC call with [`GrpcMetricsService`].
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
    known: Option<Arc<HashSet<String>>>,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            known: None,
        }
    }

    /// Only these method paths (`/pkg.Service/Method`) get their own
    /// `service`/`method` label values; every other path is counted as
    /// `unknown`/`unknown`, whatever its status, so requests with random
    /// paths (refused before routing, e.g. UNAUTHENTICATED) cannot mint
    /// metric series.
    pub fn with_known_methods(mut self, known: Arc<HashSet<String>>) -> Self {
        self.known = Some(known);
        self
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
            known: self.known.clone(),
        }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Metrics,
    known: Option<Arc<HashSet<String>>>,
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

fn status_of(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.trim().parse().ok()?))
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcMetricsService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let path = request.uri().path().to_owned();
        let (service, method) = split_path(&path).unwrap_or(("unknown", "unknown"));
        let labelled = self.known.as_ref().is_none_or(|k| k.contains(&path));
        let (label_service, label_method) = if labelled {
            (service, method)
        } else {
            ("unknown", "unknown")
        };
        let span = tracing::info_span!(
            "grpc",
            otel.name = %path,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        // Without an OpenTelemetry layer there is nothing to parent; that is fine.
        let _ = span.set_parent(extract_context(request.headers()));

        let mut recorder = Recorder {
            metrics: self.metrics.clone(),
            service: label_service.to_owned(),
            method: label_method.to_owned(),
            start,
            span: span.clone(),
        };
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                match future.await {
                    Ok(response) => {
                        // Trailers-only responses (most errors) carry the status in the
                        // headers; otherwise it comes in the trailers at the end of the body.
                        let recorder = match status_of(response.headers()) {
                            Some(code) => {
                                recorder.finish(code);
                                None
                            }
                            None => Some(recorder),
                        };
                        Ok(response.map(|inner| MeteredBody { inner, recorder }))
                    }
                    Err(error) => {
                        recorder.service_failed();
                        Err(error)
                    }
                }
            }
            .instrument(span),
        )
    }
}

struct Recorder {
    metrics: Metrics,
    service: String,
    method: String,
    start: Instant,
    span: Span,
}

impl Recorder {
    fn finish(&mut self, code: Code) {
        // Unknown paths are answered UNIMPLEMENTED; don't let them mint label values.
        let (service, method) = if code == Code::Unimplemented {
            ("unknown", "unknown")
        } else {
            (self.service.as_str(), self.method.as_str())
        };
        self.metrics
            .record_rpc(service, method, code, self.start.elapsed());
        self.span
            .record("rpc.grpc.status_code", i64::from(i32::from(code)));
        if matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ) {
            self.span.record("otel.status_code", "ERROR");
        }
        tracing::debug!(parent: &self.span, code = grpc_code_name(code), "grpc call finished");
    }

    fn service_failed(&mut self) {
        self.finish(Code::Unknown);
    }
}

/// The response body of [`GrpcMetricsService`]: passes frames through and records the
/// call when the status arrives in the trailers (or the stream ends or is dropped).
pub struct MeteredBody<B: Body> {
    inner: B,
    recorder: Option<Recorder>,
}

impl<B: Body> MeteredBody<B> {
    fn finish(&mut self, code: Code) {
        if let Some(mut recorder) = self.recorder.take() {
            recorder.finish(code);
        }
    }
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.finish(status_of(trailers).unwrap_or(Code::Ok));
                }
            }
            Some(Err(_)) => this.finish(Code::Unknown),
            // No status at all: a plain successful response.
            None => this.finish(Code::Ok),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // Dropped unfinished: the client went away (an empty body may never be polled).
        let code = if self.inner.is_end_stream() {
            Code::Ok
        } else {
            Code::Cancelled
        };
        self.finish(code);
    }
}

impl<B: Body> std::fmt::Debug for MeteredBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredBody").finish_non_exhaustive()
    }
}
