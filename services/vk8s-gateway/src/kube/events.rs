//! Events, as the sites report them (the replication service keeps an hour of
//! them per vK8s): list and get, with label and field selectors (`kubectl
//! describe` selects by `involvedObject.*`) and Tables. Each carries the label
//! `manifold.dev/site` of the site that reported it. Read-only.

use axum::response::Response;
use http::StatusCode;
use manifold_kube_model::kinds::ResourceKind;
use serde_json::Value;

use super::Ctx;
use super::negotiate::Output;
use super::response::{list_response, single};
use crate::core::replication::ReplicationClient;
use crate::error::{GatewayError, Target};

fn client(ctx: &Ctx) -> Result<&ReplicationClient, GatewayError> {
    ctx.core.replication.get().ok_or(GatewayError::NoRoute)
}

pub async fn list(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    out: Output,
) -> Result<Response, GatewayError> {
    let selectors = ctx.query.selectors()?;
    let (events, rv) = client(ctx)?.list_events(&ctx.vc, ctx.token()?).await?;
    let items: Vec<Value> = events
        .into_iter()
        .filter(|e| selectors.matches(e))
        .collect();
    let rv = rv.to_string();
    Ok(list_response(kind, items, &rv, out))
}

pub async fn get(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: &str,
    out: Output,
) -> Result<Response, GatewayError> {
    let (events, _) = client(ctx)?.list_events(&ctx.vc, ctx.token()?).await?;
    let event = events
        .into_iter()
        .find(|e| e.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        .ok_or_else(|| GatewayError::NotFound(Target::object(kind.group, kind.plural, name)))?;
    Ok(single(StatusCode::OK, out, kind.kind, &event))
}
