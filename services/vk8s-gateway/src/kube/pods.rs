//! Pods, aggregated from every site by the replication service: list, get
//! and watch (with label and field selectors, Tables), delete (the site's
//! controller recreates the pod) and `log`, streamed as chunked text.
//! Pod resourceVersions are replication's per-vK8s pod revisions. A pod's
//! name is `{name on its site}.{site}` (`core::replication::vk8s_pod_name`).

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use manifold_kube_model::kinds::ResourceKind;
use manifold_proto::replication::v1 as pb;
use serde_json::Value;
use tokio::sync::mpsc;

use super::negotiate::Output;
use super::response::{json_response, list_response, single};
use super::watch::{Encoder, WatchParams, streaming_response};
use super::{Ctx, read_body};
use crate::core::replication::{
    PodChange, ReplicationClient, SITE_POD_NAME_ANNOTATION, pod_site, site_pod_names,
};
use crate::error::{GatewayError, Target};

/// Longest a pod watch stays open.
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1800);

fn client(ctx: &Ctx) -> Result<&ReplicationClient, GatewayError> {
    ctx.core.replication.get().ok_or(GatewayError::NoRoute)
}

fn name_of(pod: &Value) -> &str {
    pod.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn not_found(kind: &ResourceKind, name: &str) -> GatewayError {
    GatewayError::NotFound(Target::object(kind.group, kind.plural, name))
}

/// Most readings of a dotted pod name a lookup tries (see `find`).
const MAX_NAME_SPLITS: usize = 8;

/// The pod named `name` in the vK8s: `{site pod name}.{site}`.
///
/// The name is split at a dot into the site's pod name and the site, and
/// the pod is read by key from replication; only the report of that site
/// answers for it (the site is the one replication authenticated, never a
/// label the site wrote). Both halves may contain dots, so each split is
/// tried, rightmost first and at most [`MAX_NAME_SPLITS`]; should two
/// readings both name a pod (a dotted pod name on one site and a dotted
/// site id), the name answers for neither (409, naming the sites) rather
/// than trusting whichever sorts first.
async fn find(ctx: &Ctx, kind: &ResourceKind, name: &str) -> Result<Value, GatewayError> {
    let splits: Vec<(&str, &str)> = site_pod_names(name).collect();
    let mut named = Vec::new();
    for (site_pod, site) in splits.into_iter().rev().take(MAX_NAME_SPLITS) {
        let pods = client(ctx)?
            .pods_named(&ctx.vc, ctx.token()?, site_pod)
            .await?;
        named.extend(
            pods.into_iter()
                .filter(|p| pod_site(p) == site && name_of(p) == name),
        );
    }
    match named.len() {
        0 => Err(not_found(kind, name)),
        1 => Ok(named.remove(0)),
        _ => {
            let mut sites: Vec<&str> = named.iter().map(pod_site).collect();
            sites.sort_unstable();
            sites.dedup();
            Err(GatewayError::Conflict {
                target: Target::object(kind.group, kind.plural, name),
                message: format!(
                    "pods of sites {} both read as this name; select one with -l manifold.dev/site=SITE and use the name from that list",
                    sites.join(", ")
                ),
            })
        }
    }
}

/// The pod's name on its site (replication's key, see `pod_object`).
fn site_pod_name(pod: &Value) -> &str {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(SITE_POD_NAME_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub async fn list(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    out: Output,
) -> Result<Response, GatewayError> {
    let selectors = ctx.query.selectors()?;
    let (pods, revision) = client(ctx)?.list_pods(&ctx.vc, ctx.token()?).await?;
    let items: Vec<Value> = pods.into_iter().filter(|p| selectors.matches(p)).collect();
    let rv = revision.to_string();
    Ok(list_response(kind, items, &rv, out))
}

pub async fn get(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: &str,
    out: Output,
) -> Result<Response, GatewayError> {
    let pod = find(ctx, kind, name).await?;
    Ok(single(StatusCode::OK, out, kind.kind, &pod))
}

/// Asks the pod's site to delete it; the pod is returned as it was.
pub async fn delete(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: &str,
    body: Body,
) -> Result<Response, GatewayError> {
    read_body(body).await?;
    let pod = find(ctx, kind, name).await?;
    if !ctx.query.dry_run()? {
        client(ctx)?
            .delete_pod(&ctx.vc, site_pod_name(&pod), pod_site(&pod), ctx.token()?)
            .await?;
    }
    Ok(json_response(StatusCode::OK, &pod))
}

/// `GET …/pods/{name}/log`: the container's log as chunked text.
pub async fn log(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: &str,
) -> Result<Response, GatewayError> {
    let pod = find(ctx, kind, name).await?;
    let q = &ctx.query;
    let tail_lines = match q.get("tailLines") {
        Some(t) => t
            .parse::<i64>()
            .map_err(|_| GatewayError::BadRequest(format!("invalid tailLines {t:?}")))?,
        // Absent: the whole log (replication's 0; a negative count is
        // refused there).
        None => 0,
    };
    let request = pb::StreamLogsRequest {
        pod: site_pod_name(&pod).to_owned(),
        container: q.get("container").unwrap_or_default().to_owned(),
        follow: q.flag("follow")?,
        tail_lines,
        timestamps: q.flag("timestamps")?,
        site: pod_site(&pod).to_owned(),
        ..Default::default()
    };
    let mut chunks = Box::pin(
        client(ctx)?
            .stream_logs(&ctx.vc, ctx.token()?, request)
            .await?,
    );
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    let watches = ctx.watches.clone();
    tokio::spawn(async move {
        loop {
            let chunk = tokio::select! {
                _ = watches.cancelled() => return,
                _ = tx.closed() => return,
                c = chunks.next() => c,
            };
            match chunk {
                Some(Ok(data)) => {
                    if tx.send(Ok(Bytes::from(data))).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "pod log stream ended");
                    return;
                }
                None => return,
            }
        }
    });
    let mut response = Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// `GET …/pods?watch=true`: replication's `WatchPods`, as watch events.
pub async fn watch(ctx: &Ctx, kind: &'static ResourceKind) -> Result<Response, GatewayError> {
    let params = WatchParams::parse(ctx)?;
    let selectors = ctx.query.selectors()?;
    let rv = ctx.query.get("resourceVersion").filter(|v| !v.is_empty());
    let initial = matches!(
        (params.send_initial_events, rv),
        (Some(true), _) | (None, None | Some("0"))
    );
    let from = match rv {
        Some(rv) if !initial => rv
            .parse::<i64>()
            .map_err(|_| GatewayError::BadRequest(format!("invalid resourceVersion {rv:?}")))?,
        _ => 0,
    };
    // Without initial events and without a revision: from the newest.
    let from = if !initial && from == 0 {
        client(ctx)?.list_pods(&ctx.vc, ctx.token()?).await?.1
    } else {
        from
    };
    let slot = ctx.core.acquire_watch(&ctx.principal.user)?;
    let stream = match client(ctx)?.watch_pods(&ctx.vc, ctx.token()?, from).await {
        Ok(s) => s,
        Err(e @ GatewayError::Gone(_)) => return Ok(super::watch::failed(&e)),
        Err(e) => return Err(e),
    };
    let encoder = Encoder {
        kind,
        output: params.output,
        hide_data: false,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let watches = ctx.watches.clone();
    let timeout = params.timeout.min(MAX_TIMEOUT);
    let send_end = params.send_initial_events == Some(true) && params.allow_bookmarks;
    let allow_bookmarks = params.allow_bookmarks;
    tokio::spawn(async move {
        let _slot = slot;
        let mut stream = Box::pin(stream);
        // (site, name) → whether the watcher currently sees the pod.
        let mut seen: HashMap<(String, String), bool> = HashMap::new();
        // With from = 0 the stream starts with the current pods.
        let mut in_initial = from == 0;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let change = tokio::select! {
                _ = watches.cancelled() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                c = stream.next() => c,
            };
            let bytes = match change {
                None => return,
                // The caller's token lapsed (replication re-checks it too):
                // end the watch the way the gateway's own re-check does,
                // without an ERROR event.
                Some(Err(GatewayError::Upstream(s)))
                    if s.code() == tonic::Code::Unauthenticated =>
                {
                    return;
                }
                Some(Err(e)) => {
                    let _ = tx.send(Ok(Encoder::error(&e))).await;
                    return;
                }
                Some(Ok(PodChange::Bookmark(revision))) => {
                    let end = std::mem::take(&mut in_initial);
                    if !allow_bookmarks {
                        continue;
                    }
                    encoder.bookmark(revision, end && send_end)
                }
                Some(Ok(PodChange::Upsert(mut pod, revision))) => {
                    pod["metadata"]["resourceVersion"] = revision.to_string().into();
                    let key = (pod_site(&pod).to_owned(), name_of(&pod).to_owned());
                    let now = selectors.matches(&pod);
                    let before = seen.insert(key, now).unwrap_or(false);
                    let event = match (before, now) {
                        (false, true) => "ADDED",
                        (true, true) => "MODIFIED",
                        (true, false) => "DELETED",
                        (false, false) => continue,
                    };
                    if in_initial && !initial {
                        continue;
                    }
                    encoder.event(event, &pod)
                }
                Some(Ok(PodChange::Delete(mut pod, revision))) => {
                    pod["metadata"]["resourceVersion"] = revision.to_string().into();
                    let key = (pod_site(&pod).to_owned(), name_of(&pod).to_owned());
                    let before = seen.remove(&key).unwrap_or(false);
                    if !before && !selectors.matches(&pod) {
                        continue;
                    }
                    encoder.event("DELETED", &pod)
                }
            };
            if tx.send(Ok(bytes)).await.is_err() {
                return;
            }
        }
    });
    Ok(streaming_response(rx))
}
