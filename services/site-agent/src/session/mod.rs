//! The agent's life: obtain credentials, keep one `SiteSync.Connect` stream open,
//! reconnect with exponential backoff and jitter, and resume from the last
//! acknowledged revision (kept in memory: after a process restart it is 0 and the
//! control plane sends a snapshot).

mod applier;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::identity::{Identity, ensure_identity};

/// Exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling from
/// `min` up to `max`.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let low = d / 2;
        let jitter = rand::rng().random_range(0..=(d - low).as_millis() as u64);
        low + Duration::from_millis(jitter)
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Where the agent stands; survives reconnects, not process restarts.
pub(crate) struct AgentState {
    pub identity: Identity,
    /// Highest revision applied and acknowledged.
    pub last_acked: i64,
    /// The applier between sessions (its retry queue and desired set).
    pub applier: Option<applier::Applier>,
    /// The key and CSR of a renewal under way (key PEM, CSR PEM). Kept
    /// across sessions: a renewal whose answer was lost is asked again with
    /// the same key, which the registry answers with the certificate it
    /// already issued (a certificate is renewed only once).
    pub renewal_key: Option<(String, String)>,
}

/// Waits `delay`, or returns false when shut down first.
async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

fn is_transient(e: &AgentError) -> bool {
    match e {
        AgentError::Transport(_) | AgentError::StreamClosed => true,
        AgentError::Rpc(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Internal
                | tonic::Code::Unknown
                | tonic::Code::ResourceExhausted
                | tonic::Code::Aborted
                | tonic::Code::Cancelled
        ),
        _ => false,
    }
}

/// Runs the agent until `shutdown`: registers when needed, then keeps the replication
/// stream up. Returns an error only for what retrying cannot fix (bad configuration,
/// a refused registration token).
pub async fn run(
    config: AgentConfig,
    backend: Arc<dyn Backend>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    config.validate()?;
    let mut backoff = Backoff::new(config.reconnect_min, config.reconnect_max);
    let identity = loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            attempt = ensure_identity(&config) => attempt,
        };
        match attempt {
            Ok(identity) => break identity,
            Err(e) if is_transient(&e) => {
                tracing::warn!(site = %config.site, error = %e, "registration failed; retrying");
                if !pause(backoff.next_delay(), &shutdown).await {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    };
    backoff.reset();
    if identity.expires_within(Duration::ZERO) {
        tracing::error!(site = %config.site, expired = %identity.not_after(),
            "the agent certificate has expired; register the site again with a new token");
    }
    let mut state = AgentState {
        identity,
        last_acked: 0,
        applier: None,
        renewal_key: None,
    };
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let outcome = stream::Session::new(&config, backend.clone(), &mut state, &shutdown)
            .run()
            .await;
        match outcome {
            Ok(()) => return Ok(()),
            Err(stream::SessionError {
                error: AgentError::Resync,
                ..
            }) => {
                // Start over from a snapshot, at once.
                state.last_acked = 0;
                backoff.reset();
                continue;
            }
            Err(stream::SessionError { error, established }) => {
                if established {
                    backoff.reset();
                }
                let level_error = matches!(&error, AgentError::Rpc(s)
                    if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied));
                if matches!(error, AgentError::Renewed) {
                    tracing::info!(site = %config.site, "reconnecting with the renewed certificate");
                } else if level_error {
                    tracing::error!(site = %config.site, error = %error,
                        "the control plane refused this agent's certificate");
                } else {
                    tracing::warn!(site = %config.site, error = %error, last_acked = state.last_acked,
                        "replication stream lost; reconnecting");
                }
            }
        }
        if !pause(backoff.next_delay(), &shutdown).await {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_bounded() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut bound = Duration::from_millis(200);
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= bound && d >= bound / 2, "{d:?} vs {bound:?}");
            bound = (bound * 2).min(Duration::from_secs(10));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }
}
