//! The documents against what kubectl needs from them.

use manifold_kube_openapi as openapi;
use serde_json::{Map, Value};
use sha2::{Digest, Sha512};

const V3_PREFIX: &str = "#/components/schemas/";
const V2_PREFIX: &str = "#/definitions/";

fn v3(gv: &str) -> &'static Value {
    &openapi::v3_group_version(gv)
        .unwrap_or_else(|| panic!("no document for {gv}"))
        .document
}

fn v3_schemas(gv: &str) -> &'static Map<String, Value> {
    v3(gv)["components"]["schemas"]
        .as_object()
        .expect("components.schemas")
}

fn v2_definitions() -> &'static Map<String, Value> {
    openapi::v2_document().document["definitions"]
        .as_object()
        .expect("definitions")
}

/// Follows a `$ref`, directly or through a single-element `allOf`, to the
/// named definition.
fn deref<'a>(definitions: &'a Map<String, Value>, prefix: &str, schema: &'a Value) -> &'a Value {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.pointer("/allOf/0/$ref"))
        .and_then(Value::as_str);
    match reference {
        Some(r) => &definitions[r.strip_prefix(prefix).expect("local ref")],
        None => schema,
    }
}

/// The schema of a dotted field path (`spec.template.spec.containers`) below
/// a definition, without dereferencing the last step.
fn field<'a>(
    definitions: &'a Map<String, Value>,
    prefix: &str,
    root: &str,
    path: &str,
) -> &'a Value {
    let mut schema = &definitions[root];
    for (i, step) in path.split('.').enumerate() {
        if i > 0 {
            schema = deref(definitions, prefix, schema);
        }
        schema = schema
            .get("properties")
            .and_then(|p| p.get(step))
            .unwrap_or_else(|| panic!("{root}: no field {step} in {path}"));
    }
    schema
}

fn all_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| all_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| all_refs(v, out)),
        _ => {}
    }
}

#[test]
fn self_check_passes() {
    openapi::check().expect("self-check");
}

#[test]
fn every_ref_resolves_within_its_document() {
    let mut documents: Vec<(&Value, &Map<String, Value>, &str)> = openapi::v3_group_versions()
        .iter()
        .map(|d| {
            (
                &d.document,
                d.document["components"]["schemas"].as_object().unwrap(),
                V3_PREFIX,
            )
        })
        .collect();
    documents.push((
        &openapi::v2_document().document,
        v2_definitions(),
        V2_PREFIX,
    ));
    for (document, definitions, prefix) in documents {
        let mut refs = Vec::new();
        all_refs(document, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("foreign ref {r}"));
            assert!(definitions.contains_key(name), "dangling {r}");
        }
    }
}

#[test]
fn every_served_kind_has_its_group_version_kind() {
    for r in openapi::SERVED {
        let gv = r.group_version_path();
        for (definitions, kind) in [(v3_schemas(&gv), r.kind), (v2_definitions(), r.kind)] {
            let definition = &definitions[r.definition().as_ref()];
            let expected =
                serde_json::json!([{ "group": r.group, "kind": kind, "version": r.version }]);
            assert_eq!(
                definition["x-kubernetes-group-version-kind"], expected,
                "{}",
                r.kind
            );
            let list = &definitions[&r.list_definition()];
            assert_eq!(
                list["x-kubernetes-group-version-kind"][0]["kind"],
                r.list_kind
            );
        }
    }
    let scale = &v3_schemas("apis/autoscaling/v1")["io.k8s.api.autoscaling.v1.Scale"];
    assert_eq!(
        scale["x-kubernetes-group-version-kind"][0]["group"],
        "autoscaling"
    );
}

#[test]
fn every_patch_operation_advertises_field_validation() {
    let mut patches = 0;
    let documents = openapi::v3_group_versions().iter().map(|d| &d.document);
    for document in documents.chain([&openapi::v2_document().document]) {
        for (path, item) in document["paths"].as_object().unwrap() {
            let Some(patch) = item.get("patch") else {
                continue;
            };
            patches += 1;
            assert!(
                patch["x-kubernetes-group-version-kind"].is_object(),
                "{path}"
            );
            assert_eq!(patch["x-kubernetes-action"], "patch");
            let names: Vec<&str> = patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for required in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                assert!(names.contains(&required), "{path}: PATCH lacks {required}");
            }
        }
    }
    // 14 items + 10 status + 3 scale subresources, in v3 and again in v2.
    assert_eq!(patches, 2 * (14 + 10 + 3));
}

