//! The `replication` schema's SQL: small functions over one transaction,
//! the caller commits. Tenant-owned rows carry tenant_id and row-level
//! security checks it again inside Postgres.

pub mod events;
pub mod objects;
pub mod pods;
pub mod report;
pub mod sites;
pub mod tenants;

/// Pod writes notify this channel with the vK8s name (WatchPods wakes).
pub const PODS_CHANNEL: &str = "replication_pods";
/// Status changes notify this channel with the vK8s name
/// (WatchObjectStatus wakes).
pub const STATUS_CHANNEL: &str = "replication_status";
/// Commands for whichever replica holds a site's stream (DeletePod).
pub const COMMANDS_CHANNEL: &str = "replication_commands";
