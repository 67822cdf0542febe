//! The applier: the one place that changes the cluster. It takes Apply, Delete,
//! Progress and snapshot messages in stream order from the session and tells the
//! session what is applied, so acknowledgements follow.
//!
//! Two kinds of failure are kept apart:
//! - the cluster as a whole is unreachable (connection refused, TLS, timeouts,
//!   503, throttling, or a 500 while the API server's health check fails): the
//!   same call is retried with backoff until it succeeds, nothing behind it is
//!   applied or acknowledged (the control plane's window holds the rest), and the
//!   session's heartbeats report the site DEGRADED with the error;
//! - the cluster refuses this object (invalid, an immutable field, a quota, a
//!   terminating namespace, an internal error about this request): the refusal is
//!   recorded on the status feed (the vK8s shows it as a condition and an Event
//!   naming the site and its error), the revision is acknowledged so every other
//!   object keeps flowing, and the object is retried in the background with
//!   backoff until it applies or a newer version replaces it.
//!
//! The applier outlives sessions (its retry queue and the set of desired objects
//! must survive a reconnect); each session runs it as a task and gets it back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Backoff;
use crate::backend::Backend;
use crate::error::BackendError;
use crate::feed::StatusFeed;
use crate::model::{ApplyFailure, DesiredObject, ObjectKey, SiteEvent, VirtualCluster};

/// First retry of a refused object after this long; doubling up to `RETRY_MAX`.
const RETRY_MIN: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(120);

/// What the session hands over, in stream order.
#[derive(Debug)]
pub(crate) enum Work {
    Apply(DesiredObject),
    Delete { key: ObjectKey, revision: i64 },
    Progress(i64),
    SnapshotBegin(i64),
    SnapshotEnd(i64),
}

/// What the applier tells the session.
#[derive(Debug, PartialEq)]
pub(crate) enum Applied {
    /// Everything up to this revision is applied (or refused and recorded).
    Upto(i64),
    /// A snapshot is applied and pruned: everything desired as of `revision`.
    SnapshotDone {
        revision: i64,
        objects: usize,
        pruned: usize,
    },
}

/// The session went away while the applier waited.
pub(crate) struct Stopped;

struct Retry {
    object: DesiredObject,
    due: Instant,
    delay: Duration,
}

pub(crate) struct Applier {
    site: String,
    backend: Arc<dyn Backend>,
    feed: Arc<StatusFeed>,
    /// Refused objects, retried in the background.
    retry: HashMap<ObjectKey, Retry>,
    /// Every desired object, by vK8s; complete once a snapshot has been applied.
    desired: HashMap<VirtualCluster, HashSet<ObjectKey>>,
    desired_complete: bool,
    /// Keys applied since SnapshotBegin.
    snapshot: Option<HashSet<ObjectKey>>,
    /// The error reaching the cluster, while it lasts (for heartbeats).
    cluster_error: watch::Sender<Option<String>>,
}

impl Applier {
    pub(crate) fn new(site: &str, backend: Arc<dyn Backend>) -> Self {
        let feed = backend.status_feed();
        Self {
            site: site.to_owned(),
            backend,
            feed,
            retry: HashMap::new(),
            desired: HashMap::new(),
            desired_complete: false,
            snapshot: None,
            cluster_error: watch::Sender::new(None),
        }
    }

    /// The applier's view of the cluster's reachability.
    pub(crate) fn cluster_error(&self) -> watch::Receiver<Option<String>> {
        self.cluster_error.subscribe()
    }

