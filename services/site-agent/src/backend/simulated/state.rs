//! The simulated cluster's state and clock: nodes, stored objects and pods, and
//! `step`, which moves pods through their lifecycle, runs the controllers and
//! publishes what changed to the status feed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

use super::SimulatedOptions;
use super::names;
use super::render;
use super::workloads::{self, Plan, Workload};
use crate::error::BackendError;
use crate::feed::StatusFeed;
use crate::model::{
    DesiredObject, NodeInfo, ObjectKey, ObservedObject, PodId, VirtualCluster, well_known,
};

/// How many controller rounds one step may run (each round can create pods whose
/// first transition is due at once when delays are zero).
const MAX_ROUNDS: usize = 16;

pub(super) struct SimNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ip: String,
    pub ready: bool,
    pub not_ready_since: Option<Instant>,
    next_pod_ip: u32,
}

/// An object stored on the site, with what its controller remembers.
pub(super) struct SimObject {
    pub desired: DesiredObject,
    pub uid: String,
    pub workload: Workload,
    pub template: Option<Arc<Value>>,
    pub hash: String,
    pub crash_annotation: bool,
    pub rt: Runtime,
}

/// Controller memory of one object.
#[derive(Default)]
pub(super) struct Runtime {
    pub start_time: Option<DateTime<Utc>>,
    pub completion_time: Option<DateTime<Utc>>,
    /// StatefulSet: the revision (hash) all pods had before the current update.
    pub current_hash: Option<String>,
    /// Last published conditions, so their timestamps only move on transitions.
    pub conditions: Vec<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Pending, waiting for (or failing) scheduling.
    Unscheduled,
    /// Pending on a node, containers being created.
    Creating,
    Running,
    /// Running phase, container waiting in CrashLoopBackOff.
    CrashBackoff,
    Succeeded,
}

pub(super) struct SimPod {
    pub id: PodId,
    pub owner: ObjectKey,
    pub owner_kind: &'static str,
    pub owner_name: String,
    pub owner_uid: String,
    pub template: Arc<Value>,
    pub hash: String,
    pub ordinal: Option<u32>,
    /// Creation order within the site (deletion preference: newest first).
    pub seq: u64,
    pub uid: String,
    pub created: DateTime<Utc>,
    /// DaemonSet pods are bound to their node.
    pub pinned: Option<usize>,
    pub node: Option<usize>,
    pub ip: String,
    pub phase: Phase,
    pub unschedulable: bool,
    pub next: Option<Instant>,
    pub scheduled: Option<DateTime<Utc>>,
    pub started: Option<DateTime<Utc>>,
    pub first_started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    pub last_crash: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub restarts: i32,
    pub dirty: bool,
}

impl SimPod {
    pub(super) fn is_ready(&self, nodes: &[SimNode]) -> bool {
        self.phase == Phase::Running && self.node.is_some_and(|i| nodes[i].ready)
    }

    pub(super) fn succeeded(&self) -> bool {
        self.phase == Phase::Succeeded
    }
}

pub(super) struct SimState {
    pub site: String,
    pub opts: SimulatedOptions,
    pub nodes: Vec<SimNode>,
    pub objects: BTreeMap<ObjectKey, SimObject>,
    pub pods: BTreeMap<PodId, SimPod>,
    /// `(namespace, workload name)` pairs whose pods crash-loop.
    pub crash_knobs: HashSet<(String, String)>,
    removed: Vec<PodId>,
    seq: u64,
}

impl SimState {
    pub(super) fn new(site: &str, node_count: usize, opts: SimulatedOptions) -> Self {
        let nodes = (1..=node_count)
            .map(|i| {
                let name = format!("{site}-node-{i}");
                let labels = BTreeMap::from([
                    ("kubernetes.io/hostname".to_owned(), name.clone()),
                    ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                    ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
                    ("topology.kubernetes.io/zone".to_owned(), site.to_owned()),
                ]);
                SimNode {
                    ip: format!("10.0.{}.{}", (i / 250) % 256, i % 250 + 2),
                    name,
                    labels,
                    ready: true,
                    not_ready_since: None,
                    next_pod_ip: 2,
                }
            })
            .collect();
        let crash_knobs = opts
            .crash_loop
            .iter()
            .map(|w| match w.split_once('/') {
                Some((ns, name)) => (ns.to_owned(), name.to_owned()),
                None => (String::new(), w.clone()),
            })
            .collect();
        Self {
            site: site.to_owned(),
            opts,
            nodes,
            objects: BTreeMap::new(),
            pods: BTreeMap::new(),
            crash_knobs,
            removed: Vec::new(),
            seq: 0,
        }
    }

