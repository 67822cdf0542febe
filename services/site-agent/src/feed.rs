//! The status feed: observed state flowing from a backend to the session.
//!
//! A coalescing channel rather than a queue. Backends write the current state of pods
//! and objects; the feed remembers which entries changed since the session last took
//! them. Memory is bounded by the state itself (a pod that changes 100 times while the
//! control plane is unreachable is reported once), nothing is lost across reconnects,
//! and an idle feed costs nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use crate::model::{ApplyFailure, ObjectKey, ObservedObject, ObservedPod, PodId, SiteEvent};

/// Events waiting to be reported, at most (older ones are dropped first).
const MAX_PENDING_EVENTS: usize = 256;

/// The observed state of a site, with change tracking.
pub struct StatusFeed {
    state: Mutex<FeedState>,
    version: watch::Sender<u64>,
    /// Whether the backend's observed state is complete (its watches have listed):
    /// a full report before that would tell the control plane that pods vanished.
    ready: watch::Sender<bool>,
    /// Bumped when the backend wants every desired object sent again (its cluster
    /// lost what was applied, e.g. a namespace deleted by hand).
    resync: watch::Sender<u64>,
}

#[derive(Default)]
struct FeedState {
    pods: HashMap<PodId, ObservedPod>,
    objects: HashMap<ObjectKey, ObservedObject>,
    /// Objects whose latest version the site refuses.
    failures: HashMap<ObjectKey, ApplyFailure>,
    /// Pods changed or removed since last taken (removed = absent from `pods`).
    dirty_pods: HashSet<PodId>,
    /// Objects whose status or failure changed since last taken.
    dirty_objects: HashSet<ObjectKey>,
    events: VecDeque<SiteEvent>,
}

impl FeedState {
    /// What a report says of `key`: its status (with the failure, if any), or
    /// `None` when the site holds nothing of it.
    fn report_of(&self, key: &ObjectKey) -> Option<ObservedObject> {
        let failure = self.failures.get(key).cloned();
        match (self.objects.get(key), failure) {
            (Some(o), failure) => Some(ObservedObject {
                failure,
                ..o.clone()
            }),
            (None, Some(f)) => Some(ObservedObject {
                key: key.clone(),
                status: serde_json::json!({}),
                observed_revision: 0,
                failure: Some(f),
            }),
            (None, None) => None,
        }
    }
}

/// Changes to report.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatusBatch {
    pub pods: Vec<ObservedPod>,
    pub deleted_pods: Vec<PodId>,
    pub objects: Vec<ObservedObject>,
    /// Objects gone from the site (their per-site status is to be dropped).
    pub deleted_objects: Vec<ObjectKey>,
    pub events: Vec<SiteEvent>,
}

impl StatusBatch {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
            && self.deleted_pods.is_empty()
            && self.objects.is_empty()
            && self.deleted_objects.is_empty()
            && self.events.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pods.len()
            + self.deleted_pods.len()
            + self.objects.len()
            + self.deleted_objects.len()
            + self.events.len()
    }
}

impl Default for StatusFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusFeed {
    /// A feed whose state is complete from the start (backends that know
    /// everything at once, like the simulated one).
    pub fn new() -> Self {
        Self::with_ready(true)
    }

    /// A feed that becomes ready when the backend says so ([`StatusFeed::set_ready`]).
    pub fn with_ready(ready: bool) -> Self {
        Self {
            state: Mutex::new(FeedState::default()),
            version: watch::Sender::new(0),
            ready: watch::Sender::new(ready),
            resync: watch::Sender::new(0),
        }
    }

