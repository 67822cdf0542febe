//! Watches: a chunked stream of JSON `WatchEvent`s (objects or one-row
//! Tables), with bookmarks, `sendInitialEvents` streaming lists, timeouts,
//! and an ERROR event with a 410 Status when the resourceVersion is gone.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use manifold_kube_model::kinds::ResourceKind;
use manifold_kube_model::table::{self, TableOptions};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::Ctx;
use super::negotiate::{self, Output};
use super::response::set_table_version;
use crate::core::Core;
use crate::core::list::{ListFrom, ListOptions, Selectors, WatchFrom, watch_event};
use crate::core::replication::{is_workload, merge_status, site_count, statuses_by_site};
use crate::core::status_push::StatusEvent;
use crate::domain::VirtualCluster;
use crate::error::GatewayError;
use crate::feed::{Cursor, Step};
use manifold_proto::replication::v1 as pb;
use tokio::sync::broadcast;

/// Longest a watch stays open; clients re-watch from their last revision.
const MAX_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often an idle watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// How often a watch of workloads re-reads the sites' status of the
/// objects it has sent, to send MODIFIED when the summed status changed,
/// when the replication service cannot push status changes (its
/// WatchObjectStatus stream failed or is not offered).
const STATUS_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a watch waits for the status push to go live.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Objects per watch whose site status is followed.
const MAX_FOLLOWED: usize = 500;

/// Merges the sites' status into workload objects of a watch.
pub struct Observer {
    pub core: Arc<Core>,
    pub vc: Arc<VirtualCluster>,
    pub token: String,
}

impl Observer {
    /// The vK8s's status changes, pushed, once live; `None` when they
    /// cannot be had (the watch then polls).
    async fn push(&self) -> Option<broadcast::Receiver<StatusEvent>> {
        if !self.core.config.status_push {
            return None;
        }
        let client = self.core.replication.get()?;
        let subscribed = self
            .core
            .status_push
            .subscribe(client, &self.vc, &self.token);
        match tokio::time::timeout(PUSH_TIMEOUT, subscribed).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "status push unavailable; this watch polls");
                None
            }
            Err(_) => {
                tracing::info!("status push did not go live; this watch polls");
                None
            }
        }
    }

    async fn merge(&self, kind: &'static ResourceKind, object: &mut Value) {
        if let Err(e) = self.core.observe(&self.vc, kind, object, &self.token).await {
            tracing::debug!(error = %e, "reading the sites' status for a watch");
        }
    }
}

/// The watch parameters of a request.
pub struct WatchParams {
    pub allow_bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub timeout: Duration,
    pub output: Output,
}

impl WatchParams {
    pub fn parse(ctx: &Ctx) -> Result<Self, GatewayError> {
        let q = &ctx.query;
        let requested = q.timeout_seconds()?.map(Duration::from_secs);
        Ok(Self {
            allow_bookmarks: q.flag("allowWatchBookmarks")?,
            send_initial_events: q.optional_flag("sendInitialEvents")?,
            timeout: requested.unwrap_or(MAX_TIMEOUT).min(MAX_TIMEOUT),
            output: negotiate::output(ctx.header(header::ACCEPT), true, q.include_object()?)?,
        })
    }
}

/// Serialises events in the negotiated form.
#[derive(Clone, Copy)]
pub struct Encoder {
    pub kind: &'static ResourceKind,
    pub output: Output,
    /// Strip Secret values (a viewer's watch of Secrets).
    pub hide_data: bool,
}

impl Encoder {
    fn line(value: &Value) -> Bytes {
        let mut text = value.to_string();
        text.push('\n');
        Bytes::from(text)
    }

    pub fn event(&self, event_type: &str, object: &Value) -> Bytes {
        match self.output {
            Output::Table { version, include } => {
                let sites = site_count;
                let opts =
                    TableOptions::new(include, chrono::Utc::now()).with_replica_multiplier(&sites);
                let mut t = table::object_table(self.kind.kind, object, &opts);
                if self.hide_data {
                    super::secrets::redact_table(&mut t);
                }
                set_table_version(&mut t, version);
                Self::line(&json!({ "type": event_type, "object": t }))
            }
            _ if self.hide_data => {
                let mut object = object.clone();
                super::secrets::redact(&mut object);
                Self::line(&json!({ "type": event_type, "object": object }))
            }
            _ => Self::line(&json!({ "type": event_type, "object": object })),
        }
    }

