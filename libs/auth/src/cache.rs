//! A short-lived cache in front of any authenticator, so the per-call cost of
//! authentication is a hash and a map lookup. Entries live for the configured
//! TTL, which bounds how long a revoked token keeps working elsewhere.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::{AuthError, Authenticator, Principal};

pub struct CachingAuthenticator<A> {
    inner: A,
    /// `None` when the TTL is zero: every call goes to `inner`.
    cache: Option<moka::future::Cache<[u8; 32], Arc<Principal>>>,
}

impl<A: Authenticator> CachingAuthenticator<A> {
    pub fn new(inner: A, ttl: Duration) -> Self {
        Self {
            inner,
            cache: (!ttl.is_zero()).then(|| {
                moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(ttl)
                    .build()
            }),
        }
    }

    /// Forgets every cached principal (after a revocation or role change).
    pub fn invalidate_all(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    pub fn inner(&self) -> &A {
        &self.inner
    }
}

#[async_trait::async_trait]
impl<A: Authenticator> Authenticator for CachingAuthenticator<A> {
    async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let Some(cache) = &self.cache else {
            return self.inner.authenticate(token).await;
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(p) = cache.get(&key).await {
            if p.token_expire_time > Utc::now() {
                return Ok(p);
            }
            cache.invalidate(&key).await;
            return Err(AuthError::Expired(p.token_expire_time.to_rfc3339()));
        }
        let p = self.inner.authenticate(token).await?;
        cache.insert(key, p.clone()).await;
        Ok(p)
    }
}
