//! `SiteSync.Connect`: one agent stream. The handler authenticates the
//! client certificate, reads Hello, records the session and starts two
//! halves: `outbound` (what the site must apply, under the window) and
//! `inbound` (acks, status reports, heartbeats, logs, renewals).

pub mod inbound;
pub mod logs;
mod outbound;

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::Stream;
use manifold_db::Scope;
use manifold_proto::replication::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::Shared;
use crate::domain::{Membership, SiteId};
use crate::error::ReplicationError;
use crate::storage::{self, sites::StoredCursor};
use crate::upstream::authority::{AuthorityError, VerifiedCert};

/// Messages queued towards the agent; the transport's flow control does
/// the rest.
const OUT_BUFFER: usize = 32;
/// Commands (logs, pod deletions, renewals) waiting for the outbound half.
const COMMAND_BUFFER: usize = 64;

/// A live session as the rest of the process sees it.
pub struct SessionHandle {
    pub id: Uuid,
    pub site: String,
    pub commands: mpsc::Sender<pb::ControlMessage>,
    pub agent_version: String,
    end: CancellationToken,
    reason: Mutex<Option<Status>>,
    pub acked: AtomicI64,
    pub in_flight: AtomicI64,
    /// A cursor (revision, placement) not yet written to Postgres.
    pending_cursor: Mutex<Option<(i64, Arc<Membership>)>>,
    /// The newest heartbeat not yet written (microseconds since the epoch;
    /// 0: none). Plain heartbeats only land here; the session bookkeeping
    /// writes them for every session in one statement per pass.
    heard: AtomicI64,
    /// The registry no longer sees the site as live: send a full status
    /// report with the next heartbeat.
    report_due: std::sync::atomic::AtomicBool,
}

impl SessionHandle {
    /// Ends the session; the agent receives `status`.
    pub fn end(&self, status: Status) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(status);
        self.end.cancel();
    }

    fn reason(&self) -> Status {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            // No reason given: the process is shutting down.
            .unwrap_or_else(|| Status::unavailable("the control plane is shutting down; reconnect"))
    }

    pub fn record_ack(&self, revision: i64, membership: &Arc<Membership>) {
        self.acked.fetch_max(revision, Ordering::Relaxed);
        *self
            .pending_cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((revision, membership.clone()));
    }

    /// Records a heartbeat received at `time`, to be written in a batch.
    pub fn note_heartbeat(&self, time: DateTime<Utc>) {
        self.heard
            .fetch_max(time.timestamp_micros(), Ordering::Relaxed);
    }

    /// The newest heartbeat since the last call, if any.
    pub fn take_heartbeat(&self) -> Option<DateTime<Utc>> {
        match self.heard.swap(0, Ordering::Relaxed) {
            0 => None,
            micros => DateTime::from_timestamp_micros(micros),
        }
    }

    /// Asks for a full status report with the next heartbeat.
    pub fn request_report(&self) {
        self.report_due.store(true, Ordering::Relaxed);
    }

    /// Whether a full report was asked for (and clears the request).
    pub fn take_report_request(&self) -> bool {
        self.report_due.swap(false, Ordering::Relaxed)
    }

    /// The cursor to write, if it moved since the last call.
    pub fn take_cursor(&self) -> Option<(i64, Arc<Membership>)> {
        self.pending_cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The sessions of this process, by site.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<SessionHandle>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SessionHandle>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a session; an older one of the same site is ended.
    fn insert(&self, handle: Arc<SessionHandle>) {
        if let Some(old) = self.lock().insert(handle.site.clone(), handle) {
            old.end(Status::aborted(
                "a newer connection of this site took over the stream",
            ));
        }
    }

    fn remove(&self, site: &str, id: Uuid) {
        let mut map = self.lock();
        if map.get(site).is_some_and(|h| h.id == id) {
            map.remove(site);
        }
    }

    pub fn get(&self, site: &str) -> Option<Arc<SessionHandle>> {
        self.lock().get(site).cloned()
    }

    pub fn all(&self) -> Vec<Arc<SessionHandle>> {
        self.lock().values().cloned().collect()
    }

    pub fn sites(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }
}

pub struct SiteSyncService(pub Arc<Shared>);

type ControlStream = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

