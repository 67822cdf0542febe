//! HTTP request metrics of the Kubernetes API, labelled by route template
//! (`/vk8s/{tenant}/{namespace}/{vk8s}/apis/apps/v1/namespaces/{namespace}/deployments/{name}`)
//! so label cardinality stays bounded. Watches are counted with method
//! `WATCH` and the time until the stream starts.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use manifold_kube_model::kinds;
use manifold_telemetry::Metrics;

use super::path::{self, Route};

const PREFIX: &str = "/vk8s/{tenant}/{namespace}/{vk8s}";

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The route template of a request path.
pub fn route_template(path: &str) -> String {
    let Some(rest) = path
        .strip_prefix("/vk8s/")
        .and_then(|p| p.splitn(4, '/').nth(3))
    else {
        return "other".to_owned();
    };
    let tail = match path::parse(rest) {
        Some(Route::Version) => "version".to_owned(),
        Some(Route::CoreVersions) => "api".to_owned(),
        Some(Route::Groups) => "apis".to_owned(),
        Some(Route::Group(_)) => "apis/{group}".to_owned(),
        Some(Route::ResourceList { group, version })
            if kinds::api_resource_list(&group, &version).is_some() =>
        {
            group_version(&group, &version)
        }
        Some(Route::OpenApiV2) => "openapi/v2".to_owned(),
        Some(Route::OpenApiV3Index) => "openapi/v3".to_owned(),
        Some(Route::OpenApiV3(_)) => "openapi/v3/{groupVersion}".to_owned(),
        Some(Route::SelfSubjectAccessReview) => {
            "apis/authorization.k8s.io/v1/selfsubjectaccessreviews".to_owned()
        }
        Some(Route::Resource(rp))
            if kinds::by_resource(&rp.group, &rp.version, &rp.resource).is_some() =>
        {
            let mut t = group_version(&rp.group, &rp.version);
            if rp.namespace.is_some() {
                t.push_str("/namespaces/{namespace}");
            }
            t.push('/');
            t.push_str(&rp.resource);
            if rp.name.is_some() {
                t.push_str("/{name}");
            }
            if let Some(sub) = rp
                .subresource
                .as_deref()
                .filter(|s| matches!(*s, "status" | "scale" | "log" | "exec"))
            {
                t.push('/');
                t.push_str(sub);
            }
            t
        }
        _ => return "other".to_owned(),
    };
    format!("{PREFIX}/{tail}")
}

pub async fn record(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_template(request.uri().path());
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let method = if watch {
        "WATCH".to_owned()
    } else {
        request.method().as_str().to_owned()
    };
    let response = next.run(request).await;
    metrics.record_http(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            route_template(
                "/vk8s/acme/shop/demo/apis/apps/v1/namespaces/shop/deployments/web/scale"
            ),
            "/vk8s/{tenant}/{namespace}/{vk8s}/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"
        );
        assert_eq!(
            route_template("/vk8s/a/b/c/api/v1/pods"),
            "/vk8s/{tenant}/{namespace}/{vk8s}/api/v1/pods"
        );
        assert_eq!(
            route_template("/vk8s/a/b/c/openapi/v3/apis/apps/v1"),
            "/vk8s/{tenant}/{namespace}/{vk8s}/openapi/v3/{groupVersion}"
        );
        assert_eq!(route_template("/vk8s/a/b/c/apis/x/v1/widgets"), "other");
        assert_eq!(route_template("/elsewhere"), "other");
    }
}
