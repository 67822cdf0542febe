//! Who is calling and what they may do: the principal, the RBAC rules shared by
//! every service, bearer-token extraction, and a tower layer that authenticates
//! every gRPC call before it reaches a handler.
#![forbid(unsafe_code)]

mod cache;
mod layer;
pub mod limits;
mod rbac;
pub mod recheck;
mod remote;

pub use cache::CachingAuthenticator;
pub use layer::{AuthLayer, AuthService};
pub use limits::{DEFAULT_MAX_STREAMS_PER_PRINCIPAL, StreamLimiter, StreamPermit, TooManyStreams};
pub use rbac::{Binding, Denied, Permission, Principal, Role, is_under, tenant_of};
pub use recheck::{DEFAULT_STREAM_RECHECK, Lapse, Recheck, Rechecked};
pub use remote::RemoteAuthenticator;

use std::sync::Arc;

/// Why a credential was refused. Every variant maps to UNAUTHENTICATED except
/// `Unavailable` (UNAVAILABLE) and `Throttled` (RESOURCE_EXHAUSTED).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing credentials: send `authorization: Bearer <token>`")]
    Missing,
    #[error("malformed authorization header: expected `Bearer <token>`")]
    Malformed,
    #[error("unknown or invalid token")]
    Invalid,
    #[error("token expired at {0}; create a new one")]
    Expired(String),
    #[error("token was revoked")]
    Revoked,
    #[error("tenant {0} is suspended")]
    TenantSuspended(String),
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
    /// Too many failed authentications lately: a credential never seen
    /// before is refused without a lookup (RESOURCE_EXHAUSTED, HTTP 429).
    /// Tokens that authenticated recently are not affected.
    #[error("too many failed authentications: {0}")]
    Throttled(String),
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unavailable(_) => tonic::Status::unavailable(e.to_string()),
            AuthError::Throttled(_) => tonic::Status::resource_exhausted(e.to_string()),
            _ => tonic::Status::unauthenticated(e.to_string()),
        }
    }
}

/// Resolves a bearer secret to the principal behind it.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, AuthError>;
}

/// The bearer secret in an `authorization` header value.
pub fn bearer_from_header(value: Option<&http::HeaderValue>) -> Result<&str, AuthError> {
    let value = value.ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// The bearer secret of a gRPC request.
pub fn bearer_from_metadata(metadata: &tonic::metadata::MetadataMap) -> Result<&str, AuthError> {
    let value = metadata.get("authorization").ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}

/// The principal the [`AuthLayer`] attached to a request.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Arc<Principal>, tonic::Status> {
    request
        .extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated(AuthError::Missing.to_string()))
}
