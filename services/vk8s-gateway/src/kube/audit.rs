//! Audit of the Kubernetes API: every POST, PUT, PATCH and DELETE under
//! `/vk8s/...` becomes one audit record (who, verb, path, HTTP status),
//! whether it succeeded, was refused or failed. Bodies are never recorded;
//! a failure's `Status` message is.
//!
//! The caller is resolved after the response, through the same (caching)
//! authenticator the handler used, so recording adds no latency before the
//! handler runs.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use manifold_auth::bearer_from_header;
use manifold_telemetry::audit::{ActorKind, AuditSource, current_trace_id, truncate_message};
use manifold_telemetry::{AuditRecord, AuditSink};

use super::path::{self, Route};
use crate::core::Core;

/// Error bodies larger than this are passed on without reading their message.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub struct AuditState {
    pub sink: AuditSink,
    pub core: Arc<Core>,
}

/// The Kubernetes verb of a mutating request; `None` for reads.
fn verb(method: &Method, rest: &str) -> Option<&'static str> {
    Some(match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => match path::parse(rest) {
            Some(Route::Resource(r)) if r.name.is_none() => "deletecollection",
            _ => "delete",
        },
        _ => return None,
    })
}

/// (tenant, namespace, vk8s, rest) of a `/vk8s/{t}/{n}/{v}/{rest}` path.
fn split(path: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = path.strip_prefix("/vk8s/")?.splitn(4, '/');
    let tenant = parts.next().filter(|s| !s.is_empty())?;
    let namespace = parts.next().filter(|s| !s.is_empty())?;
    let vk8s = parts.next().filter(|s| !s.is_empty())?;
    Some((tenant, namespace, vk8s, parts.next().unwrap_or("")))
}

pub async fn record(State(state): State<AuditState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let Some((tenant, namespace, vk8s, rest)) = split(&path) else {
        return next.run(request).await;
    };
    let Some(verb) = verb(request.method(), rest) else {
        return next.run(request).await;
    };
    let time = SystemTime::now();
    let resource = format!("tenants/{tenant}/namespaces/{namespace}/virtualClusters/{vk8s}");
    let path_tenant = tenant.to_owned();
    let http_method = request.method().as_str().to_owned();
    let token = bearer_from_header(request.headers().get(header::AUTHORIZATION))
        .ok()
        .map(str::to_owned);
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let trace_id = current_trace_id().unwrap_or_default();

    let response = next.run(request).await;

    let status = response.status();
    let success = status.is_success();
    let (response, message) = if success {
        (response, String::new())
    } else {
        error_message(response).await
    };
    // 401: the token did not authenticate; no need to ask again.
    let principal = match token {
        Some(token) if status != StatusCode::UNAUTHORIZED => {
            state.core.authenticator.authenticate(&token).await.ok()
        }
        _ => None,
    };
    let (actor, actor_kind, tenant) = match principal {
        Some(p) => (
            p.user.clone(),
            ActorKind::User,
            Some(p.tenant.clone().unwrap_or(path_tenant)),
        ),
        None => (String::new(), ActorKind::Anonymous, None),
    };
    state.sink.record(AuditRecord {
        time,
        tenant,
        actor,
        actor_kind,
        source: AuditSource::Kubernetes,
        method: verb.to_owned(),
        resource,
        http_method,
        path,
        code: status.as_u16().to_string(),
        success,
        message,
        request_id,
        trace_id,
    });
    response
}

/// The `message` of a Kubernetes `Status` error body, and the response
/// rebuilt around the bytes read.
async fn error_message(response: Response) -> (Response, String) {
    let small = axum::body::HttpBody::size_hint(response.body())
        .upper()
        .is_some_and(|n| n <= MAX_ERROR_BODY as u64);
    if !small {
        return (response, String::new());
    }
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return (Response::from_parts(parts, Body::empty()), String::new()),
    };
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default();
    (
        Response::from_parts(parts, Body::from(bytes)),
        truncate_message(&message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        let del = Method::DELETE;
        assert_eq!(
            verb(&del, "apis/apps/v1/namespaces/shop/deployments/web"),
            Some("delete")
        );
        assert_eq!(
            verb(&del, "apis/apps/v1/namespaces/shop/deployments"),
            Some("deletecollection")
        );
        assert_eq!(
            verb(&Method::POST, "api/v1/namespaces/x/configmaps"),
            Some("create")
        );
        assert_eq!(verb(&Method::GET, "api/v1/namespaces/x/configmaps"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(
            split("/vk8s/acme/shop/demo/api/v1/pods"),
            Some(("acme", "shop", "demo", "api/v1/pods"))
        );
        assert_eq!(
            split("/vk8s/acme/shop/demo"),
            Some(("acme", "shop", "demo", ""))
        );
        assert_eq!(split("/vk8s/acme/shop"), None);
        assert_eq!(split("/other"), None);
    }
}
