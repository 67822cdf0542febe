//! The one integration test binary: every end-to-end test, against real
//! Postgres and the real clients.

mod grpcurl;
mod rls;
mod sites;
mod tenancy;