    pub(super) fn node_infos(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                ready: n.ready,
            })
            .collect()
    }

    // ------------------------------------------------------------- mutations

    pub(super) fn apply(&mut self, desired: &DesiredObject) {
        let workload = Workload::parse(&desired.key.kind, &desired.object);
        let template = workload
            .pod_owner_kind()
            .and_then(|_| desired.object.pointer("/spec/template"))
            .map(|t| Arc::new(t.clone()));
        let hash = template
            .as_deref()
            .map(names::template_hash)
            .unwrap_or_default();
        let crash_annotation = [
            "/metadata/annotations",
            "/spec/template/metadata/annotations",
        ]
        .iter()
        .any(|p| {
            desired
                .object
                .pointer(p)
                .and_then(|a| a.get(well_known::SIM_CRASH_ANNOTATION))
                .and_then(Value::as_str)
                == Some("true")
        });
        let mut object = desired.object.clone();
        if let Some(o) = self.objects.get_mut(&desired.key) {
            if o.desired.object == desired.object && o.desired.revision == desired.revision {
                return;
            }
            if matches!(workload, Workload::Service) {
                keep_cluster_ip(&o.desired.object, &mut object);
            }
            o.desired = DesiredObject {
                object,
                ..desired.clone()
            };
            o.workload = workload;
            o.template = template;
            o.hash = hash;
            o.crash_annotation = crash_annotation;
            return;
        }
        if matches!(workload, Workload::Service) {
            assign_cluster_ip(&desired.key, &mut object);
        }
        self.objects.insert(
            desired.key.clone(),
            SimObject {
                desired: DesiredObject {
                    object,
                    ..desired.clone()
                },
                uid: names::uid(),
                workload,
                template,
                hash,
                crash_annotation,
                rt: Runtime::default(),
            },
        );
    }

    /// Deletes an object and (cascading, in the background in Kubernetes) its pods.
    pub(super) fn delete(&mut self, key: &ObjectKey) -> bool {
        if self.objects.remove(key).is_none() {
            return false;
        }
        let owned: Vec<PodId> = self
            .pods
            .values()
            .filter(|p| &p.owner == key)
            .map(|p| p.id.clone())
            .collect();
        for id in owned {
            self.remove_pod(&id);
        }
        true
    }

    /// Deletes every object not in `keep`; returns the deleted keys.
    pub(super) fn prune(&mut self, keep: &HashSet<ObjectKey>) -> Vec<ObjectKey> {
        let gone: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for key in &gone {
            self.delete(key);
        }
        gone
    }

    fn remove_pod(&mut self, id: &PodId) {
        if self.pods.remove(id).is_some() {
            self.removed.push(id.clone());
        }
    }

    /// Deletes pods by vK8s (when given), Manifold namespace and name; returns how
    /// many.
    pub(super) fn delete_pod(
        &mut self,
        vc: Option<&VirtualCluster>,
        namespace: &str,
        name: &str,
    ) -> usize {
        let ids: Vec<PodId> = self
            .pods
            .keys()
            .filter(|id| id.namespace == namespace && id.name == name)
            .filter(|id| vc.is_none_or(|vc| &id.virtual_cluster == vc))
            .cloned()
            .collect();
        for id in &ids {
            self.remove_pod(id);
        }
        ids.len()
    }

    pub(super) fn set_node_ready(
        &mut self,
        node: &str,
        ready: bool,
        now: Instant,
    ) -> Result<(), BackendError> {
        let index = self
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| BackendError::NotFound(format!("node {node}")))?;
        let n = &mut self.nodes[index];
        if n.ready == ready {
            return Ok(());
        }
        n.ready = ready;
        n.not_ready_since = (!ready).then_some(now);
        for p in self.pods.values_mut().filter(|p| p.node == Some(index)) {
            p.dirty = true;
        }
        Ok(())
    }

    pub(super) fn set_crash_loop(
        &mut self,
        namespace: &str,
        workload: &str,
        crash: bool,
        now: Instant,
    ) {
        let key = (namespace.to_owned(), workload.to_owned());
        if crash {
            self.crash_knobs.insert(key);
        } else {
            self.crash_knobs.remove(&key);
        }
        // Running pods of the workload crash after the usual time from now.
        let crash_after = self.opts.crash_after;
        let ids: Vec<PodId> = self
            .pods
            .values()
            .filter(|p| p.phase == Phase::Running && p.next.is_none())
            .filter(|p| p.owner.namespace == namespace && p.owner.name == workload)
            .map(|p| p.id.clone())
            .collect();
        if crash {
            for id in ids {
                if let Some(p) = self.pods.get_mut(&id) {
                    p.next = Some(now + crash_after);
                }
            }
        }
    }

    fn is_crashing(&self, pod: &SimPod) -> bool {
        let ns = pod.owner.namespace.as_str();
        let name = pod.owner.name.as_str();
        self.crash_knobs.contains(&(ns.to_owned(), name.to_owned()))
            || self.crash_knobs.contains(&(String::new(), name.to_owned()))
            || self
                .objects
                .get(&pod.owner)
                .is_some_and(|o| o.crash_annotation)
    }

    pub(super) fn pod_is_crashing(&self, pod: &SimPod) -> bool {
        self.is_crashing(pod)
    }

    // ------------------------------------------------------------------ time

    /// When the next timed transition is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let pods = self.pods.values().filter_map(|p| p.next);
        let nodes = self.nodes.iter().enumerate().filter_map(|(i, n)| {
            let has_pods = self.pods.values().any(|p| p.node == Some(i));
            n.not_ready_since
                .filter(|_| has_pods)
                .map(|t| t + self.opts.node_lost_grace)
        });
        pods.chain(nodes).min()
    }

    /// Advances the simulation to `now` and publishes every change to `feed`.
    pub(super) fn step(&mut self, now: Instant, feed: &StatusFeed) {
        let wall = Utc::now();
        for _ in 0..MAX_ROUNDS {
            let mut changed = self.advance_pods(now, wall);
            changed |= self.evict_from_lost_nodes(now);
            changed |= self.reconcile(now, wall);
            if !changed {
                break;
            }
        }
        self.publish(feed, wall);
    }

    fn advance_pods(&mut self, now: Instant, wall: DateTime<Utc>) -> bool {
        let due: Vec<PodId> = self
            .pods
            .values()
            .filter(|p| match p.next {
                Some(t) => t <= now,
                None => p.phase == Phase::Unscheduled,
            })
            .map(|p| p.id.clone())
            .collect();
        let mut changed = false;
        for id in due {
            let Some(pod) = self.pods.get(&id) else {
                continue;
            };
            let crashing = self.is_crashing(pod);
            let is_job = pod.owner_kind == "Job";
            let node = if pod.phase == Phase::Unscheduled {
                self.pick_node(pod)
            } else {
                None
            };
            let opts = &self.opts;
            let Some(pod) = self.pods.get_mut(&id) else {
                continue;
            };
            let run_timer = |crashing: bool| {
                if crashing {
                    Some(now + opts.crash_after)
                } else if is_job {
                    Some(now + opts.job_duration)
                } else {
                    None
                }
            };
            match pod.phase {
                Phase::Unscheduled => match node {
                    Some(i) => {
                        let n = &mut self.nodes[i];
                        pod.ip = format!("10.244.{}.{}", i % 256, n.next_pod_ip);
                        n.next_pod_ip = if n.next_pod_ip >= 254 {
                            2
                        } else {
                            n.next_pod_ip + 1
                        };
                        pod.node = Some(i);
                        pod.phase = Phase::Creating;
                        pod.unschedulable = false;
                        pod.scheduled = Some(wall);
                        pod.next = Some(now + opts.start_delay);
                    }
                    None => {
                        pod.next = None;
                        if pod.unschedulable {
                            continue;
                        }
                        pod.unschedulable = true;
                    }
                },
                Phase::Creating | Phase::CrashBackoff => {
                    pod.phase = Phase::Running;
                    pod.started = Some(wall);
                    pod.first_started.get_or_insert(wall);
                    pod.next = run_timer(crashing);
                }
                Phase::Running if crashing => {
                    pod.phase = Phase::CrashBackoff;
                    pod.restarts += 1;
                    pod.last_crash = Some((pod.started.unwrap_or(wall), wall));
                    pod.next = Some(now + backoff(opts, pod.restarts));
                }
                Phase::Running if is_job => {
                    pod.phase = Phase::Succeeded;
                    pod.finished = Some(wall);
                    pod.next = None;
                }
                Phase::Running | Phase::Succeeded => {
                    pod.next = None;
                    continue;
                }
            }
            pod.dirty = true;
            changed = true;
        }
        changed
    }

    /// The scheduler: a ready node matching the node selector, spreading the pods of
    /// one owner first, then all pods.
    fn pick_node(&self, pod: &SimPod) -> Option<usize> {
        if let Some(i) = pod.pinned {
            return self.nodes[i].ready.then_some(i);
        }
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].ready && workloads::node_matches(&pod.template, &self.nodes[i])
            })
            .min_by_key(|&i| {
                let on_node = self.pods.values().filter(|p| p.node == Some(i));
                let mut same_owner = 0;
                let mut all = 0;
                for p in on_node {
                    all += 1;
                    if p.owner == pod.owner {
                        same_owner += 1;
                    }
                }
                (same_owner, all, i)
            })
    }

    fn evict_from_lost_nodes(&mut self, now: Instant) -> bool {
        let grace = self.opts.node_lost_grace;
        let lost: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.not_ready_since.is_some_and(|t| t + grace <= now))
            .map(|(i, _)| i)
            .collect();
        let evicted: Vec<PodId> = self
            .pods
            .values()
            .filter(|p| p.node.is_some_and(|i| lost.contains(&i)))
            .map(|p| p.id.clone())
            .collect();
        for id in &evicted {
            self.remove_pod(id);
        }
        !evicted.is_empty()
    }

    fn reconcile(&mut self, now: Instant, wall: DateTime<Utc>) -> bool {
        let keys: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, o)| o.workload.pod_owner_kind().is_some() && o.template.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = false;
        for key in keys {
            let plan = {
                let Some(obj) = self.objects.get(&key) else {
                    continue;
                };
                let Some(template) = obj.template.as_deref() else {
                    continue;
                };
                let pods: Vec<&SimPod> = self.pods.values().filter(|p| p.owner == key).collect();
                match obj.workload {
                    Workload::Deployment { .. } => {
                        workloads::plan_deployment(&obj.workload, &obj.hash, &pods, &self.nodes)
                    }
                    Workload::StatefulSet { .. } => {
                        workloads::plan_statefulset(&obj.workload, &obj.hash, &pods, &self.nodes)
                    }
                    Workload::DaemonSet { .. } => workloads::plan_daemonset(
                        &obj.workload,
                        &obj.hash,
                        template,
                        &pods,
                        &self.nodes,
                    ),
                    Workload::Job { .. } => workloads::plan_job(
                        &obj.workload,
                        obj.rt.completion_time.is_some(),
                        &pods,
                        &self.nodes,
                    ),
                    _ => Plan::default(),
                }
            };
            changed |= self.job_bookkeeping(&key, wall);
            if !plan.is_empty() {
                self.execute(&key, plan, now, wall);
                changed = true;
            }
        }
        changed
    }

    /// Job start and completion times.
    fn job_bookkeeping(&mut self, key: &ObjectKey, wall: DateTime<Utc>) -> bool {
        let succeeded = self
            .pods
            .values()
            .filter(|p| &p.owner == key && p.succeeded())
            .count() as i64;
        let Some(obj) = self.objects.get_mut(key) else {
            return false;
        };
        let Workload::Job {
            completions,
            suspend,
            ..
        } = obj.workload
        else {
            return false;
        };
        if !suspend {
            obj.rt.start_time.get_or_insert(wall);
        }
        if obj.rt.completion_time.is_none() && succeeded >= completions {
            obj.rt.completion_time = Some(wall);
            return true;
        }
        false
    }

    fn execute(&mut self, key: &ObjectKey, plan: Plan, now: Instant, wall: DateTime<Utc>) {
        for id in &plan.delete {
            self.remove_pod(id);
        }
        let Some(obj) = self.objects.get(key) else {
            return;
        };
        let Some(template) = obj.template.clone() else {
            return;
        };
        let owner_kind = obj.workload.pod_owner_kind().unwrap_or("ReplicaSet");
        let (owner_name, owner_uid) = if owner_kind == "ReplicaSet" {
            let rs = format!("{}-{}", key.name, obj.hash);
            let uid = names::derived_uid(&obj.uid, &obj.hash);
            (rs, uid)
        } else {
            (key.name.clone(), obj.uid.clone())
        };
        let hash = obj.hash.clone();
        for new in plan.create {
            let name = match new.ordinal {
                Some(o) => format!("{}-{o}", key.name),
                None => self.unique_name(key, &owner_name),
            };
            let id = PodId {
                virtual_cluster: key.virtual_cluster.clone(),
                namespace: key.namespace.clone(),
                name,
            };
            self.seq += 1;
            let pod = SimPod {
                id: id.clone(),
                owner: key.clone(),
                owner_kind,
                owner_name: owner_name.clone(),
                owner_uid: owner_uid.clone(),
                template: template.clone(),
                hash: hash.clone(),
                ordinal: new.ordinal,
                seq: self.seq,
                uid: names::uid(),
                created: wall,
                pinned: new.node,
                node: None,
                ip: String::new(),
                phase: Phase::Unscheduled,
                unschedulable: false,
                next: Some(now + self.opts.schedule_delay),
                scheduled: None,
                started: None,
                first_started: None,
                finished: None,
                last_crash: None,
                restarts: 0,
                dirty: true,
            };
            self.pods.insert(id, pod);
        }
    }

    fn unique_name(&self, key: &ObjectKey, prefix: &str) -> String {
        let taken = |name: &str| {
            self.pods.keys().any(|id| {
                id.name == name
                    && id.namespace == key.namespace
                    && id.virtual_cluster == key.virtual_cluster
            })
        };
        for _ in 0..8 {
            let name = format!("{prefix}-{}", names::random_suffix(5));
            if !taken(&name) {
                return name;
            }
        }
        format!("{prefix}-{}", names::random_suffix(10))
    }

    // --------------------------------------------------------------- publish

    fn publish(&mut self, feed: &StatusFeed, wall: DateTime<Utc>) {
        for id in self.removed.drain(..) {
            feed.remove_pod(&id);
        }
        let dirty: Vec<PodId> = self
            .pods
            .values()
            .filter(|p| p.dirty)
            .map(|p| p.id.clone())
            .collect();
        for id in dirty {
            if let Some(pod) = self.pods.get(&id) {
                feed.upsert_pod(render::observed_pod(self, pod));
            }
            if let Some(pod) = self.pods.get_mut(&id) {
                pod.dirty = false;
            }
        }
        self.statefulset_revisions();
        let keys: Vec<ObjectKey> = self.objects.keys().cloned().collect();
        for key in keys {
            let Some(obj) = self.objects.get(&key) else {
                continue;
            };
            let pods: Vec<&SimPod> = self.pods.values().filter(|p| p.owner == key).collect();
            let Some(status) = render::object_status(obj, &pods, &self.nodes, wall) else {
                continue;
            };
            let revision = obj.desired.revision;
            let conditions = status
                .get("conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(obj) = self.objects.get_mut(&key) {
                obj.rt.conditions = conditions;
            }
            feed.set_object(ObservedObject {
                key,
                status,
                observed_revision: revision,
                failure: None,
            });
        }
    }

    /// A StatefulSet's current revision becomes the update revision once every pod
    /// runs it and is ready.
    fn statefulset_revisions(&mut self) {
        for (key, obj) in self.objects.iter_mut() {
            let Workload::StatefulSet { replicas, .. } = obj.workload else {
                continue;
            };
            let pods: Vec<&SimPod> = self.pods.values().filter(|p| &p.owner == key).collect();
            let done = pods.len() as i64 == replicas
                && pods
                    .iter()
                    .all(|p| p.hash == obj.hash && p.is_ready(&self.nodes));
            if done || obj.rt.current_hash.is_none() {
                obj.rt.current_hash = Some(obj.hash.clone());
            }
        }
    }
}

