//! The agent's error types: one for domain values, one for backends, one for the agent.

use std::path::PathBuf;

/// A value from the wire or the configuration that cannot be a domain value.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid virtual cluster: {0}")]
    InvalidVirtualCluster(String),
    #[error("invalid object: {0}")]
    InvalidObject(String),
    #[error("invalid message: {0}")]
    InvalidMessage(String),
}

/// What a backend reports when it cannot do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The agent cannot make the object into something a cluster takes (a
    /// cluster-scoped kind, a kind the cluster does not serve).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The pod, container or object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The cluster refused because of something else already there (a namespace of
    /// another owner, an object not managed by Manifold).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The cluster's API server answered and refused this object: invalid, an
    /// immutable field, a quota, a terminating namespace, an admission webhook,
    /// an internal error about this request. The cluster itself works: other
    /// objects keep flowing, this one is retried later.
    #[error("the cluster refused it ({code} {reason}): {message}")]
    Refused {
        /// The HTTP status.
        code: u16,
        /// The Kubernetes `Status.reason`.
        reason: String,
        message: String,
    },
    /// The cluster as a whole cannot be reached or is failing (connection
    /// refused, TLS, timeouts, 503, throttling); the same call may succeed later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl BackendError {
    /// Whether the cluster as a whole is unreachable (retry the same call later;
    /// nothing else can be applied either).
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Unavailable(_))
    }

    /// The HTTP status, Kubernetes reason and message to show the user for a
    /// refusal of an object.
    pub fn failure_parts(&self) -> (u16, String, String) {
        match self {
            BackendError::Refused {
                code,
                reason,
                message,
            } => (*code, reason.clone(), message.clone()),
            BackendError::Invalid(m) => (422, "Invalid".into(), m.clone()),
            BackendError::NotFound(m) => (404, "NotFound".into(), m.clone()),
            BackendError::Conflict(m) => (409, "Conflict".into(), m.clone()),
            BackendError::Unavailable(m) => (503, "ServiceUnavailable".into(), m.clone()),
        }
    }
}

/// Errors of registration and of the replication session.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(
        "site {site} has no certificate in its data directory and no registration token was given"
    )]
    NotRegistered { site: String },
    #[error("registration refused: {0}")]
    RegistrationRefused(tonic::Status),
    #[error("control plane call failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("cannot connect to the control plane: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Pki(#[from] manifold_pki::PkiError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("protocol violation by the control plane: {0}")]
    Protocol(String),
    #[error("the control plane closed the stream")]
    StreamClosed,
    /// The backend asked for every desired object again (its cluster lost them).
    #[error("the cluster lost what was applied; resynchronising")]
    Resync,
    /// The certificate was just renewed: the session ends so the next one
    /// connects with the new certificate (the old one is revoked after a
    /// short grace).
    #[error("the certificate was renewed; reconnecting with the new one")]
    Renewed,
}

impl AgentError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AgentError::Io {
            path: path.into(),
            source,
        }
    }
}
