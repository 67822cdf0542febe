//! One entry of the change log, as watchers and the object feed see it.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The stored and Kubernetes spelling (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADDED" => EventType::Added,
            "MODIFIED" => EventType::Modified,
            "DELETED" => EventType::Deleted,
            _ => return None,
        })
    }
}

/// A committed change. `object` is the object after the change (for
/// `Deleted`, its last state with the deletion's resourceVersion).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub revision: i64,
    pub tenant_id: Uuid,
    pub vcluster_id: Uuid,
    /// `tenants/{t}/namespaces/{n}/virtualClusters/{v}`.
    pub vcluster: String,
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub event: EventType,
    pub object: Arc<Value>,
    /// The object before the change (`None` for `Added`).
    pub prev: Option<Arc<Value>>,
    /// Set when the stored bodies do not decrypt (their key is gone, their
    /// bytes were altered): why. `object` and `prev` then carry only the
    /// object's identity, never a guess at its content.
    pub unreadable: Option<Arc<crate::encryption::EncryptionError>>,
}
