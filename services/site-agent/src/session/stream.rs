//! One `SiteSync.Connect` session: Hello, then handing what the control plane sends
//! to the applier (and acknowledging cumulatively what it applied), heartbeats with
//! the cluster's health, status reports (the first full one once the backend's
//! observed state is complete), log streams, pod deletions and certificate renewal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use manifold_proto::replication::v1 as pb;
use pb::agent_message::Msg;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::AgentState;
use super::applier::{Applied, Applier, Work};
use crate::backend::Backend;
use crate::config::AgentConfig;
use crate::convert::{self, Command, RenewedCert, agent_message};
use crate::error::AgentError;
use crate::feed::{StatusBatch, StatusFeed};
use crate::identity;
use crate::model::LogParams;

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
/// Messages handed to the applier and not yet taken: the stream is not read while
/// it is full, so a cluster that applies slowly holds the control plane back
/// (through its window and HTTP/2 flow control) rather than this process.
const WORK_QUEUE: usize = 512;
/// How long a heartbeat waits for the cluster's health check.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

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
    Event(pb::SiteEvent),
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
    /// Highest revision the applier reported applied (acknowledged by `flush_ack`).
    applied: i64,
    /// Work for the applier task, while it runs.
    work: Option<mpsc::Sender<Work>>,
    applier_task: Option<JoinHandle<Applier>>,
    applier_stop: CancellationToken,
    /// The applier's view of the cluster's reachability.
    cluster_error: Option<watch::Receiver<Option<String>>>,
    /// A full status report is owed (after Hello and every snapshot); it is sent
    /// once the backend's observed state is complete, and incremental reports
    /// wait for it.
    full_pending: bool,
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
            work: None,
            applier_task: None,
            applier_stop: CancellationToken::new(),
            cluster_error: None,
            full_pending: true,
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
        // Take the applier back (its retry queue outlives the session). What it
        // had not applied is replayed after the last acknowledged revision.
        self.work = None;
        self.applier_stop.cancel();
        if let Some(task) = self.applier_task.take() {
            match task.await {
                Ok(applier) => self.state.applier = Some(applier),
                Err(e) => {
                    tracing::error!(site = %self.config.site, error = %e,
                        "the applier failed; starting over from a snapshot");
                    self.state.last_acked = 0;
                }
            }
        }
        result.map_err(|error| SessionError {
            error,
            established: self.established,
        })
    }

    /// Starts the applier task for this session.
    fn start_applier(&mut self) -> mpsc::Receiver<Applied> {
        let mut applier = match self.state.applier.take() {
            Some(a) => a,
            None => {
                // No applier to resume (first session, or the last one failed):
                // only a snapshot can tell it what is desired.
                self.state.last_acked = 0;
                self.applied = 0;
                Applier::new(&self.config.site, self.backend.clone())
            }
        };
        self.cluster_error = Some(applier.cluster_error());
        let (work_tx, work_rx) = mpsc::channel(WORK_QUEUE);
        let (applied_tx, applied_rx) = mpsc::channel(WORK_QUEUE);
        let stop = self.applier_stop.clone();
        self.applier_task = Some(tokio::spawn(async move {
            applier.run(work_rx, applied_tx, stop).await;
            applier
        }));
        self.work = Some(work_tx);
        applied_rx
    }

    /// Whether the applier can take another message now.
    fn can_take_work(&self) -> bool {
        self.work.as_ref().is_some_and(|w| w.capacity() > 0)
    }

    async fn give(&self, work: Work) -> Result<(), AgentError> {
        let w = self.work.as_ref().ok_or(AgentError::StreamClosed)?;
        w.send(work)
            .await
            .map_err(|_| AgentError::Protocol("the applier stopped".into()))
    }

    fn on_applied(&mut self, done: Applied) {
        match done {
            Applied::Upto(revision) => self.applied = self.applied.max(revision),
            Applied::SnapshotDone { revision, .. } => {
                // The snapshot is the whole truth as of its revision.
                self.applied = revision;
                self.state.last_acked = self.state.last_acked.min(revision - 1);
                self.full_pending = true;
            }
        }
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
        // Before Hello: without an applier to resume, the agent starts from 0.
        let mut applied_rx = self.start_applier();
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
        let mut resync_rx = feed.resync_requests();
        resync_rx.mark_unchanged();
        // Everything observed so far goes out as a full report once the backend's
        // observed state is complete: the control plane may have missed changes
        // while the stream was down, and a report from half-listed watches would
        // tell it that pods vanished.
        self.full_pending = true;
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut report_at: Option<Instant> = None;

        loop {
            let report_due =
                report_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let can_take = self.can_take_work();
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                done = applied_rx.recv() => {
                    let Some(done) = done else {
                        return Err(AgentError::Protocol("the applier stopped".into()));
                    };
                    self.on_applied(done);
                    while let Ok(more) = applied_rx.try_recv() {
                        self.on_applied(more);
                    }
                    self.flush_ack().await?;
                }
                msg = inbound.message(), if can_take => {
                    let first = match msg {
                        Ok(Some(m)) => m,
                        Ok(None) => return Err(AgentError::StreamClosed),
                        Err(status) => return Err(AgentError::Rpc(status)),
                    };
                    self.established = true;
                    self.handle(first).await?;
                    for _ in 0..MAX_DRAIN {
                        if !self.can_take_work() {
                            break;
                        }
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
                }
                _ = feed.wait_ready(), if self.full_pending => {
                    self.full_pending = false;
                    report_at = None;
                    self.send_batch(feed.take_all(), true).await?;
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
                _ = tokio::time::sleep_until(report_due), if report_at.is_some() && !self.full_pending => {
                    report_at = None;
                    self.send_changes(&feed).await?;
                }
                _ = resync_rx.changed() => {
                    tracing::warn!(site = %self.config.site,
                        "the cluster lost what was applied; asking the control plane for everything again");
                    return Err(AgentError::Resync);
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

    /// One Ack for everything applied so far (the applier reports nothing during
    /// a snapshot, so nothing is acknowledged before SnapshotEnd).
    async fn flush_ack(&mut self) -> Result<(), AgentError> {
        if self.applied <= self.state.last_acked {
            return Ok(());
        }
        self.send(Msg::Ack(pb::Ack {
            revision: self.applied,
        }))
        .await?;
        self.state.last_acked = self.applied;
        Ok(())
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
                // Nothing can make it valid later: skip it, but keep the cursor moving
                // (in order, behind what the applier holds).
                tracing::error!(site = %self.config.site, error = %e, ?revision, "ignoring an invalid control message");
                if let Some(r) = revision {
                    self.give(Work::Progress(r)).await?;
                }
                return Ok(());
            }
        };
        match command {
            Command::Apply(object) => self.give(Work::Apply(object)).await?,
            Command::Delete { key, revision } => self.give(Work::Delete { key, revision }).await?,
            Command::SnapshotBegin { revision } => self.give(Work::SnapshotBegin(revision)).await?,
            Command::SnapshotEnd { revision } => self.give(Work::SnapshotEnd(revision)).await?,
            Command::Progress { revision } => self.give(Work::Progress(revision)).await?,
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
            Command::Settings { pod_security } => {
                if let Some(level) = pod_security {
                    // Before the next apply reaches the applier: namespaces
                    // made from now on carry the level.
                    self.backend.set_pod_security(&level);
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

    /// A heartbeat: the node list when known, and whether the cluster answers
    /// (its health check, or the applier's last error reaching it).
    async fn heartbeat(&mut self) -> Result<(), AgentError> {
        let probe = match tokio::time::timeout(PROBE_TIMEOUT, self.backend.probe()).await {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(_) => Some(format!(
                "the cluster's API server did not answer its health check within {PROBE_TIMEOUT:?}"
            )),
        };
        let applier = self
            .cluster_error
            .as_ref()
            .and_then(|rx| rx.borrow().clone());
        let cluster_error = probe.or(applier).unwrap_or_default();
        let (nodes, nodes_unknown) = if !cluster_error.is_empty() {
            // What the node watch last saw may be stale: keep the stored list.
            (Vec::new(), true)
        } else {
            match self.backend.nodes().await {
                Ok(nodes) => (nodes.iter().map(convert::node_to_proto).collect(), false),
                Err(e) => {
                    tracing::debug!(site = %self.config.site, error = %e, "node list not known yet");
                    (Vec::new(), true)
                }
            }
        };
        let now = std::time::SystemTime::now();
        self.send(Msg::Heartbeat(pb::Heartbeat {
            time: Some(prost_types::Timestamp::from(now)),
            nodes,
            cluster_error,
            nodes_unknown,
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
            events,
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
            )
            .chain(
                events
                    .iter()
                    .map(|e| Entry::Event(convert::event_to_proto(site, e))),
            );
        for entry in entries {
            match entry {
                Entry::Object(o) => report.objects.push(o),
                Entry::DeletedObject(r) => report.deleted_objects.push(r),
                Entry::Pod(p) => report.pods.push(p),
                Entry::RemovedPod(r) => report.removed_pods.push(r),
                Entry::Event(e) => report.events.push(e),
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
