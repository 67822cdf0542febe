//! Merge semantics of list and map fields: the `x-kubernetes-patch-*`,
//! `x-kubernetes-list-*` and `x-kubernetes-map-type` extensions.
//!
//! k8s-openapi's schemas do not carry them, so they are listed here for the
//! definitions the served kinds reach. They mirror the Go struct tags of the
//! Kubernetes API (`patchStrategy`, `patchMergeKey`, `+listType`,
//! `+listMapKey`, `+mapType`). kubectl's client-side apply reads the patch
//! extensions from OpenAPI v3 to build strategic merge patches, and server-side
//! apply semantics follow the list and map types. Lists without an entry here
//! are atomic for both, which is also what an absent annotation means.

use serde_json::{Map, Value, json};

/// How a list merges under server-side apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Items are identified by the values of these keys.
    Map(&'static [&'static str]),
    /// Items are unique scalars.
    Set,
}

/// The merge rules of one field of one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRule {
    /// Definition name without the `io.k8s.api.` or
    /// `io.k8s.apimachinery.pkg.apis.` prefix, e.g. `core.v1.PodSpec`.
    pub definition: &'static str,
    pub field: &'static str,
    pub list_type: Option<ListType>,
    /// `atomic` or `granular` for map fields.
    pub map_type: Option<&'static str>,
    /// Strategic merge patch strategy, e.g. `merge` or `merge,retainKeys`.
    pub patch_strategy: Option<&'static str>,
    /// Strategic merge patch key of the list items.
    pub patch_merge_key: Option<&'static str>,
}

const fn field(definition: &'static str, field: &'static str) -> FieldRule {
    FieldRule {
        definition,
        field,
        list_type: None,
        map_type: None,
        patch_strategy: None,
        patch_merge_key: None,
    }
}

