//! Long-lived responses re-check the credential that opened them. A stream
//! (a watch, `logs -f`, the object feed, a placement watch) is authorized
//! when it starts; without a re-check it would live on after its token was
//! revoked or expired. [`Rechecked`] wraps a response body and asks the
//! authenticator again every interval (and at the token's expiry); once the
//! token no longer authenticates, the body ends: gRPC streams with
//! UNAUTHENTICATED in their trailers, HTTP bodies (the Kubernetes API) by
//! simply ending, as kube-apiserver ends a watch, so the client's next
//! request meets the 401.
//!
//! A stream that knows the role bindings it was opened under
//! ([`Rechecked::under`]) also ends once those no longer hold: a binding
//! removed (or narrowed) that nothing else still covers ends it, with
//! PERMISSION_DENIED for gRPC, so a viewer whose access was taken away stops
//! receiving a watch within one interval. The reopened stream is authorized
//! afresh against what the principal holds now.
//!
//! Bodies of a known, fixed size (unary answers) are never watched, and a
//! body is only armed once it first waits for data (or once one interval
//! has passed), so short calls cost nothing but a pointer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::{AuthError, Authenticator, Binding, Principal};

/// The default re-check interval (setting `auth.stream_recheck_secs`).
pub const DEFAULT_STREAM_RECHECK: Duration = Duration::from_secs(30);

/// A check that fires this close to the token's expiry waits this long
/// instead, so a clock a little ahead does not spin.
const MIN_WAIT: Duration = Duration::from_millis(50);

/// How a stream whose credential lapsed ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapse {
    /// gRPC: trailers carrying UNAUTHENTICATED and the reason.
    GrpcStatus,
    /// HTTP: the body ends (the end of a chunked stream).
    EndOfBody,
}

/// Re-checks the credentials of open streams every `interval`.
#[derive(Clone)]
pub struct Recheck {
    authenticator: Arc<dyn Authenticator>,
    interval: Duration,
}

impl std::fmt::Debug for Recheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recheck")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Recheck {
    /// `interval` zero disables re-checking (every body passes through).
    pub fn new(authenticator: Arc<dyn Authenticator>, interval: Duration) -> Self {
        Self {
            authenticator,
            interval,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Wraps `body`, opened with bearer `token` (expiring at `expire`, when
    /// known), so it ends within one interval of the token lapsing.
    pub fn guard<B: Body>(
        &self,
        body: B,
        token: &str,
        expire: Option<DateTime<Utc>>,
        lapse: Lapse,
    ) -> Rechecked<B> {
        let fixed_size = body.size_hint().exact().is_some();
        if self.interval.is_zero() || fixed_size {
            return Rechecked::passthrough(body);
        }
        Rechecked {
            inner: body,
            watch: Some(Box::new(Watch {
                authenticator: self.authenticator.clone(),
                token: Arc::from(token),
                interval: self.interval,
                lapse,
                started: Instant::now(),
                expire,
                bindings: None,
                state: State::Idle,
            })),
            done: false,
            permit: None,
        }
    }
}

/// A response body that ends once its credential lapses; see the module
/// documentation.
pub struct Rechecked<B> {
    inner: B,
    watch: Option<Box<Watch>>,
    /// Ended because the credential lapsed.
    done: bool,
    /// The stream's slot in its principal's stream limit, released with the body.
    permit: Option<crate::StreamPermit>,
}

impl<B> Rechecked<B> {
    /// A body that is never re-checked (public paths, failed calls).
    pub fn passthrough(inner: B) -> Self {
        Self {
            inner,
            watch: None,
            done: false,
            permit: None,
        }
    }

    /// Also ends the stream once `bindings` (those it was authorized
    /// under) are no longer covered by what the principal holds.
    pub fn under(mut self, bindings: &[Binding]) -> Self {
        if let Some(w) = self.watch.as_deref_mut() {
            w.bindings = Some(bindings.into());
        }
        self
    }

    /// Holds `permit` (see [`crate::StreamLimiter`]) until the body is dropped.
    pub fn with_permit(mut self, permit: crate::StreamPermit) -> Self {
        self.permit = Some(permit);
        self
    }
}

impl<B: Default> Default for Rechecked<B> {
    fn default() -> Self {
        Self::passthrough(B::default())
    }
}

struct Watch {
    authenticator: Arc<dyn Authenticator>,
    token: Arc<str>,
    interval: Duration,
    lapse: Lapse,
    started: Instant,
    expire: Option<DateTime<Utc>>,
    /// The bindings the stream was opened under, when known.
    bindings: Option<Arc<[Binding]>>,
    state: State,
}

/// Why a stream ended.
#[derive(Debug)]
enum Lapsed {
    /// The token no longer authenticates.
    Credential(AuthError),
    /// The token does, but a role binding the stream relied on is gone.
    Narrowed(String),
}

impl std::fmt::Display for Lapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lapsed::Credential(e) => write!(f, "{e}"),
            Lapsed::Narrowed(what) => f.write_str(what),
        }
    }
}