    /// Marks the observed state complete (or not, after a watch lost its list).
    pub fn set_ready(&self, ready: bool) {
        self.ready
            .send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the observed state is complete.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Asks the session to have every desired object sent again.
    pub fn request_resync(&self) {
        self.resync.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees a new value after every resync request.
    pub fn resync_requests(&self) -> watch::Receiver<u64> {
        self.resync.subscribe()
    }

    /// Records that the site refuses the latest version of `key`.
    pub fn set_failure(&self, key: &ObjectKey, failure: ApplyFailure) {
        {
            let mut s = self.lock();
            if s.failures.get(key) == Some(&failure) {
                return;
            }
            s.failures.insert(key.clone(), failure);
            s.dirty_objects.insert(key.clone());
        }
        self.bump();
    }

    /// The site took `key` (or it is no longer wanted): its failure is gone.
    pub fn clear_failure(&self, key: &ObjectKey) {
        {
            let mut s = self.lock();
            if s.failures.remove(key).is_none() {
                return;
            }
            s.dirty_objects.insert(key.clone());
        }
        self.bump();
    }

    pub fn failure(&self, key: &ObjectKey) -> Option<ApplyFailure> {
        self.lock().failures.get(key).cloned()
    }

    /// Queues an Event for the next report (a newer event of the same name
    /// replaces a queued one; the oldest are dropped beyond a bound).
    pub fn push_event(&self, event: SiteEvent) {
        {
            let mut s = self.lock();
            let name = event.object.pointer("/metadata/name").cloned();
            if name.is_some() {
                s.events
                    .retain(|e| e.object.pointer("/metadata/name").cloned() != name);
            }
            if s.events.len() >= MAX_PENDING_EVENTS {
                s.events.pop_front();
            }
            s.events.push_back(event);
        }
        self.bump();
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees a new value after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Records a pod's current state (no-op when unchanged).
    pub fn upsert_pod(&self, pod: ObservedPod) {
        {
            let mut s = self.lock();
            if s.pods.get(&pod.id) == Some(&pod) {
                return;
            }
            s.dirty_pods.insert(pod.id.clone());
            s.pods.insert(pod.id.clone(), pod);
        }
        self.bump();
    }

    /// Records that a pod is gone (no-op when unknown).
    pub fn remove_pod(&self, id: &PodId) {
        {
            let mut s = self.lock();
            if s.pods.remove(id).is_none() {
                return;
            }
            s.dirty_pods.insert(id.clone());
        }
        self.bump();
    }

    /// Removes every pod for which `keep` is false (after a watch restart).
    pub fn retain_pods(&self, mut keep: impl FnMut(&PodId) -> bool) {
        let removed = {
            let mut s = self.lock();
            let gone: Vec<PodId> = s.pods.keys().filter(|id| !keep(id)).cloned().collect();
            for id in &gone {
                s.pods.remove(id);
                s.dirty_pods.insert(id.clone());
            }
            !gone.is_empty()
        };
        if removed {
            self.bump();
        }
    }

    /// Records an object's current status (no-op when unchanged).
    pub fn set_object(&self, mut object: ObservedObject) {
        object.failure = None;
        {
            let mut s = self.lock();
            if s.objects.get(&object.key) == Some(&object) {
                return;
            }
            s.dirty_objects.insert(object.key.clone());
            s.objects.insert(object.key.clone(), object);
        }
        self.bump();
    }

    /// Records that an object is gone from the site (no-op when unknown).
    pub fn remove_object(&self, key: &ObjectKey) {
        {
            let mut s = self.lock();
            if s.objects.remove(key).is_none() {
                return;
            }
            s.dirty_objects.insert(key.clone());
        }
        self.bump();
    }

    /// Removes every object status for which `keep` is false.
    pub fn retain_objects(&self, mut keep: impl FnMut(&ObjectKey) -> bool) {
        let removed = {
            let mut s = self.lock();
            let gone: Vec<ObjectKey> = s.objects.keys().filter(|k| !keep(k)).cloned().collect();
            for key in &gone {
                s.objects.remove(key);
                s.dirty_objects.insert(key.clone());
            }
            !gone.is_empty()
        };
        if removed {
            self.bump();
        }
    }

    /// Whether anything changed since last taken.
    pub fn has_changes(&self) -> bool {
        let s = self.lock();
        !s.dirty_pods.is_empty() || !s.dirty_objects.is_empty() || !s.events.is_empty()
    }

    /// Takes up to `max` changed entries (objects first: they carry the rollout
    /// state; events last).
    pub fn take_changes(&self, max: usize) -> StatusBatch {
        let mut s = self.lock();
        let mut batch = StatusBatch::default();
        let objects: Vec<ObjectKey> = s.dirty_objects.iter().take(max).cloned().collect();
        for key in objects {
            s.dirty_objects.remove(&key);
            match s.report_of(&key) {
                Some(o) => batch.objects.push(o),
                None => batch.deleted_objects.push(key),
            }
        }
        let room = max.saturating_sub(batch.len());
        let pods: Vec<PodId> = s.dirty_pods.iter().take(room).cloned().collect();
        for id in pods {
            s.dirty_pods.remove(&id);
            match s.pods.get(&id) {
                Some(p) => batch.pods.push(p.clone()),
                None => batch.deleted_pods.push(id),
            }
        }
        let room = max.saturating_sub(batch.len());
        let n = room.min(s.events.len());
        batch.events = s.events.drain(..n).collect();
        batch
    }

    /// Everything currently observed, for a full report (which replaces what the
    /// control plane holds, so removals need not be listed). Clears the change
    /// marks; queued events go along.
    pub fn take_all(&self) -> StatusBatch {
        let mut s = self.lock();
        s.dirty_pods.clear();
        s.dirty_objects.clear();
        let keys: HashSet<ObjectKey> = s.objects.keys().chain(s.failures.keys()).cloned().collect();
        StatusBatch {
            pods: s.pods.values().cloned().collect(),
            objects: keys.iter().filter_map(|k| s.report_of(k)).collect(),
            events: s.events.drain(..).collect(),
            ..StatusBatch::default()
        }
    }

    /// Pods in Manifold namespace `namespace` named `name` (one, unless two vK8s of
    /// the namespace happen to hold a pod of the same name).
    pub fn find_pods(&self, namespace: &str, name: &str) -> Vec<ObservedPod> {
        self.lock()
            .pods
            .values()
            .filter(|p| p.id.namespace == namespace && p.id.name == name)
            .cloned()
            .collect()
    }

    pub fn pod(&self, id: &PodId) -> Option<ObservedPod> {
        self.lock().pods.get(id).cloned()
    }

    pub fn pods(&self) -> Vec<ObservedPod> {
        let mut pods: Vec<ObservedPod> = self.lock().pods.values().cloned().collect();
        pods.sort_by(|a, b| a.id.cmp(&b.id));
        pods
    }

    pub fn object(&self, key: &ObjectKey) -> Option<ObservedObject> {
        self.lock().objects.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VirtualCluster;
    use serde_json::json;

    fn pod(name: &str, phase: &str) -> ObservedPod {
        ObservedPod {
            id: PodId {
                virtual_cluster: VirtualCluster::new("acme", "shop", "demo").unwrap(),
                namespace: "shop".into(),
                name: name.into(),
            },
            node: "n1".into(),
            phase: phase.into(),
            pod_ip: String::new(),
            restarts: 0,
            owner_kind: "ReplicaSet".into(),
            owner_name: "web-abc".into(),
            object: json!({}),
        }
    }

    #[test]
    fn coalesces_and_reports_deletions() {
        let feed = StatusFeed::new();
        let mut rx = feed.subscribe();
        feed.upsert_pod(pod("a", "Pending"));
        feed.upsert_pod(pod("a", "Running"));
        feed.upsert_pod(pod("b", "Running"));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let batch = feed.take_changes(10);
        assert_eq!(batch.pods.len(), 2);
        assert!(
            batch
                .pods
                .iter()
                .any(|p| p.phase == "Running" && p.id.name == "a")
        );
        assert!(!feed.has_changes());

        // Unchanged upserts do not wake anyone.
        feed.upsert_pod(pod("a", "Running"));
        assert!(!rx.has_changed().unwrap());

        feed.remove_pod(&pod("a", "").id);
        let batch = feed.take_changes(10);
        assert_eq!(batch.deleted_pods.len(), 1);
        assert_eq!(batch.deleted_pods[0].wire_key(), "shop/a");
    }

    #[test]
    fn take_all_is_the_current_state_and_limits_apply() {
        let feed = StatusFeed::new();
        for i in 0..5 {
            feed.upsert_pod(pod(&format!("p{i}"), "Running"));
        }
        assert_eq!(feed.take_changes(2).len(), 2);
        assert_eq!(feed.take_changes(10).len(), 3);
        feed.remove_pod(&pod("p0", "").id);
        let all = feed.take_all();
        assert_eq!(all.pods.len(), 4);
        assert!(all.deleted_pods.is_empty());
        assert!(!feed.has_changes());
    }

    #[test]
    fn object_removals_are_reported_once() {
        let feed = StatusFeed::new();
        let key = ObjectKey {
            virtual_cluster: VirtualCluster::new("acme", "shop", "demo").unwrap(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        feed.set_object(ObservedObject {
            key: key.clone(),
            status: json!({}),
            observed_revision: 3,
            failure: None,
        });
        assert_eq!(feed.take_changes(10).objects.len(), 1);
        feed.remove_object(&key);
        feed.remove_object(&key);
        let batch = feed.take_changes(10);
        assert_eq!(batch.deleted_objects, vec![key]);
        assert!(feed.take_changes(10).is_empty());
    }
}
