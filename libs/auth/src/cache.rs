//! A short-lived cache in front of any authenticator, so the per-call cost of
//! authentication is a hash and a map lookup. Entries live for the configured
//! TTL, which bounds how long a revoked token keeps working elsewhere.
//!
//! Failed lookups are bounded too, so an anonymous flood of made-up tokens
//! costs the database little:
//! - a refused token is remembered for [`NEGATIVE_TTL`] (at most the TTL), so
//!   repeating it costs no lookup;
//! - lookups that fail draw on a budget of [`FAILED_LOOKUPS_PER_SEC`] per
//!   second (bursts of [`FAILED_LOOKUP_BURST`]); while it is spent, a token
//!   this process has not seen authenticate within [`KNOWN_GOOD_TTL`] is
//!   refused at once with [`AuthError::Throttled`] (RESOURCE_EXHAUSTED / 429)
//!   instead of being looked up. Tokens that authenticated recently keep
//!   being looked up (and cached) as usual, so the flood locks nobody out
//!   who was already working.

use std::sync::Mutex;
use std::{sync::Arc, time::Duration, time::Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::{AuthError, Authenticator, Principal};

/// How long a refused token is answered from memory.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Failed lookups per second allowed before unknown tokens are throttled.
pub const FAILED_LOOKUPS_PER_SEC: u32 = 50;
/// Failed lookups allowed in a burst.
pub const FAILED_LOOKUP_BURST: u32 = 100;
/// How long a token that authenticated is exempt from the throttle.
pub const KNOWN_GOOD_TTL: Duration = Duration::from_secs(3600);
/// Most distinct entries each of the caches holds.
const CAPACITY: u64 = 100_000;

/// A token bucket of failed lookups.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    last: Instant,
    per_sec: f64,
    burst: f64,
}

impl Budget {
    fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            last: Instant::now(),
            per_sec: f64::from(per_sec),
            burst: f64::from(burst),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
    }

    /// Takes one failure from the budget before a lookup, so concurrent
    /// lookups can never overrun it; `false` when it is spent.
    fn reserve(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back a reservation whose lookup did not fail.
    fn refund(&mut self) {
        self.refill();
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }
}

pub struct CachingAuthenticator<A> {
    inner: A,
    /// `None` when the TTL is zero: every call goes to `inner`.
    cache: Option<moka::future::Cache<[u8; 32], Arc<Principal>>>,
    /// Refused tokens and why (never `Unavailable` or `Throttled`); `None`
    /// when the TTL is zero.
    refused: Option<moka::future::Cache<[u8; 32], AuthError>>,
    /// Tokens that authenticated lately: exempt from the throttle.
    known_good: moka::future::Cache<[u8; 32], ()>,
    budget: Mutex<Budget>,
}

impl<A: Authenticator> CachingAuthenticator<A> {
    pub fn new(inner: A, ttl: Duration) -> Self {
        Self::with_failure_budget(inner, ttl, FAILED_LOOKUPS_PER_SEC, FAILED_LOOKUP_BURST)
    }

    /// As [`CachingAuthenticator::new`], with `per_sec` failed lookups per
    /// second (bursts of `burst`) before unknown tokens are throttled.
    pub fn with_failure_budget(inner: A, ttl: Duration, per_sec: u32, burst: u32) -> Self {
        Self {
            inner,
            cache: (!ttl.is_zero()).then(|| {
                moka::future::Cache::builder()
                    .max_capacity(CAPACITY)
                    .time_to_live(ttl)
                    .build()
            }),
            refused: (!ttl.is_zero()).then(|| {
                moka::future::Cache::builder()
                    .max_capacity(CAPACITY)
                    .time_to_live(ttl.min(NEGATIVE_TTL))
                    .build()
            }),
            known_good: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(KNOWN_GOOD_TTL)
                .build(),
            budget: Mutex::new(Budget::new(per_sec, burst)),
        }
    }

    /// Forgets every cached principal (after a revocation or role change)
    /// and every remembered refusal.
    pub fn invalidate_all(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
        if let Some(refused) = &self.refused {
            refused.invalidate_all();
        }
    }

