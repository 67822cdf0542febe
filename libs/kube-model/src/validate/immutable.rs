//! Update rules: the fields an API server refuses to change once an object
//! exists (a Deployment's selector, a Job's template, a StatefulSet's spec
//! beyond what may roll, a claim's spec, an `immutable` ConfigMap's data). A vK8s
//! refuses them with the same 422 a site would answer, at once, instead of
//! accepting a change no site can take.

use serde_json::Value;

use super::ValidationError;
use crate::field_error::FieldError;
use crate::kinds::ResourceKind;

fn at<'a>(object: &'a Value, pointer: &str) -> Option<&'a Value> {
    object.pointer(pointer).filter(|v| !v.is_null())
}

fn immutable(errors: &mut Vec<FieldError>, old: &Value, new: &Value, pointer: &str, field: &str) {
    let (before, after) = (at(old, pointer), at(new, pointer));
    if before != after {
        errors.push(FieldError::invalid(
            field,
            after.unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
}

/// `spec` without the fields that may change.
fn spec_without(object: &Value, mutable: &[&str]) -> Value {
    let mut spec = at(object, "/spec").cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        for field in mutable {
            map.remove(*field);
        }
    }
    spec
}

/// The changes from `old` to `new` (both stored form, after defaulting) that
/// `kind` does not allow.
pub fn immutable_changes(kind: &ResourceKind, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match (kind.group, kind.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            immutable(&mut errors, old, new, "/spec/selector", "spec.selector");
        }
        ("apps", "StatefulSet") => {
            const MUTABLE: &[&str] = &[
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            if spec_without(old, MUTABLE) != spec_without(new, MUTABLE) {
                errors.push(FieldError::forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', \
                     'template', 'updateStrategy', 'revisionHistoryLimit', \
                     'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        ("batch", "Job") => {
            immutable(&mut errors, old, new, "/spec/selector", "spec.selector");
            immutable(&mut errors, old, new, "/spec/template", "spec.template");
            immutable(
                &mut errors,
                old,
                new,
                "/spec/completionMode",
                "spec.completionMode",
            );
        }
        ("", "PersistentVolumeClaim") => {
            let mutable = |o: &Value| {
                let mut spec = spec_without(o, &["volumeAttributesClassName", "volumeName"]);
                if let Some(resources) = spec.get_mut("resources").and_then(Value::as_object_mut) {
                    resources.remove("requests");
                }
                spec
            };
            if mutable(old) != mutable(new) {
                errors.push(FieldError::forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and \
                     volumeAttributesClassName for bound claims",
                ));
            }
        }
        ("", "ConfigMap" | "Secret") => {
            if at(old, "/immutable") == Some(&Value::Bool(true)) {
                let detail = "field is immutable when `immutable` is set";
                for field in ["data", "binaryData", "stringData"] {
                    if at(old, &format!("/{field}")) != at(new, &format!("/{field}")) {
                        errors.push(FieldError::forbidden(field, detail));
                    }
                }
                if at(new, "/immutable") != Some(&Value::Bool(true)) {
                    errors.push(FieldError::forbidden("immutable", detail));
                }
            }
            if kind.kind == "Secret" {
                let ty = |o: &Value| {
                    at(o, "/type")
                        .and_then(Value::as_str)
                        .unwrap_or("Opaque")
                        .to_owned()
                };
                if ty(old) != ty(new) {
                    errors.push(FieldError::invalid(
                        "type",
                        &Value::String(ty(new)),
                        "field is immutable",
                    ));
                }
            }
        }
        _ => {}
    }
    errors
}

/// [`immutable_changes`] as the 422 the API server answers.
pub fn check_update(
    kind: &ResourceKind,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ValidationError> {
    let causes = immutable_changes(kind, old, new);
    if causes.is_empty() {
        return Ok(());
    }
    Err(ValidationError::Invalid {
        group: kind.group.to_owned(),
        kind: kind.kind.to_owned(),
        qualified_kind: kind.qualified_kind(),
        name: name.to_owned(),
        causes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_kind;
    use serde_json::json;

    fn deployment(app: &str, image: &str) -> Value {
        json!({"spec": {"selector": {"matchLabels": {"app": app}},
                        "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn selectors_of_workloads_are_immutable() {
        let kind = by_kind("Deployment").unwrap();
        assert!(
            check_update(
                kind,
                "web",
                &deployment("web", "a"),
                &deployment("web", "b")
            )
            .is_ok()
        );
        let e = check_update(
            kind,
            "web",
            &deployment("web", "a"),
            &deployment("other", "a"),
        )
        .unwrap_err();
        assert_eq!(e.code(), 422);
        let text = e.to_string();
        assert!(
            text.contains("Deployment.apps \"web\" is invalid"),
            "{text}"
        );
        assert!(text.contains("spec.selector"), "{text}");
        assert!(text.contains("field is immutable"), "{text}");
    }

    #[test]
    fn jobs_statefulsets_and_claims_keep_their_spec() {
        let job = by_kind("Job").unwrap();
        let j = |image: &str| json!({"spec": {"template": {"spec": {"containers": [{"image": image}]}}}});
        assert!(
            check_update(job, "j", &j("a"), &j("b"))
                .unwrap_err()
                .to_string()
                .contains("spec.template")
        );

        let sts = by_kind("StatefulSet").unwrap();
        let s = |replicas: i64, storage: &str| {
            json!({"spec": {"replicas": replicas, "serviceName": "db",
            "volumeClaimTemplates": [{"spec": {"resources": {"requests": {"storage": storage}}}}]}})
        };
        assert!(check_update(sts, "db", &s(1, "1Gi"), &s(3, "1Gi")).is_ok());
        assert!(
            check_update(sts, "db", &s(1, "1Gi"), &s(1, "2Gi"))
                .unwrap_err()
                .to_string()
                .contains("updates to statefulset spec for fields other than")
        );

        let pvc = by_kind("PersistentVolumeClaim").unwrap();
        let c = |class: &str, storage: &str| {
            json!({"spec": {"storageClassName": class,
            "resources": {"requests": {"storage": storage}}}})
        };
        assert!(check_update(pvc, "data", &c("fast", "1Gi"), &c("fast", "2Gi")).is_ok());
        assert!(check_update(pvc, "data", &c("fast", "1Gi"), &c("slow", "1Gi")).is_err());
    }

    #[test]
    fn immutable_config_maps_and_secret_types() {
        let cm = by_kind("ConfigMap").unwrap();
        let m = |v: &str, immutable: bool| json!({"data": {"k": v}, "immutable": immutable});
        assert!(check_update(cm, "c", &m("a", false), &m("b", true)).is_ok());
        let e = check_update(cm, "c", &m("a", true), &m("b", true)).unwrap_err();
        assert!(
            e.to_string()
                .contains("data: Forbidden: field is immutable when `immutable` is set"),
            "{e}"
        );
        assert!(check_update(cm, "c", &m("a", true), &m("a", false)).is_err());
        let secret = by_kind("Secret").unwrap();
        assert!(check_update(secret, "s", &json!({"type": "Opaque"}), &json!({})).is_ok());
        assert!(
            check_update(
                secret,
                "s",
                &json!({}),
                &json!({"type": "kubernetes.io/tls"})
            )
            .is_err()
        );
    }
}
