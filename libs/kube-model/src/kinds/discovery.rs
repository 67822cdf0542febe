//! Discovery documents (`/api`, `/apis`, group versions, aggregated `apidiscovery.k8s.io`) and Accept negotiation.

use serde_json::{Map, Value, json};

use super::{ResourceKind, Subresource, group_versions, kinds_in};

/// Content-Type of an aggregated discovery answer (`apidiscovery.k8s.io/v2`).
pub const AGGREGATED_DISCOVERY_V2_MEDIA_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// Content-Type of the older aggregated form (`apidiscovery.k8s.io/v2beta1`).
pub const AGGREGATED_DISCOVERY_V2BETA1_MEDIA_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which discovery document shape to answer `/api` and `/apis` with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryFormat {
    AggregatedV2,
    AggregatedV2Beta1,
    /// `APIVersions` / `APIGroupList` with `application/json`.
    Legacy,
}

impl DiscoveryFormat {
    /// Picks the format from an Accept header: highest `q` wins, earlier wins ties;
    /// anything unrecognised (or no header) means the legacy form.
    pub fn negotiate(accept: Option<&str>) -> DiscoveryFormat {
        let Some(accept) = accept else {
            return DiscoveryFormat::Legacy;
        };
        let mut best: Option<(f32, DiscoveryFormat)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let (mut g, mut v, mut as_, mut q) = (None, None, None, 1.0f32);
            for p in parts {
                let Some((k, val)) = p.split_once('=') else {
                    continue;
                };
                let val = val.trim().trim_matches('"');
                match k.trim() {
                    "g" => g = Some(val.to_string()),
                    "v" => v = Some(val.to_string()),
                    "as" => as_ = Some(val.to_string()),
                    "q" => q = val.parse().unwrap_or(0.0),
                    _ => {}
                }
            }
            let format = match (media.as_str(), g.as_deref(), v.as_deref(), as_.as_deref()) {
                (
                    "application/json",
                    Some("apidiscovery.k8s.io"),
                    Some("v2"),
                    Some("APIGroupDiscoveryList"),
                ) => DiscoveryFormat::AggregatedV2,
                (
                    "application/json",
                    Some("apidiscovery.k8s.io"),
                    Some("v2beta1"),
                    Some("APIGroupDiscoveryList"),
                ) => DiscoveryFormat::AggregatedV2Beta1,
                ("application/json" | "*/*" | "application/*", None, None, None) => {
                    DiscoveryFormat::Legacy
                }
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, format));
            }
        }
        best.map(|(_, f)| f).unwrap_or(DiscoveryFormat::Legacy)
    }

    /// The Content-Type the response must carry; clients decide by it.
    pub fn content_type(self) -> &'static str {
        match self {
            DiscoveryFormat::AggregatedV2 => AGGREGATED_DISCOVERY_V2_MEDIA_TYPE,
            DiscoveryFormat::AggregatedV2Beta1 => AGGREGATED_DISCOVERY_V2BETA1_MEDIA_TYPE,
            DiscoveryFormat::Legacy => "application/json",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            DiscoveryFormat::AggregatedV2Beta1 => "apidiscovery.k8s.io/v2beta1",
            _ => "apidiscovery.k8s.io/v2",
        }
    }
}

/// `GET /api`: `APIVersions`.
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

/// `GET /apis`: `APIGroupList` of the named groups.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /api/v1` (group `""`) or `GET /apis/{group}/{version}`: `APIResourceList`;
/// `None` when the group version is not served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let kinds = kinds_in(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for k in kinds {
        resources.push(legacy_resource(k));
        for s in k.subresources {
            resources.push(legacy_subresource(k, s));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn verbs(v: &[super::Verb]) -> Vec<&'static str> {
    v.iter().map(|v| v.as_str()).collect()
}

fn legacy_resource(k: &ResourceKind) -> Value {
    let mut r = Map::new();
    r.insert("name".into(), k.plural.into());
    r.insert("singularName".into(), k.singular.into());
    r.insert("namespaced".into(), k.namespaced.into());
    r.insert("kind".into(), k.kind.into());
    r.insert("verbs".into(), json!(verbs(k.verbs)));
    if !k.short_names.is_empty() {
        r.insert("shortNames".into(), json!(k.short_names));
    }
    if !k.categories.is_empty() {
        r.insert("categories".into(), json!(k.categories));
    }
    Value::Object(r)
}

fn legacy_subresource(k: &ResourceKind, s: &Subresource) -> Value {
    let mut r = Map::new();
    r.insert("name".into(), format!("{}/{}", k.plural, s.name).into());
    r.insert("singularName".into(), "".into());
    r.insert("namespaced".into(), k.namespaced.into());
    // Group/version appear only when they differ from the parent (e.g. autoscaling/v1 Scale).
    if s.group != k.group || s.version != k.version {
        r.insert("group".into(), s.group.into());
        r.insert("version".into(), s.version.into());
    }
    r.insert("kind".into(), s.kind.into());
    r.insert("verbs".into(), json!(verbs(s.verbs)));
    Value::Object(r)
}

