//! The schema definitions, generated from k8s-openapi's `JsonSchema` impls and
//! brought into the shape Kubernetes publishes.
//!
//! k8s-openapi already names its schemas like Kubernetes does
//! (`io.k8s.api.apps.v1.Deployment`), so the generator's definition names are
//! used as they are. What this module adds: the list kinds (k8s-openapi's
//! generic `List<T>` has no schema), `x-kubernetes-group-version-kind`, the
//! merge extensions of [`crate::annotations`], and `required` lists that match
//! the API rather than Rust's non-optional fields. The result refers to other
//! definitions as `#/definitions/<name>`; [`crate::dialect`] rewrites that per
//! document format.

use std::collections::{BTreeSet, VecDeque};

use k8s_openapi::api::autoscaling::v1 as autoscaling;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::annotations;
use crate::resources::{GROUP_VERSIONS, SERVED, ServedResource};

/// Where generated `$ref`s point before a dialect rewrites them.
pub(crate) const CANONICAL_REF_PREFIX: &str = "#/definitions/";

pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub(crate) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
pub(crate) const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub(crate) const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const EVENT: &str = "io.k8s.api.core.v1.Event";

/// Fields k8s-openapi marks required (they are not `Option` in Rust) that the
/// API treats as optional: Go gives them a zero-value default instead.
const NOT_REQUIRED: &[(&str, &str)] = &[
    (
        "io.k8s.api.batch.v1.PodFailurePolicyOnPodConditionsPattern",
        "status",
    ),
    ("io.k8s.api.core.v1.ConfigMapEnvSource", "name"),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", "name"),
    ("io.k8s.api.core.v1.ConfigMapProjection", "name"),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", "name"),
    ("io.k8s.api.core.v1.LocalObjectReference", "name"),
    ("io.k8s.api.core.v1.SecretEnvSource", "name"),
    ("io.k8s.api.core.v1.SecretKeySelector", "name"),
    ("io.k8s.api.core.v1.SecretProjection", "name"),
];

/// Every definition the served kinds reach, plus the API machinery types the
/// operations refer to, keyed by Kubernetes definition name.
pub(crate) fn build() -> Map<String, Value> {
    let mut settings = SchemaSettings::draft07();
    settings.definitions_path = CANONICAL_REF_PREFIX
        .trim_start_matches('#')
        .trim_end_matches('/')
        .into();
    // k8s-openapi writes `$ref` next to `description`; keep that and let the
    // dialects decide how to express it.
    settings.transforms.clear();
    let mut generator = settings.into_generator();

    for resource in SERVED {
        (resource.add_schema)(&mut generator);
    }
    add::<autoscaling::Scale>(&mut generator);
    add::<meta::ListMeta>(&mut generator);
    add::<meta::Status>(&mut generator);
    add::<meta::DeleteOptions>(&mut generator);
    add::<meta::Patch>(&mut generator);
    add::<meta::WatchEvent<()>>(&mut generator);
    add::<meta::APIResourceList>(&mut generator);

    let mut definitions = generator.take_definitions(false);
    for resource in SERVED {
        let list = list_schema(resource, definitions.get(resource.definition().as_ref()));
        definitions.insert(resource.list_definition(), list);
    }
    fix_required(&mut definitions);
    set_group_version_kinds(&mut definitions);
    annotations::apply(&mut definitions);
    definitions
}

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

fn canonical_ref(name: &str) -> Value {
    json!({ "$ref": format!("{CANONICAL_REF_PREFIX}{name}") })
}

/// The `<Kind>List` schema of a resource. `apiVersion` and `kind` are
/// described exactly as on the kind itself.
fn list_schema(resource: &ServedResource, kind_schema: Option<&Value>) -> Value {
    let type_meta = |field: &str| {
        kind_schema
            .and_then(|k| k.pointer(&format!("/properties/{field}")))
            .cloned()
            .unwrap_or_else(|| json!({ "type": "string" }))
    };
    let mut metadata = canonical_ref(LIST_META);
    metadata["description"] = json!(
        "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
    );
    json!({
        "description": format!("{} is a list of {} objects.", resource.list_kind, resource.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": type_meta("apiVersion"),
            "kind": type_meta("kind"),
            "items": {
                "description": format!("The {} in this list.", resource.plural),
                "type": "array",
                "items": canonical_ref(&resource.definition()),
            },
            "metadata": metadata,
        },
    })
}

/// `metadata` is never required of a client (the server fills most of it),
/// except on core Events, whose Go field has no `omitempty`.
fn fix_required(definitions: &mut Map<String, Value>) {
    for (name, definition) in definitions.iter_mut() {
        let Some(definition) = definition.as_object_mut() else {
            continue;
        };
        let Some(Value::Array(required)) = definition.get_mut("required") else {
            continue;
        };
        required.retain(|field| {
            let field = field.as_str().unwrap_or_default();
            if field == "metadata" {
                return name == EVENT;
            }
            !NOT_REQUIRED.contains(&(name.as_str(), field))
        });
        if required.is_empty() {
            definition.remove("required");
        }
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

fn set_group_version_kinds(definitions: &mut Map<String, Value>) {
    let mut set = |name: &str, gvks: Vec<Value>| {
        if let Some(Value::Object(definition)) = definitions.get_mut(name) {
            definition.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
        }
    };
    for r in SERVED {
        set(&r.definition(), vec![gvk(r.group, r.version, r.kind)]);
        set(
            &r.list_definition(),
            vec![gvk(r.group, r.version, r.list_kind)],
        );
    }
    set(SCALE, vec![gvk("autoscaling", "v1", "Scale")]);
    set(STATUS, vec![gvk("", "v1", "Status")]);
    set(API_RESOURCE_LIST, vec![gvk("", "v1", "APIResourceList")]);
    // Like Kubernetes, these are registered in every served group-version.
    for (name, kind) in [
        (DELETE_OPTIONS, "DeleteOptions"),
        (WATCH_EVENT, "WatchEvent"),
    ] {
        let gvks = GROUP_VERSIONS
            .iter()
            .map(|(g, v)| gvk(g, v, kind))
            .collect();
        set(name, gvks);
    }
}

/// Calls `visit` with the definition name of every `$ref` inside `value`.
pub(crate) fn for_each_ref(value: &Value, prefix: &str, visit: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                visit(reference.strip_prefix(prefix).unwrap_or(reference));
            }
            for child in map.values() {
                for_each_ref(child, prefix, visit);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| for_each_ref(v, prefix, visit)),
        _ => {}
    }
}

/// The names of `roots` and of every definition they reach through `$ref`s.
/// Names without a definition are kept, so a dangling reference shows up in
/// the self-check instead of vanishing.
pub(crate) fn closure<'a>(
    definitions: &Map<String, Value>,
    roots: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<String> = roots.into_iter().map(str::to_owned).collect();
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(definition) = definitions.get(&name) {
            for_each_ref(definition, CANONICAL_REF_PREFIX, &mut |r| {
                if !seen.contains(r) {
                    queue.push_back(r.to_owned());
                }
            });
        }
    }
    seen
}
