//! The `simulated` backend: an in-process stand-in for a Kubernetes cluster with N
//! nodes, in the manner of KWOK. It powers `make run`, demos and scale tests with
//! thousands of sites in one process, so it is lean: one small Tokio task per site
//! that sleeps until the next timed transition (none when idle), no threads, no
//! polling, log lines computed on demand.
//!
//! What it simulates:
//! - nodes `<site>-node-1..N`, Ready unless told otherwise ([`SimulatedBackend::set_node_ready`]);
//!   a node NotReady for longer than `node_lost_grace` loses its pods, which their
//!   controllers recreate on the remaining nodes;
//! - Deployments with ReplicaSet semantics (pods `<deploy>-<template hash>-<5 chars>`,
//!   rolling updates within maxSurge/maxUnavailable, Recreate), StatefulSets
//!   (`<name>-0..n`, ordered or parallel, rolling updates from the highest ordinal),
//!   DaemonSets (one pod per ready node matching the node selector), Jobs (pods run
//!   to Succeeded after `job_duration`, honouring completions and parallelism);
//! - CronJobs are stored and get an empty status; nothing is ever scheduled from them;
//! - ConfigMaps, Secrets, ServiceAccounts and other kinds are stored as-is; Services
//!   get a fake cluster IP, PersistentVolumeClaims go Bound;
//! - pods go Pending → ContainerCreating → Running with IP, node, container statuses,
//!   conditions and restart counts; workload `.status` is what Kubernetes'
//!   controllers would write;
//! - the failure knobs: [`SimulatedBackend::set_crash_loop`], the
//!   `crash_loop` option, or the annotation `sim.manifold.dev/crash-loop: "true"` make
//!   a workload's pods crash-loop (CrashLoopBackOff, restarts increasing); the
//!   annotation `sim.manifold.dev/refuse: "<message>"` makes the site refuse an
//!   object the way an admission webhook would (422 Invalid with that message);
//!   [`SimulatedBackend::set_unreachable`] makes the whole cluster unreachable, as
//!   a stopped API server would.

mod logs;
mod names;
mod render;
mod state;
mod workloads;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use self::state::{Phase, SimState};
use super::{Backend, LogStream};
use crate::error::BackendError;
use crate::feed::StatusFeed;
use crate::model::{DesiredObject, LogParams, NodeInfo, ObjectKey, PodId, VirtualCluster};

/// Timings and failure settings of a simulated site. The defaults are short so that
/// tests and demos see pods Running within half a second.
#[derive(Clone, Debug)]
pub struct SimulatedOptions {
    /// Pending before a pod is bound to a node.
    pub schedule_delay: Duration,
    /// ContainerCreating before the containers run (and the pod is Ready).
    pub start_delay: Duration,
    /// How long a Job pod runs before it succeeds.
    pub job_duration: Duration,
    /// How long a crash-looping container runs before it fails.
    pub crash_after: Duration,
    /// First CrashLoopBackOff delay; doubles with every restart.
    pub crash_backoff: Duration,
    /// Upper bound of the CrashLoopBackOff delay.
    pub crash_backoff_max: Duration,
    /// How long a node may be NotReady before its pods are evicted and rescheduled.
    pub node_lost_grace: Duration,
    /// One log line per container per this interval.
    pub log_interval: Duration,
    /// Workloads whose pods crash-loop from the start: `namespace/name` or `name`.
    pub crash_loop: Vec<String>,
}

impl Default for SimulatedOptions {
    fn default() -> Self {
        Self {
            schedule_delay: Duration::from_millis(50),
            start_delay: Duration::from_millis(250),
            job_duration: Duration::from_secs(1),
            crash_after: Duration::from_millis(500),
            crash_backoff: Duration::from_secs(1),
            crash_backoff_max: Duration::from_secs(10),
            node_lost_grace: Duration::from_secs(5),
            log_interval: Duration::from_secs(1),
            crash_loop: Vec::new(),
        }
    }
}

/// A simulated cluster. Create it inside a Tokio runtime; dropping it stops its task.
pub struct SimulatedBackend {
    inner: Arc<Inner>,
    _stop: DropGuard,
}

