//! Checks on a PodSpec (in Pods and in workload templates) that users commonly hit.

use std::collections::HashSet;

use serde_json::Value;

use crate::field_error::FieldError;
use crate::names::is_dns1123_label;

/// Which `restartPolicy` values the owning kind allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartRule {
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets.
    AlwaysOnly,
    /// Jobs and CronJobs (a missing value defaults to Always and is refused).
    OnFailureOrNever,
    /// Pods.
    Any,
}

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

pub(crate) fn validate_pod_spec(spec: &Value, field: &str, rule: RestartRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let list = |k: &str| {
        spec.get(k)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };

    let mut volumes = HashSet::new();
    for (i, v) in list("volumes").iter().enumerate() {
        let f = format!("{field}.volumes[{i}].name");
        match v
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            None => errs.push(FieldError::required(f, "")),
            Some(name) => {
                for msg in is_dns1123_label(name) {
                    errs.push(FieldError::invalid(&f, &Value::from(name), &msg));
                }
                if !volumes.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(f, &Value::from(name)));
                }
            }
        }
    }

    let containers = list("containers");
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{field}.containers"), ""));
    }
    let mut names = HashSet::new();
    for (list_name, items) in [
        ("initContainers", list("initContainers")),
        ("containers", containers),
    ] {
        for (i, c) in items.iter().enumerate() {
            errs.extend(validate_container(
                c,
                &format!("{field}.{list_name}[{i}]"),
                &volumes,
                &mut names,
            ));
        }
    }

    let policy = spec.get("restartPolicy").and_then(Value::as_str);
    let f = format!("{field}.restartPolicy");
    match rule {
        RestartRule::AlwaysOnly => {
            if let Some(p) = policy.filter(|p| *p != "Always") {
                errs.push(FieldError::not_supported(f, &Value::from(p), &["Always"]));
            }
        }
        RestartRule::OnFailureOrNever => {
            let p = policy.unwrap_or("Always");
            if p != "OnFailure" && p != "Never" {
                errs.push(FieldError::not_supported(
                    f,
                    &Value::from(p),
                    &["OnFailure", "Never"],
                ));
            }
        }
        RestartRule::Any => {
            if let Some(p) = policy.filter(|p| !["Always", "OnFailure", "Never"].contains(p)) {
                errs.push(FieldError::not_supported(
                    f,
                    &Value::from(p),
                    &["Always", "OnFailure", "Never"],
                ));
            }
        }
    }
    errs
}

fn validate_container(
    c: &Value,
    field: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let text = |k: &str| c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    match text("name") {
        None => errs.push(FieldError::required(format!("{field}.name"), "")),
        Some(name) => {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(
                    format!("{field}.name"),
                    &Value::from(name),
                    &msg,
                ));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(
                    format!("{field}.name"),
                    &Value::from(name),
                ));
            }
        }
    }
    if text("image").is_none_or(|i| i.trim().is_empty()) {
        errs.push(FieldError::required(format!("{field}.image"), ""));
    }
    if let Some(p) = text("imagePullPolicy").filter(|p| !PULL_POLICIES.contains(p)) {
        errs.push(FieldError::not_supported(
            format!("{field}.imagePullPolicy"),
            &Value::from(p),
            PULL_POLICIES,
        ));
    }

    let mut port_names = HashSet::new();
    for (i, p) in c
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let pf = format!("{field}.ports[{i}]");
        match p.get("containerPort") {
            None => errs.push(FieldError::required(format!("{pf}.containerPort"), "")),
            Some(v) => errs.extend(port_number(v, &format!("{pf}.containerPort"))),
        }
        if let Some(v) = p.get("hostPort").filter(|v| v.as_i64() != Some(0)) {
            errs.extend(port_number(v, &format!("{pf}.hostPort")));
        }
        if let Some(proto) = p
            .get("protocol")
            .and_then(Value::as_str)
            .filter(|p| !PROTOCOLS.contains(p))
        {
            errs.push(FieldError::not_supported(
                format!("{pf}.protocol"),
                &Value::from(proto),
                PROTOCOLS,
            ));
        }
        if let Some(name) = p
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            for msg in iana_svc_name(name) {
                errs.push(FieldError::invalid(
                    format!("{pf}.name"),
                    &Value::from(name),
                    &msg,
                ));
            }
            if !port_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(
                    format!("{pf}.name"),
                    &Value::from(name),
                ));
            }
        }
    }

    for (i, e) in c
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if e.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            errs.push(FieldError::required(format!("{field}.env[{i}].name"), ""));
        }
    }

    let mut paths = HashSet::new();
    for (i, m) in c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mf = format!("{field}.volumeMounts[{i}]");
        match m
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            None => errs.push(FieldError::required(format!("{mf}.name"), "")),
            Some(n) if !volumes.contains(n) => {
                errs.push(FieldError::not_found(format!("{mf}.name"), &Value::from(n)))
            }
            Some(_) => {}
        }
        match m
            .get("mountPath")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        {
            None => errs.push(FieldError::required(format!("{mf}.mountPath"), "")),
            Some(p) if !paths.insert(p.to_string()) => {
                errs.push(FieldError::invalid(
                    format!("{mf}.mountPath"),
                    &Value::from(p),
                    "must be unique",
                ));
            }
            Some(_) => {}
        }
    }

    for section in ["limits", "requests"] {
        let Some(map) = c
            .pointer(&format!("/resources/{section}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (res, q) in map {
            let s = q
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| q.to_string());
            if !is_quantity(&s) {
                errs.push(FieldError::invalid(
                    format!("{field}.resources.{section}[{res}]"),
                    q,
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                ));
            }
        }
    }
    errs
}

