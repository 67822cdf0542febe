//! Typed decoding through k8s-openapi: type errors with JSON paths, and unknown-field detection by round trip.

use k8s_openapi::api::{apps, batch, core};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A value of the wrong type, with the path of the field that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// `spec.replicas`, `spec.template.spec.containers[0].ports[0].containerPort`; empty for the root.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn round_trip_as<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, DecodeError> {
    let typed: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        DecodeError {
            path: if path == "." { String::new() } else { path },
            message: e.inner().to_string(),
        }
    })?;
    serde_json::to_value(&typed).map_err(|e| DecodeError {
        path: String::new(),
        message: e.to_string(),
    })
}

/// Decodes `value` as the typed struct of `kind` and serialises it back. `None` when the
/// kind has no typed model here.
pub fn round_trip(kind: &str, value: &Value) -> Option<Result<Value, DecodeError>> {
    Some(match kind {
        "Deployment" => round_trip_as::<apps::v1::Deployment>(value),
        "StatefulSet" => round_trip_as::<apps::v1::StatefulSet>(value),
        "DaemonSet" => round_trip_as::<apps::v1::DaemonSet>(value),
        "ReplicaSet" => round_trip_as::<apps::v1::ReplicaSet>(value),
        "Job" => round_trip_as::<batch::v1::Job>(value),
        "CronJob" => round_trip_as::<batch::v1::CronJob>(value),
        "Service" => round_trip_as::<core::v1::Service>(value),
        "ConfigMap" => round_trip_as::<core::v1::ConfigMap>(value),
        "Secret" => round_trip_as::<core::v1::Secret>(value).map_err(redact_value),
        "PersistentVolumeClaim" => round_trip_as::<core::v1::PersistentVolumeClaim>(value),
        "ServiceAccount" => round_trip_as::<core::v1::ServiceAccount>(value),
        "Event" => round_trip_as::<core::v1::Event>(value),
        "Pod" => round_trip_as::<core::v1::Pod>(value),
        "Namespace" => round_trip_as::<core::v1::Namespace>(value),
        _ => return None,
    })
}

/// A decode error without the offending value: serde quotes it ("invalid
/// type: integer `12345`, expected a string"), and a Secret's values must
/// not reach error messages, which the audit log stores.
fn redact_value(mut e: DecodeError) -> DecodeError {
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(start) = e.message.find(prefix) else {
            continue;
        };
        let rest = &e.message[start + prefix.len()..];
        // The last one: the value itself may contain the phrase.
        let Some(end) = rest.rfind(", expected") else {
            continue;
        };
        let what = rest[..end]
            .split(['`', '"'])
            .next()
            .unwrap_or_default()
            .trim_end();
        e.message = format!("{}{prefix}{what}{}", &e.message[..start], &rest[end..]);
        return e;
    }
    e
}

/// Paths present in `input` but dropped by the typed round trip. Nulls count as absent
/// (clients send `creationTimestamp: null`), free-form maps survive the round trip whole,
/// and `status` is not checked because writes to the main resource ignore it.
pub fn unknown_fields(input: &Value, round_tripped: &Value) -> Vec<String> {
    fn walk(input: &Value, rt: &Value, path: &str, out: &mut Vec<String>) {
        match (input, rt) {
            (Value::Object(i), Value::Object(r)) => {
                for (k, v) in i {
                    if v.is_null() || (path.is_empty() && k == "status") {
                        continue;
                    }
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match r.get(k) {
                        Some(rv) => walk(v, rv, &p, out),
                        None => out.push(p),
                    }
                }
            }
            (Value::Array(i), Value::Array(r)) => {
                for (idx, (v, rv)) in i.iter().zip(r).enumerate() {
                    walk(v, rv, &format!("{path}[{idx}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(input, round_tripped, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"any.key/x": "v"}, "annotations": {"a": "b"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx", "image": "nginx",
                        "resources": {"limits": {"cpu": 1, "memory": "128Mi"}},
                        "ports": [{"containerPort": 80}],
                        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}},
                    }],
                    "nodeSelector": {"disk": "ssd"}},
                },
            },
            "status": {"whatever": 1},
        })
    }

    #[test]
    fn clean_object_has_no_unknown_fields() {
        let d = deployment();
        let rt = round_trip("Deployment", &d).unwrap().unwrap();
        assert_eq!(unknown_fields(&d, &rt), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_found_with_paths() {
        let mut d = deployment();
        d["spec"]["foo"] = json!(1);
        d["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("typo");
        d["metadata"]["bogus"] = json!({"x": 1});
        let rt = round_trip("Deployment", &d).unwrap().unwrap();
        assert_eq!(
            unknown_fields(&d, &rt),
            [
                "metadata.bogus",
                "spec.foo",
                "spec.template.spec.containers[0].imagee"
            ]
        );
    }

    #[test]
    fn type_errors_carry_the_path() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!("two");
        let e = round_trip("Deployment", &d).unwrap().unwrap_err();
        assert_eq!(e.path, "spec.replicas");
        assert!(
            e.message.contains("invalid type: string \"two\""),
            "{}",
            e.message
        );
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("80");
        let e = round_trip("Deployment", &d).unwrap().unwrap_err();
        assert_eq!(
            e.path,
            "spec.template.spec.containers[0].ports[0].containerPort"
        );
        assert_eq!(e.to_string(), format!("{}: {}", e.path, e.message));
        let e = round_trip(
            "ConfigMap",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": 1}}),
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(e.path, "data.a");
    }

    #[test]
    fn every_kind_round_trips() {
        for (kind, av) in [
            ("Deployment", "apps/v1"),
            ("StatefulSet", "apps/v1"),
            ("DaemonSet", "apps/v1"),
            ("ReplicaSet", "apps/v1"),
            ("Job", "batch/v1"),
            ("CronJob", "batch/v1"),
            ("Service", "v1"),
            ("ConfigMap", "v1"),
            ("Secret", "v1"),
            ("PersistentVolumeClaim", "v1"),
            ("ServiceAccount", "v1"),
            ("Event", "v1"),
            ("Pod", "v1"),
            ("Namespace", "v1"),
        ] {
            let obj = json!({"apiVersion": av, "kind": kind, "metadata": {"name": "x"}});
            let rt = round_trip(kind, &obj).unwrap().unwrap();
            assert!(unknown_fields(&obj, &rt).is_empty(), "{kind}");
        }
        assert!(round_trip("Node", &json!({})).is_none());
    }

    #[test]
    fn secret_data_and_int_or_string() {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "aGVsbG8="}, "stringData": {"p": "x"}});
        let rt = round_trip("Secret", &s).unwrap().unwrap();
        assert!(unknown_fields(&s, &rt).is_empty());
        let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "not base64!"}});
        assert_eq!(
            round_trip("Secret", &bad).unwrap().unwrap_err().path,
            "data.k"
        );
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}]}});
        // A Secret's values never appear in the error (the audit log keeps it).
        for (field, value, expected) in [
            (
                "stringData",
                json!({"p": 98765431}),
                "stringData.p: invalid type: integer, expected a string",
            ),
            (
                "data",
                json!({"p": true}),
                "data.p: invalid type: boolean, expected a base64-encoded string",
            ),
        ] {
            let mut bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
            bad[field] = value.clone();
            let e = round_trip("Secret", &bad).unwrap().unwrap_err();
            assert_eq!(e.to_string(), expected);
        }
        let rt = round_trip("Service", &svc).unwrap().unwrap();
        assert!(unknown_fields(&svc, &rt).is_empty());
    }
}