/// The first binding of `opened` that `now` no longer covers, described.
fn narrowed(opened: &[Binding], now: &Principal) -> Option<String> {
    opened
        .iter()
        .find(|b| !b.covered_by(&now.bindings))
        .map(|b| {
            let scope = if b.scope.is_empty() {
                "the whole system"
            } else {
                b.scope.as_str()
            };
            format!(
                "{} no longer holds role {} on {scope}, which this stream was opened under; open it again",
                now.user,
                b.role.as_str()
            )
        })
}

enum State {
    /// Not armed yet.
    Idle,
    Waiting(Pin<Box<Sleep>>),
    Checking(BoxFuture<'static, Result<Arc<Principal>, AuthError>>),
}

impl Watch {
    /// The next check: one interval from now, or the token's expiry if sooner.
    fn next_wait(&self) -> Duration {
        let until_expiry = self
            .expire
            .map(|e| (e - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        match until_expiry {
            Some(left) if left < self.interval => left.max(MIN_WAIT),
            _ => self.interval,
        }
    }

    fn arm(&mut self) {
        if matches!(self.state, State::Idle) {
            self.state = State::Waiting(Box::pin(tokio::time::sleep(self.next_wait())));
        }
    }

    /// Drives the timer and the check; `Some` once the credential lapsed.
    fn poll(&mut self, cx: &mut Context<'_>) -> Option<Lapsed> {
        loop {
            match &mut self.state {
                State::Idle => return None,
                State::Waiting(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return None;
                    }
                    let authenticator = self.authenticator.clone();
                    let token = self.token.clone();
                    self.state = State::Checking(Box::pin(async move {
                        authenticator.authenticate(&token).await
                    }));
                }
                State::Checking(check) => match check.as_mut().poll(cx) {
                    Poll::Pending => return None,
                    Poll::Ready(Ok(principal)) => {
                        if let Some(why) = self
                            .bindings
                            .as_deref()
                            .and_then(|opened| narrowed(opened, &principal))
                        {
                            return Some(Lapsed::Narrowed(why));
                        }
                        self.expire = Some(principal.token_expire_time);
                        self.state = State::Waiting(Box::pin(tokio::time::sleep(self.next_wait())));
                    }
                    // The answer is unknown (the database is unreachable);
                    // revoking needs the database too, so keep the stream
                    // and ask again next interval.
                    Poll::Ready(Err(
                        AuthError::Unavailable(reason) | AuthError::Throttled(reason),
                    )) => {
                        tracing::debug!(%reason, "re-checking a stream's credential");
                        self.state = State::Waiting(Box::pin(tokio::time::sleep(self.interval)));
                    }
                    Poll::Ready(Err(e)) => return Some(Lapsed::Credential(e)),
                },
            }
        }
    }
}

fn lapse_frame<D, E>(lapse: Lapse, e: &Lapsed) -> Option<Result<Frame<D>, E>> {
    match lapse {
        Lapse::EndOfBody => None,
        Lapse::GrpcStatus => {
            let status = match e {
                Lapsed::Credential(e) => {
                    tonic::Status::unauthenticated(format!("the stream's credential lapsed: {e}"))
                }
                Lapsed::Narrowed(why) => tonic::Status::permission_denied(why.clone()),
            };
            let mut trailers = http::HeaderMap::new();
            let _ = status.add_header(&mut trailers);
            Some(Ok(Frame::trailers(trailers)))
        }
    }
}

impl<B: Body + Unpin> Body for Rechecked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(w) = this.watch.as_deref_mut() {
            // A stream that never waits is armed once it has run an interval.
            if matches!(w.state, State::Idle) && w.started.elapsed() >= w.interval {
                w.arm();
            }
            if let Some(e) = w.poll(cx) {
                tracing::info!(error = %e, "ending a stream whose credential lapsed");
                this.done = true;
                return Poll::Ready(lapse_frame(w.lapse, &e));
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() {
                    // The inner stream is over; nothing left to guard.
                    this.watch = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if let Some(w) = this.watch.as_deref_mut()
                    && matches!(w.state, State::Idle)
                {
                    w.arm();
                    if let Some(e) = w.poll(cx) {
                        this.done = true;
                        return Poll::Ready(lapse_frame(w.lapse, &e));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Binding, Principal, Role};
    use std::sync::Mutex;

    /// Answers with whatever `verdict` holds now.
    struct Switch {
        verdict: Mutex<Result<DateTime<Utc>, AuthError>>,
        bindings: Mutex<Vec<Binding>>,
        calls: Mutex<u32>,
    }

    fn root() -> Binding {
        Binding {
            role: Role::SystemAdmin,
            scope: String::new(),
        }
    }

    #[async_trait::async_trait]
    impl Authenticator for Switch {
        async fn authenticate(&self, _token: &str) -> Result<Arc<Principal>, AuthError> {
            *self.calls.lock().unwrap() += 1;
            let expire = self.verdict.lock().unwrap().clone()?;
            Ok(Arc::new(Principal {
                user: "users/u".into(),
                tenant: None,
                bindings: self.bindings.lock().unwrap().clone(),
                token: "users/u/tokens/t".into(),
                token_scope: String::new(),
                token_expire_time: expire,
            }))
        }
    }

    /// A body that never ends and never yields.
    #[derive(Default)]
    struct Forever;

    impl Body for Forever {
        type Data = tonic::codegen::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Pending
        }
    }

    fn switch(verdict: Result<DateTime<Utc>, AuthError>) -> Arc<Switch> {
        Arc::new(Switch {
            verdict: Mutex::new(verdict),
            bindings: Mutex::new(vec![root()]),
            calls: Mutex::new(0),
        })
    }

    async fn next_frame<B: Body + Unpin>(body: &mut B) -> Option<Result<Frame<B::Data>, B::Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
    }

    /// The trailers a gRPC stream ends with, within one (10 s) interval.
    async fn ending_trailers<B: Body + Unpin>(body: &mut B) -> http::HeaderMap
    where
        B::Error: std::fmt::Debug,
    {
        tokio::time::timeout(Duration::from_secs(11), next_frame(body))
            .await
            .expect("ended within one interval")
            .expect("a trailers frame")
            .unwrap()
            .into_trailers()
            .unwrap_or_else(|_| panic!("a trailers frame"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_token_ends_the_grpc_stream_with_unauthenticated() {
        let auth = switch(Ok(Utc::now() + chrono::Duration::hours(1)));
        let recheck = Recheck::new(auth.clone(), Duration::from_secs(10));
        let mut body = recheck.guard(Forever, "t", None, Lapse::GrpcStatus);
        let waiting = tokio::time::timeout(Duration::from_secs(25), next_frame(&mut body)).await;
        assert!(waiting.is_err(), "a valid token keeps the stream open");
        assert!(*auth.calls.lock().unwrap() >= 2);
        *auth.verdict.lock().unwrap() = Err(AuthError::Revoked);
        let trailers = ending_trailers(&mut body).await;
        assert_eq!(trailers["grpc-status"], "16");
        assert!(next_frame(&mut body).await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_role_binding_ends_the_stream_opened_under_it() {
        let auth = switch(Ok(Utc::now() + chrono::Duration::hours(1)));
        let recheck = Recheck::new(auth.clone(), Duration::from_secs(10));
        let mut body = recheck
            .guard(Forever, "t", None, Lapse::GrpcStatus)
            .under(&[root()]);
        let waiting = tokio::time::timeout(Duration::from_secs(25), next_frame(&mut body)).await;
        assert!(waiting.is_err(), "the binding still holds");
        // A binding added beside it changes nothing; the one it was
        // opened under taken away ends it.
        auth.bindings.lock().unwrap().push(Binding {
            role: Role::TenantAdmin,
            scope: "tenants/acme".into(),
        });
        let waiting = tokio::time::timeout(Duration::from_secs(25), next_frame(&mut body)).await;
        assert!(waiting.is_err(), "a binding added keeps the stream");
        auth.bindings.lock().unwrap().remove(0);
        let trailers = ending_trailers(&mut body).await;
        assert_eq!(trailers["grpc-status"], "7");
        let message = trailers["grpc-message"].to_str().unwrap();
        assert!(message.contains("system-admin"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expiring_token_ends_the_http_body_at_its_expiry() {
        // Real time decides expiry; paused tokio time decides the timers.
        let auth = switch(Err(AuthError::Expired("then".into())));
        let recheck = Recheck::new(auth.clone(), Duration::from_secs(30));
        let expire = Utc::now() + chrono::Duration::seconds(3);
        let mut body = recheck.guard(Forever, "t", Some(expire), Lapse::EndOfBody);
        let ended = tokio::time::timeout(Duration::from_secs(5), next_frame(&mut body))
            .await
            .expect("ended at the expiry, before the interval");
        assert!(ended.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_authenticator_keeps_the_stream() {
        let auth = switch(Err(AuthError::Unavailable("db down".into())));
        let recheck = Recheck::new(auth.clone(), Duration::from_secs(1));
        let mut body = recheck.guard(Forever, "t", None, Lapse::GrpcStatus);
        let waiting = tokio::time::timeout(Duration::from_secs(10), next_frame(&mut body)).await;
        assert!(waiting.is_err());
        assert!(*auth.calls.lock().unwrap() >= 5);
    }

    #[test]
    fn fixed_size_bodies_and_a_zero_interval_are_not_watched() {
        let auth = switch(Err(AuthError::Revoked));
        let off = Recheck::new(auth.clone(), Duration::ZERO);
        assert!(
            off.guard(Forever, "t", None, Lapse::EndOfBody)
                .watch
                .is_none()
        );
        let on = Recheck::new(auth, Duration::from_secs(1));
        let fixed = http_body_util::Full::new(tonic::codegen::Bytes::from_static(b"123"));
        assert!(on.guard(fixed, "t", None, Lapse::EndOfBody).watch.is_none());
    }
}