#[test]
fn patch_accepts_strategic_merge_patch_in_v3() {
    let item =
        &v3("apis/apps/v1")["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let content = item["patch"]["requestBody"]["content"].as_object().unwrap();
    for media in [
        "application/strategic-merge-patch+json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(content.contains_key(media), "{media}");
    }
    assert_eq!(
        item["patch"]["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
}

#[test]
fn containers_merge_by_name() {
    let root = "io.k8s.api.apps.v1.Deployment";
    for (definitions, prefix) in [
        (v3_schemas("apis/apps/v1"), V3_PREFIX),
        (v2_definitions(), V2_PREFIX),
    ] {
        let containers = field(definitions, prefix, root, "spec.template.spec.containers");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        let env = field(definitions, prefix, "io.k8s.api.core.v1.Container", "env");
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
        let ports = field(definitions, prefix, "io.k8s.api.core.v1.Container", "ports");
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            serde_json::json!(["containerPort", "protocol"])
        );
        let mounts = field(
            definitions,
            prefix,
            "io.k8s.api.core.v1.Container",
            "volumeMounts",
        );
        assert_eq!(mounts["x-kubernetes-patch-merge-key"], "mountPath");
        let volumes = field(definitions, prefix, root, "spec.template.spec.volumes");
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let strategy = field(definitions, prefix, root, "spec.strategy");
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    }
    let service = field(
        v3_schemas("api/v1"),
        V3_PREFIX,
        "io.k8s.api.core.v1.Service",
        "spec.ports",
    );
    assert_eq!(service["x-kubernetes-patch-merge-key"], "port");
}

#[test]
fn every_field_rule_lands_on_a_field() {
    let definitions = v2_definitions();
    for rule in openapi::FIELD_RULES {
        let name = rule.definition_name();
        let property = definitions
            .get(&name)
            .and_then(|d| d.pointer(&format!("/properties/{}", rule.field)))
            .unwrap_or_else(|| panic!("{name}.{} does not exist", rule.field));
        for (key, value) in rule.extensions() {
            assert_eq!(property[&key], value, "{name}.{}", rule.field);
        }
    }
    let selector = &definitions["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"];
    assert_eq!(selector["x-kubernetes-map-type"], "atomic");
    assert!(openapi::field_rule("io.k8s.api.core.v1.PodSpec", "containers").is_some());
}

#[test]
fn deployment_fields_are_described() {
    for (definitions, prefix) in [
        (v3_schemas("apis/apps/v1"), V3_PREFIX),
        (v2_definitions(), V2_PREFIX),
    ] {
        for name in [
            "io.k8s.api.apps.v1.Deployment",
            "io.k8s.api.apps.v1.DeploymentSpec",
        ] {
            let definition = &definitions[name];
            assert!(
                !definition["description"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "{name}"
            );
            for (field, schema) in definition["properties"].as_object().unwrap() {
                let description = schema["description"].as_str().unwrap_or_default();
                assert!(!description.trim().is_empty(), "{name}.{field}");
            }
        }
        let template = field(
            definitions,
            prefix,
            "io.k8s.api.apps.v1.Deployment",
            "spec.template",
        );
        assert!(
            template["description"]
                .as_str()
                .unwrap()
                .contains("Template")
        );
        let pod_spec = deref(
            definitions,
            prefix,
            field(
                definitions,
                prefix,
                "io.k8s.api.apps.v1.DeploymentSpec",
                "template.spec",
            ),
        );
        assert!(pod_spec["properties"]["containers"]["description"].is_string());
    }
}

#[test]
fn scalar_wrappers_look_like_kubernetes() {
    let v3 = v3_schemas("apis/apps/v1");
    let int_or_string = &v3["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(int_or_string["x-kubernetes-int-or-string"], true);
    assert_eq!(int_or_string["format"], "int-or-string");
    assert!(
        int_or_string.get("type").is_none(),
        "explain shows <IntOrString> only without a type"
    );
    assert!(v3["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"].is_array());
    assert_eq!(
        v3["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"],
        "date-time"
    );

    let v2 = v2_definitions();
    assert_eq!(
        v2["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"],
        "string"
    );
    assert_eq!(
        v2["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
        "string"
    );
    let max_surge = field(
        v2,
        V2_PREFIX,
        "io.k8s.api.apps.v1.RollingUpdateDeployment",
        "maxSurge",
    );
    assert_eq!(
        max_surge["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    );
}

#[test]
fn metadata_is_not_required_of_clients() {
    let v3 = v3_schemas("apis/apps/v1");
    // Kubernetes 1.37's schemas require `spec` of a Deployment; never `metadata`.
    assert_eq!(
        v3["io.k8s.api.apps.v1.Deployment"]["required"],
        serde_json::json!(["spec"])
    );
    let required = &v3["io.k8s.api.apps.v1.DeploymentSpec"]["required"];
    assert_eq!(required, &serde_json::json!(["selector", "template"]));
    assert!(
        v3_schemas("api/v1")["io.k8s.api.core.v1.LocalObjectReference"]
            .get("required")
            .is_none()
    );
}

#[test]
fn paths_cover_namespaced_and_cluster_scoped_resources() {
    let core = v3("api/v1")["paths"].as_object().unwrap();
    let pods = &core["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(pods["get"]["x-kubernetes-action"], "list");
    assert_eq!(pods["post"]["x-kubernetes-action"], "post");
    assert_eq!(pods["delete"]["x-kubernetes-action"], "deletecollection");
    assert_eq!(
        core["/api/v1/pods"]["get"]["operationId"],
        "listCoreV1PodForAllNamespaces"
    );
    assert!(core.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/status"));
    assert_eq!(
        core["/api/v1/watch/namespaces/{namespace}/pods/{name}"]["get"]["x-kubernetes-action"],
        "watch"
    );

    let namespaces = &core["/api/v1/namespaces"];
    assert!(
        namespaces.get("delete").is_none(),
        "no deletecollection for namespaces"
    );
    let namespace = &core["/api/v1/namespaces/{name}"];
    assert_eq!(namespace["patch"]["operationId"], "patchCoreV1Namespace");
    assert_eq!(
        namespace["parameters"].as_array().unwrap().len(),
        2,
        "name and pretty"
    );

    let apps = v3("apis/apps/v1")["paths"].as_object().unwrap();
    assert!(apps.contains_key("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"));
    assert!(!apps.contains_key("/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}/scale"));
    let batch = v3("apis/batch/v1")["paths"].as_object().unwrap();
    assert!(batch.contains_key("/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}/status"));
    let autoscaling = v3("apis/autoscaling/v1")["paths"].as_object().unwrap();
    assert_eq!(
        autoscaling.len(),
        1,
        "only the resource list of the group-version"
    );

    // Operation ids are unique across the combined v2 document.
    let mut ids = std::collections::BTreeSet::new();
    for item in openapi::v2_document().document["paths"]
        .as_object()
        .unwrap()
        .values()
    {
        for (method, op) in item.as_object().unwrap() {
            if method != "parameters" {
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()));
            }
        }
    }
}

#[test]
fn index_points_at_the_documents_by_hash() {
    let index = openapi::v3_index("/vk8s/acme/shop/demo/");
    let paths = index["paths"].as_object().unwrap();
    let keys: Vec<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "api/v1",
            "apis/apps/v1",
            "apis/autoscaling/v1",
            "apis/batch/v1"
        ]
    );
    for (gv, entry) in paths {
        let doc = openapi::v3_group_version(gv).unwrap();
        let url = entry["serverRelativeURL"].as_str().unwrap();
        assert_eq!(
            url,
            format!("/vk8s/acme/shop/demo/openapi/v3/{gv}?hash={}", doc.hash)
        );
        assert_eq!(doc.hash, hex::encode_upper(Sha512::digest(&doc.json)));
    }
    let bare = openapi::v3_index("");
    assert!(
        bare["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash=")
    );
    assert!(openapi::v3_group_version("/apis/apps/v1").is_some());
    assert!(openapi::v3_group_version("apis/networking.k8s.io/v1").is_none());
}

#[test]
fn documents_serialize_and_stay_a_reasonable_size() {
    let mut total = 0;
    for doc in openapi::v3_group_versions() {
        let parsed: Value = serde_json::from_slice(&doc.json).unwrap();
        assert_eq!(parsed, doc.document);
        assert_eq!(parsed["openapi"], "3.0.0");
        assert!(parsed["info"]["title"].is_string());
        total += doc.json.len();
    }
    let v2 = openapi::v2_document();
    let parsed: Value = serde_json::from_slice(&v2.json).unwrap();
    assert_eq!(parsed["swagger"], "2.0");
    total += v2.json.len();
    assert!(total < 4 << 20, "{total} bytes");
    // Built once: the same allocation every time.
    assert!(std::ptr::eq(openapi::v2_document(), openapi::v2_document()));
}

#[test]
fn explain_finds_the_deployment_kind_from_its_list_path() {
    // kubectl explain looks up the collection path of the resource, takes the
    // group-version-kind of one of its operations and then searches
    // components.schemas for a definition listing exactly that map.
    let doc = v3("apis/apps/v1");
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
    let gvk = &item["get"]["x-kubernetes-group-version-kind"];
    let matches: Vec<&String> = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|a| a.contains(gvk))
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(matches, ["io.k8s.api.apps.v1.Deployment"]);
}
