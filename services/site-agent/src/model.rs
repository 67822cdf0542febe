//! Domain types of the agent: the virtual coordinates of objects and pods, desired
//! objects as the control plane sends them, observed state as backends report it, and
//! log requests. No tonic, no kube-rs here.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::error::ModelError;

/// A vK8s, `tenants/{tenant}/namespaces/{namespace}/virtualClusters/{name}`. Cheap to
/// clone: many keys share one allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualCluster(Arc<VcParts>);

#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct VcParts {
    tenant: String,
    namespace: String,
    name: String,
}

/// Tenant, namespace and vK8s ids are DNS labels (1-63 of `[a-z0-9-]`, starting with a
/// letter). The physical naming relies on that, so it is checked here.
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_lowercase()
        && !s.ends_with('-')
}

impl VirtualCluster {
    /// A vK8s from its three ids.
    pub fn new(tenant: &str, namespace: &str, name: &str) -> Result<Self, ModelError> {
        for (what, id) in [("tenant", tenant), ("namespace", namespace), ("name", name)] {
            if !is_id(id) {
                return Err(ModelError::InvalidVirtualCluster(format!(
                    "{what} {id:?} is not a DNS label"
                )));
            }
        }
        Ok(Self(Arc::new(VcParts {
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })))
    }

    /// Parses `tenants/{t}/namespaces/{n}/virtualClusters/{v}`.
    pub fn parse(resource_name: &str) -> Result<Self, ModelError> {
        let parts: Vec<&str> = resource_name.split('/').collect();
        match parts.as_slice() {
            ["tenants", t, "namespaces", n, "virtualClusters", v] => Self::new(t, n, v),
            _ => Err(ModelError::InvalidVirtualCluster(format!(
                "{resource_name:?} is not tenants/{{t}}/namespaces/{{n}}/virtualClusters/{{v}}"
            ))),
        }
    }

    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    /// The Manifold namespace, which is also the Kubernetes namespace inside the vK8s.
    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl fmt::Display for VirtualCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenants/{}/namespaces/{}/virtualClusters/{}",
            self.0.tenant, self.0.namespace, self.0.name
        )
    }
}

impl fmt::Debug for VirtualCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The vK8s coordinates of an object (`ObjectRef` on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub virtual_cluster: VirtualCluster,
    pub api_version: String,
    pub kind: String,
    /// The Kubernetes namespace inside the vK8s (the Manifold namespace); empty for
    /// cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    /// The API group of `api_version` (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{} in {}",
            self.kind, self.namespace, self.name, self.virtual_cluster
        )
    }
}

/// An object as the control plane wants it on this site.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    pub key: ObjectKey,
    /// The change-log revision this version of the object was written at.
    pub revision: i64,
    /// The full Kubernetes object as stored in the vK8s (a JSON object whose
    /// `metadata.namespace` is the Manifold namespace).
    pub object: Value,
}

impl DesiredObject {
    /// Checks that `object` is a JSON object naming the same kind and name as `key`.
    pub fn new(key: ObjectKey, revision: i64, object: Value) -> Result<Self, ModelError> {
        let Value::Object(map) = &object else {
            return Err(ModelError::InvalidObject(format!(
                "{key}: the object is not a JSON object"
            )));
        };
        let kind = map.get("kind").and_then(Value::as_str);
        if kind.is_some_and(|k| k != key.kind) {
            return Err(ModelError::InvalidObject(format!(
                "{key}: the object says kind {:?}",
                kind.unwrap_or_default()
            )));
        }
        let name = object.pointer("/metadata/name").and_then(Value::as_str);
        if name.is_some_and(|n| n != key.name) {
            return Err(ModelError::InvalidObject(format!(
                "{key}: the object is named {:?}",
                name.unwrap_or_default()
            )));
        }
        if key.name.is_empty() {
            return Err(ModelError::InvalidObject(format!("{key}: empty name")));
        }
        Ok(Self {
            key,
            revision,
            object,
        })
    }

    /// `metadata.generation` of the vK8s object (1 when absent).
    pub fn generation(&self) -> i64 {
        self.object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }
}