/// 1..65535 with Kubernetes' message.
pub(crate) fn port_number(v: &Value, field: &str) -> Option<FieldError> {
    match v.as_i64() {
        Some(1..=65535) => None,
        _ => Some(FieldError::invalid(
            field,
            v,
            "must be between 1 and 65535, inclusive",
        )),
    }
}

/// IANA service names, used for named container ports and Service targetPorts.
pub(crate) fn iana_svc_name(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// `^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$`
pub(crate) fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    if number_len == 0 {
        return false;
    }
    let rest = &s[number_len..];
    let rest = rest.trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
    let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    rest.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn containers_need_name_and_image() {
        let spec = json!({"containers": [{"image": "x"}, {"name": "b"}, {"name": "b", "image": "y"}, {"name": "Bad_", "image": "z"}]});
        let errs = fields(&validate_pod_spec(
            &spec,
            "spec.template.spec",
            RestartRule::AlwaysOnly,
        ));
        assert_eq!(
            errs[0],
            "spec.template.spec.containers[0].name: Required value"
        );
        assert_eq!(
            errs[1],
            "spec.template.spec.containers[1].image: Required value"
        );
        assert_eq!(
            errs[2],
            r#"spec.template.spec.containers[2].name: Duplicate value: "b""#
        );
        assert!(errs[3].starts_with(r#"spec.template.spec.containers[3].name: Invalid value: "Bad_": a lowercase RFC 1123 label"#));
        assert_eq!(errs.len(), 4);
        let errs = fields(&validate_pod_spec(&json!({}), "spec", RestartRule::Any));
        assert_eq!(errs, ["spec.containers: Required value"]);
    }

    #[test]
    fn restart_policies() {
        let base = |p: Option<&str>| {
            let mut s = json!({"containers": [{"name": "a", "image": "x"}]});
            if let Some(p) = p {
                s["restartPolicy"] = json!(p);
            }
            s
        };
        assert!(validate_pod_spec(&base(None), "s", RestartRule::AlwaysOnly).is_empty());
        assert_eq!(
            fields(&validate_pod_spec(
                &base(Some("OnFailure")),
                "s",
                RestartRule::AlwaysOnly
            )),
            [r#"s.restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#]
        );
        assert_eq!(
            fields(&validate_pod_spec(
                &base(None),
                "s",
                RestartRule::OnFailureOrNever
            )),
            [
                r#"s.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#
            ]
        );
        assert!(
            validate_pod_spec(&base(Some("Never")), "s", RestartRule::OnFailureOrNever).is_empty()
        );
        assert_eq!(
            validate_pod_spec(&base(Some("Sometimes")), "s", RestartRule::Any).len(),
            1
        );
    }

    #[test]
    fn ports_mounts_and_resources() {
        let spec = json!({
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "data"}],
            "containers": [{
                "name": "a", "image": "x", "imagePullPolicy": "Sometimes",
                "ports": [{"containerPort": 0}, {"containerPort": 80, "protocol": "HTTP", "name": "http"}, {"containerPort": 81, "name": "http"}],
                "env": [{"value": "x"}],
                "volumeMounts": [{"name": "data", "mountPath": "/d"}, {"name": "nope", "mountPath": "/d"}],
                "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "lots"}},
            }],
        });
        let errs = fields(&validate_pod_spec(&spec, "spec", RestartRule::Any));
        assert_eq!(
            errs,
            [
                r#"spec.volumes[1].name: Duplicate value: "data""#,
                r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
                "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                r#"spec.containers[0].ports[1].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
                r#"spec.containers[0].ports[2].name: Duplicate value: "http""#,
                "spec.containers[0].env[0].name: Required value",
                r#"spec.containers[0].volumeMounts[1].name: Not found: "nope""#,
                r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/d": must be unique"#,
                r#"spec.containers[0].resources.requests[cpu]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#,
            ]
        );
    }

    #[test]
    fn quantities_and_service_names() {
        for ok in ["1", "500m", "1Gi", "1.5", "+2", "1e3", "128974848", "0.1"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "lots", "Gi", "1 Gi", "1Gix"] {
            assert!(!is_quantity(bad), "{bad}");
        }
        assert!(iana_svc_name("http").is_empty());
        assert!(iana_svc_name("metrics-9090").is_empty());
        assert_eq!(
            iana_svc_name("8080"),
            ["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            iana_svc_name("a--b"),
            ["must contain consecutive hyphens".replace("must", "must not")]
        );
        assert_eq!(iana_svc_name("this-name-is-too-long").len(), 1);
    }
}
