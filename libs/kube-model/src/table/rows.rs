//! Cells of each kind's Table row, computed like kubectl's printers.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::pod::pod_summary;
use super::{age, age_since, human_duration, parse_time};
use crate::json::{arr_at, at, i64_at, obj_at, str_at};
use crate::selectors::{format_label_selector, format_labels};

/// The label that names the site a pod runs on.
pub const SITE_LABEL: &str = "manifold.dev/site";
/// Ready out of desired on each site of a workload (`pa2-par=2/2,…`), as the
/// gateway merges the sites' status.
pub const SITE_READY_ANNOTATION: &str = "manifold.dev/site-ready";

fn sites(obj: &Value) -> Value {
    or_none(str_at(
        obj,
        &["metadata", "annotations", SITE_READY_ANNOTATION],
    ))
}

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn int(obj: &Value, path: &[&str]) -> Value {
    json!(i64_at(obj, path).unwrap_or(0))
}

fn or_none(v: Option<&str>) -> Value {
    s(v.filter(|v| !v.is_empty()).unwrap_or("<none>"))
}

fn name(obj: &Value) -> Value {
    s(str_at(obj, &["metadata", "name"]).unwrap_or_default())
}

fn created(obj: &Value, now: DateTime<Utc>) -> Value {
    s(age(str_at(obj, &["metadata", "creationTimestamp"]), now))
}

