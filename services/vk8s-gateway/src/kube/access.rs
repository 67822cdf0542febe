//! `SelfSubjectAccessReview`, so `kubectl auth can-i` answers from the
//! caller's Manifold roles: viewers read (Secrets: list and watch only, see
//! `secrets`), editors and admins also write.

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode, header};
use manifold_auth::Permission;
use manifold_kube_model::kinds::{self, Verb};
use serde_json::{Value, json};

use super::response::json_response;
use super::{Ctx, negotiate, read_body};
use crate::error::GatewayError;

/// Whether the review's attributes are allowed, and why not.
fn decide(ctx: &Ctx, spec: &Value) -> (bool, String) {
    let granted = ctx.principal.grant(&ctx.vc.name.resource_name());
    if let Some(attrs) = spec.get("nonResourceAttributes") {
        let verb = attrs
            .get("verb")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let allowed = granted.is_some() && verb == "get";
        return (
            allowed,
            if allowed {
                String::new()
            } else {
                "only get is allowed on non-resource URLs".into()
            },
        );
    }
    let attrs = spec
        .get("resourceAttributes")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let text = |k: &str| {
        attrs
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (group, resource, verb, namespace) = (
        text("group"),
        text("resource"),
        text("verb"),
        text("namespace"),
    );
    let Some(kind) = kinds::all()
        .iter()
        .find(|k| k.group == group && (k.plural == resource || resource == "*"))
    else {
        return (
            false,
            format!("{resource:?} in API group {group:?} is not served by this virtual cluster"),
        );
    };
    if !namespace.is_empty() && namespace != ctx.vc.name.namespace {
        return (
            false,
            format!("namespace {namespace:?} does not exist in this virtual cluster"),
        );
    }
    let subresource = text("subresource");
    let verbs: &[Verb] = match subresource.as_str() {
        "" => kind.verbs,
        s => kind.subresource(s).map(|s| s.verbs).unwrap_or(&[]),
    };
    let Some(v) = Verb::parse(&verb) else {
        return (false, format!("verb {verb:?} is not supported"));
    };
    if !verbs.contains(&v) {
        return (
            false,
            format!("{} does not support {verb}", kind.qualified_resource()),
        );
    }
    // `*` in the core group covers Secrets too.
    let secrets = super::secrets::is_secret(kind.kind)
        || (resource == "*"
            && kinds::all()
                .iter()
                .any(|k| k.group == group && super::secrets::is_secret(k.kind)));
    let needed = match v {
        // A Secret's values (get, and any subresource) need editor; viewers
        // only list and watch Secrets without their data.
        Verb::Get if secrets => Permission::Write,
        _ if secrets && !subresource.is_empty() => Permission::Write,
        Verb::Get | Verb::List | Verb::Watch => Permission::Read,
        _ => Permission::Write,
    };
    match granted {
        Some(g) if g >= needed => (true, String::new()),
        _ => (
            false,
            format!(
                "{} may not {verb} {}",
                ctx.principal.user,
                kind.qualified_resource()
            ),
        ),
    }
}

pub async fn self_subject_access_review(ctx: &Ctx, body: Body) -> Result<Response, GatewayError> {
    if ctx.method != Method::POST {
        return Err(GatewayError::MethodNotAllowed(
            "the server does not allow this method on the requested resource".into(),
        ));
    }
    let bytes = read_body(body).await?;
    let mut review = negotiate::decode_body(ctx.header(header::CONTENT_TYPE), &bytes)?;
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let (allowed, reason) = decide(ctx, &spec);
    let mut status = json!({ "allowed": allowed });
    if !reason.is_empty() {
        status["reason"] = reason.into();
    }
    review["status"] = status;
    review["apiVersion"] = "authorization.k8s.io/v1".into();
    review["kind"] = "SelfSubjectAccessReview".into();
    Ok(json_response(StatusCode::CREATED, &review))
}
