//! Per-kind semantic checks the Kubernetes API server makes and users commonly hit.

use std::collections::HashSet;

use serde_json::Value;

use super::pod::{RestartRule, iana_svc_name, port_number, validate_pod_spec};
use crate::field_error::{FieldError, render_go_string_map};
use crate::json::{at, obj_at, str_at};
use crate::names::{is_config_map_key, is_dns1123_label, validate_labels};
use crate::selectors::LabelSelector;

/// Largest ConfigMap/Secret payload.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

/// Semantic errors for an object of `kind` (metadata is checked separately).
pub fn check_kind(kind: &str, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match kind {
        "Deployment" => deployment(obj, &mut errs),
        "StatefulSet" => {
            non_negative(obj, &["spec", "replicas"], &mut errs);
            workload_template(obj, "statefulset", true, &mut errs);
            one_of(
                obj,
                &["spec", "podManagementPolicy"],
                &["OrderedReady", "Parallel"],
                &mut errs,
            );
            one_of(
                obj,
                &["spec", "updateStrategy", "type"],
                &["OnDelete", "RollingUpdate"],
                &mut errs,
            );
        }
        "DaemonSet" => {
            workload_template(obj, "daemonset", true, &mut errs);
            one_of(
                obj,
                &["spec", "updateStrategy", "type"],
                &["OnDelete", "RollingUpdate"],
                &mut errs,
            );
        }
        "ReplicaSet" => {
            non_negative(obj, &["spec", "replicas"], &mut errs);
            workload_template(obj, "replicaset", true, &mut errs);
        }
        "Job" => job_spec(obj, &["spec"], &mut errs),
        "CronJob" => cronjob(obj, &mut errs),
        "Pod" => errs.extend(validate_pod_spec(
            at(obj, &["spec"]).unwrap_or(&Value::Null),
            "spec",
            RestartRule::Any,
        )),
        "Service" => service(obj, &mut errs),
        "ConfigMap" => config_map(obj, &mut errs),
        "Secret" => secret(obj, &mut errs),
        "PersistentVolumeClaim" => pvc(obj, &mut errs),
        _ => {}
    }
    errs
}

fn dotted(path: &[&str]) -> String {
    path.join(".")
}

fn non_negative(obj: &Value, path: &[&str], errs: &mut Vec<FieldError>) {
    if let Some(v) = at(obj, path).filter(|v| v.as_i64().is_some_and(|n| n < 0)) {
        errs.push(FieldError::invalid(
            dotted(path),
            v,
            "must be greater than or equal to 0",
        ));
    }
}

fn one_of(obj: &Value, path: &[&str], allowed: &[&str], errs: &mut Vec<FieldError>) {
    if let Some(v) = at(obj, path).filter(|v| !v.is_null())
        && !v.as_str().is_some_and(|s| allowed.contains(&s))
    {
        errs.push(FieldError::not_supported(dotted(path), v, allowed));
    }
}

/// Selector presence and validity, template labels matching it, and the pod template.
fn workload_template(obj: &Value, noun: &str, selector_required: bool, errs: &mut Vec<FieldError>) {
    let template_labels = obj_at(obj, &["spec", "template", "metadata", "labels"]);
    if let Some(labels) = template_labels {
        errs.extend(validate_labels(labels, "spec.template.metadata.labels"));
    }
    match at(obj, &["spec", "selector"]).filter(|v| !v.is_null()) {
        None if selector_required => errs.push(FieldError::required("spec.selector", "")),
        None => {}
        Some(sel) => match LabelSelector::from_label_selector(sel) {
            Err(e) => errs.push(FieldError::invalid("spec.selector", sel, &e.to_string())),
            Ok(s) if s.is_everything() => {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    sel,
                    &format!("empty selector is invalid for {noun}"),
                ));
            }
            Ok(s) if !s.matches(template_labels) => errs.push(FieldError::invalid_rendered(
                "spec.template.metadata.labels",
                &render_go_string_map(template_labels),
                "`selector` does not match template `labels`",
            )),
            Ok(_) => {}
        },
    }
    let spec = at(obj, &["spec", "template", "spec"]).unwrap_or(&Value::Null);
    errs.extend(validate_pod_spec(
        spec,
        "spec.template.spec",
        RestartRule::AlwaysOnly,
    ));
}