/// Name, Status, Roles, Age, Version, Site of a Node.
fn node_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ready = arr_at(obj, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str());
    let status = match ready {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    };
    let mut roles: Vec<&str> = at(obj, &["metadata", "labels"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    roles.sort_unstable();
    vec![
        name(obj),
        s(status),
        s(if roles.is_empty() {
            "<none>".to_owned()
        } else {
            roles.join(",")
        }),
        created(obj, now),
        or_none(str_at(obj, &["status", "nodeInfo", "kubeletVersion"])),
        or_none(str_at(obj, &["metadata", "labels", SITE_LABEL])),
    ]
}

/// `Containers`, `Images` of the pod template at `spec_path`.
fn containers_images(obj: &Value, spec_path: &[&str]) -> [Value; 2] {
    let containers = at(obj, spec_path)
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let list = containers.map(Vec::as_slice).unwrap_or(&[]);
    let join = |k: &str| {
        list.iter()
            .map(|c| c[k].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
    };
    [s(join("name")), s(join("image"))]
}

fn selector(obj: &Value, path: &[&str]) -> Value {
    s(format_label_selector(at(obj, path)))
}

/// The cells of one row for `kind`, aligned with [`super::columns`].
pub fn row_cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    row_cells_scaled(kind, obj, now, 1)
}

/// [`row_cells`] with desired counts multiplied by `multiplier` (the object's site count).
pub fn row_cells_scaled(
    kind: &str,
    obj: &Value,
    now: DateTime<Utc>,
    multiplier: i64,
) -> Vec<Value> {
    const TEMPLATE: &[&str] = &["spec", "template", "spec"];
    let desired = |obj: &Value| i64_at(obj, &["spec", "replicas"]).unwrap_or(1) * multiplier;
    match kind {
        "Deployment" => {
            let [c, i] = containers_images(obj, TEMPLATE);
            let ready = format!(
                "{}/{}",
                i64_at(obj, &["status", "readyReplicas"]).unwrap_or(0),
                desired(obj)
            );
            vec![
                name(obj),
                s(ready),
                int(obj, &["status", "updatedReplicas"]),
                int(obj, &["status", "availableReplicas"]),
                created(obj, now),
                c,
                i,
                selector(obj, &["spec", "selector"]),
                sites(obj),
            ]
        }
        "StatefulSet" => {
            let [c, i] = containers_images(obj, TEMPLATE);
            let ready = format!(
                "{}/{}",
                i64_at(obj, &["status", "readyReplicas"]).unwrap_or(0),
                desired(obj)
            );
            vec![name(obj), s(ready), created(obj, now), c, i, sites(obj)]
        }
        "DaemonSet" => {
            let [c, i] = containers_images(obj, TEMPLATE);
            vec![
                name(obj),
                int(obj, &["status", "desiredNumberScheduled"]),
                int(obj, &["status", "currentNumberScheduled"]),
                int(obj, &["status", "numberReady"]),
                int(obj, &["status", "updatedNumberScheduled"]),
                int(obj, &["status", "numberAvailable"]),
                s(format_labels(obj_at(
                    obj,
                    &["spec", "template", "spec", "nodeSelector"],
                ))),
                created(obj, now),
                c,
                i,
                selector(obj, &["spec", "selector"]),
                sites(obj),
            ]
        }
        "ReplicaSet" => {
            let [c, i] = containers_images(obj, TEMPLATE);
            vec![
                name(obj),
                json!(desired(obj)),
                int(obj, &["status", "replicas"]),
                int(obj, &["status", "readyReplicas"]),
                created(obj, now),
                c,
                i,
                selector(obj, &["spec", "selector"]),
            ]
        }
        "Job" => {
            let [c, i] = containers_images(obj, TEMPLATE);
            vec![
                name(obj),
                s(job_status(obj)),
                s(completions(obj, multiplier)),
                s(job_duration(obj, now)),
                created(obj, now),
                c,
                i,
                selector(obj, &["spec", "selector"]),
            ]
        }
        "CronJob" => {
            let [c, i] =
                containers_images(obj, &["spec", "jobTemplate", "spec", "template", "spec"]);
            let suspend = if at(obj, &["spec", "suspend"]).and_then(Value::as_bool) == Some(true) {
                "True"
            } else {
                "False"
            };
            let last = str_at(obj, &["status", "lastScheduleTime"]).map(|t| age(Some(t), now));
            vec![
                name(obj),
                s(str_at(obj, &["spec", "schedule"]).unwrap_or_default()),
                or_none(str_at(obj, &["spec", "timeZone"])),
                s(suspend),
                json!(arr_at(obj, &["status", "active"]).len()),
                or_none(last.as_deref()),
                created(obj, now),
                c,
                i,
                selector(obj, &["spec", "jobTemplate", "spec", "selector"]),
            ]
        }
        "Service" => service_cells(obj, now),
        "ConfigMap" => {
            let n = obj_at(obj, &["data"]).map_or(0, |m| m.len())
                + obj_at(obj, &["binaryData"]).map_or(0, |m| m.len());
            vec![name(obj), json!(n), created(obj, now)]
        }
        "Secret" => {
            let mut keys: Vec<&String> = obj_at(obj, &["data"])
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            keys.extend(
                obj_at(obj, &["stringData"])
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k),
            );
            keys.sort();
            keys.dedup();
            vec![
                name(obj),
                s(str_at(obj, &["type"]).unwrap_or("Opaque")),
                json!(keys.len()),
                created(obj, now),
            ]
        }
        "PersistentVolumeClaim" => pvc_cells(obj, now),
        "ServiceAccount" => vec![
            name(obj),
            json!(arr_at(obj, &["secrets"]).len()),
            created(obj, now),
        ],
        "Event" => event_cells(obj, now),
        "Node" => node_cells(obj, now),
        "Pod" => {
            let summary = pod_summary(obj, now);
            let gates = arr_at(obj, &["spec", "readinessGates"]);
            let gates = if gates.is_empty() {
                "<none>".to_string()
            } else {
                let conditions = arr_at(obj, &["status", "conditions"]);
                let true_gates = gates
                    .iter()
                    .filter(|g| {
                        conditions
                            .iter()
                            .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
                    })
                    .count();
                format!("{true_gates}/{}", gates.len())
            };
            vec![
                name(obj),
                s(summary.ready),
                s(summary.status),
                s(summary.restarts),
                created(obj, now),
                or_none(str_at(obj, &["status", "podIP"])),
                or_none(str_at(obj, &["spec", "nodeName"])),
                or_none(str_at(obj, &["status", "nominatedNodeName"])),
                s(gates),
                or_none(str_at(obj, &["metadata", "labels", SITE_LABEL])),
            ]
        }
        "Namespace" => {
            let phase = if obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                "Terminating"
            } else {
                str_at(obj, &["status", "phase"]).unwrap_or("Active")
            };
            vec![name(obj), s(phase), created(obj, now)]
        }
        _ => vec![name(obj), created(obj, now)],
    }
}