    /// Handles `work` until the channel closes or `stop` fires.
    pub(crate) async fn run(
        &mut self,
        mut work: mpsc::Receiver<Work>,
        applied: mpsc::Sender<Applied>,
        stop: CancellationToken,
    ) {
        // A snapshot the previous session left unfinished is void: the control
        // plane starts over (a new snapshot or a replay after the last ack).
        self.snapshot = None;
        loop {
            let next_retry = self.retry.values().map(|r| r.due).min();
            let result = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                w = work.recv() => match w {
                    None => return,
                    Some(w) => self.handle(w, &applied, &stop).await,
                },
                _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)),
                    if next_retry.is_some() => self.retry_due(&stop).await,
            };
            if result.is_err() {
                return;
            }
        }
    }

    async fn handle(
        &mut self,
        work: Work,
        applied: &mpsc::Sender<Applied>,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let done = match work {
            Work::Apply(object) => {
                let revision = object.revision;
                let key = object.key.clone();
                self.retry.remove(&key);
                self.desired
                    .entry(key.virtual_cluster.clone())
                    .or_default()
                    .insert(key.clone());
                if let Some(keep) = &mut self.snapshot {
                    keep.insert(key.clone());
                }
                self.apply(object, stop).await?;
                (self.snapshot.is_none()).then_some(Applied::Upto(revision))
            }
            Work::Delete { key, revision } => {
                self.retry.remove(&key);
                self.feed.clear_failure(&key);
                if let Some(keep) = &mut self.snapshot {
                    keep.remove(&key);
                }
                let emptied = match self.desired.get_mut(&key.virtual_cluster) {
                    Some(keys) => {
                        keys.remove(&key);
                        keys.is_empty()
                    }
                    None => true,
                };
                let backend = self.backend.clone();
                if let Err(e) = self.call(stop, || backend.delete(&key, revision)).await? {
                    tracing::warn!(site = %self.site, %key, error = %e, "the site refused a delete; left as it is");
                }
                if emptied && self.desired_complete && self.snapshot.is_none() {
                    self.desired.remove(&key.virtual_cluster);
                    self.remove_virtual_cluster(&key.virtual_cluster, stop)
                        .await?;
                }
                (self.snapshot.is_none()).then_some(Applied::Upto(revision))
            }
            Work::Progress(revision) => {
                (self.snapshot.is_none()).then_some(Applied::Upto(revision))
            }
            Work::SnapshotBegin(revision) => {
                tracing::info!(site = %self.site, revision, "snapshot begins");
                let backend = self.backend.clone();
                if let Err(e) = self.call(stop, || backend.begin_snapshot(revision)).await? {
                    tracing::warn!(site = %self.site, error = %e, "beginning a snapshot");
                }
                self.snapshot = Some(HashSet::new());
                None
            }
            Work::SnapshotEnd(revision) => {
                let Some(keep) = self.snapshot.take() else {
                    tracing::warn!(site = %self.site, revision, "SnapshotEnd without SnapshotBegin; ignored");
                    return Ok(());
                };
                let backend = self.backend.clone();
                let pruned = match self
                    .call(stop, || backend.end_snapshot(revision, &keep))
                    .await?
                {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(site = %self.site, error = %e, "pruning after a snapshot");
                        0
                    }
                };
                // The snapshot is the whole truth: what it did not name is not
                // wanted, so neither are its retries or refusals.
                self.retry.retain(|k, _| keep.contains(k));
                let mut desired: HashMap<VirtualCluster, HashSet<ObjectKey>> = HashMap::new();
                for k in &keep {
                    desired
                        .entry(k.virtual_cluster.clone())
                        .or_default()
                        .insert(k.clone());
                }
                for k in self.desired.values().flatten() {
                    if !keep.contains(k) {
                        self.feed.clear_failure(k);
                    }
                }
                self.desired = desired;
                self.desired_complete = true;
                tracing::info!(site = %self.site, revision, objects = keep.len(), pruned, "snapshot applied");
                Some(Applied::SnapshotDone {
                    revision,
                    objects: keep.len(),
                    pruned,
                })
            }
        };
        if let Some(done) = done
            && applied.send(done).await.is_err()
        {
            return Err(Stopped);
        }
        Ok(())
    }

    /// Applies `object`; a refusal is recorded and queued for a retry.
    async fn apply(
        &mut self,
        object: DesiredObject,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let backend = self.backend.clone();
        match self.call(stop, || backend.apply(&object)).await? {
            Ok(()) => self.accepted(&object),
            Err(e) => self.refused(object, e, RETRY_MIN),
        }
        Ok(())
    }

    /// Retries every refused object that is due.
    async fn retry_due(&mut self, stop: &CancellationToken) -> Result<(), Stopped> {
        let now = Instant::now();
        let due: Vec<ObjectKey> = self
            .retry
            .iter()
            .filter(|(_, r)| r.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(r) = self.retry.remove(&key) else {
                continue;
            };
            let backend = self.backend.clone();
            match self.call(stop, || backend.apply(&r.object)).await? {
                Ok(()) => self.accepted(&r.object),
                Err(e) => self.refused(r.object, e, (r.delay * 2).min(RETRY_MAX)),
            }
        }
        Ok(())
    }

    fn accepted(&mut self, object: &DesiredObject) {
        if let Some(previous) = self.feed.failure(&object.key) {
            tracing::info!(site = %self.site, key = %object.key, revision = object.revision,
                "the site took an object it had refused");
            self.feed.clear_failure(&object.key);
            self.feed.push_event(event(
                &self.site,
                object,
                "Normal",
                "Applied",
                &format!(
                    "site {} applied revision {} (it had refused revision {}: {})",
                    self.site, object.revision, previous.revision, previous.message
                ),
                1,
                SystemTime::now(),
            ));
        }
    }

    fn refused(&mut self, object: DesiredObject, e: BackendError, delay: Duration) {
        let (code, reason, message) = e.failure_parts();
        let previous = self.feed.failure(&object.key);
        let now = SystemTime::now();
        let (first_time, attempts) = match &previous {
            Some(p) if p.revision == object.revision => (p.first_time, p.attempts + 1),
            _ => (now, 1),
        };
        if attempts == 1 {
            tracing::warn!(site = %self.site, key = %object.key, revision = object.revision,
                code, %reason, error = %message, "the site refused an object; retrying it in the background");
        } else {
            tracing::debug!(site = %self.site, key = %object.key, attempts, error = %message, "still refused");
        }
        let failure = ApplyFailure {
            revision: object.revision,
            code,
            reason: reason.clone(),
            message: message.clone(),
            first_time,
            attempts,
        };
        // One event per refused revision, its count and time kept current.
        self.feed.push_event(event(
            &self.site,
            &object,
            "Warning",
            "SiteRefused",
            &format!(
                "site {} refused revision {} ({code} {reason}): {message}",
                self.site, object.revision
            ),
            attempts,
            first_time,
        ));
        self.feed.set_failure(&object.key, failure);
        self.retry.insert(
            object.key.clone(),
            Retry {
                object,
                due: Instant::now() + delay,
                delay,
            },
        );
    }

    async fn remove_virtual_cluster(
        &mut self,
        vc: &VirtualCluster,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let backend = self.backend.clone();
        if let Err(e) = self
            .call(stop, || backend.remove_virtual_cluster(vc))
            .await?
        {
            tracing::warn!(site = %self.site, %vc, error = %e, "removing what the vK8s left on the site");
        }
        Ok(())
    }

    /// Runs a backend call until the cluster answers: a cluster that cannot be
    /// reached is retried with backoff (and reported), forever, until `stop`.
    /// Returns the call's own outcome once the cluster answered.
    async fn call<T, F, Fut>(
        &self,
        stop: &CancellationToken,
        mut f: F,
    ) -> Result<Result<T, BackendError>, Stopped>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, BackendError>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return Err(Stopped),
                r = f() => r,
            };
            let unreachable = match &outcome {
                Err(e) if e.is_transient() => Some(e.to_string()),
                // An internal error may be about this request or about the
                // cluster (etcd down): ask the cluster which.
                Err(BackendError::Refused { code: 500.., .. }) => self.backend.probe().await.err(),
                _ => None,
            };
            match unreachable {
                None => {
                    self.cluster_error.send_if_modified(|e| e.take().is_some());
                    return Ok(outcome);
                }
                Some(why) => {
                    if self.cluster_error.borrow().as_deref() != Some(why.as_str()) {
                        tracing::warn!(site = %self.site, error = %why,
                            "the cluster cannot be reached; holding every change until it can");
                    }
                    self.cluster_error.send_replace(Some(why));
                    tokio::select! {
                        _ = stop.cancelled() => return Err(Stopped),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }
}

/// A Kubernetes Event about `object` (virtual terms), as the site reports it.
fn event(
    site: &str,
    object: &DesiredObject,
    type_: &str,
    reason: &str,
    message: &str,
    count: u32,
    first: SystemTime,
) -> SiteEvent {
    let key = &object.key;
    let digest = Sha256::digest(
        format!(
            "{site}/{}/{}/{}/{}/{reason}",
            key.api_version, key.kind, key.name, object.revision
        )
        .as_bytes(),
    );
    let name = format!("{}.{}", key.name, hex::encode(&digest[..8]));
    let rfc3339 = |t: SystemTime| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let now = SystemTime::now();
    let uid = object
        .object
        .pointer("/metadata/uid")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    SiteEvent {
        virtual_cluster: key.virtual_cluster.clone(),
        object: json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": key.namespace},
            "involvedObject": {
                "apiVersion": key.api_version,
                "kind": key.kind,
                "name": key.name,
                "namespace": key.namespace,
                "uid": uid,
                "resourceVersion": object.revision.to_string(),
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "count": count,
            "firstTimestamp": rfc3339(first),
            "lastTimestamp": rfc3339(now),
            "source": {"component": "manifold-agent", "host": site},
            "reportingComponent": "manifold.dev/site-agent",
            "reportingInstance": site,
        }),
    }
}