fn deployment(obj: &Value, errs: &mut Vec<FieldError>) {
    for f in ["replicas", "minReadySeconds", "revisionHistoryLimit"] {
        non_negative(obj, &["spec", f], errs);
    }
    if let Some(pd) = at(obj, &["spec", "progressDeadlineSeconds"]).filter(|v| !v.is_null()) {
        let min_ready = at(obj, &["spec", "minReadySeconds"])
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if pd.as_i64().is_some_and(|p| p <= min_ready) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                pd,
                "must be greater than minReadySeconds",
            ));
        }
    }
    one_of(
        obj,
        &["spec", "strategy", "type"],
        &["Recreate", "RollingUpdate"],
        errs,
    );
    if str_at(obj, &["spec", "strategy", "type"]) == Some("Recreate")
        && at(obj, &["spec", "strategy", "rollingUpdate"]).is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        ));
    }
    let zero = |k: &str| {
        at(obj, &["spec", "strategy", "rollingUpdate", k])
            .is_some_and(|v| v == 0 || v == "0%" || v == "0")
    };
    if zero("maxSurge") && zero("maxUnavailable") {
        errs.push(FieldError::invalid(
            "spec.strategy.rollingUpdate.maxUnavailable",
            &at(
                obj,
                &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
            )
            .cloned()
            .unwrap_or_default(),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    workload_template(obj, "deployment", true, errs);
}

/// A Job spec at `base` (`spec`, or `spec.jobTemplate.spec` in a CronJob).
fn job_spec(obj: &Value, base: &[&'static str], errs: &mut Vec<FieldError>) {
    let with = |f: &'static str| [base, &[f]].concat();
    for f in ["parallelism", "completions", "backoffLimit"] {
        non_negative(obj, &with(f), errs);
    }
    if let Some(v) =
        at(obj, &with("activeDeadlineSeconds")).filter(|v| v.as_i64().is_some_and(|n| n <= 0))
    {
        errs.push(FieldError::invalid(
            dotted(&with("activeDeadlineSeconds")),
            v,
            "must be greater than 0",
        ));
    }
    one_of(
        obj,
        &with("completionMode"),
        &["Indexed", "NonIndexed"],
        errs,
    );
    let prefix = dotted(base);
    let template_labels =
        at(obj, &[base, &["template", "metadata", "labels"]].concat()).and_then(Value::as_object);
    if let Some(labels) = template_labels {
        errs.extend(validate_labels(
            labels,
            &format!("{prefix}.template.metadata.labels"),
        ));
    }
    if let Some(sel) = at(obj, &with("selector")).filter(|v| !v.is_null()) {
        match LabelSelector::from_label_selector(sel) {
            Err(e) => errs.push(FieldError::invalid(
                format!("{prefix}.selector"),
                sel,
                &e.to_string(),
            )),
            Ok(s) if !s.is_everything() && !s.matches(template_labels) => {
                errs.push(FieldError::invalid_rendered(
                    format!("{prefix}.template.metadata.labels"),
                    &render_go_string_map(template_labels),
                    "`selector` does not match template `labels`",
                ))
            }
            Ok(_) => {}
        }
    }
    let spec = at(obj, &[base, &["template", "spec"]].concat()).unwrap_or(&Value::Null);
    errs.extend(validate_pod_spec(
        spec,
        &format!("{prefix}.template.spec"),
        RestartRule::OnFailureOrNever,
    ));
}

const CRON_DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

fn cron_schedule_error(schedule: &str) -> Option<String> {
    // An optional `TZ=`/`CRON_TZ=` prefix is refused by Kubernetes in favour of spec.timeZone.
    if schedule.starts_with("TZ=") || schedule.starts_with("CRON_TZ=") {
        return Some("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(d) = schedule.strip_prefix('@') {
        let ok = CRON_DESCRIPTORS.contains(&schedule)
            || d.strip_prefix("every ")
                .is_some_and(|dur| !dur.trim().is_empty());
        return (!ok).then(|| format!("unrecognized descriptor: {schedule}"));
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!(
            "expected exactly 5 fields, found {}: {schedule}",
            fields.len()
        ));
    }
    let bad = fields.iter().find(|f| {
        !f.chars()
            .all(|c| c.is_ascii_alphanumeric() || "*/,-?".contains(c))
    });
    bad.map(|f| format!("failed to parse field: {f}"))
}

fn cronjob(obj: &Value, errs: &mut Vec<FieldError>) {
    match at(obj, &["spec", "schedule"])
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        None => errs.push(FieldError::required("spec.schedule", "")),
        Some(s) => {
            if let Some(msg) = cron_schedule_error(s) {
                errs.push(FieldError::invalid("spec.schedule", &Value::from(s), &msg));
            }
        }
    }
    one_of(
        obj,
        &["spec", "concurrencyPolicy"],
        &["Allow", "Forbid", "Replace"],
        errs,
    );
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        non_negative(obj, &["spec", f], errs);
    }
    job_spec(obj, &["spec", "jobTemplate", "spec"], errs);
}

fn service(obj: &Value, errs: &mut Vec<FieldError>) {
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    one_of(obj, &["spec", "type"], TYPES, errs);
    one_of(
        obj,
        &["spec", "sessionAffinity"],
        &["ClientIP", "None"],
        errs,
    );
    let svc_type = str_at(obj, &["spec", "type"]).unwrap_or("ClusterIP");
    if svc_type == "ExternalName"
        && str_at(obj, &["spec", "externalName"]).is_none_or(str::is_empty)
    {
        errs.push(FieldError::required("spec.externalName", ""));
    }
    if let Some(sel) = obj_at(obj, &["spec", "selector"]) {
        errs.extend(validate_labels(sel, "spec.selector"));
    }
    let ports = at(obj, &["spec", "ports"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let headless = str_at(obj, &["spec", "clusterIP"]) == Some("None");
    if ports.is_empty() && svc_type != "ExternalName" && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    let mut seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        match p
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            None if ports.len() > 1 => errs.push(FieldError::required(format!("{f}.name"), "")),
            None => {}
            Some(n) => {
                for msg in is_dns1123_label(n) {
                    errs.push(FieldError::invalid(
                        format!("{f}.name"),
                        &Value::from(n),
                        &msg,
                    ));
                }
                if !names.insert(n.to_string()) {
                    errs.push(FieldError::duplicate(format!("{f}.name"), &Value::from(n)));
                }
            }
        }
        match p.get("port") {
            None => errs.push(FieldError::required(format!("{f}.port"), "")),
            Some(v) => errs.extend(port_number(v, &format!("{f}.port"))),
        }
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if !["SCTP", "TCP", "UDP"].contains(&protocol) {
            errs.push(FieldError::not_supported(
                format!("{f}.protocol"),
                &Value::from(protocol),
                &["SCTP", "TCP", "UDP"],
            ));
        }
        let key = serde_json::json!({"port": p.get("port"), "protocol": protocol});
        if !seen.insert(key.to_string()) {
            errs.push(FieldError::duplicate(f.clone(), &key));
        }
        match p.get("targetPort") {
            Some(Value::String(name)) => {
                for msg in iana_svc_name(name) {
                    errs.push(FieldError::invalid(
                        format!("{f}.targetPort"),
                        &Value::from(name.as_str()),
                        &msg,
                    ));
                }
            }
            Some(v @ Value::Number(_)) => errs.extend(port_number(v, &format!("{f}.targetPort"))),
            _ => {}
        }
        if p.get("nodePort")
            .is_some_and(|v| v.as_i64().is_some_and(|n| n != 0))
            && !["NodePort", "LoadBalancer"].contains(&svc_type)
        {
            errs.push(FieldError::forbidden(
                format!("{f}.nodePort"),
                &format!("may not be used when `type` is '{svc_type}'"),
            ));
        }
    }
}

fn data_keys(obj: &Value, section: &str, errs: &mut Vec<FieldError>) -> usize {
    let mut size = 0;
    for (k, v) in obj_at(obj, &[section]).into_iter().flatten() {
        for msg in is_config_map_key(k) {
            errs.push(FieldError::invalid(
                format!("{section}[{k}]"),
                &Value::from(k.as_str()),
                &msg,
            ));
        }
        let len = v.as_str().map(str::len).unwrap_or(0);
        // Secret and binaryData values are base64; count decoded bytes.
        size += k.len()
            + if section == "binaryData" || (section == "data" && is_secret(obj)) {
                len * 3 / 4
            } else {
                len
            };
    }
    size
}

fn is_secret(obj: &Value) -> bool {
    str_at(obj, &["kind"]) == Some("Secret")
}

fn config_map(obj: &Value, errs: &mut Vec<FieldError>) {
    let size = data_keys(obj, "data", errs) + data_keys(obj, "binaryData", errs);
    if let (Some(data), Some(binary)) = (obj_at(obj, &["data"]), obj_at(obj, &["binaryData"])) {
        for k in data.keys().filter(|k| binary.contains_key(*k)) {
            errs.push(FieldError::invalid(
                format!("data[{k}]"),
                &Value::from(k.as_str()),
                "duplicate of key present in binaryData",
            ));
        }
    }
    if size > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("data", MAX_DATA_SIZE));
    }
}

