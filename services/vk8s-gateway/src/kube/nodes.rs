//! Nodes: read-only, cluster-scoped, the nodes of the sites the vK8s spans
//! as their agents last reported them (see
//! [`crate::core::replication::node_objects`] for what a tenant sees). List
//! with label and field selectors, get, and Tables; no watch.

use axum::response::Response;
use http::{Method, StatusCode, header};
use manifold_auth::Permission;
use manifold_kube_model::kinds::ResourceKind;
use serde_json::Value;

use super::Ctx;
use super::negotiate;
use super::response::{list_response, single};
use crate::error::{GatewayError, Target};

fn read_only() -> GatewayError {
    GatewayError::MethodNotAllowed(
        "nodes belong to the sites; a virtual cluster shows them read-only (get, list)".into(),
    )
}

pub async fn handle(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: Option<&str>,
    subresource: Option<&str>,
) -> Result<Response, GatewayError> {
    if ctx.method != Method::GET {
        return Err(read_only());
    }
    if subresource.is_some() {
        return Err(GatewayError::NoRoute);
    }
    if name.is_none() && ctx.query.flag("watch")? {
        return Err(GatewayError::MethodNotAllowed(
            "nodes of a virtual cluster cannot be watched; list them again".into(),
        ));
    }
    if ctx
        .principal
        .check(Permission::Read, &ctx.vc.name.resource_name())
        .is_err()
    {
        return Err(GatewayError::Forbidden(format!(
            "nodes is forbidden: User {:?} cannot {} resource \"nodes\" in API group \"\" at the cluster scope",
            ctx.principal.user,
            if name.is_some() { "get" } else { "list" },
        )));
    }
    let nodes = match ctx.core.replication.get() {
        Some(client) => client.list_nodes(&ctx.vc, ctx.token()?).await?,
        None => Vec::new(),
    };
    let output = negotiate::output(
        ctx.header(header::ACCEPT),
        true,
        ctx.query.include_object()?,
    )?;
    if let Some(n) = name {
        let node = nodes
            .into_iter()
            .find(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(n))
            .ok_or_else(|| GatewayError::NotFound(Target::object("", "nodes", n)))?;
        return Ok(single(StatusCode::OK, output, kind.kind, &node));
    }
    let selectors = ctx.query.selectors()?;
    let items: Vec<Value> = nodes.into_iter().filter(|o| selectors.matches(o)).collect();
    // Read afresh on every request: the list's time names it.
    let rv = chrono::Utc::now().timestamp_micros().to_string();
    Ok(list_response(kind, items, &rv, output))
}
