//! Validation of object names, label keys/values and annotations, with Kubernetes' messages.

use serde_json::{Map, Value};

use crate::field_error::FieldError;
use crate::kinds::ResourceKind;

/// Total bytes allowed for all annotation keys and values of one object.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";

/// Kubernetes' `RegexError`: message, examples, then the regex.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns_label(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let last = s.chars().last().unwrap_or(first);
    is_lower_alnum(first)
        && is_lower_alnum(last)
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let last = s.chars().last().unwrap_or(first);
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Errors for an RFC 1123 subdomain (most object names); empty when valid.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !value.split('.').all(matches_dns_label) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Errors for an RFC 1123 label (namespaces, container names).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns_label(value) {
        errs.push(regex_error(
            DNS1123_LABEL_MSG,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// Errors for an RFC 1035 label (Service names: must start with a letter).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    let starts_alpha = value.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !(starts_alpha && matches_dns_label(value)) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Errors for a qualified name (`[prefix/]name`): label keys, annotation keys, finalizers.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Errors for a label value (may be empty).
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Errors for a ConfigMap/Secret data key.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    if value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errs.push(regex_error(
            CONFIG_KEY_MSG,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if value == "." {
        errs.push("must not be '.'".to_string());
    } else if value == ".." {
        errs.push("must not be '..'".to_string());
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// The naming rule a kind's `metadata.name` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
}

/// Service names are DNS-1035 labels and Namespace names DNS-1123 labels; the rest are subdomains.
pub fn name_rule(kind: &str) -> NameRule {
    match kind {
        "Service" => NameRule::Dns1035Label,
        "Namespace" => NameRule::Dns1123Label,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Messages for a name of `kind`. With `prefix` (a `generateName`), a trailing `-` is allowed.
pub fn validate_name(kind: &str, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        masked = format!("{}a", &name[..name.len() - 1]);
        masked.as_str()
    } else {
        name
    };
    let mut errs = match name_rule(kind) {
        NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
        NameRule::Dns1123Label => is_dns1123_label(name),
        NameRule::Dns1035Label => is_dns1035_label(name),
    };
    // CronJob names become Job names plus an 11-character suffix.
    if kind == "CronJob" && !prefix && name.len() > 52 {
        errs.push(max_len_error(52));
    }
    errs
}

/// `metadata.labels` errors: keys must be qualified names, values label values.
pub fn validate_labels(labels: &Map<String, Value>, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid(field, &Value::from(k.as_str()), &msg));
        }
        match v.as_str() {
            Some(s) => {
                for msg in is_valid_label_value(s) {
                    errs.push(FieldError::invalid(field, v, &msg));
                }
            }
            None => errs.push(FieldError::invalid(
                field,
                v,
                "label values must be strings",
            )),
        }
    }
    errs
}

/// `metadata.annotations` errors: keys must be qualified names (case-insensitively),
/// and keys plus values must fit in 256 KiB.
pub fn validate_annotations(annotations: &Map<String, Value>, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations {
        for msg in is_qualified_name(&k.to_ascii_lowercase()) {
            errs.push(FieldError::invalid(field, &Value::from(k.as_str()), &msg));
        }
        total += k.len()
            + v.as_str()
                .map(str::len)
                .unwrap_or_else(|| v.to_string().len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Validates `metadata` of an object of `kind`: name or generateName, namespace scope,
/// labels, annotations and finalizers. `namespace` must already be defaulted from the URL.
pub fn validate_object_meta(kind: &ResourceKind, meta: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Map::new();
    let meta = meta.as_object().unwrap_or(&empty);
    let str_of = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default();

    let generate_name = str_of("generateName");
    if !generate_name.is_empty() {
        for msg in validate_name(kind.kind, generate_name, true) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                &Value::from(generate_name),
                &msg,
            ));
        }
    }
    let name = str_of("name");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in validate_name(kind.kind, name, false) {
            errs.push(FieldError::invalid(
                "metadata.name",
                &Value::from(name),
                &msg,
            ));
        }
    }

    let namespace = str_of("namespace");
    if kind.namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for msg in is_dns1123_label(namespace) {
                errs.push(FieldError::invalid(
                    "metadata.namespace",
                    &Value::from(namespace),
                    &msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }

    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        errs.extend(validate_labels(labels, "metadata.labels"));
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        errs.extend(validate_annotations(annotations, "metadata.annotations"));
    }
    if let Some(finalizers) = meta.get("finalizers").and_then(Value::as_array) {
        for (i, f) in finalizers.iter().enumerate() {
            let fin = f.as_str().unwrap_or_default();
            for msg in is_qualified_name(fin) {
                errs.push(FieldError::invalid(
                    format!("metadata.finalizers[{i}]"),
                    f,
                    &msg,
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_kind;
    use serde_json::json;

    #[test]
    fn subdomain() {
        assert!(is_dns1123_subdomain("nginx").is_empty());
        assert!(is_dns1123_subdomain("my.app-1").is_empty());
        assert!(is_dns1123_subdomain("0abc").is_empty());
        for bad in ["Foo", "-a", "a-", "a..b", "", "a_b", "a/b", "."] {
            assert_eq!(is_dns1123_subdomain(bad).len(), 1, "{bad}");
        }
        assert_eq!(
            is_dns1123_subdomain("Foo")[0],
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        let long = "a".repeat(254);
        assert_eq!(
            is_dns1123_subdomain(&long),
            vec!["must be no more than 253 characters".to_string()]
        );
    }

    #[test]
    fn labels_1123_and_1035() {
        assert!(is_dns1123_label("123-abc").is_empty());
        assert_eq!(is_dns1123_label("a.b").len(), 1);
        assert_eq!(
            is_dns1123_label(&"a".repeat(64))[0],
            "must be no more than 63 characters"
        );
        assert!(is_dns1035_label("my-svc").is_empty());
        assert_eq!(
            is_dns1035_label("1svc")[0],
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        );
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "A_b.c-D",
            "manifold.dev/site",
        ] {
            assert!(is_qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            is_qualified_name("/name"),
            vec!["prefix part must be non-empty".to_string()]
        );
        assert!(
            is_qualified_name("Example.com/x")[0]
                .starts_with("prefix part a lowercase RFC 1123 subdomain")
        );
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
        assert!(is_qualified_name("a/b/c")[0].ends_with(
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
        let empty = is_qualified_name("example.com/");
        assert_eq!(empty[0], "name part must be non-empty");
        assert_eq!(empty.len(), 2);
        assert_eq!(
            is_qualified_name(&"a".repeat(64))[0],
            "name part must be no more than 63 characters"
        );
        assert_eq!(
            is_qualified_name("-x")[0],
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
    }

    #[test]
    fn label_values_and_config_keys() {
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("v1.2_3").is_empty());
        assert_eq!(is_valid_label_value("-x").len(), 1);
        assert_eq!(is_valid_label_value(&"a".repeat(64)).len(), 1);
        assert!(is_config_map_key("app.properties").is_empty());
        assert!(is_config_map_key("KEY_NAME").is_empty());
        assert_eq!(is_config_map_key("a b").len(), 1);
        assert_eq!(
            is_config_map_key(".."),
            vec!["must not be '..'".to_string()]
        );
        assert_eq!(
            is_config_map_key("..a"),
            vec!["must not start with '..'".to_string()]
        );
    }

    #[test]
    fn names_per_kind() {
        assert_eq!(name_rule("Service"), NameRule::Dns1035Label);
        assert!(validate_name("Deployment", "web.v1", false).is_empty());
        assert_eq!(validate_name("Service", "web.v1", false).len(), 1);
        assert_eq!(validate_name("Service", "1web", false).len(), 1);
        assert!(validate_name("Deployment", "web-", true).is_empty());
        assert_eq!(validate_name("Deployment", "web-", false).len(), 1);
        assert_eq!(
            validate_name("CronJob", &"a".repeat(53), false),
            vec!["must be no more than 52 characters".to_string()]
        );
    }

    #[test]
    fn object_meta() {
        let deploy = by_kind("Deployment").unwrap();
        let errs = validate_object_meta(deploy, &json!({"name": "Foo", "namespace": "shop"}));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().starts_with(
            r#"metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of"#
        ));
        let errs = validate_object_meta(deploy, &json!({"namespace": "shop"}));
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        assert!(
            validate_object_meta(
                deploy,
                &json!({"generateName": "web-", "name": "web-x7k2p", "namespace": "shop"})
            )
            .is_empty()
        );
        let errs = validate_object_meta(deploy, &json!({"name": "web"}));
        assert_eq!(errs[0].to_string(), "metadata.namespace: Required value");

        let ns = by_kind("Namespace").unwrap();
        let errs = validate_object_meta(ns, &json!({"name": "shop", "namespace": "x"}));
        assert_eq!(
            errs[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );

        let errs = validate_object_meta(
            deploy,
            &json!({
                "name": "web", "namespace": "shop",
                "labels": {"app": "web", "bad key": "v", "k": "bad value"},
                "finalizers": ["example.com/x", "bad/f/x"],
            }),
        );
        let fields: Vec<String> = errs.iter().map(|e| e.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "metadata.labels",
                "metadata.labels",
                "metadata.finalizers[1]"
            ]
        );
        assert!(
            errs[0]
                .message
                .starts_with(r#"Invalid value: "bad key": name part must consist"#)
        );
        assert!(
            errs[1]
                .message
                .starts_with(r#"Invalid value: "bad value": a valid label must be"#)
        );
    }

    #[test]
    fn annotation_size() {
        let deploy = by_kind("Deployment").unwrap();
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let errs = validate_object_meta(
            deploy,
            &json!({"name": "w", "namespace": "s", "annotations": {"a": big}}),
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        let ok = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT - 1);
        assert!(
            validate_object_meta(
                deploy,
                &json!({"name": "w", "namespace": "s", "annotations": {"a": ok}})
            )
            .is_empty()
        );
        let errs = validate_annotations(
            json!({"Example.COM/Key": "v", "a//b": "v"})
                .as_object()
                .unwrap(),
            "metadata.annotations",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
    }
}
