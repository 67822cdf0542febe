//! Bounds on what one principal may hold open: long-lived streams (gRPC
//! server-streaming calls, Kubernetes watches and `logs -f`) are counted per
//! user, and a stream past [`DEFAULT_MAX_STREAMS_PER_PRINCIPAL`] is refused
//! (RESOURCE_EXHAUSTED / HTTP 429) instead of pinning memory and tasks.
//!
//! The count is per process and per listener (each server has its own
//! [`StreamLimiter`]); a permit is released when the stream's response body
//! is dropped, however it ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::Principal;

/// HTTP/2 streams one client connection may hold open at once (the value
/// kube-apiserver and Go's HTTP/2 server default to), on every listener.
/// Past it the peer must wait; one connection cannot pin unbounded streams.
pub const MAX_CONCURRENT_STREAMS_PER_CONNECTION: u32 = 250;

/// Streams one principal (user) may hold open at once on one listener.
pub const DEFAULT_MAX_STREAMS_PER_PRINCIPAL: usize = 100;

/// A stream refused because its principal already holds `limit`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many concurrent streams for {principal}: the limit is {limit} open watches or streams per principal; close some and retry"
)]
pub struct TooManyStreams {
    pub principal: String,
    pub limit: usize,
}

impl From<TooManyStreams> for tonic::Status {
    fn from(e: TooManyStreams) -> Self {
        tonic::Status::resource_exhausted(e.to_string())
    }
}

/// Counts open streams per principal; cheap to clone (shared counts).
#[derive(Clone, Debug)]
pub struct StreamLimiter {
    open: OpenStreams,
    limit: usize,
}

impl Default for StreamLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_STREAMS_PER_PRINCIPAL)
    }
}

impl StreamLimiter {
    /// At most `limit` streams per principal (zero: unlimited).
    pub fn new(limit: usize) -> Self {
        Self {
            open: Arc::default(),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A permit for one more stream of `principal`, held until dropped.
    pub fn acquire(&self, principal: &Principal) -> Result<StreamPermit, TooManyStreams> {
        self.acquire_key(&principal.user)
    }

    fn acquire_key(&self, key: &str) -> Result<StreamPermit, TooManyStreams> {
        if self.limit == 0 {
            return Ok(StreamPermit { slot: None });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.to_owned()).or_insert(0);
        if *n >= self.limit {
            return Err(TooManyStreams {
                principal: key.to_owned(),
                limit: self.limit,
            });
        }
        *n += 1;
        Ok(StreamPermit {
            slot: Some((self.open.clone(), key.to_owned())),
        })
    }

    /// Streams `principal` holds open now.
    pub fn open(&self, principal: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(principal).copied().unwrap_or(0)
    }
}

/// Open streams per principal.
type OpenStreams = Arc<Mutex<HashMap<String, usize>>>;

/// One open stream; releases its slot when dropped.
#[derive(Debug)]
pub struct StreamPermit {
    slot: Option<(OpenStreams, String)>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let Some((open, key)) = self.slot.take() else {
            return;
        };
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_principal_and_released_on_drop() {
        let limiter = StreamLimiter::new(2);
        let a1 = limiter.acquire_key("users/a").unwrap();
        let _a2 = limiter.acquire_key("users/a").unwrap();
        let err = limiter.acquire_key("users/a").unwrap_err();
        assert_eq!(
            err,
            TooManyStreams {
                principal: "users/a".into(),
                limit: 2
            }
        );
        assert!(err.to_string().contains("the limit is 2"), "{err}");
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::ResourceExhausted
        );
        // Someone else is not affected.
        let _b = limiter.acquire_key("users/b").unwrap();
        drop(a1);
        let _a3 = limiter.acquire_key("users/a").unwrap();
        assert_eq!(limiter.open("users/a"), 2);
        drop(_a3);
        drop(_a2);
        assert_eq!(limiter.open("users/a"), 0);
        assert!(limiter.open.lock().unwrap().get("users/a").is_none());
    }

    /// Accepts every token as `users/u`.
    struct Anyone;

    #[async_trait::async_trait]
    impl crate::Authenticator for Anyone {
        async fn authenticate(&self, _token: &str) -> Result<Arc<Principal>, crate::AuthError> {
            Ok(Arc::new(Principal {
                user: "users/u".into(),
                tenant: None,
                bindings: vec![],
                token: "users/u/apiTokens/t".into(),
                token_scope: String::new(),
                token_expire_time: chrono::Utc::now() + chrono::Duration::hours(1),
            }))
        }
    }

    #[tokio::test]
    async fn the_auth_layer_limits_streaming_calls_only() {
        use tower::{Layer, Service, ServiceExt};
        type B = http_body_util::Empty<tonic::codegen::Bytes>;
        let limiter = StreamLimiter::new(2);
        let layer = crate::AuthLayer::new(Arc::new(Anyone), vec![])
            .with_stream_limit(limiter.clone(), Arc::new(["/s.S/Watch".to_owned()].into()));
        let mut service = layer.layer(tower::service_fn(|_r: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(B::new()))
        }));
        let call = |path: &'static str| {
            http::Request::builder()
                .uri(path)
                .header("authorization", "Bearer t")
                .body(())
                .unwrap()
        };
        let status = |r: &http::Response<_>| {
            r.headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let first = service
            .ready()
            .await
            .unwrap()
            .call(call("/s.S/Watch"))
            .await
            .unwrap();
        let second = service
            .ready()
            .await
            .unwrap()
            .call(call("/s.S/Watch"))
            .await
            .unwrap();
        assert_eq!((status(&first), status(&second)), (None, None));
        let third = service
            .ready()
            .await
            .unwrap()
            .call(call("/s.S/Watch"))
            .await
            .unwrap();
        assert_eq!(status(&third).as_deref(), Some("8"), "RESOURCE_EXHAUSTED");
        let message = third
            .headers()
            .get("grpc-message")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(message.contains("limit"), "{message}");
        // Unary calls are not counted.
        let unary = service
            .ready()
            .await
            .unwrap()
            .call(call("/s.S/Get"))
            .await
            .unwrap();
        assert_eq!(status(&unary), None);
        assert_eq!(limiter.open("users/u"), 2);
        drop(first);
        assert_eq!(limiter.open("users/u"), 1);
        let again = service
            .ready()
            .await
            .unwrap()
            .call(call("/s.S/Watch"))
            .await
            .unwrap();
        assert_eq!(status(&again), None);
    }

    #[test]
    fn zero_is_unlimited() {
        let limiter = StreamLimiter::new(0);
        let permits: Vec<_> = (0..1000)
            .map(|_| limiter.acquire_key("users/a").unwrap())
            .collect();
        assert_eq!(permits.len(), 1000);
    }
}