/// A pod as the vK8s knows it: its vK8s, Manifold namespace and (physical) name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodId {
    pub virtual_cluster: VirtualCluster,
    pub namespace: String,
    pub name: String,
}

impl PodId {
    /// The `deleted_pods` entry of a status report: `namespace/name`.
    pub fn wire_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Observed state of one pod, translated back to virtual terms.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedPod {
    pub id: PodId,
    /// Physical node name (empty while unscheduled).
    pub node: String,
    pub phase: String,
    pub pod_ip: String,
    pub restarts: i32,
    pub owner_kind: String,
    pub owner_name: String,
    /// The full Pod: `metadata.namespace` = Manifold namespace, label
    /// `manifold.dev/site=<site>`, `spec.nodeName` = physical node.
    pub object: Value,
}

/// Observed `.status` of one object on this site.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedObject {
    pub key: ObjectKey,
    pub status: Value,
    /// The revision of the last applied version that this status reflects.
    pub observed_revision: i64,
    /// Set in reports while the site refuses the object's latest version (the
    /// feed adds it; backends leave it `None`).
    pub failure: Option<ApplyFailure>,
}

/// The site's refusal of one version of an object.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyFailure {
    /// The refused revision.
    pub revision: i64,
    /// HTTP status of the refusal.
    pub code: u16,
    /// Kubernetes reason (`Invalid`, `Forbidden`, ...).
    pub reason: String,
    pub message: String,
    /// When this revision was first refused.
    pub first_time: std::time::SystemTime,
    pub attempts: u32,
}

/// A Kubernetes Event about an object of a vK8s, in virtual terms: namespace the
/// Manifold namespace, `involvedObject` the virtual object (with its vK8s uid),
/// `metadata.name` unique per event on this site.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteEvent {
    pub virtual_cluster: VirtualCluster,
    pub object: Value,
}

/// A node of the site and whether it is Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub ready: bool,
}

/// What `kubectl logs` asked for, in virtual terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogParams {
    /// The vK8s of the pod, when the control plane names it (it always should; a
    /// pod name alone may exist in two vK8s of one namespace).
    pub virtual_cluster: Option<VirtualCluster>,
    /// The Manifold namespace of the pod.
    pub namespace: String,
    /// The (physical) pod name, as the vK8s shows it.
    pub pod: String,
    /// The container; `None` means the pod's only (or first) container.
    pub container: Option<String>,
    pub follow: bool,
    /// Only the last N lines (`None` = all).
    pub tail_lines: Option<i64>,
    pub timestamps: bool,
}

/// Annotations and labels the agent understands on vK8s objects.
pub mod well_known {
    /// Label on every pod shown in a vK8s.
    pub const SITE_LABEL: &str = "manifold.dev/site";
    /// Ownership label on everything the agent creates on a cluster.
    pub const MANAGED_BY_LABEL: &str = "manifold.dev/managed-by";
    /// Value of [`MANAGED_BY_LABEL`].
    pub const MANAGED_BY_VALUE: &str = "manifold";
    /// Label naming the vK8s (an escaped, label-safe form) of a managed object.
    pub const VIRTUAL_CLUSTER_LABEL: &str = "manifold.dev/virtual-cluster";
    /// Annotation with the exact vK8s resource name of a managed object.
    pub const VIRTUAL_CLUSTER_ANNOTATION: &str = "manifold.dev/virtual-cluster";
    /// Annotation with the change-log revision a managed object was applied at.
    pub const REVISION_ANNOTATION: &str = "manifold.dev/revision";
    /// Annotation with the vK8s `metadata.generation` of the applied object.
    pub const GENERATION_ANNOTATION: &str = "manifold.dev/generation";
    /// Simulated backend: `"true"` on a workload (or its pod template) makes its pods
    /// crash-loop, like the `set_crash_loop` knob.
    pub const SIM_CRASH_ANNOTATION: &str = "sim.manifold.dev/crash-loop";
    /// The label Kubernetes' PodSecurity admission enforces a namespace by.
    pub const POD_SECURITY_ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
    /// The version of the level's checks it enforces.
    pub const POD_SECURITY_ENFORCE_VERSION_LABEL: &str =
        "pod-security.kubernetes.io/enforce-version";
}