pub(crate) struct Inner {
    state: Mutex<SimState>,
    feed: Arc<StatusFeed>,
    wake: Arc<Notify>,
    /// The knob of [`SimulatedBackend::set_unreachable`].
    unreachable: AtomicBool,
    /// The Pod Security level the control plane sent (a simulated site has
    /// no admission of its own; the gateway's wall is the one that holds).
    pod_security: Mutex<Option<String>>,
}

/// Annotation making the simulated site refuse an object with its value as message.
pub const SIM_REFUSE_ANNOTATION: &str = "sim.manifold.dev/refuse";

impl Inner {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state, advances the simulation and re-arms the timer.
    fn mutate<T>(&self, f: impl FnOnce(&mut SimState, Instant) -> T) -> T {
        let now = Instant::now();
        let out = {
            let mut state = self.lock();
            let out = f(&mut state, now);
            state.step(now, &self.feed);
            out
        };
        self.wake.notify_one();
        out
    }

    /// The UID of a pod while it exists (log followers stop when it changes).
    fn pod_uid(&self, id: &PodId) -> Option<String> {
        self.lock().pods.get(id).map(|p| p.uid.clone())
    }
}

impl SimulatedBackend {
    /// The Pod Security level the control plane last sent, if any.
    pub fn pod_security(&self) -> Option<String> {
        self.inner
            .pod_security
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A site `site` with `nodes` nodes. Must be called within a Tokio runtime.
    pub fn new(site: &str, nodes: usize, options: SimulatedOptions) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(SimState::new(site, nodes, options)),
            feed: Arc::new(StatusFeed::new()),
            wake: Arc::new(Notify::new()),
            unreachable: AtomicBool::new(false),
            pod_security: Mutex::new(None),
        });
        let stop = CancellationToken::new();
        tokio::spawn(drive(
            Arc::downgrade(&inner),
            inner.wake.clone(),
            stop.clone(),
        ));
        Self {
            inner,
            _stop: stop.drop_guard(),
        }
    }

    /// Makes the pods of workload `name` in Manifold namespace `namespace` (any
    /// vK8s, any kind) crash-loop, or stop crashing at their next restart.
    pub fn set_crash_loop(&self, namespace: &str, name: &str, crash: bool) {
        self.inner
            .mutate(|s, now| s.set_crash_loop(namespace, name, crash, now));
    }

    /// Marks a node Ready or NotReady. Pods on a NotReady node turn unready at once
    /// and are evicted (and rescheduled by their controllers) after
    /// `node_lost_grace`.
    pub fn set_node_ready(&self, node: &str, ready: bool) -> Result<(), BackendError> {
        self.inner
            .mutate(|s, now| s.set_node_ready(node, ready, now))
    }

    /// Makes the whole cluster unreachable (every call fails as if its API server
    /// were stopped) or reachable again.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.inner.unreachable.store(unreachable, Ordering::Release);
    }

    fn reachable(&self) -> Result<(), BackendError> {
        if self.inner.unreachable.load(Ordering::Acquire) {
            return Err(BackendError::Unavailable(
                "connection refused (the simulated API server is stopped)".into(),
            ));
        }
        Ok(())
    }

    /// Names of the site's nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.inner
            .lock()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// The site's copy of an object (Services carry their fake cluster IP).
    pub fn object(&self, key: &ObjectKey) -> Option<serde_json::Value> {
        self.inner
            .lock()
            .objects
            .get(key)
            .map(|o| o.desired.object.clone())
    }

    /// Keys of every object stored on the site.
    pub fn object_keys(&self) -> Vec<ObjectKey> {
        self.inner.lock().objects.keys().cloned().collect()
    }
}

/// The site's one task: sleeps until the next timed transition or a change, then
/// advances the simulation. Holds only a weak reference to the state while waiting,
/// so dropping the backend frees it.
async fn drive(inner: Weak<Inner>, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let deadline = {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let mut state = inner.lock();
            state.step(Instant::now(), &inner.feed);
            state.next_deadline()
        };
        // A notification sent between the step and here is kept as a permit by
        // `notify_one`, so none is lost.
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = sleep => {}
        }
    }
}

#[async_trait::async_trait]
impl Backend for SimulatedBackend {
    fn set_pod_security(&self, level: &str) {
        *self
            .inner
            .pod_security
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(level.to_owned());
    }