    pub fn inner(&self) -> &A {
        &self.inner
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl<A: Authenticator> Authenticator for CachingAuthenticator<A> {
    async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(cache) = &self.cache
            && let Some(p) = cache.get(&key).await
        {
            if p.token_expire_time > Utc::now() {
                return Ok(p);
            }
            cache.invalidate(&key).await;
            return Err(AuthError::Expired(p.token_expire_time.to_rfc3339()));
        }
        if let Some(refused) = &self.refused
            && let Some(e) = refused.get(&key).await
        {
            return Err(e);
        }
        // Tokens seen to authenticate lately skip the budget; every other
        // lookup reserves one failure first (and gets it back unless the
        // lookup fails), so at most the budget's rate reaches `inner`.
        let reserved = !self.known_good.contains_key(&key);
        if reserved && !self.budget().reserve() {
            return Err(AuthError::Throttled(format!(
                "more than {} failed authentications per second on this server; retry in a few seconds",
                self.budget().per_sec
            )));
        }
        let refund = || {
            if reserved {
                self.budget().refund();
            }
        };
        match self.inner.authenticate(token).await {
            Ok(p) => {
                refund();
                if let Some(cache) = &self.cache {
                    cache.insert(key, p.clone()).await;
                }
                self.known_good.insert(key, ()).await;
                Ok(p)
            }
            Err(e @ (AuthError::Unavailable(_) | AuthError::Throttled(_))) => {
                refund();
                Err(e)
            }
            Err(e) => {
                if let Some(refused) = &self.refused {
                    refused.insert(key, e.clone()).await;
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Accepts `good`, refuses everything else; counts lookups.
    struct Counting {
        lookups: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Authenticator for Counting {
        async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if token == "good" {
                Ok(Arc::new(Principal {
                    user: "users/good".into(),
                    tenant: None,
                    bindings: vec![],
                    token: "users/good/apiTokens/t".into(),
                    token_scope: String::new(),
                    token_expire_time: Utc::now() + chrono::Duration::hours(1),
                }))
            } else {
                Err(AuthError::Invalid)
            }
        }
    }

    fn counting(
        ttl: Duration,
        per_sec: u32,
        burst: u32,
    ) -> (CachingAuthenticator<Counting>, Arc<AtomicUsize>) {
        let lookups = Arc::new(AtomicUsize::new(0));
        let auth = CachingAuthenticator::with_failure_budget(
            Counting {
                lookups: lookups.clone(),
            },
            ttl,
            per_sec,
            burst,
        );
        (auth, lookups)
    }

    #[tokio::test]
    async fn a_repeated_bad_token_is_looked_up_once() {
        let (auth, lookups) = counting(Duration::from_secs(5), 1000, 1000);
        for _ in 0..100 {
            assert_eq!(
                auth.authenticate("bad").await.unwrap_err(),
                AuthError::Invalid
            );
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_flood_of_random_tokens_is_throttled_but_known_tokens_are_not() {
        let (auth, lookups) = counting(Duration::from_secs(5), 1, 10);
        // Seen before the flood.
        auth.authenticate("good").await.unwrap();
        auth.invalidate_all();
        let mut throttled = 0;
        for i in 0..1000 {
            match auth.authenticate(&format!("random-{i}")).await {
                Err(AuthError::Throttled(m)) => {
                    assert!(m.contains("failed authentications per second"), "{m}");
                    throttled += 1;
                }
                Err(AuthError::Invalid) => {}
                other => panic!("{other:?}"),
            }
        }
        // About the burst reached the inner authenticator (plus "good").
        let looked_up = lookups.load(Ordering::SeqCst);
        assert!(looked_up <= 1 + 10 + 2, "{looked_up}");
        assert!(throttled >= 980, "{throttled}");
        // The known token is still looked up and accepted.
        assert_eq!(auth.authenticate("good").await.unwrap().user, "users/good");
        assert_eq!(
            tonic::Status::from(AuthError::Throttled("x".into())).code(),
            tonic::Code::ResourceExhausted
        );
    }

    #[tokio::test]
    async fn without_a_ttl_nothing_is_cached_but_the_throttle_holds() {
        let (auth, lookups) = counting(Duration::ZERO, 1, 3);
        for _ in 0..3 {
            assert_eq!(
                auth.authenticate("bad").await.unwrap_err(),
                AuthError::Invalid
            );
        }
        assert!(matches!(
            auth.authenticate("bad").await,
            Err(AuthError::Throttled(_))
        ));
        assert_eq!(lookups.load(Ordering::SeqCst), 3);
        // A token never seen before waits for the budget like any other.
        assert!(matches!(
            auth.authenticate("good").await,
            Err(AuthError::Throttled(_))
        ));
    }

    /// Refuses every token after a pause, like a database round trip.
    struct Slow {
        lookups: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Authenticator for Slow {
        async fn authenticate(&self, _token: &str) -> Result<Arc<Principal>, AuthError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err(AuthError::Invalid)
        }
    }

    /// Concurrent lookups in flight cannot overrun the budget: each one
    /// reserves its failure before it starts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_failed_lookups_stay_within_the_budget() {
        let lookups = Arc::new(AtomicUsize::new(0));
        let auth = Arc::new(CachingAuthenticator::with_failure_budget(
            Slow {
                lookups: lookups.clone(),
            },
            Duration::from_secs(5),
            20,
            10,
        ));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..16 {
            let auth = auth.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..200 {
                    let _ = auth.authenticate(&format!("flood-{t}-{i}")).await;
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let looked_up = lookups.load(Ordering::SeqCst) as f64;
        let bound = 10.0 + 20.0 * elapsed + 1.0;
        assert!(
            looked_up <= bound,
            "{looked_up} lookups in {elapsed:.2}s (bound {bound:.1})"
        );
    }
}
