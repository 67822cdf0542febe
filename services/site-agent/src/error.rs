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
    /// The object or request can never succeed as given; retrying is pointless.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The pod, container or object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The cluster refused because of something else already there (a namespace of
    /// another owner, an object not managed by Manifold).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The cluster could not be reached or failed; the same call may succeed later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl BackendError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Unavailable(_))
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