impl FieldRule {
    const fn list_map(mut self, keys: &'static [&'static str]) -> Self {
        self.list_type = Some(ListType::Map(keys));
        self
    }

    const fn list_set(mut self) -> Self {
        self.list_type = Some(ListType::Set);
        self
    }

    const fn map_atomic(mut self) -> Self {
        self.map_type = Some("atomic");
        self
    }

    const fn map_granular(mut self) -> Self {
        self.map_type = Some("granular");
        self
    }

    const fn patch(mut self, strategy: &'static str, merge_key: Option<&'static str>) -> Self {
        self.patch_strategy = Some(strategy);
        self.patch_merge_key = merge_key;
        self
    }

    /// The full definition name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub fn definition_name(&self) -> String {
        full_name(self.definition)
    }

    /// The extensions to set on the field's schema.
    pub fn extensions(&self) -> Map<String, Value> {
        let mut out = Map::new();
        match self.list_type {
            Some(ListType::Map(keys)) => {
                out.insert("x-kubernetes-list-type".into(), json!("map"));
                out.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
            Some(ListType::Set) => {
                out.insert("x-kubernetes-list-type".into(), json!("set"));
            }
            None => {}
        }
        if let Some(map_type) = self.map_type {
            out.insert("x-kubernetes-map-type".into(), json!(map_type));
        }
        if let Some(strategy) = self.patch_strategy {
            out.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
        if let Some(key) = self.patch_merge_key {
            out.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
        out
    }
}

fn full_name(short: &str) -> String {
    if short.starts_with("meta.") {
        format!("io.k8s.apimachinery.pkg.apis.{short}")
    } else {
        format!("io.k8s.api.{short}")
    }
}

/// Field rules, grouped by definition. One rule a line reads best here.
#[rustfmt::skip]
pub static FIELD_RULES: &[FieldRule] = &[
    field("apps.v1.DaemonSetStatus", "conditions").list_map(&["type"]).patch("merge", Some("type")),
    field("apps.v1.DeploymentSpec", "strategy").patch("retainKeys", None),
    field("apps.v1.DeploymentStatus", "conditions").list_map(&["type"]).patch("merge", Some("type")),
    field("apps.v1.ReplicaSetStatus", "conditions").list_map(&["type"]).patch("merge", Some("type")),
    field("apps.v1.StatefulSetStatus", "conditions").list_map(&["type"]).patch("merge", Some("type")),
    field("batch.v1.JobStatus", "conditions").patch("merge", Some("type")),
    field("batch.v1.PodFailurePolicyOnExitCodesRequirement", "values").list_set(),
    field("batch.v1.UncountedTerminatedPods", "failed").list_set(),
    field("batch.v1.UncountedTerminatedPods", "succeeded").list_set(),
    field("core.v1.Container", "env").list_map(&["name"]).patch("merge", Some("name")),
    field("core.v1.Container", "ports")
        .list_map(&["containerPort", "protocol"])
        .patch("merge", Some("containerPort")),
    field("core.v1.Container", "volumeDevices").list_map(&["devicePath"]).patch("merge", Some("devicePath")),
    field("core.v1.Container", "volumeMounts").list_map(&["mountPath"]).patch("merge", Some("mountPath")),
    field("core.v1.ContainerStatus", "allocatedResourcesStatus").list_map(&["name"]).patch("merge", Some("name")),
    field("core.v1.ContainerStatus", "volumeMounts").list_map(&["mountPath"]).patch("merge", Some("mountPath")),
    field("core.v1.EphemeralContainer", "env").list_map(&["name"]).patch("merge", Some("name")),
    field("core.v1.EphemeralContainer", "ports")
        .list_map(&["containerPort", "protocol"])
        .patch("merge", Some("containerPort")),
    field("core.v1.EphemeralContainer", "volumeDevices")
        .list_map(&["devicePath"])
        .patch("merge", Some("devicePath")),
    field("core.v1.EphemeralContainer", "volumeMounts")
        .list_map(&["mountPath"])
        .patch("merge", Some("mountPath")),
    field("core.v1.NamespaceStatus", "conditions").list_map(&["type"]).patch("merge", Some("type")),
    field("core.v1.PersistentVolumeClaimStatus", "allocatedResourceStatuses").map_granular(),
    field("core.v1.PersistentVolumeClaimStatus", "conditions").list_map(&["type"]).patch("merge", Some("type")),
    field("core.v1.PodSpec", "containers").list_map(&["name"]).patch("merge", Some("name")),
    field("core.v1.PodSpec", "ephemeralContainers").list_map(&["name"]).patch("merge", Some("name")),
    field("core.v1.PodSpec", "hostAliases").list_map(&["ip"]).patch("merge", Some("ip")),
    field("core.v1.PodSpec", "imagePullSecrets").list_map(&["name"]).patch("merge", Some("name")),
    field("core.v1.PodSpec", "initContainers").list_map(&["name"]).patch("merge", Some("name")),
    field("core.v1.PodSpec", "nodeSelector").map_atomic(),
    field("core.v1.PodSpec", "resourceClaims").list_map(&["name"]).patch("merge,retainKeys", Some("name")),
    field("core.v1.PodSpec", "schedulingGates").list_map(&["name"]).patch("merge", Some("name")),
    field("core.v1.PodSpec", "topologySpreadConstraints")
        .list_map(&["topologyKey", "whenUnsatisfiable"])
        .patch("merge", Some("topologyKey")),
    field("core.v1.PodSpec", "volumes").list_map(&["name"]).patch("merge,retainKeys", Some("name")),
    field("core.v1.PodStatus", "conditions").list_map(&["type"]).patch("merge", Some("type")),
    field("core.v1.PodStatus", "hostIPs").patch("merge", Some("ip")),
    field("core.v1.PodStatus", "podIPs").list_map(&["ip"]).patch("merge", Some("ip")),
    field("core.v1.PodStatus", "resourceClaimStatuses")
        .list_map(&["name"])
        .patch("merge,retainKeys", Some("name")),
    field("core.v1.ResourceRequirements", "claims").list_map(&["name"]),
    field("core.v1.ResourceStatus", "resources").list_map(&["resourceID"]),
    field("core.v1.ServiceAccount", "secrets").list_map(&["name"]).patch("merge", Some("name")),
    field("core.v1.ServiceSpec", "ports").list_map(&["port", "protocol"]).patch("merge", Some("port")),
    field("core.v1.ServiceSpec", "selector").map_atomic(),
    field("core.v1.ServiceStatus", "conditions").list_map(&["type"]).patch("merge", Some("type")),
    field("meta.v1.ObjectMeta", "finalizers").list_set().patch("merge", None),
    field("meta.v1.ObjectMeta", "ownerReferences").list_map(&["uid"]).patch("merge", Some("uid")),
];

/// Definitions that are replaced as a whole (`x-kubernetes-map-type: atomic`
/// on the struct itself).
pub static ATOMIC_STRUCTS: &[&str] = &[
    "core.v1.ConfigMapKeySelector",
    "core.v1.LocalObjectReference",
    "core.v1.NodeSelector",
    "core.v1.NodeSelectorTerm",
    "core.v1.ObjectFieldSelector",
    "core.v1.ObjectReference",
    "core.v1.ResourceFieldSelector",
    "core.v1.SecretKeySelector",
    "core.v1.TypedLocalObjectReference",
    "meta.v1.LabelSelector",
    "meta.v1.OwnerReference",
];

/// The merge rules of `field` in the definition named `definition` (full
/// `io.k8s.…` name), if it has any.
pub fn field_rule(definition: &str, field: &str) -> Option<&'static FieldRule> {
    FIELD_RULES
        .iter()
        .find(|r| r.field == field && full_name(r.definition) == definition)
}

/// Sets the extensions of [`FIELD_RULES`] and [`ATOMIC_STRUCTS`] on the
/// definitions they name. Rules for definitions or fields that are absent are
/// skipped; a test checks that every rule lands.
pub(crate) fn apply(definitions: &mut Map<String, Value>) {
    for rule in FIELD_RULES {
        let property = definitions
            .get_mut(&rule.definition_name())
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(rule.field))
            .and_then(Value::as_object_mut);
        if let Some(property) = property {
            property.extend(rule.extensions());
        }
    }
    for short in ATOMIC_STRUCTS {
        if let Some(Value::Object(definition)) = definitions.get_mut(&full_name(short)) {
            definition.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
    }
}
