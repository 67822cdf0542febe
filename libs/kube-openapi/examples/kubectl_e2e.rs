//! A throwaway API server for trying the documents with a real kubectl.
//!
//! Serves legacy discovery (`/version`, `/api`, `/apis`, `/api/v1`,
//! `/apis/<group>/<version>`), the OpenAPI documents, and an in-memory store
//! of the served kinds that supports GET, POST, PUT and PATCH well enough for
//! `kubectl create/apply -f`. Every request is logged with its query and
//! content type; PATCH bodies are logged too, so the strategic merge patch
//! that kubectl computed from the OpenAPI v3 schemas can be inspected.
//! PATCH stores the patch's top-level `spec` naively; this is not a server.
//!
//! `cargo run -p manifold-kube-openapi --example kubectl_e2e [PORT [PREFIX]]`,
//! then `kubectl --server=http://127.0.0.1:PORT[PREFIX] explain deployment.spec`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use manifold_kube_openapi as openapi;
use serde_json::{Value, json};

type Store = Arc<Mutex<BTreeMap<String, Value>>>;

#[derive(Clone, Default)]
struct AppState {
    /// Path prefix the cluster is served under, e.g. `/vk8s/acme/shop/demo`.
    base: String,
    store: Store,
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    json_response(code, &body)
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "manifold",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64",
        }),
    )
}

async fn api_versions() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
    )
}

async fn api_groups() -> Response {
    let groups: Vec<Value> = openapi::GROUP_VERSIONS
        .iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, version)| {
            let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

fn resource_list(group: &str, version: &str) -> Response {
    let mut resources = Vec::new();
    for r in openapi::SERVED
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut verbs = vec![
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
        if r.delete_collection {
            verbs.push("deletecollection");
        }
        let singular = r.kind.to_lowercase();
        let namespaced = r.scope == openapi::Scope::Namespaced;
        resources.push(
            json!({"name": r.plural, "singularName": singular, "namespaced": namespaced,
            "kind": r.kind, "verbs": verbs}),
        );
        if r.status {
            resources.push(
                json!({"name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if r.scale {
            resources.push(
                json!({"name": format!("{}/scale", r.plural), "singularName": "",
                "namespaced": namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"]}),
            );
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

async fn openapi_v3_index(State(state): State<AppState>) -> Response {
    json_response(StatusCode::OK, &openapi::v3_index(&state.base))
}

async fn openapi_v3(Path(gv): Path<String>) -> Response {
    match openapi::v3_group_version(&gv) {
        Some(doc) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::ETAG, doc.hash.as_str()),
            ],
            doc.json.clone(),
        )
            .into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no OpenAPI document for {gv}"),
        ),
    }
}

async fn openapi_v2(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") && !accept.contains("json") {
        return status(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            "only application/json".into(),
        );
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::v2_document().json.clone(),
    )
        .into_response()
}

/// `/api/v1/...` and `/apis/<group>/<version>/...` below the group-version.
async fn objects(
    State(AppState { store, .. }): State<AppState>,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    eprintln!(
        "{method} /{rest}?{} [{content_type}]",
        query.unwrap_or_default()
    );
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let (group, version, tail) = match segments.as_slice() {
        ["api", version, tail @ ..] => ("", *version, tail),
        ["apis", group, version, tail @ ..] => (*group, *version, tail),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", rest),
    };
    if tail.is_empty() {
        return resource_list(group, version);
    }
    let (namespace, plural, name) = match tail {
        ["namespaces", ns, plural, name @ ..] => (*ns, *plural, name.first().copied()),
        [plural, name @ ..] => ("", *plural, name.first().copied()),
        [] => unreachable!(),
    };
    let key = format!("{group}/{version}/{namespace}/{plural}");
    let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
    match (method.as_str(), name) {
        ("GET", None) => {
            let items: Vec<&Value> = store
                .range(format!("{key}/")..)
                .take_while(|(k, _)| k.starts_with(&key))
                .map(|(_, v)| v)
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ("POST", None) => {
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "body is not JSON".into(),
                );
            };
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            object["metadata"]["resourceVersion"] = json!("1");
            object["metadata"]["uid"] = json!(format!("uid-{name}"));
            object["metadata"]["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
            if !namespace.is_empty() {
                object["metadata"]["namespace"] = json!(namespace);
            }
            store.insert(format!("{key}/{name}"), object.clone());
            json_response(StatusCode::CREATED, &object)
        }
        (method, Some(name)) => {
            let full = format!("{key}/{name}");
            let Some(current) = store.get_mut(&full) else {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{plural} \"{name}\" not found"),
                );
            };
            if method == "PATCH" {
                eprintln!("  patch body: {}", String::from_utf8_lossy(&body));
                if let Ok(patch) = serde_json::from_slice::<Value>(&body)
                    && patch.get("spec").is_some()
                {
                    current["spec"] = patch["spec"].clone();
                }
            }
            json_response(StatusCode::OK, current)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", rest),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let base = std::env::args()
        .nth(2)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let state = AppState {
        base: base.clone(),
        store: Store::default(),
    };
    let routes = Router::new()
        .route("/version", get(version))
        .route("/api", get(api_versions))
        .route("/apis", get(api_groups))
        .route("/openapi/v3", get(openapi_v3_index))
        .route("/openapi/v3/{*gv}", get(openapi_v3))
        .route("/openapi/v2", get(openapi_v2))
        .route("/{*rest}", axum::routing::any(objects))
        .with_state(state);
    let app = if base.is_empty() {
        routes
    } else {
        Router::new().nest(&base, routes)
    };
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}{base}", listener.local_addr()?);
    axum::serve(listener, app).await
}
