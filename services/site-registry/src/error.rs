//! The site registry's error type and its one mapping onto gRPC status codes.

use manifold_db::DbError;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
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
    /// A credential of the agent-facing calls (registration token, client
    /// certificate) is missing or no longer valid.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error(transparent)]
    Denied(#[from] manifold_auth::Denied),
    #[error(transparent)]
    Auth(#[from] manifold_auth::AuthError),
    /// The tenancy API answered with an error other than NOT_FOUND.
    #[error("tenancy: {}", .0.message())]
    Upstream(tonic::Status),
    /// This process cannot sign certificates (it has no CA key).
    #[error("this control-plane process holds no CA key and cannot issue certificates")]
    NoCa,
    #[error("signing: {0}")]
    Pki(manifold_pki::PkiError),
    #[error("storage: {0}")]
    Db(#[from] DbError),
}

impl SiteError {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        SiteError::InvalidArgument {
            field: field.to_owned(),
            description: description.into(),
        }
    }
}

impl From<SiteError> for tonic::Status {
    fn from(e: SiteError) -> Self {
        let message = e.to_string();
        match e {
            SiteError::InvalidArgument { field, description } => tonic::Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, description),
            ),
            SiteError::NotFound(_) => tonic::Status::not_found(message),
            SiteError::AlreadyExists(_) => tonic::Status::already_exists(message),
            SiteError::Aborted(_) => tonic::Status::aborted(message),
            SiteError::FailedPrecondition(_) | SiteError::NoCa => {
                tonic::Status::failed_precondition(message)
            }
            SiteError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            SiteError::PermissionDenied(_) => tonic::Status::permission_denied(message),
            SiteError::Denied(d) => d.into(),
            SiteError::Auth(a) => a.into(),
            SiteError::Upstream(s) => match s.code() {
                // The caller's own token was refused or lacks the right: pass it on.
                Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument => {
                    tonic::Status::new(s.code(), s.message().to_owned())
                }
                _ => {
                    tracing::warn!(error = %s.message(), code = ?s.code(), "tenancy call failed");
                    tonic::Status::unavailable(format!("tenancy unavailable: {}", s.message()))
                }
            },
            SiteError::Pki(p) => {
                tracing::error!(error = %p, "certificate signing failed");
                tonic::Status::internal("certificate signing failed")
            }
            SiteError::Db(DbError::Unavailable(m)) => {
                tonic::Status::unavailable(format!("database unavailable: {m}"))
            }
            SiteError::Db(db) => {
                tracing::error!(error = %db, "site registry storage error");
                tonic::Status::internal("internal storage error")
            }
        }
    }
}

impl manifold_db::Retryable for SiteError {
    fn is_retryable(&self) -> bool {
        matches!(self, SiteError::Db(e) if e.is_retryable())
    }
}