fn has_condition(obj: &Value, kind: &str) -> bool {
    arr_at(obj, &["status", "conditions"])
        .iter()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

fn job_status(obj: &Value) -> &'static str {
    if has_condition(obj, "Complete") {
        "Complete"
    } else if has_condition(obj, "Failed") {
        "Failed"
    } else if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else if has_condition(obj, "Suspended") {
        "Suspended"
    } else if has_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn completions(obj: &Value, multiplier: i64) -> String {
    let succeeded = i64_at(obj, &["status", "succeeded"]).unwrap_or(0);
    match (
        i64_at(obj, &["spec", "completions"]),
        i64_at(obj, &["spec", "parallelism"]),
    ) {
        (Some(c), _) => format!("{succeeded}/{}", c * multiplier),
        (None, Some(p)) if p > 1 => format!("{succeeded}/{multiplier} of {p}"),
        _ => format!("{succeeded}/{multiplier}"),
    }
}

fn job_duration(obj: &Value, now: DateTime<Utc>) -> String {
    let Some(start) = str_at(obj, &["status", "startTime"]).and_then(parse_time) else {
        return String::new();
    };
    match str_at(obj, &["status", "completionTime"]).and_then(parse_time) {
        Some(end) => human_duration(end - start),
        None => age_since(start, now),
    }
}

fn service_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let svc_type = str_at(obj, &["spec", "type"]).unwrap_or("ClusterIP");
    let cluster_ip = arr_at(obj, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| str_at(obj, &["spec", "clusterIP"]));
    let external_ips: Vec<&str> = arr_at(obj, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let lb: Vec<&str> = arr_at(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            i.get("ip")
                .or_else(|| i.get("hostname"))
                .and_then(Value::as_str)
        })
        .collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" if lb.is_empty() && external_ips.is_empty() => "<pending>".to_string(),
        "LoadBalancer" => lb
            .iter()
            .chain(&external_ips)
            .copied()
            .collect::<Vec<_>>()
            .join(","),
        "ExternalName" => str_at(obj, &["spec", "externalName"])
            .unwrap_or_default()
            .to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr_at(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    vec![
        name(obj),
        s(svc_type),
        or_none(cluster_ip),
        s(external),
        or_none(Some(&ports.join(","))),
        created(obj, now),
        s(format_labels(obj_at(obj, &["spec", "selector"]))),
    ]
}

fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v == m);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, a)| *a)
    .collect::<Vec<_>>()
    .join(",")
}

fn pvc_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else {
        str_at(obj, &["status", "phase"]).unwrap_or_default()
    };
    let volume = str_at(obj, &["spec", "volumeName"]).unwrap_or_default();
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let cap = at(obj, &["status", "capacity", "storage"]).map(|q| {
            q.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| q.to_string())
        });
        (
            cap.unwrap_or_default(),
            access_modes(arr_at(obj, &["status", "accessModes"])),
        )
    };
    let class = str_at(
        obj,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .or_else(|| str_at(obj, &["spec", "storageClassName"]))
    .unwrap_or_default();
    let unset = |v: Option<&str>| s(v.filter(|v| !v.is_empty()).unwrap_or("<unset>"));
    vec![
        name(obj),
        s(phase),
        s(volume),
        s(capacity),
        s(modes),
        s(class),
        unset(str_at(obj, &["spec", "volumeAttributesClassName"])),
        created(obj, now),
        unset(str_at(obj, &["spec", "volumeMode"])),
    ]
}

fn event_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first = str_at(obj, &["firstTimestamp"])
        .or_else(|| str_at(obj, &["eventTime"]))
        .map(|t| age(Some(t), now))
        .unwrap_or_else(|| "<unknown>".to_string());
    let mut last = str_at(obj, &["lastTimestamp"])
        .map(|t| age(Some(t), now))
        .unwrap_or_else(|| first.clone());
    let mut count = i64_at(obj, &["count"]).unwrap_or(0);
    if let Some(series) = obj.get("series").filter(|v| v.is_object()) {
        last = age(series.get("lastObservedTime").and_then(Value::as_str), now);
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = str_at(obj, &["involvedObject", "kind"])
        .unwrap_or_default()
        .to_ascii_lowercase();
    let target = match str_at(obj, &["involvedObject", "name"]).filter(|n| !n.is_empty()) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    };
    let first_non_empty = |a: Option<&str>, b: Option<&str>| {
        a.filter(|v| !v.is_empty())
            .or(b)
            .unwrap_or_default()
            .to_string()
    };
    let component = first_non_empty(
        str_at(obj, &["source", "component"]),
        str_at(obj, &["reportingComponent"]),
    );
    let instance = first_non_empty(
        str_at(obj, &["source", "host"]),
        str_at(obj, &["reportingInstance"]),
    );
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        s(last),
        s(str_at(obj, &["type"]).unwrap_or_default()),
        s(str_at(obj, &["reason"]).unwrap_or_default()),
        s(target),
        s(str_at(obj, &["involvedObject", "fieldPath"]).unwrap_or_default()),
        s(source),
        s(str_at(obj, &["message"]).unwrap_or_default().trim()),
        s(first),
        json!(count),
        name(obj),
    ]
}
