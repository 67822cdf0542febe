//! The gRPC adapter: one struct per proto service, each turning requests into
//! checked domain values and calling the core.

pub mod convert;
pub mod registration;
pub mod sites;
pub mod virtual_sites;

use crate::core::Caller;
use crate::error::SiteError;

/// The authenticated caller of a bearer-token call, with the token to forward
/// to tenancy.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    let principal = manifold_auth::principal(request)?;
    let token = manifold_auth::bearer_from_metadata(request.metadata())
        .map_err(SiteError::from)?
        .to_owned();
    Ok(Caller { principal, token })
}
