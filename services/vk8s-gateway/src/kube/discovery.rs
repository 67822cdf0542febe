//! `/version`, API discovery (legacy and aggregated) and the OpenAPI
//! documents.

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use manifold_kube_model::kinds::{self, DiscoveryFormat};
use serde_json::{Value, json};

use super::Ctx;
use super::path::Route;
use super::response::{json_response, raw_json};
use crate::error::GatewayError;

/// The Kubernetes version whose API (and k8s-openapi schemas) is served.
const MAJOR: &str = "1";
const MINOR: &str = "37";

fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": format!("v{MAJOR}.{MINOR}.0+manifold"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "n/a",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

fn with_content_type(body: &Value, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

fn api_group(group: &str) -> Option<Value> {
    let versions: Vec<Value> = kinds::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group && !g.is_empty())
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first()?.clone();
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": preferred,
    }))
}

/// kubectl asks for the v2 document as protobuf first and falls back to
/// JSON on 406.
fn accepts_json(accept: Option<&str>) -> bool {
    accept.is_none_or(|a| {
        a.trim().is_empty()
            || a.split(',').any(|r| {
                let media = r.split(';').next().unwrap_or_default().trim();
                matches!(media, "application/json" | "*/*" | "application/*")
            })
    })
}

/// kubectl ≤ 1.27 asks for the protobuf Swagger document only; a client that
/// lists it before any JSON range gets it.
fn prefers_v2_protobuf(accept: Option<&str>) -> bool {
    accept
        .unwrap_or_default()
        .split(',')
        .map(|r| r.split(';').next().unwrap_or_default().trim())
        .find(|m| {
            *m == manifold_kube_openapi::V2_PROTOBUF
                || matches!(*m, "application/json" | "*/*" | "application/*")
        })
        == Some(manifold_kube_openapi::V2_PROTOBUF)
}

pub fn handle(ctx: &Ctx, route: Route) -> Result<Response, GatewayError> {
    let accept = ctx.header(header::ACCEPT);
    match route {
        Route::Version => Ok(json_response(StatusCode::OK, &version())),
        Route::CoreVersions => Ok(match DiscoveryFormat::negotiate(accept) {
            DiscoveryFormat::Legacy => json_response(StatusCode::OK, &kinds::api_versions()),
            aggregated => with_content_type(
                &kinds::aggregated_core(aggregated),
                aggregated.content_type(),
            ),
        }),
        Route::Groups => Ok(match DiscoveryFormat::negotiate(accept) {
            DiscoveryFormat::Legacy => json_response(StatusCode::OK, &kinds::api_group_list()),
            aggregated => with_content_type(
                &kinds::aggregated_apis(aggregated),
                aggregated.content_type(),
            ),
        }),
        Route::Group(group) => api_group(&group)
            .map(|g| json_response(StatusCode::OK, &g))
            .ok_or(GatewayError::NoRoute),
        Route::ResourceList { group, version } => kinds::api_resource_list(&group, &version)
            .map(|l| json_response(StatusCode::OK, &l))
            .ok_or(GatewayError::NoRoute),
        Route::OpenApiV2 => {
            let doc = manifold_kube_openapi::v2_document();
            if prefers_v2_protobuf(accept) {
                return Ok((
                    [(
                        header::CONTENT_TYPE,
                        manifold_kube_openapi::V2_PROTOBUF_CONTENT_TYPE,
                    )],
                    doc.protobuf.as_slice(),
                )
                    .into_response());
            }
            if !accepts_json(accept) {
                return Err(GatewayError::NotAcceptable(format!(
                    "/openapi/v2 is served as application/json or {}",
                    manifold_kube_openapi::V2_PROTOBUF
                )));
            }
            Ok(raw_json(&doc.json))
        }
        Route::OpenApiV3Index => {
            let base = ctx.vc.name.kube_path();
            Ok(json_response(
                StatusCode::OK,
                &manifold_kube_openapi::v3_index(&base),
            ))
        }
        Route::OpenApiV3(gv) => manifold_kube_openapi::v3_group_version(&gv)
            .map(|doc| raw_json(&doc.json))
            .ok_or(GatewayError::NoRoute),
        Route::Resource(_) | Route::SelfSubjectAccessReview => Err(GatewayError::NoRoute),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_accept() {
        assert_eq!(
            api_group("apps").unwrap()["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
        assert!(api_group("").is_none());
        assert!(api_group("nope").is_none());
        assert!(accepts_json(None));
        assert!(accepts_json(Some("application/json, */*")));
        assert!(!accepts_json(Some(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        )));
        assert_eq!(version()["minor"], "37");
    }
}
