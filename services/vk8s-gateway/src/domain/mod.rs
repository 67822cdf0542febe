//! The gateway's domain: names and rules of virtual clusters, the metadata
//! rules of Kubernetes objects, change events and kubeconfigs. No gRPC, no
//! HTTP, no SQL in here.

pub mod cluster;
pub mod event;
pub mod kubeconfig;
pub mod names;
pub mod object;

pub use cluster::{ClusterUpdate, NewCluster, VirtualCluster};
pub use event::{Change, EventType};
pub use names::{ClusterName, NamespaceRef};
pub use object::{ObjectKey, Part};