/// The verified leaf certificate of the TLS client.
fn client_cert<T>(request: &Request<T>) -> Result<Vec<u8>, ReplicationError> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
        .ok_or_else(|| {
            ReplicationError::Unauthenticated(
                "a site client certificate is required (register the agent first)".into(),
            )
        })
}

fn authority_error(e: AuthorityError) -> ReplicationError {
    match e {
        AuthorityError::Untrusted(m) => {
            ReplicationError::Unauthenticated(format!("the client certificate is not trusted: {m}"))
        }
        AuthorityError::Unavailable(m) => ReplicationError::Unavailable(m),
        AuthorityError::Invalid(m) | AuthorityError::Unsupported(m) => {
            ReplicationError::Unauthenticated(m)
        }
    }
}

#[tonic::async_trait]
impl pb::site_sync_server::SiteSync for SiteSyncService {
    type ConnectStream = ControlStream;

    async fn connect(
        &self,
        request: Request<tonic::Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let shared = &self.0;
        let der = client_cert(&request)?;
        let verified = shared
            .authority
            .verify(&der)
            .await
            .map_err(authority_error)?;
        let site = verified.site.clone();
        let mut inbound = request.into_inner();
        let hello = read_hello(&mut inbound, shared.config.hello_timeout).await?;
        let claimed = SiteId::parse("hello.site", &hello.site)?;
        if claimed.as_str() != site {
            return Err(ReplicationError::PermissionDenied(format!(
                "the client certificate names sites/{site}; it cannot connect as {}",
                claimed.resource_name()
            ))
            .into());
        }
        if hello.last_acked_revision < 0 {
            return Err(ReplicationError::invalid(
                "hello.last_acked_revision",
                "must not be negative",
            )
            .into());
        }
        if !shared.placement.wait_ready(Duration::from_secs(10)).await {
            return Err(ReplicationError::Unavailable(
                "placement is not loaded yet; retry shortly".into(),
            )
            .into());
        }
        let id = Uuid::new_v4();
        let replica = shared.config.replica_id.clone();
        let replica_url = shared.config.advertise_url.clone();
        let agent_version = hello.agent_version.clone();
        let site_for_tx = site.clone();
        let stored: StoredCursor = manifold_db::transaction!(
            shared.db,
            "replication_connect",
            Scope::System,
            ReplicationError,
            |tx| {
                let c = storage::sites::connect(
                    tx,
                    &site_for_tx,
                    id,
                    &replica,
                    replica_url.as_deref(),
                    &agent_version,
                )
                .await?;
                storage::report::set_site_offline(tx, &site_for_tx, false).await?;
                Ok(c)
            }
        )?;
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_BUFFER);
        let handle = Arc::new(SessionHandle {
            id,
            site: site.clone(),
            commands: cmd_tx,
            agent_version: hello.agent_version.clone(),
            end: shared.stop.child_token(),
            reason: Mutex::new(None),
            acked: AtomicI64::new(hello.last_acked_revision),
            in_flight: AtomicI64::new(0),
            pending_cursor: Mutex::new(None),
            heard: AtomicI64::new(0),
            report_due: std::sync::atomic::AtomicBool::new(false),
        });
        shared.sessions.insert(handle.clone());
        tracing::info!(site = %site, revision = hello.last_acked_revision, stored = stored.acked_revision,
            agent = %hello.agent_version, "site connected");
        {
            let shared = shared.clone();
            let site = site.clone();
            let version = hello.agent_version.clone();
            tokio::spawn(
                async move { inbound::report_online(&shared, &site, &version, None).await },
            );
        }

