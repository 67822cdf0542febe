//! Building responses: objects in the negotiated representation, `Warning`
//! headers, and `metav1.Status` errors.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use manifold_kube_model::kinds::ResourceKind;
use manifold_kube_model::table::{self, TableOptions};
use serde_json::{Value, json};

use super::negotiate::Output;
use crate::error::GatewayError;

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Bytes already serialised as JSON (the OpenAPI documents).
pub fn raw_json(bytes: &'static [u8]) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// An object (or list) in the negotiated representation. Tables are built
/// by the caller; here `Output::Table` falls back to JSON.
pub fn object_response(status: StatusCode, output: Output, body: &Value) -> Response {
    match output {
        Output::Yaml => {
            let text = serde_yaml_ng::to_string(body).unwrap_or_default();
            let mut response = Response::new(Body::from(text));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/yaml"),
            );
            response
        }
        Output::Json | Output::Table { .. } => json_response(status, body),
    }
}

/// One object as the client asked: itself, or a one-row Table.
pub fn single(status: StatusCode, output: Output, kind: &str, object: &Value) -> Response {
    match output {
        Output::Table { version, include } => {
            let sites = crate::core::replication::site_count;
            let opts =
                TableOptions::new(include, chrono::Utc::now()).with_replica_multiplier(&sites);
            let mut t = table::object_table(kind, object, &opts);
            set_table_version(&mut t, version);
            json_response(status, &t)
        }
        other => object_response(status, other, object),
    }
}

/// A list read afresh from the replication service (pods, events, nodes,
/// namespaces): a Table, or `{Kind}List` at `rv`, with no continuation.
pub fn list_response(kind: &ResourceKind, items: Vec<Value>, rv: &str, output: Output) -> Response {
    match output {
        Output::Table { version, include } => {
            let opts = TableOptions::new(include, chrono::Utc::now());
            let mut t = table::list_table(kind.kind, &items, rv, None, &opts);
            set_table_version(&mut t, version);
            json_response(StatusCode::OK, &t)
        }
        other => object_response(
            StatusCode::OK,
            other,
            &json!({
                "kind": kind.list_kind(),
                "apiVersion": kind.api_version(),
                "metadata": { "resourceVersion": rv },
                "items": items,
            }),
        ),
    }
}

pub fn set_table_version(table: &mut Value, version: &str) {
    table["apiVersion"] = json!(format!("meta.k8s.io/{version}"));
}

/// Adds `Warning: 299 - "…"` headers.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", Value::from(w.as_str()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

/// The `metav1.Status` of an error, with its HTTP code.
pub fn error_response(e: &GatewayError) -> Response {
    let code = StatusCode::from_u16(e.http_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(code, &e.to_kube_status());
    if code == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// `kind: Status, status: Success` for an object deleted at once.
pub fn delete_success(group: &str, resource: &str, name: &str, uid: Option<&str>) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": { "name": name, "group": group, "kind": resource, "uid": uid },
    })
}