    /// A BOOKMARK carries only the kind and a resourceVersion.
    pub fn bookmark(&self, revision: i64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({ "resourceVersion": revision.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object = match self.output {
            Output::Table { version, .. } => json!({
                "kind": "Table",
                "apiVersion": format!("meta.k8s.io/{version}"),
                "metadata": metadata,
                "columnDefinitions": [],
                "rows": [],
            }),
            _ => json!({
                "kind": self.kind.kind,
                "apiVersion": self.kind.api_version(),
                "metadata": metadata,
            }),
        };
        Self::line(&json!({ "type": "BOOKMARK", "object": object }))
    }

    pub fn error(e: &GatewayError) -> Bytes {
        Self::line(&json!({ "type": "ERROR", "object": e.to_kube_status() }))
    }
}

/// Where events come from after the initial state.
pub enum Source {
    Log {
        cursor: Box<Cursor>,
        selectors: Selectors,
    },
    /// Nothing ever changes (the namespace); only bookmarks at this revision.
    Static(i64),
}

/// Everything a running watch needs.
pub struct Stream {
    pub encoder: Encoder,
    pub params: WatchParams,
    pub initial: Vec<Value>,
    pub initial_revision: i64,
    pub source: Source,
    /// Set for workload kinds when replication is configured.
    pub observer: Option<Observer>,
    /// Workloads the client already holds from the list this watch continues
    /// (stored form, no site status): followed from the start, so a status
    /// change the sites report after the list reaches the watcher
    /// (`kubectl wait --for=condition=…` lists, then watches from the list's
    /// revision, and waits for exactly that).
    pub listed: Vec<Value>,
}

pub fn streaming_response(rx: mpsc::Receiver<Result<Bytes, Infallible>>) -> Response {
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    response
}

/// Starts streaming `stream` in its own task.
/// `slot`: the caller's watch slot, held while the watch runs.
pub fn spawn(
    stream: Stream,
    watches: CancellationToken,
    slot: Option<crate::core::quota::WatchSlot>,
) -> Response {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let _slot = slot;
        run(stream, tx, watches).await;
    });
    streaming_response(rx)
}

/// A watch that fails before it starts: one ERROR event.
pub fn failed(e: &GatewayError) -> Response {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Ok(Encoder::error(e)));
    streaming_response(rx)
}

async fn next(source: &mut Source) -> Result<Step, GatewayError> {
    match source {
        Source::Log { cursor, .. } => cursor.next().await,
        Source::Static(_) => std::future::pending().await,
    }
}

