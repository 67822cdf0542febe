//! The one Kubernetes namespace of a virtual cluster: its Manifold
//! namespace, always Active, read-only. Any other namespace does not exist.

use axum::response::Response;
use http::{Method, StatusCode, header};
use manifold_auth::Permission;
use manifold_kube_model::kinds::ResourceKind;
use manifold_kube_model::table::{self, TableOptions};
use serde_json::{Value, json};

use super::Ctx;
use super::negotiate::{self, Output};
use super::response::{json_response, object_response, set_table_version, single};
use super::watch::{self, Encoder, Source, Stream, WatchParams};
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

pub async fn handle(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: Option<&str>,
    subresource: Option<&str>,
) -> Result<Response, GatewayError> {
    if ctx.method != Method::GET {
        return Err(GatewayError::MethodNotAllowed(
            "namespaces of a virtual cluster are managed through Manifold, not the Kubernetes API"
                .into(),
        ));
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
                    },
                    ctx.watches.clone(),
                    Some(ctx.core.acquire_watch(&ctx.principal.user)?),
                ));
            }
            let rv = revision.to_string();
            Ok(match output {
                Output::Table { version, include } => {
                    let opts = TableOptions::new(include, chrono::Utc::now());
                    let mut t = table::list_table(kind.kind, &items, &rv, None, &opts);
                    set_table_version(&mut t, version);
                    json_response(StatusCode::OK, &t)
                }
                other => object_response(
                    StatusCode::OK,
                    other,
                    &json!({
                        "kind": "NamespaceList",
                        "apiVersion": "v1",
                        "metadata": { "resourceVersion": rv },
                        "items": items,
                    }),
                ),
            })
        }
    }
}
