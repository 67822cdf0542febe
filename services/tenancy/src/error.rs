//! Tenancy's error type and its one mapping onto gRPC status codes.

use manifold_db::DbError;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("invalid {field}: {description}")]
    InvalidArgument { field: String, description: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} was changed since it was read (etag mismatch); read it again and retry")]
    Aborted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Denied(#[from] manifold_auth::Denied),
    #[error(transparent)]
    Auth(#[from] manifold_auth::AuthError),
    #[error("storage: {0}")]
    Db(#[from] DbError),
}

impl TenancyError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        TenancyError::InvalidArgument {
            field: field.to_owned(),
            description: description.into(),
        }
    }
}

impl From<TenancyError> for tonic::Status {
    fn from(e: TenancyError) -> Self {
        let message = e.to_string();
        match e {
            TenancyError::InvalidArgument { field, description } => {
                tonic::Status::with_error_details(
                    Code::InvalidArgument,
                    message,
                    ErrorDetails::with_bad_request_violation(field, description),
                )
            }
            TenancyError::NotFound(_) => tonic::Status::not_found(message),
            TenancyError::AlreadyExists(_) => tonic::Status::already_exists(message),
            TenancyError::Aborted(_) => tonic::Status::aborted(message),
            TenancyError::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            TenancyError::Denied(d) => d.into(),
            TenancyError::Auth(a) => a.into(),
            TenancyError::Db(DbError::Unavailable(m)) => {
                tonic::Status::unavailable(format!("database unavailable: {m}"))
            }
            TenancyError::Db(db) => {
                tracing::error!(error = %db, "tenancy storage error");
                tonic::Status::internal("internal storage error")
            }
        }
    }
}

impl manifold_db::Retryable for TenancyError {
    fn is_retryable(&self) -> bool {
        matches!(self, TenancyError::Db(e) if e.is_retryable())
    }
}