async fn run(
    stream: Stream,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    watches: CancellationToken,
) {
    let Stream {
        encoder,
        params,
        initial,
        initial_revision,
        mut source,
        observer,
        listed,
    } = stream;
    let observer = observer.filter(|_| is_workload(encoder.kind.kind));
    // Live before anything is read, so no change falls in between.
    let mut pushed = match &observer {
        Some(o) => o.push().await,
        None => None,
    };
    // Name → the object as last sent, for status follow-ups.
    let mut followed: HashMap<String, Value> = HashMap::new();
    if observer.is_some() {
        // Without the sites' status, so the first poll sends the merged
        // state as MODIFIED: a repeat of what the list showed at worst, and
        // never a missed change from between the list and this watch.
        for object in &listed {
            follow(&mut followed, "MODIFIED", object);
        }
    }
    for mut object in initial {
        if let Some(o) = &observer {
            o.merge(encoder.kind, &mut object).await;
            follow(&mut followed, "ADDED", &object);
        }
        if tx.send(Ok(encoder.event("ADDED", &object))).await.is_err() {
            return;
        }
    }
    if params.send_initial_events == Some(true)
        && params.allow_bookmarks
        && tx
            .send(Ok(encoder.bookmark(initial_revision, true)))
            .await
            .is_err()
    {
        return;
    }
    // With changes pushed, the listed objects' status is read once now;
    // without, the first poll does it.
    if let (Some(o), Some(_)) = (&observer, &pushed) {
        let names: Vec<String> = listed
            .iter()
            .filter_map(|l| l.pointer("/metadata/name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        if !poll(o, encoder, &mut followed, Some(&names), &tx).await {
            return;
        }
    }
    let namespace = followed_namespace(&observer);
    let deadline = tokio::time::sleep(params.timeout);
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + BOOKMARK_INTERVAL,
        BOOKMARK_INTERVAL,
    );
    let mut status_ticks = tokio::time::interval(STATUS_POLL_INTERVAL);
    status_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let bytes = tokio::select! {
            _ = watches.cancelled() => return,
            _ = status_ticks.tick(), if observer.is_some() && pushed.is_none() && !followed.is_empty() => {
                let Some(o) = &observer else { continue };
                if !poll(o, encoder, &mut followed, None, &tx).await {
                    return;
                }
                continue;
            }
            change = next_status(&mut pushed) => {
                match change {
                    Ok(event) => {
                        let Some((name, fresh)) = pushed_change(&encoder, &namespace, &followed, &event) else {
                            continue;
                        };
                        let bytes = encoder.event("MODIFIED", &fresh);
                        followed.insert(name, fresh);
                        bytes
                    }
                    Err(ended) => {
                        // Fell behind, or the upstream ended: subscribe again
                        // (with this watch's token) and re-read what might
                        // have been missed; polling if no push can be had.
                        let Some(o) = &observer else { continue };
                        if matches!(ended, broadcast::error::RecvError::Closed) {
                            pushed = o.push().await;
                        }
                        if !poll(o, encoder, &mut followed, None, &tx).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = ticks.tick(), if params.allow_bookmarks => {
                let revision = match &source {
                    Source::Log { cursor, .. } => cursor.bookmark(),
                    Source::Static(rv) => Some(*rv),
                };
                match revision {
                    Some(rv) => encoder.bookmark(rv, false),
                    None => continue,
                }
            }
            step = next(&mut source) => match step {
                Ok(Step::Change(change)) => {
                    let Source::Log { selectors, .. } = &source else { continue };
                    if let Some(why) = &change.unreadable {
                        // As a list of it would: a 500 naming the object and
                        // its key, then the watch ends (never a guess).
                        let e = GatewayError::Encryption((**why).clone());
                        let _ = tx.send(Ok(Encoder::error(&e))).await;
                        return;
                    }
                    match watch_event(selectors, &change) {
                        Some((event, object)) => {
                            let mut object = (*object).clone();
                            if let Some(o) = &observer {
                                o.merge(encoder.kind, &mut object).await;
                                follow(&mut followed, event.as_str(), &object);
                            }
                            encoder.event(event.as_str(), &object)
                        }
                        None => continue,
                    }
                }
                Ok(Step::Progress(_)) => continue,
                Err(e) => {
                    let _ = tx.send(Ok(Encoder::error(&e))).await;
                    return;
                }
            },
        };
        if tx.send(Ok(bytes)).await.is_err() {
            return;
        }
    }
}

/// The next pushed status change (never, without a push).
async fn next_status(
    pushed: &mut Option<broadcast::Receiver<StatusEvent>>,
) -> Result<StatusEvent, broadcast::error::RecvError> {
    match pushed {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The namespace whose objects the observer follows.
fn followed_namespace(observer: &Option<Observer>) -> String {
    observer
        .as_ref()
        .map(|o| o.vc.name.namespace.clone())
        .unwrap_or_default()
}

/// A followed object (name, object) with a pushed change merged in, when
/// that changes what the watcher holds.
fn pushed_change(
    encoder: &Encoder,
    namespace: &str,
    followed: &HashMap<String, Value>,
    event: &pb::ObjectStatusEvent,
) -> Option<(String, Value)> {
    let r = event.r#ref.as_ref()?;
    if r.kind != encoder.kind.kind || r.namespace != namespace {
        return None;
    }
    let last = followed.get(&r.name)?;
    let mut fresh = last.clone();
    merge_status(
        encoder.kind.kind,
        &mut fresh,
        statuses_by_site(&event.statuses),
    );
    (fresh != *last).then(|| (r.name.clone(), fresh))
}

/// Re-reads the sites' status of the followed objects (`only`: of these
/// names) and sends MODIFIED for each that changed; false once the
/// watcher has gone.
async fn poll(
    o: &Observer,
    encoder: Encoder,
    followed: &mut HashMap<String, Value>,
    only: Option<&[String]>,
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
) -> bool {
    let mut changed = Vec::new();
    for (name, last) in followed.iter() {
        if only.is_some_and(|names| !names.contains(name)) {
            continue;
        }
        let mut fresh = last.clone();
        o.merge(encoder.kind, &mut fresh).await;
        if fresh != *last {
            changed.push((name.clone(), fresh));
        }
    }
    for (name, fresh) in changed {
        if tx
            .send(Ok(encoder.event("MODIFIED", &fresh)))
            .await
            .is_err()
        {
            return false;
        }
        followed.insert(name, fresh);
    }
    true
}

/// Keeps `followed` up to date with what a watcher was sent.
fn follow(followed: &mut HashMap<String, Value>, event: &str, object: &Value) {
    let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) else {
        return;
    };
    if event == "DELETED" {
        followed.remove(name);
    } else if followed.len() < MAX_FOLLOWED || followed.contains_key(name) {
        followed.insert(name.to_owned(), object.clone());
    }
}

/// `GET …?watch=true` on a stored kind; `hide_data`: a viewer's watch of
/// Secrets, whose values are stripped from every event.
pub async fn handle(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    hide_data: bool,
) -> Result<Response, GatewayError> {
    let params = WatchParams::parse(ctx)?;
    let selectors = ctx.query.selectors()?;
    let slot = ctx.core.acquire_watch(&ctx.principal.user)?;
    let rv = ctx.query.get("resourceVersion").filter(|v| !v.is_empty());
    let from = match (params.send_initial_events, rv) {
        (Some(true), _) | (None, None | Some("0")) => WatchFrom::InitialState,
        (Some(false), None | Some("0")) => WatchFrom::After(ctx.core.head_revision().await?),
        (_, Some(rv)) => WatchFrom::After(
            rv.parse()
                .map_err(|_| GatewayError::BadRequest(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let after = match &from {
        WatchFrom::After(revision) => Some(*revision),
        WatchFrom::InitialState => None,
    };
    let start = match ctx.core.start_watch(&ctx.vc, kind, &selectors, from).await {
        Ok(start) => start,
        Err(e @ GatewayError::Gone(_)) => return Ok(failed(&e)),
        Err(e) => return Err(e),
    };
    let listed = match after {
        Some(revision) if is_workload(kind.kind) && ctx.core.replication.get().is_some() => {
            listed_before(ctx, kind, &selectors, revision).await?
        }
        _ => Vec::new(),
    };
    let encoder = Encoder {
        kind,
        output: params.output,
        hide_data,
    };
    Ok(spawn(
        Stream {
            encoder,
            params,
            initial: start.initial,
            initial_revision: start.initial_revision,
            source: Source::Log {
                cursor: Box::new(start.cursor),
                selectors,
            },
            observer: match ctx.core.replication.get() {
                Some(_) => Some(Observer {
                    core: ctx.core.clone(),
                    vc: ctx.vc.clone(),
                    token: ctx.token()?.to_owned(),
                }),
                None => None,
            },
            listed,
        },
        ctx.watches.clone(),
        Some(slot),
    ))
}

/// The selected workloads last written at or before `revision` (at most
/// [`MAX_FOLLOWED`]): what a client listing at `revision` holds. Later writes
/// reach the watch through the log and are followed from there.
async fn listed_before(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    selectors: &Selectors,
    revision: i64,
) -> Result<Vec<Value>, GatewayError> {
    let opts = ListOptions {
        selectors: selectors.clone(),
        limit: Some(MAX_FOLLOWED as i64),
        from: ListFrom::Latest,
    };
    let page = ctx.core.list_objects(&ctx.vc, kind, &opts).await?;
    Ok(page
        .items
        .into_iter()
        .filter(|o| {
            o.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|rv| rv.parse::<i64>().ok())
                .is_some_and(|rv| rv <= revision)
        })
        .collect())
}
