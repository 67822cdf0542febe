//! The one Kubernetes namespace of a virtual cluster: its Manifold
//! namespace, always Active, read-only. Any other namespace does not exist.
//!
//! Creating it (`POST` with its name) or applying it server-side answers 409
//! AlreadyExists, as kube-apiserver answers a create of an existing
//! namespace: `helm install --create-namespace` creates the release's
//! namespace that way and goes on when it already exists. Every other write
//! is refused with 405.

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode, header};
use manifold_auth::Permission;
use manifold_kube_model::PatchType;
use manifold_kube_model::kinds::ResourceKind;
use serde_json::{Value, json};

use super::negotiate;
use super::response::{list_response, single};
use super::watch::{self, Encoder, Source, Stream, WatchParams};
use super::{Ctx, read_body};
use crate::domain::VirtualCluster;
use crate::error::{GatewayError, Target};

fn namespace_object(vc: &VirtualCluster, revision: i64) -> Value {
    let ns = &vc.name.namespace;
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": ns,
            "uid": vc.id.to_string(),
            "resourceVersion": revision.to_string(),
            "creationTimestamp": vc.create_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "labels": { "kubernetes.io/metadata.name": ns },
        },
        "spec": { "finalizers": ["kubernetes"] },
        "status": { "phase": "Active" },
    })
}

fn read_only() -> GatewayError {
    GatewayError::MethodNotAllowed(
        "namespaces of a virtual cluster are managed through Manifold, not the Kubernetes API"
            .into(),
    )
}

/// A create (`POST`, or a server-side apply, which creates when absent) of
/// the virtual cluster's own namespace finds it existing; any other write is
/// refused.
async fn write(
    ctx: &Ctx,
    name: Option<&str>,
    subresource: Option<&str>,
    body: Body,
) -> Result<Response, GatewayError> {
    let own = &ctx.vc.name.namespace;
    let creates_own = match (&ctx.method, name, subresource) {
        (&Method::POST, None, None) => {
            let bytes = read_body(body).await?;
            let object = negotiate::decode_body(ctx.header(header::CONTENT_TYPE), &bytes)?;
            object.pointer("/metadata/name").and_then(Value::as_str) == Some(own.as_str())
        }
        (&Method::PATCH, Some(n), None) => {
            n == own
                && PatchType::from_content_type(ctx.header(header::CONTENT_TYPE).unwrap_or(""))
                    == Some(PatchType::Apply)
        }
        _ => false,
    };
    if !creates_own {
        return Err(read_only());
    }
    ctx.principal
        .check(Permission::Write, &ctx.vc.name.resource_name())?;
    Err(GatewayError::AlreadyExists(Target::object(
        "",
        "namespaces",
        own,
    )))
}

pub async fn handle(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: Option<&str>,
    subresource: Option<&str>,
    body: Body,
) -> Result<Response, GatewayError> {
    if ctx.method != Method::GET {
        return write(ctx, name, subresource, body).await;
    }
    ctx.principal
        .check(Permission::Read, &ctx.vc.name.resource_name())?;
    let revision = ctx.core.head_revision().await?;
    let object = namespace_object(&ctx.vc, revision);
    let selectors = ctx.query.selectors()?;
    let output = negotiate::output(
        ctx.header(header::ACCEPT),
        true,
        ctx.query.include_object()?,
    )?;
    match (name, subresource) {
        (Some(n), None | Some("status")) => {
            if n != ctx.vc.name.namespace {
                return Err(GatewayError::NotFound(Target::object("", "namespaces", n)));
            }
            Ok(single(StatusCode::OK, output, kind.kind, &object))
        }
        (Some(_), Some(_)) => Err(GatewayError::NoRoute),
        (None, _) => {
            let items: Vec<Value> = if selectors.matches(&object) {
                vec![object]
            } else {
                Vec::new()
            };
            if ctx.query.flag("watch")? {
                let params = WatchParams::parse(ctx)?;
                let initial = if params.send_initial_events == Some(false)
                    || ctx
                        .query
                        .get("resourceVersion")
                        .is_some_and(|v| !v.is_empty() && v != "0")
                {
                    Vec::new()
                } else {
                    items
                };
                let encoder = Encoder {
                    kind,
                    output: params.output,
                    hide_data: false,
                };
                return Ok(watch::spawn(
                    Stream {
                        encoder,
                        params,
                        initial,
                        initial_revision: revision,
                        source: Source::Static(revision),
                        observer: None,
                        listed: Vec::new(),
                    },
                    ctx.watches.clone(),
                    Some(ctx.core.acquire_watch(&ctx.principal.user)?),
                ));
            }
            let rv = revision.to_string();
            Ok(list_response(kind, items, &rv, output))
        }
    }
}