/// CrashLoopBackOff delay after `restarts` crashes: doubling from the base, capped.
fn backoff(opts: &SimulatedOptions, restarts: i32) -> std::time::Duration {
    let exp = restarts.clamp(1, 16) as u32 - 1;
    opts.crash_backoff
        .saturating_mul(1 << exp)
        .min(opts.crash_backoff_max)
}

fn assign_cluster_ip(key: &ObjectKey, object: &mut Value) {
    let spec = object.as_object_mut().map(|o| {
        o.entry("spec")
            .or_insert_with(|| Value::Object(Default::default()))
    });
    let Some(Value::Object(spec)) = spec else {
        return;
    };
    if spec.get("clusterIP").and_then(Value::as_str) == Some("None") {
        return;
    }
    let ip = names::cluster_ip(&key.to_string());
    spec.insert("clusterIP".into(), Value::String(ip.clone()));
    spec.insert("clusterIPs".into(), Value::Array(vec![Value::String(ip)]));
}

fn keep_cluster_ip(old: &Value, new: &mut Value) {
    let Some(ip) = old.pointer("/spec/clusterIP").cloned() else {
        return;
    };
    if let Some(Value::Object(spec)) = new.get_mut("spec") {
        spec.insert("clusterIP".into(), ip.clone());
        spec.insert("clusterIPs".into(), Value::Array(vec![ip]));
    }
}
