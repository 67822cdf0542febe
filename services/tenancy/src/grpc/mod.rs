//! The gRPC adapter: one struct per proto service, each turning requests into
//! checked domain calls.

pub mod convert;
pub mod identity;
pub mod tenants;
