//! The audit service's error type and its one mapping onto gRPC status codes.

use manifold_db::DbError;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid {field}: {description}")]
    InvalidArgument { field: String, description: String },
    #[error(transparent)]
    Denied(#[from] manifold_auth::Denied),
    #[error("storage: {0}")]
    Db(#[from] DbError),
}

impl AuditError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        AuditError::InvalidArgument {
            field: field.to_owned(),
            description: description.into(),
        }
    }
}

impl manifold_db::Retryable for AuditError {
    fn is_retryable(&self) -> bool {
        matches!(self, AuditError::Db(db) if db.is_retryable())
    }
}

impl From<AuditError> for tonic::Status {
    fn from(e: AuditError) -> Self {
        let message = e.to_string();
        match e {
            AuditError::InvalidArgument { field, description } => {
                tonic::Status::with_error_details(
                    Code::InvalidArgument,
                    message,
                    ErrorDetails::with_bad_request_violation(field, description),
                )
            }
            AuditError::Denied(d) => d.into(),
            AuditError::Db(DbError::Unavailable(m)) => {
                tonic::Status::unavailable(format!("database unavailable: {m}"))
            }
            AuditError::Db(db) => {
                tracing::error!(error = %db, "audit storage error");
                tonic::Status::internal("internal storage error")
            }
        }
    }
}
