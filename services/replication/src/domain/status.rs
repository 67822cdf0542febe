//! Observed state as agents report it: object status per site and pods.

use serde_json::Value;

use super::names::ObjectKey;

/// A pod on a site, translated to virtual terms by the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct PodState {
    pub virtual_cluster: String,
    /// The Manifold namespace.
    pub namespace: String,
    /// The physical pod name.
    pub name: String,
    pub node: String,
    pub phase: String,
    pub pod_ip: String,
    pub restarts: i32,
    pub owner_kind: String,
    pub owner_name: String,
    /// The full Pod object (virtual namespace, `manifold.dev/site` label).
    pub object: Value,
}

/// A stored pod: the reported state plus what the control plane knows.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPod {
    pub site: String,
    pub pod: PodState,
    pub site_offline: bool,
    pub revision: i64,
    pub deleted: bool,
}

/// One object's status on one site.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectState {
    pub key: ObjectKey,
    pub status: Value,
    pub observed_revision: i64,
    /// The site refuses the object's latest version.
    pub failure: Option<ApplyFailure>,
}

/// A site's refusal of an object version (`ApplyFailure` on the wire), kept as
/// JSON beside the status.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApplyFailure {
    pub revision: i64,
    pub code: i32,
    pub reason: String,
    pub message: String,
    pub first_time: Option<chrono::DateTime<chrono::Utc>>,
    pub attempts: i32,
}

/// Longest site message kept.
pub const MAX_FAILURE_MESSAGE: usize = 4096;

impl ApplyFailure {
    pub fn from_proto(f: &manifold_proto::replication::v1::ApplyFailure) -> Self {
        let mut message = f.message.clone();
        if message.len() > MAX_FAILURE_MESSAGE {
            let mut cut = MAX_FAILURE_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Self {
            revision: f.revision,
            code: f.code,
            reason: f.reason.chars().take(128).collect(),
            message,
            first_time: f
                .first_time
                .as_ref()
                .and_then(crate::upstream::convert::from_ts),
            attempts: f.attempts,
        }
    }

    pub fn to_proto(&self) -> manifold_proto::replication::v1::ApplyFailure {
        manifold_proto::replication::v1::ApplyFailure {
            revision: self.revision,
            code: self.code,
            reason: self.reason.clone(),
            message: self.message.clone(),
            first_time: self.first_time.map(crate::upstream::convert::ts),
            attempts: self.attempts,
        }
    }
}

/// A Kubernetes Event a site reported, in virtual terms.
#[derive(Debug, Clone, PartialEq)]
pub struct EventState {
    pub virtual_cluster: String,
    pub namespace: String,
    pub name: String,
    pub object: Value,
}

/// A pod that left a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodRemoval {
    /// A pod of one vK8s.
    Exact {
        virtual_cluster: String,
        namespace: String,
        name: String,
    },
    /// `namespace/name` in whichever vK8s of the site has it.
    AnyCluster { namespace: String, name: String },
}

/// One StatusReport, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Replaces everything stored for the site.
    pub full: bool,
    pub objects: Vec<ObjectState>,
    pub deleted_objects: Vec<ObjectKey>,
    pub pods: Vec<PodState>,
    pub removed_pods: Vec<PodRemoval>,
    pub events: Vec<EventState>,
}

impl Report {
    /// The vK8s the report writes to, sorted and unique.
    pub fn clusters(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .objects
            .iter()
            .map(|o| o.key.virtual_cluster.clone())
            .chain(
                self.deleted_objects
                    .iter()
                    .map(|k| k.virtual_cluster.clone()),
            )
            .chain(self.pods.iter().map(|p| p.virtual_cluster.clone()))
            .chain(self.events.iter().map(|e| e.virtual_cluster.clone()))
            .chain(self.removed_pods.iter().filter_map(|r| match r {
                PodRemoval::Exact {
                    virtual_cluster, ..
                } => Some(virtual_cluster.clone()),
                PodRemoval::AnyCluster { .. } => None,
            }))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Drops the objects and pods of vK8s for which `allowed` is false;
    /// returns how many were dropped. A site may only report state for vK8s
    /// placed on it, so a (tenant-owned) site cannot write into another
    /// tenant's view. Removals stay: they only touch the site's own rows.
    pub fn retain_clusters(&mut self, allowed: impl Fn(&str) -> bool) -> usize {
        let before = self.objects.len() + self.pods.len() + self.events.len();
        self.objects.retain(|o| allowed(&o.key.virtual_cluster));
        self.pods.retain(|p| allowed(&p.virtual_cluster));
        self.events.retain(|e| allowed(&e.virtual_cluster));
        before - self.objects.len() - self.pods.len() - self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        !self.full
            && self.objects.is_empty()
            && self.deleted_objects.is_empty()
            && self.pods.is_empty()
            && self.removed_pods.is_empty()
            && self.events.is_empty()
    }
}