fn secret(obj: &Value, errs: &mut Vec<FieldError>) {
    let size = data_keys(obj, "data", errs) + data_keys(obj, "stringData", errs);
    if size > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("data", MAX_DATA_SIZE));
    }
    let has = |k: &str| {
        obj_at(obj, &["data"]).is_some_and(|d| d.contains_key(k))
            || obj_at(obj, &["stringData"]).is_some_and(|d| d.contains_key(k))
    };
    let required: &[&str] = match str_at(obj, &["type"]).unwrap_or("Opaque") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for k in required.iter().filter(|k| !has(k)) {
        errs.push(FieldError::required(format!("data[{k}]"), ""));
    }
}

/// The numeric part of a quantity (`10Gi` → 10).
fn quantity_number(s: &str) -> f64 {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || "+-.".contains(c)))
        .unwrap_or(s.len());
    s[..end].parse().unwrap_or(0.0)
}

fn pvc(obj: &Value, errs: &mut Vec<FieldError>) {
    const MODES: &[&str] = &[
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    let modes = at(obj, &["spec", "accessModes"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if modes.is_empty() {
        errs.push(FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        if !m.as_str().is_some_and(|s| MODES.contains(&s)) {
            errs.push(FieldError::not_supported("spec.accessModes", m, MODES));
        }
    }
    match at(obj, &["spec", "resources", "requests", "storage"]) {
        None => errs.push(FieldError::required("spec.resources[storage]", "")),
        Some(q) => {
            let s = q
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| q.to_string());
            if !super::pod::is_quantity(&s) {
                errs.push(FieldError::invalid(
                    "spec.resources.requests[storage]",
                    q,
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                ));
            } else if quantity_number(&s) <= 0.0 {
                errs.push(FieldError::invalid(
                    "spec.resources[storage]",
                    q,
                    "must be greater than zero",
                ));
            }
        }
    }
    one_of(obj, &["spec", "volumeMode"], &["Block", "Filesystem"], errs);
}
