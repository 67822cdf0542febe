//! What a Kubernetes API path names, below the `/vk8s/{t}/{n}/{v}` prefix.

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    ResourceList {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiV3Index,
    /// `/openapi/v3/{api/v1 | apis/g/v}`
    OpenApiV3(String),
    /// A collection, an object or an object's subresource.
    Resource(ResourcePath),
    /// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`
    SelfSubjectAccessReview,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    /// The URL namespace; `None` for cluster-wide paths (`/api/v1/pods`).
    pub namespace: Option<String>,
    /// The plural resource (`deployments`).
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses the part of the path after the cluster prefix (no leading `/`).
pub fn parse(rest: &str) -> Option<Route> {
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    if segments.iter().any(|s| s.is_empty()) && !rest.trim_matches('/').is_empty() {
        return None;
    }
    match segments.as_slice() {
        ["version"] => Some(Route::Version),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["openapi", "v2"] => Some(Route::OpenApiV2),
        ["openapi", "v3"] => Some(Route::OpenApiV3Index),
        ["openapi", "v3", gv @ ..] if !gv.is_empty() => Some(Route::OpenApiV3(gv.join("/"))),
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] => Some(Route::SelfSubjectAccessReview),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group] => Some(Route::Group((*group).to_owned())),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => None,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let path = |namespace: Option<&str>, resource: &str, name: Option<&str>, sub: Option<&str>| {
        Some(Route::Resource(ResourcePath {
            group: group.to_owned(),
            version: version.to_owned(),
            namespace: namespace.map(str::to_owned),
            resource: resource.to_owned(),
            name: name.map(str::to_owned),
            subresource: sub.map(str::to_owned),
        }))
    };
    match rest {
        [] => Some(Route::ResourceList {
            group: group.to_owned(),
            version: version.to_owned(),
        }),
        // `namespaces/{ns}` is the Namespace object itself.
        ["namespaces", ns] => path(None, "namespaces", Some(ns), None),
        ["namespaces", ns, "status" | "finalize"] => {
            path(None, "namespaces", Some(ns), Some(rest[2]))
        }
        ["namespaces", ns, resource] => path(Some(ns), resource, None, None),
        ["namespaces", ns, resource, name] => path(Some(ns), resource, Some(name), None),
        ["namespaces", ns, resource, name, sub] => path(Some(ns), resource, Some(name), Some(sub)),
        [resource] => path(None, resource, None, None),
        [resource, name] => path(None, resource, Some(name), None),
        [resource, name, sub] => path(None, resource, Some(name), Some(sub)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(route: Option<Route>) -> ResourcePath {
        match route {
            Some(Route::Resource(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(parse("version"), Some(Route::Version));
        assert_eq!(parse("api"), Some(Route::CoreVersions));
        assert_eq!(
            parse("api/v1"),
            Some(Route::ResourceList {
                group: "".into(),
                version: "v1".into()
            })
        );
        assert_eq!(
            parse("openapi/v3/apis/apps/v1"),
            Some(Route::OpenApiV3("apis/apps/v1".into()))
        );
        let r = res(parse("apis/apps/v1/namespaces/shop/deployments/web/scale"));
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            (
                "apps",
                Some("shop"),
                "deployments",
                Some("web"),
                Some("scale")
            )
        );
        let r = res(parse("api/v1/namespaces/shop"));
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.namespace),
            ("namespaces", Some("shop"), None)
        );
        let r = res(parse("api/v1/pods"));
        assert_eq!((r.resource.as_str(), r.namespace), ("pods", None));
        assert_eq!(
            parse("apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
            Some(Route::SelfSubjectAccessReview)
        );
        assert_eq!(parse("nope"), None);
        assert_eq!(parse("api/v1/namespaces/a/b/c/d/e"), None);
        assert_eq!(parse("api//v1"), None);
    }
}
