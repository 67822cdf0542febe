//! The rules the API server applies to object metadata on every write:
//! system fields on create, what an update may and may not change, when
//! `generation` moves, deletion with finalizers, and the Scale view of a
//! workload.

use chrono::{SecondsFormat, Utc};
use manifold_kube_model::kinds::ResourceKind;
use rand::Rng;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Identifies an object inside one virtual cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

/// The part of a write a subresource URL targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

/// The current time as Kubernetes writes timestamps (`2024-05-01T10:00:00Z`).
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Whether objects of the kind carry `metadata.generation` (kinds whose spec
/// a controller reconciles).
pub fn has_generation(kind: &ResourceKind) -> bool {
    matches!(
        kind.kind,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob"
    )
}

fn has_status_subresource(kind: &ResourceKind) -> bool {
    kind.subresource("status").is_some()
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name`, or `generateName` plus five random characters.
pub fn name_or_generate(object: &mut Value) -> Option<String> {
    if let Some(name) = meta_str(object, "name").filter(|n| !n.is_empty()) {
        return Some(name.to_owned());
    }
    let prefix = meta_str(object, "generateName").filter(|p| !p.is_empty())?;
    // The alphabet Kubernetes uses: no vowels, no look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let name = format!("{prefix}{suffix}");
    meta_mut(object).insert("name".into(), name.clone().into());
    Some(name)
}

/// Sets the system fields of a new object and drops what clients may not set.
pub fn prepare_create(kind: &ResourceKind, object: &mut Value, uid: Uuid, now: &str) {
    if has_status_subresource(kind)
        && let Some(o) = object.as_object_mut()
    {
        // Status is written through /status only.
        o.remove("status");
    }
    let generation = has_generation(kind);
    let meta = meta_mut(object);
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "generation",
        "managedFields",
    ] {
        meta.remove(field);
    }
    meta.insert("uid".into(), uid.to_string().into());
    meta.insert("creationTimestamp".into(), now.into());
    if generation {
        meta.insert("generation".into(), 1.into());
    }
}

/// The object an update stores: `new` for the part being written, `old` for
/// the rest and for every system field. `generation` moves when the spec
/// (anything outside metadata and status) changed.
pub fn merge_update(kind: &ResourceKind, old: &Value, new: &Value, part: Part) -> Value {
    let mut out = match part {
        Part::Main => {
            let mut out = new.clone();
            if let Some(o) = out.as_object_mut()
                && has_status_subresource(kind)
            {
                match old.get("status") {
                    Some(s) => {
                        o.insert("status".into(), s.clone());
                    }
                    None => {
                        o.remove("status");
                    }
                }
            }
            out
        }
        Part::Status => {
            let mut out = old.clone();
            if let Some(o) = out.as_object_mut() {
                match new.get("status") {
                    Some(s) => {
                        o.insert("status".into(), s.clone());
                    }
                    None => {
                        o.remove("status");
                    }
                }
            }
            out
        }
    };
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let meta = meta_mut(&mut out);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match old_meta.and_then(|m| m.get(field)) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    meta.remove("selfLink");
    if part == Part::Main && has_generation(kind) && spec_changed(old, new) {
        let generation = old_meta
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut out).insert("generation".into(), (generation + 1).into());
    }
    out
}

/// True when anything outside `metadata`, `status`, `apiVersion` and `kind`
/// differs.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    const NOT_SPEC: &[&str] = &["metadata", "status", "apiVersion", "kind"];
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !NOT_SPEC.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(old) != strip(new)
}

/// The object without the fields every write changes, to tell a no-op write
/// from a real one.
pub fn comparable(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    out
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Marks an object for deletion (it has finalizers to wait for).
pub fn mark_deleting(object: &mut Value, now: &str) {
    let meta = meta_mut(object);
    meta.insert("deletionTimestamp".into(), now.into());
    meta.insert("deletionGracePeriodSeconds".into(), 0.into());
}

/// What the change log keeps of a Secret once it is deleted: its identity,
/// labels (so label-selected watches still see the deletion) and type, but
/// not its `data`/`stringData`, nor annotations (kubectl's
/// last-applied-configuration repeats the data) or managed fields.
pub fn scrub_secret(object: &Value) -> Value {
    let mut out = Map::new();
    for field in ["apiVersion", "kind", "type", "immutable"] {
        if let Some(v) = object.get(field) {
            out.insert(field.into(), v.clone());
        }
    }
    if let Some(meta) = object.get("metadata").and_then(Value::as_object) {
        let mut meta = meta.clone();
        meta.remove("annotations");
        meta.remove("managedFields");
        out.insert("metadata".into(), Value::Object(meta));
    }
    Value::Object(out)
}

/// `metadata.resourceVersion` as a revision; `None` when absent or empty.
pub fn resource_version(object: &Value) -> Option<&str> {
    meta_str(object, "resourceVersion").filter(|s| !s.is_empty())
}

/// The autoscaling/v1 Scale view of a scalable object.
pub fn to_scale(object: &Value) -> Value {
    let meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let replicas = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let status_replicas = object
        .pointer("/status/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector =
        manifold_kube_model::selectors::format_label_selector(object.pointer("/spec/selector"));
    let mut status = json!({ "replicas": status_replicas });
    if !selector.is_empty() {
        status["selector"] = selector.into();
    }
    let mut scale_meta = json!({
        "name": pick("name"),
        "namespace": pick("namespace"),
        "uid": pick("uid"),
        "resourceVersion": pick("resourceVersion"),
        "creationTimestamp": pick("creationTimestamp"),
    });
    if let Some(m) = scale_meta.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": { "replicas": replicas },
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifold_kube_model::kinds;

    #[test]
    fn scrubbed_secrets_keep_identity_and_labels_only() {
        let s = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "db", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                         "labels": {"app": "web"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"p\":\"eA==\"}}"},
                         "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {"f:p": {}}}}]},
            "data": {"p": "eA=="}, "stringData": {"q": "y"}
        });
        assert_eq!(
            scrub_secret(&s),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "db", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                                "labels": {"app": "web"}}})
        );
    }

    #[test]
    fn create_sets_system_fields_and_drops_status() {
        let kind = kinds::by_kind("Deployment").unwrap();
        let mut d = json!({"metadata": {"name": "w", "resourceVersion": "9", "generation": 7},
            "spec": {"replicas": 1}, "status": {"replicas": 3}});
        prepare_create(kind, &mut d, Uuid::nil(), "2024-01-01T00:00:00Z");
        assert_eq!(d["metadata"]["generation"], 1);
        assert!(d["metadata"].get("resourceVersion").is_none());
        assert!(d.get("status").is_none());
        let cm = kinds::by_kind("ConfigMap").unwrap();
        let mut c = json!({"metadata": {"name": "c"}, "data": {}});
        prepare_create(cm, &mut c, Uuid::nil(), "2024-01-01T00:00:00Z");
        assert!(c["metadata"].get("generation").is_none());
    }

    #[test]
    fn generation_moves_only_on_spec_changes() {
        let kind = kinds::by_kind("Deployment").unwrap();
        let old = json!({"metadata": {"name": "w", "uid": "u", "generation": 2, "labels": {"a": "1"}},
            "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let relabel =
            json!({"metadata": {"name": "w", "labels": {"a": "2"}}, "spec": {"replicas": 1}});
        let out = merge_update(kind, &old, &relabel, Part::Main);
        assert_eq!(out["metadata"]["generation"], 2);
        assert_eq!(out["metadata"]["uid"], "u");
        assert_eq!(out["status"]["replicas"], 1);
        let scale = json!({"metadata": {"name": "w"}, "spec": {"replicas": 5}});
        assert_eq!(
            merge_update(kind, &old, &scale, Part::Main)["metadata"]["generation"],
            3
        );
        let status =
            json!({"metadata": {"name": "w"}, "spec": {"replicas": 9}, "status": {"replicas": 4}});
        let out = merge_update(kind, &old, &status, Part::Status);
        assert_eq!(out["spec"]["replicas"], 1);
        assert_eq!(out["status"]["replicas"], 4);
        assert_eq!(out["metadata"]["generation"], 2);
    }

    #[test]
    fn scale_view() {
        let d = json!({"metadata": {"name": "w", "namespace": "n", "resourceVersion": "5"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "w"}}}});
        let s = to_scale(&d);
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=w");
        assert_eq!(s["metadata"]["resourceVersion"], "5");
    }

    #[test]
    fn generated_names() {
        let mut o = json!({"metadata": {"generateName": "web-"}});
        let name = name_or_generate(&mut o).unwrap();
        assert!(name.starts_with("web-") && name.len() == 9);
        assert_eq!(o["metadata"]["name"], name);
        assert!(name_or_generate(&mut json!({"metadata": {}})).is_none());
    }
}