fn aggregated_resource(k: &ResourceKind) -> Value {
    let mut r = Map::new();
    r.insert("resource".into(), k.plural.into());
    r.insert(
        "responseKind".into(),
        json!({"group": k.group, "version": k.version, "kind": k.kind}),
    );
    r.insert(
        "scope".into(),
        (if k.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        })
        .into(),
    );
    r.insert("singularResource".into(), k.singular.into());
    r.insert("verbs".into(), json!(verbs(k.verbs)));
    if !k.short_names.is_empty() {
        r.insert("shortNames".into(), json!(k.short_names));
    }
    if !k.categories.is_empty() {
        r.insert("categories".into(), json!(k.categories));
    }
    if !k.subresources.is_empty() {
        let subs: Vec<Value> = k
            .subresources
            .iter()
            .map(|s| {
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                    "verbs": verbs(s.verbs),
                })
            })
            .collect();
        r.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(r)
}

fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| {
            let resources: Vec<Value> = kinds_in(g, v)
                .into_iter()
                .map(aggregated_resource)
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

fn aggregated_list(format: DiscoveryFormat, items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format.api_version(),
        "metadata": {},
        "items": items,
    })
}

/// Aggregated answer for `GET /api`: one item, the core group (name `""`).
pub fn aggregated_core(format: DiscoveryFormat) -> Value {
    aggregated_list(format, vec![aggregated_group("")])
}

/// Aggregated answer for `GET /apis`: every named group.
pub fn aggregated_apis(format: DiscoveryFormat) -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    aggregated_list(format, groups.into_iter().map(aggregated_group).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn negotiation() {
        assert_eq!(
            DiscoveryFormat::negotiate(Some(KUBECTL_ACCEPT)),
            DiscoveryFormat::AggregatedV2
        );
        assert_eq!(
            DiscoveryFormat::negotiate(Some("application/json")),
            DiscoveryFormat::Legacy
        );
        assert_eq!(DiscoveryFormat::negotiate(None), DiscoveryFormat::Legacy);
        assert_eq!(
            DiscoveryFormat::negotiate(Some(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList, application/json;q=0.5"
            )),
            DiscoveryFormat::AggregatedV2Beta1
        );
        assert_eq!(
            DiscoveryFormat::negotiate(Some(
                "application/json;q=0.9, application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList"
            )),
            DiscoveryFormat::AggregatedV2
        );
        assert_eq!(
            DiscoveryFormat::negotiate(Some("application/yaml")),
            DiscoveryFormat::Legacy
        );
        assert_eq!(
            DiscoveryFormat::AggregatedV2.content_type(),
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
    }

    #[test]
    fn legacy_documents() {
        assert_eq!(api_versions()["versions"], json!(["v1"]));
        let groups = api_group_list();
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["apps", "batch"]);
        assert_eq!(
            groups["groups"][0]["preferredVersion"]["groupVersion"],
            "apps/v1"
        );

        let apps = api_resource_list("apps", "v1").unwrap();
        assert_eq!(apps["groupVersion"], "apps/v1");
        let res = apps["resources"].as_array().unwrap();
        let deploy = res.iter().find(|r| r["name"] == "deployments").unwrap();
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["categories"], json!(["all"]));
        assert_eq!(deploy["namespaced"], true);
        assert_eq!(
            deploy["verbs"],
            json!([
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch"
            ])
        );
        let scale = res
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(
            (
                scale["group"].as_str(),
                scale["version"].as_str(),
                scale["kind"].as_str()
            ),
            (Some("autoscaling"), Some("v1"), Some("Scale"))
        );
        let status = res
            .iter()
            .find(|r| r["name"] == "deployments/status")
            .unwrap();
        assert!(status.get("group").is_none());
        assert_eq!(status["kind"], "Deployment");

        let core = api_resource_list("", "v1").unwrap();
        assert_eq!(core["groupVersion"], "v1");
        let core_res = core["resources"].as_array().unwrap();
        let log = core_res.iter().find(|r| r["name"] == "pods/log").unwrap();
        assert_eq!(log["kind"], "Pod");
        assert_eq!(log["verbs"], json!(["get"]));
        assert!(core_res.iter().any(|r| r["name"] == "pods/exec"));
        let ns = core_res.iter().find(|r| r["name"] == "namespaces").unwrap();
        assert_eq!(ns["namespaced"], false);
        assert_eq!(ns["verbs"], json!(["get", "list", "watch"]));
        assert!(api_resource_list("extensions", "v1beta1").is_none());
    }

    #[test]
    fn aggregated_documents() {
        let core = aggregated_core(DiscoveryFormat::AggregatedV2);
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let v1 = &core["items"][0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let pods = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        let log = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "log")
            .unwrap();
        assert_eq!(log["responseKind"]["kind"], "Pod");
        let ns = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "namespaces")
            .unwrap();
        assert_eq!(ns["scope"], "Cluster");

        let apis = aggregated_apis(DiscoveryFormat::AggregatedV2);
        let names: Vec<&str> = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["apps", "batch"]);
        let deploy = apis["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        let scale = deploy["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        assert_eq!(scale["verbs"], json!(["get", "patch", "update"]));
        let status = deploy["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "status")
            .unwrap();
        assert_eq!(
            status["responseKind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(
            aggregated_apis(DiscoveryFormat::AggregatedV2Beta1)["apiVersion"],
            "apidiscovery.k8s.io/v2beta1"
        );
    }
}