    async fn apply(&self, object: &DesiredObject) -> Result<(), BackendError> {
        self.reachable()?;
        if let Some(message) = object
            .object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(SIM_REFUSE_ANNOTATION))
            .and_then(serde_json::Value::as_str)
        {
            return Err(BackendError::Refused {
                code: 422,
                reason: "Invalid".into(),
                message: format!(
                    "admission webhook \"refuse.sim.manifold.dev\" denied the request: {message}"
                ),
            });
        }
        self.inner.mutate(|s, _| s.apply(object));
        Ok(())
    }

    async fn probe(&self) -> Result<(), String> {
        self.reachable().map_err(|e| e.to_string())
    }

    async fn delete(&self, key: &ObjectKey, _revision: i64) -> Result<(), BackendError> {
        self.reachable()?;
        self.inner.mutate(|s, _| s.delete(key));
        self.inner.feed.remove_object(key);
        Ok(())
    }

    async fn end_snapshot(
        &self,
        _revision: i64,
        keep: &HashSet<ObjectKey>,
    ) -> Result<usize, BackendError> {
        self.reachable()?;
        let gone = self.inner.mutate(|s, _| s.prune(keep));
        for key in &gone {
            self.inner.feed.remove_object(key);
        }
        Ok(gone.len())
    }

    fn status_feed(&self) -> Arc<StatusFeed> {
        self.inner.feed.clone()
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        self.reachable()?;
        Ok(self.inner.lock().node_infos())
    }

    async fn logs(&self, params: &LogParams) -> Result<LogStream, BackendError> {
        let target = {
            let state = self.inner.lock();
            let mut matches = state
                .pods
                .values()
                .filter(|p| p.id.namespace == params.namespace && p.id.name == params.pod)
                .filter(|p| {
                    params
                        .virtual_cluster
                        .as_ref()
                        .is_none_or(|vc| &p.id.virtual_cluster == vc)
                });
            let pod = matches.next().ok_or_else(|| {
                BackendError::NotFound(format!(
                    "pods \"{}\" not found in namespace {}",
                    params.pod, params.namespace
                ))
            })?;
            let containers = render::container_names(&pod.template);
            let container = match &params.container {
                Some(c) if containers.contains(c) => c.clone(),
                Some(c) => {
                    return Err(BackendError::Invalid(format!(
                        "container {c} is not valid for pod {}",
                        params.pod
                    )));
                }
                None => containers[0].clone(),
            };
            let started = match (pod.first_started, pod.phase) {
                (Some(t), _) => t,
                (None, Phase::Unscheduled | Phase::Creating) => {
                    return Err(BackendError::Invalid(format!(
                        "container \"{container}\" in pod \"{}\" is waiting to start: ContainerCreating",
                        params.pod
                    )));
                }
                (None, _) => chrono::Utc::now(),
            };
            logs::LogTarget {
                pod: pod.id.clone(),
                pod_uid: pod.uid.clone(),
                container,
                node: pod
                    .node
                    .map(|i| state.nodes[i].name.clone())
                    .unwrap_or_default(),
                started,
                interval: state.opts.log_interval,
            }
        };
        Ok(logs::stream(
            Arc::downgrade(&self.inner),
            target,
            params.tail_lines,
            params.follow,
            params.timestamps,
        ))
    }

    async fn delete_pod(
        &self,
        virtual_cluster: Option<&VirtualCluster>,
        namespace: &str,
        pod: &str,
    ) -> Result<(), BackendError> {
        let deleted = self
            .inner
            .mutate(|s, _| s.delete_pod(virtual_cluster, namespace, pod));
        if deleted == 0 {
            return Err(BackendError::NotFound(format!(
                "pods \"{pod}\" not found in namespace {namespace}"
            )));
        }
        Ok(())
    }
}

impl SimulatedBackend {
    /// Whether the pod is currently crash-looping (tests and demos).
    pub fn is_crash_looping(&self, namespace: &str, pod: &str) -> bool {
        let state = self.inner.lock();
        state
            .pods
            .values()
            .find(|p| p.id.namespace == namespace && p.id.name == pod)
            .is_some_and(|p| state.pod_is_crashing(p))
    }
}
