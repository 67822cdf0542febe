//! What the agent drives: a cluster behind the [`Backend`] trait. `kube` is a real
//! cluster through kube-rs; `simulated` is an in-process stand-in with N nodes.

pub mod kube;
pub mod simulated;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;

use crate::error::BackendError;
use crate::feed::StatusFeed;
use crate::model::{DesiredObject, LogParams, NodeInfo, ObjectKey, VirtualCluster};

/// Log bytes of one container, in chunks.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, BackendError>> + Send>>;

/// A cluster the agent replicates into. Every call is idempotent, so the session can
/// replay after a reconnect: applying the same object twice, or deleting a missing
/// one, succeeds.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Creates or updates `object` on the cluster.
    async fn apply(&self, object: &DesiredObject) -> Result<(), BackendError>;

    /// Deletes the object (and what it owns). A missing object is success.
    async fn delete(&self, key: &ObjectKey, revision: i64) -> Result<(), BackendError>;

    /// A snapshot starts: the applies that follow name everything desired.
    async fn begin_snapshot(&self, _revision: i64) -> Result<(), BackendError> {
        Ok(())
    }

    /// The snapshot is complete: deletes every object the agent applied that `keep`
    /// does not name (never what the cluster's own controllers made from them), and
    /// what it made for vK8s of which `keep` names nothing. Returns how many objects
    /// were pruned.
    async fn end_snapshot(
        &self,
        revision: i64,
        keep: &HashSet<ObjectKey>,
    ) -> Result<usize, BackendError>;

    /// Observed state of what this backend manages (object status, pods). The session
    /// reports from it; backends keep it current.
    fn status_feed(&self) -> Arc<StatusFeed>;

    /// The cluster's nodes and their readiness. An error means "not known now"
    /// (the node watch has not listed yet, or the cluster cannot be reached).
    async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError>;

    /// Whether the cluster's API server answers and is healthy; `Err(why)` when not.
    async fn probe(&self) -> Result<(), String> {
        Ok(())
    }

    /// Removes what the agent made on the cluster for vK8s `vc` beyond its objects
    /// (the physical namespace), once no object of it is desired on this site.
    async fn remove_virtual_cluster(&self, _vc: &VirtualCluster) -> Result<(), BackendError> {
        Ok(())
    }

    /// The site's Pod Security level (`privileged`, `baseline`, `restricted`),
    /// as the control plane sent it: every physical namespace the backend
    /// makes, and every one it made before, carries it as its
    /// `pod-security.kubernetes.io/enforce` label, so the site's own admission
    /// is a second wall behind the gateway's.
    fn set_pod_security(&self, _level: &str) {}

    /// Logs of a pod's container (following when asked).
    async fn logs(&self, params: &LogParams) -> Result<LogStream, BackendError>;

    /// Deletes a pod by its vK8s (when known), Manifold namespace and name; its
    /// controller recreates it.
    async fn delete_pod(
        &self,
        virtual_cluster: Option<&VirtualCluster>,
        namespace: &str,
        pod: &str,
    ) -> Result<(), BackendError>;
}
