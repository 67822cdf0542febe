//! One `SiteSync.Connect` session: Hello, then applying what the control plane sends
//! (acknowledging cumulatively once applied), snapshots with pruning, heartbeats,
//! debounced status reports, log streams, pod deletions and certificate renewal.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use manifold_proto::replication::v1 as pb;
use pb::agent_message::Msg;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::{AgentState, Backoff};
use crate::backend::Backend;
use crate::config::AgentConfig;
use crate::convert::{self, Command, RenewedCert, agent_message};
use crate::error::{AgentError, BackendError};
use crate::feed::{StatusBatch, StatusFeed};
use crate::identity;
use crate::model::{LogParams, ObjectKey};

/// Outbound messages queued before a send waits for the control plane.
const OUTBOUND_QUEUE: usize = 64;
/// A send that waits longer than this means the control plane stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages already received that are handled before one cumulative Ack is sent.
const MAX_DRAIN: usize = 256;
/// Largest message accepted or sent (objects and status batches).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Largest log chunk sent.
const MAX_LOG_CHUNK: usize = 64 * 1024;

/// The last chunk of a log request: end of file, or the reason it failed.
fn log_chunk(request_id: &str, data: Vec<u8>, error: Option<String>) -> pb::AgentMessage {
    agent_message(Msg::Log(pb::LogChunk {
        request_id: request_id.to_owned(),
        data,
        eof: true,
        error: error.unwrap_or_default(),
    }))
}

/// One entry of a status report.
enum Entry {
    Object(pb::ObjectStatus),
    DeletedObject(pb::ObjectRef),
    Pod(pb::Pod),
    RemovedPod(pb::PodRef),
}

/// How a session ended, when it did not end by shutdown.
pub(crate) struct SessionError {
    pub error: AgentError,
    /// Whether the control plane answered at all (resets the reconnect backoff).
    pub established: bool,
}

struct PendingRenewal {
    key_pem: String,
    sent: Instant,
    /// The control plane answered with an error: renew directly at once.
    refused: bool,
}

