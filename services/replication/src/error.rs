//! The service's one error type and its gRPC rendering.

use manifold_db::DbError;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("invalid {field}: {description}")]
    InvalidArgument { field: String, description: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error(transparent)]
    Denied(#[from] manifold_auth::Denied),
    #[error(transparent)]
    Db(#[from] DbError),
    /// Another control-plane service answered with an error.
    #[error("{}: {}", .0.code(), .0.message())]
    Upstream(tonic::Status),
    #[error("internal error: {0}")]
    Internal(String),
    /// Another replica's answer to a forwarded call, passed on as is.
    #[error("{}", .0.message())]
    Forwarded(tonic::Status),
}

impl ReplicationError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl manifold_db::Retryable for ReplicationError {
    fn is_retryable(&self) -> bool {
        matches!(self, ReplicationError::Db(e) if e.is_retryable())
    }
}

impl From<ReplicationError> for tonic::Status {
    fn from(e: ReplicationError) -> Self {
        let message = e.to_string();
        match e {
            ReplicationError::InvalidArgument { field, description } => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(field, description);
                tonic::Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ReplicationError::NotFound(_) => tonic::Status::not_found(message),
            ReplicationError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            ReplicationError::PermissionDenied(_) => tonic::Status::permission_denied(message),
            ReplicationError::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            ReplicationError::OutOfRange(_) => tonic::Status::out_of_range(message),
            ReplicationError::Unavailable(_) => tonic::Status::unavailable(message),
            ReplicationError::ResourceExhausted(_) => tonic::Status::resource_exhausted(message),
            ReplicationError::Denied(d) => d.into(),
            ReplicationError::Db(DbError::Unavailable(m)) => {
                tracing::warn!(error = %m, "database unavailable");
                tonic::Status::unavailable("the database is unavailable; retry")
            }
            ReplicationError::Db(e) => {
                tracing::error!(error = %e, "storage error");
                tonic::Status::internal("internal storage error")
            }
            ReplicationError::Upstream(s) => match s.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    tonic::Status::unavailable(format!(
                        "a control-plane service is unavailable: {}",
                        s.message()
                    ))
                }
                _ => {
                    tracing::error!(code = ?s.code(), error = %s.message(), "upstream error");
                    tonic::Status::internal("internal error")
                }
            },
            ReplicationError::Forwarded(s) => s,
            ReplicationError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