        let (out_tx, out_rx) = mpsc::channel(OUT_BUFFER);
        // The site's settings go first, before any object, so the agent makes
        // its namespaces with them.
        let _ = out_tx.try_send(Ok(settings_message(&verified)));
        let (ack_tx, ack_rx) = watch::channel(hello.last_acked_revision);
        let driver = Driver {
            shared: shared.clone(),
            handle,
            der,
            out: out_tx,
            verified,
        };
        tokio::spawn(driver.run(inbound, cmd_rx, ack_tx, ack_rx, hello, stored));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

async fn read_hello(
    inbound: &mut tonic::Streaming<pb::AgentMessage>,
    timeout: Duration,
) -> Result<pb::Hello, ReplicationError> {
    let first = tokio::time::timeout(timeout, inbound.message())
        .await
        .map_err(|_| ReplicationError::invalid("hello", "no Hello within the timeout"))?
        .map_err(|s| ReplicationError::Unavailable(format!("reading Hello: {}", s.message())))?;
    match first.and_then(|m| m.msg) {
        Some(pb::agent_message::Msg::Hello(h)) => Ok(h),
        _ => Err(ReplicationError::invalid(
            "hello",
            "the first message of the stream must be Hello",
        )),
    }
}

struct Driver {
    shared: Arc<Shared>,
    handle: Arc<SessionHandle>,
    der: Vec<u8>,
    out: mpsc::Sender<Result<pb::ControlMessage, Status>>,
    /// What the certificate check said at connect time.
    verified: VerifiedCert,
}

impl Driver {
    async fn run(
        self,
        stream: tonic::Streaming<pb::AgentMessage>,
        commands: mpsc::Receiver<pb::ControlMessage>,
        ack_tx: watch::Sender<i64>,
        ack_rx: watch::Receiver<i64>,
        hello: pb::Hello,
        stored: StoredCursor,
    ) {
        let site = self.handle.site.clone();
        let outbound = outbound::Outbound::new(
            self.shared.clone(),
            self.handle.clone(),
            self.out.clone(),
            commands,
            ack_rx,
        );
        let reader = inbound::Inbound::new(self.shared.clone(), self.handle.clone(), &self.der);
        let result = tokio::select! {
            r = outbound.run(hello.last_acked_revision, stored) => r,
            r = reader.run(stream, ack_tx) => r,
            r = recheck_certificate(&self.shared, &self.der, &self.out, self.verified.clone()) => r,
            _ = self.handle.end.cancelled() => Err(self.handle.reason()),
        };
        match &result {
            Ok(()) => tracing::info!(site = %site, "site disconnected"),
            Err(s) => {
                tracing::info!(site = %site, code = ?s.code(), reason = %s.message(), "site stream ended")
            }
        }
        if let Err(status) = result {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.out.send(Err(status))).await;
        }
        self.cleanup().await;
    }

    async fn cleanup(&self) {
        let shared = &self.shared;
        let h = &self.handle;
        shared.sessions.remove(&h.site, h.id);
        shared.logs.end_site(&h.site);
        let cursor = h.take_cursor();
        let touch = storage::sites::SessionTouch {
            site: h.site.clone(),
            session_id: h.id,
            acked_revision: h.acked.load(Ordering::Relaxed),
            placement: cursor.map(|(_, m)| m.to_json()),
            in_flight: 0,
            heartbeat_time: None,
        };
        let site = h.site.clone();
        let id = h.id;
        let done = manifold_db::transaction!(
            shared.db,
            "replication_disconnect",
            Scope::System,
            ReplicationError,
            |tx| {
                storage::sites::touch(tx, std::slice::from_ref(&touch)).await?;
                storage::sites::disconnect(tx, &site, id).await?;
                Ok(())
            }
        );
        if let Err(e) = done {
            tracing::warn!(site = %h.site, error = %e, "recording the end of a stream");
        }
    }
}

/// The SiteSettings message for what a certificate check said.
fn settings_message(verified: &VerifiedCert) -> pb::ControlMessage {
    pb::ControlMessage {
        msg: Some(pb::control_message::Msg::Settings(pb::SiteSettings {
            pod_security: verified.pod_security.clone(),
        })),
    }
}

/// Ends the session when the certificate stops being trusted (revoked,
/// site decommissioned), and sends the site's settings again when the
/// operator changed them. Never returns Ok.
async fn recheck_certificate(
    shared: &Shared,
    der: &[u8],
    out: &mpsc::Sender<Result<pb::ControlMessage, Status>>,
    mut known: VerifiedCert,
) -> Result<(), Status> {
    let every = shared.config.certificate_recheck;
    let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match shared.authority.verify(der).await {
            Ok(now) => {
                if now.pod_security != known.pod_security && !now.pod_security.is_empty() {
                    tracing::info!(site = %now.site, from = %known.pod_security,
                        to = %now.pod_security, "site settings changed");
                    out.send(Ok(settings_message(&now)))
                        .await
                        .map_err(|_| Status::cancelled("the stream ended"))?;
                    known = now;
                }
            }
            Err(AuthorityError::Unavailable(m)) => {
                tracing::debug!(error = %m, "certificate re-check unavailable");
            }
            Err(e) => return Err(authority_error(e).into()),
        }
    }
}
