//! The `vk8s` schema: small SQL functions over the caller's transaction
//! (the caller commits), plus the snapshot reader that holds its own.

pub mod changes;
pub mod clusters;
pub mod objects;
pub mod secrets;