pub(crate) struct Session<'a> {
    config: &'a AgentConfig,
    backend: Arc<dyn Backend>,
    state: &'a mut AgentState,
    shutdown: &'a CancellationToken,
    established: bool,
    tx: Option<mpsc::Sender<pb::AgentMessage>>,
    /// Highest revision applied in this session (acknowledged by `flush_ack`).
    applied: i64,
    /// Keys applied since SnapshotBegin, while a snapshot is in progress.
    snapshot: Option<HashSet<ObjectKey>>,
    log_streams: JoinSet<()>,
    /// Running log streams by request id, for LogRequest.cancel.
    log_handles: HashMap<String, AbortHandle>,
    side_tasks: JoinSet<()>,
    renewal: Option<PendingRenewal>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(
        config: &'a AgentConfig,
        backend: Arc<dyn Backend>,
        state: &'a mut AgentState,
        shutdown: &'a CancellationToken,
    ) -> Self {
        let applied = state.last_acked;
        Self {
            config,
            backend,
            state,
            shutdown,
            established: false,
            tx: None,
            applied,
            snapshot: None,
            log_streams: JoinSet::new(),
            log_handles: HashMap::new(),
            side_tasks: JoinSet::new(),
            renewal: None,
        }
    }

    /// Runs until shutdown (`Ok`) or until the stream fails.
    pub(crate) async fn run(mut self) -> Result<(), SessionError> {
        let result = self.run_inner().await;
        // Closing our half first lets the control plane see a clean end of stream.
        self.tx = None;
        self.log_streams.abort_all();
        self.side_tasks.abort_all();
        result.map_err(|error| SessionError {
            error,
            established: self.established,
        })
    }

    async fn run_inner(&mut self) -> Result<(), AgentError> {
        let endpoint = self
            .state
            .identity
            .endpoint(self.config, self.config.sync_endpoint())?;
        let channel = tokio::select! {
            c = endpoint.connect() => c?,
            _ = self.shutdown.cancelled() => return Ok(()),
        };
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let hello = agent_message(Msg::Hello(pb::Hello {
            site: self.config.site.clone(),
            agent_version: self.config.agent_version.clone(),
            last_acked_revision: self.state.last_acked,
        }));
        tx.send(hello).await.map_err(|_| AgentError::StreamClosed)?;
        self.tx = Some(tx);
        let mut client = pb::site_sync_client::SiteSyncClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let mut inbound = tokio::select! {
            r = client.connect(ReceiverStream::new(rx)) => r?.into_inner(),
            _ = self.shutdown.cancelled() => return Ok(()),
        };
        tracing::info!(site = %self.config.site, last_acked = self.state.last_acked, "connected to the control plane");

        let feed = self.backend.status_feed();
        let mut feed_rx = feed.subscribe();
        let mut feed_open = true;
        // Everything observed so far: the control plane may have missed changes while
        // the stream was down.
        self.send_batch(feed.take_all(), true).await?;
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut report_at: Option<Instant> = None;

        loop {
            let report_due =
                report_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                msg = inbound.message() => {
                    let first = match msg {
                        Ok(Some(m)) => m,
                        Ok(None) => return Err(AgentError::StreamClosed),
                        Err(status) => return Err(AgentError::Rpc(status)),
                    };
                    self.established = true;
                    self.handle(first).await?;
                    for _ in 0..MAX_DRAIN {
                        match inbound.message().now_or_never() {
                            Some(Ok(Some(m))) => self.handle(m).await?,
                            Some(Ok(None)) => {
                                self.flush_ack().await?;
                                return Err(AgentError::StreamClosed);
                            }
                            Some(Err(status)) => return Err(AgentError::Rpc(status)),
                            None => break,
                        }
                    }
                    self.flush_ack().await?;
                }
                _ = heartbeat.tick() => {
                    self.heartbeat().await?;
                    self.maybe_renew().await?;
                }
                changed = feed_rx.changed(), if feed_open => {
                    if changed.is_err() {
                        feed_open = false;
                    } else if report_at.is_none() {
                        report_at = Some(Instant::now() + self.config.status_debounce);
                    }
                }
                _ = tokio::time::sleep_until(report_due), if report_at.is_some() => {
                    report_at = None;
                    self.send_changes(&feed).await?;
                }
                Some(_) = self.log_streams.join_next(), if !self.log_streams.is_empty() => {}
                Some(_) = self.side_tasks.join_next(), if !self.side_tasks.is_empty() => {}
            }
        }
    }

    async fn send(&self, msg: Msg) -> Result<(), AgentError> {
        let tx = self.tx.as_ref().ok_or(AgentError::StreamClosed)?;
        match tokio::time::timeout(SEND_TIMEOUT, tx.send(agent_message(msg))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(AgentError::StreamClosed),
            Err(_) => Err(AgentError::Protocol(format!(
                "the control plane has not read from the stream for {SEND_TIMEOUT:?}"
            ))),
        }
    }

    /// One Ack for everything applied so far (never during a snapshot).
    async fn flush_ack(&mut self) -> Result<(), AgentError> {
        if self.snapshot.is_some() || self.applied <= self.state.last_acked {
            return Ok(());
        }
        self.send(Msg::Ack(pb::Ack {
            revision: self.applied,
        }))
        .await?;
        self.state.last_acked = self.applied;
        Ok(())
    }

    /// Marks `revision` applied (outside snapshots; revisions only move forward).
    fn advance(&mut self, revision: i64) {
        if self.snapshot.is_none() {
            self.applied = self.applied.max(revision);
        }
    }

    async fn handle(&mut self, msg: pb::ControlMessage) -> Result<(), AgentError> {
        let revision = match &msg.msg {
            Some(pb::control_message::Msg::Apply(a)) => Some(a.revision),
            Some(pb::control_message::Msg::Delete(d)) => Some(d.revision),
            _ => None,
        };
        let command = match Command::try_from(msg) {
            Ok(c) => c,
            Err(e) => {
                // Nothing can make it valid later: skip it, but keep the cursor moving.
                tracing::error!(site = %self.config.site, error = %e, ?revision, "ignoring an invalid control message");
                if let Some(r) = revision {
                    self.advance(r);
                }
                return Ok(());
            }
        };
        match command {
            Command::Apply(object) => {
                let backend = self.backend.clone();
                let done = self
                    .retrying(&format!("apply {}", object.key), || backend.apply(&object))
                    .await?;
                if done.is_none() && self.snapshot.is_some() {
                    tracing::warn!(key = %object.key, "a snapshot object could not be applied");
                }
                if let Some(keep) = &mut self.snapshot {
                    keep.insert(object.key);
                }
                self.advance(object.revision);
            }
            Command::Delete { key, revision } => {
                let backend = self.backend.clone();
                self.retrying(&format!("delete {key}"), || backend.delete(&key, revision))
                    .await?;
                if let Some(keep) = &mut self.snapshot {
                    keep.remove(&key);
                }
                self.advance(revision);
            }
            Command::SnapshotBegin { revision } => {
                tracing::info!(site = %self.config.site, revision, "snapshot begins");
                let backend = self.backend.clone();
                self.retrying("begin snapshot", || backend.begin_snapshot(revision))
                    .await?;
                self.snapshot = Some(HashSet::new());
            }
            Command::SnapshotEnd { revision } => {
                let keep = self.snapshot.take().ok_or_else(|| {
                    AgentError::Protocol("SnapshotEnd without SnapshotBegin".into())
                })?;
                let backend = self.backend.clone();
                let pruned = self
                    .retrying("prune after snapshot", || {
                        backend.end_snapshot(revision, &keep)
                    })
                    .await?;
                tracing::info!(site = %self.config.site, revision, objects = keep.len(),
                    pruned = pruned.unwrap_or(0), "snapshot applied");
                // The snapshot is the whole truth as of its revision.
                self.applied = revision;
                self.state.last_acked = self.state.last_acked.min(revision - 1);
                let feed = self.backend.status_feed();
                self.send_batch(feed.take_all(), true).await?;
            }
            Command::Progress { revision } => self.advance(revision),
            Command::Logs { request_id, params } => self.start_logs(request_id, params),
            Command::CancelLogs { request_id } => {
                if let Some(handle) = self.log_handles.remove(&request_id) {
                    handle.abort();
                }
            }
            Command::DeletePod {
                virtual_cluster,
                namespace,
                pod,
            } => {
                let backend = self.backend.clone();
                let site = self.config.site.clone();
                self.side_tasks.spawn(async move {
                    match backend
                        .delete_pod(virtual_cluster.as_ref(), &namespace, &pod)
                        .await
                    {
                        Ok(()) => tracing::info!(%site, %namespace, %pod, "pod deleted"),
                        Err(e) => {
                            tracing::warn!(%site, %namespace, %pod, error = %e, "pod delete failed")
                        }
                    }
                });
            }
            Command::Renewed(Ok(cert)) => {
                if self.adopt_renewal(cert) {
                    // The old certificate is revoked after a short grace:
                    // switch to the new one now (acks first, so the next
                    // session resumes where this one stopped).
                    self.flush_ack().await?;
                    return Err(AgentError::Renewed);
                }
            }
            Command::Renewed(Err(reason)) => {
                tracing::warn!(site = %self.config.site, %reason,
                    "renewal over the stream failed; renewing directly");
                if let Some(pending) = &mut self.renewal {
                    pending.refused = true;
                }
                self.maybe_renew().await?;
            }
        }
        Ok(())
    }

    /// Runs a backend call, retrying transient failures. A permanent failure is
    /// logged and skipped (`Ok(None)`): replaying it would fail the same way. A
    /// transient failure that outlasts the attempts ends the session, so the
    /// control plane replays from the last acknowledged revision.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Result<Option<T>, AgentError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let attempts = self.config.apply_attempts.max(1);
        for attempt in 1..=attempts {
            match call().await {
                Ok(v) => return Ok(Some(v)),
                Err(e) if e.is_transient() && attempt < attempts => {
                    tracing::warn!(site = %self.config.site, what, attempt, error = %e, "backend call failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = self.shutdown.cancelled() => return Err(AgentError::Backend(e)),
                    }
                }
                Err(e) if e.is_transient() => return Err(AgentError::Backend(e)),
                Err(e) => {
                    tracing::error!(site = %self.config.site, what, error = %e, "backend refused; skipping");
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    async fn heartbeat(&mut self) -> Result<(), AgentError> {
        let nodes = match self.backend.nodes().await {
            Ok(nodes) => nodes.iter().map(convert::node_to_proto).collect(),
            Err(e) => {
                tracing::warn!(site = %self.config.site, error = %e, "cannot list nodes");
                Vec::new()
            }
        };
        let now = std::time::SystemTime::now();
        self.send(Msg::Heartbeat(pb::Heartbeat {
            time: Some(prost_types::Timestamp::from(now)),
            nodes,
        }))
        .await
    }

    /// Sends changed observed state, in batches.
    async fn send_changes(&mut self, feed: &StatusFeed) -> Result<(), AgentError> {
        loop {
            let batch = feed.take_changes(self.config.status_batch_max);
            if batch.is_empty() {
                return Ok(());
            }
            self.send_batch(batch, false).await?;
        }
    }

    /// Sends a batch as one or more reports of at most `status_batch_max` entries.
    /// With `full`, the first report carries the flag (it replaces everything the
    /// control plane holds for the site) and is sent even when empty.
    async fn send_batch(&mut self, batch: StatusBatch, full: bool) -> Result<(), AgentError> {
        let site = self.config.site.as_str();
        let max = self.config.status_batch_max;
        let StatusBatch {
            pods,
            deleted_pods,
            objects,
            deleted_objects,
        } = batch;
        let mut report = pb::StatusReport {
            full,
            ..Default::default()
        };
        let mut size = 0;
        let mut sent_any = false;
        let entries = objects
            .iter()
            .map(|o| Entry::Object(convert::object_status_to_proto(site, o)))
            .chain(
                deleted_objects
                    .iter()
                    .map(|k| Entry::DeletedObject(pb::ObjectRef::from(k))),
            )
            .chain(
                pods.iter()
                    .map(|p| Entry::Pod(convert::pod_to_proto(site, p))),
            )
            .chain(
                deleted_pods
                    .iter()
                    .map(|id| Entry::RemovedPod(convert::pod_ref_to_proto(id))),
            );
        for entry in entries {
            match entry {
                Entry::Object(o) => report.objects.push(o),
                Entry::DeletedObject(r) => report.deleted_objects.push(r),
                Entry::Pod(p) => report.pods.push(p),
                Entry::RemovedPod(r) => report.removed_pods.push(r),
            }
            size += 1;
            if size >= max {
                self.send(Msg::Status(std::mem::take(&mut report))).await?;
                sent_any = true;
                size = 0;
            }
        }
        if size > 0 || (full && !sent_any) {
            self.send(Msg::Status(report)).await?;
        }
        Ok(())
    }

    fn start_logs(&mut self, request_id: String, params: LogParams) {
        let Some(tx) = self.tx.clone() else {
            return;
        };
        self.log_handles.retain(|_, h| !h.is_finished());
        if self.log_handles.len() >= self.config.max_log_streams {
            let error = format!(
                "the site serves at most {} log streams at once",
                self.config.max_log_streams
            );
            self.side_tasks.spawn(async move {
                let _ = tx
                    .send(log_chunk(&request_id, Vec::new(), Some(error)))
                    .await;
            });
            return;
        }
        let backend = self.backend.clone();
        let id = request_id.clone();
        let handle = self.log_streams.spawn(async move {
            let error = match backend.logs(&params).await {
                Ok(mut stream) => loop {
                    match stream.next().await {
                        None => break None,
                        Some(Ok(data)) => {
                            for piece in data.chunks(MAX_LOG_CHUNK) {
                                let msg = agent_message(Msg::Log(pb::LogChunk {
                                    request_id: id.clone(),
                                    data: piece.to_vec(),
                                    eof: false,
                                    error: String::new(),
                                }));
                                if tx.send(msg).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Some(Err(e)) => break Some(e.to_string()),
                    }
                },
                Err(e) => Some(e.to_string()),
            };
            let _ = tx.send(log_chunk(&id, Vec::new(), error)).await;
        });
        self.log_handles.insert(request_id, handle);
    }

    /// Starts a renewal over the stream when the certificate nears expiry; falls back
    /// to `RegistrationService.RenewCertificate` when the stream does not answer.
    async fn maybe_renew(&mut self) -> Result<(), AgentError> {
        if !self.state.identity.expires_within(self.config.renew_before) {
            return Ok(());
        }
        match &self.renewal {
            None => {
                let (key_pem, csr_pem) = self.renewal_pair()?;
                tracing::info!(site = %self.config.site, expires = %self.state.identity.not_after(), "renewing the certificate");
                self.send(Msg::Renew(pb::RenewRequest { csr_pem })).await?;
                self.renewal = Some(PendingRenewal {
                    key_pem,
                    sent: Instant::now(),
                    refused: false,
                });
            }
            Some(pending)
                if pending.refused || pending.sent.elapsed() >= self.config.renew_timeout =>
            {
                self.renewal = None;
                let (key, csr) = self.renewal_pair()?;
                let direct = tokio::time::timeout(
                    Duration::from_secs(30),
                    identity::renew_directly(self.config, &self.state.identity, key, csr),
                )
                .await;
                match direct {
                    Ok(Ok(renewed)) => {
                        if let Some(dir) = &self.config.data_dir {
                            renewed.save(dir)?;
                        }
                        tracing::info!(site = %self.config.site, expires = %renewed.not_after(), "certificate renewed directly");
                        self.state.identity = renewed;
                        self.state.renewal_key = None;
                        self.flush_ack().await?;
                        return Err(AgentError::Renewed);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(site = %self.config.site, error = %e, "certificate renewal failed")
                    }
                    Err(_) => {
                        tracing::warn!(site = %self.config.site, "certificate renewal timed out")
                    }
                }
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The key and CSR of the renewal under way, made on first use.
    fn renewal_pair(&mut self) -> Result<(String, String), AgentError> {
        if let Some(pair) = &self.state.renewal_key {
            return Ok(pair.clone());
        }
        let pair = manifold_pki::generate_csr(&self.config.site)?;
        self.state.renewal_key = Some(pair.clone());
        Ok(pair)
    }

    /// Takes a renewed certificate into use; true when it was adopted.
    fn adopt_renewal(&mut self, cert: RenewedCert) -> bool {
        let Some(pending) = self.renewal.take() else {
            tracing::warn!(site = %self.config.site, "ignoring a RenewResponse nothing asked for");
            return false;
        };
        match identity::adopt_renewal(
            self.config,
            pending.key_pem,
            cert.certificate_pem,
            cert.ca_bundle_pem,
            &self.state.identity,
        ) {
            Ok(renewed) => {
                self.state.identity = renewed;
                self.state.renewal_key = None;
                true
            }
            Err(e) => {
                tracing::error!(site = %self.config.site, error = %e, "cannot use the renewed certificate");
                false
            }
        }
    }
}
