//! Field-level errors in the shape of Kubernetes `field.Error`, mapping 1:1 to `metav1.StatusCause`.

use std::fmt;

use serde_json::{Value, json};

/// The `type` of a `metav1.StatusCause` (Kubernetes `CauseType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CauseType {
    FieldValueNotFound,
    FieldValueRequired,
    FieldValueDuplicate,
    FieldValueInvalid,
    FieldValueNotSupported,
    FieldValueForbidden,
    FieldValueTooLong,
    FieldValueTooMany,
    FieldValueTypeInvalid,
    FieldManagerConflict,
    InternalError,
}

impl CauseType {
    /// The wire string used in `details.causes[].type`.
    pub fn as_str(self) -> &'static str {
        match self {
            CauseType::FieldValueNotFound => "FieldValueNotFound",
            CauseType::FieldValueRequired => "FieldValueRequired",
            CauseType::FieldValueDuplicate => "FieldValueDuplicate",
            CauseType::FieldValueInvalid => "FieldValueInvalid",
            CauseType::FieldValueNotSupported => "FieldValueNotSupported",
            CauseType::FieldValueForbidden => "FieldValueForbidden",
            CauseType::FieldValueTooLong => "FieldValueTooLong",
            CauseType::FieldValueTooMany => "FieldValueTooMany",
            CauseType::FieldValueTypeInvalid => "FieldValueTypeInvalid",
            CauseType::FieldManagerConflict => "FieldManagerConflict",
            CauseType::InternalError => "InternalError",
        }
    }

    /// The human label Kubernetes puts at the start of the message ("Invalid value", ...).
    pub fn label(self) -> &'static str {
        match self {
            CauseType::FieldValueNotFound => "Not found",
            CauseType::FieldValueRequired => "Required value",
            CauseType::FieldValueDuplicate => "Duplicate value",
            CauseType::FieldValueInvalid => "Invalid value",
            CauseType::FieldValueNotSupported => "Unsupported value",
            CauseType::FieldValueForbidden => "Forbidden",
            CauseType::FieldValueTooLong => "Too long",
            CauseType::FieldValueTooMany => "Too many",
            CauseType::FieldValueTypeInvalid => "Invalid value",
            CauseType::FieldManagerConflict => "Conflict",
            CauseType::InternalError => "Internal error",
        }
    }
}

impl fmt::Display for CauseType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field. `message` is the body without the field path
/// (`Invalid value: "Foo": a lowercase RFC 1123 ...`); `Display` prefixes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: CauseType,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: CauseType, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason,
            message: message.into(),
        }
    }

    /// `field: Required value[: detail]`.
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        Self::new(
            field,
            CauseType::FieldValueRequired,
            with_detail(CauseType::FieldValueRequired.label(), detail),
        )
    }

    /// `field: Invalid value: <value>: detail`.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self::invalid_rendered(field, &render_value(value), detail)
    }

    /// Like [`FieldError::invalid`] with a value already rendered (e.g. Go map syntax).
    pub fn invalid_rendered(field: impl Into<String>, rendered: &str, detail: &str) -> Self {
        let body = format!("{}: {rendered}", CauseType::FieldValueInvalid.label());
        Self::new(
            field,
            CauseType::FieldValueInvalid,
            with_detail(&body, detail),
        )
    }

    /// `field: Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let mut body = format!(
            "{}: {}",
            CauseType::FieldValueNotSupported.label(),
            render_value(value)
        );
        if !supported.is_empty() {
            let quoted: Vec<String> = supported
                .iter()
                .map(|s| render_value(&Value::from(*s)))
                .collect();
            body.push_str(&format!(": supported values: {}", quoted.join(", ")));
        }
        Self::new(field, CauseType::FieldValueNotSupported, body)
    }

    /// `field: Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        let body = format!(
            "{}: {}",
            CauseType::FieldValueDuplicate.label(),
            render_value(value)
        );
        Self::new(field, CauseType::FieldValueDuplicate, body)
    }

    /// `field: Not found: <value>`.
    pub fn not_found(field: impl Into<String>, value: &Value) -> Self {
        let body = format!(
            "{}: {}",
            CauseType::FieldValueNotFound.label(),
            render_value(value)
        );
        Self::new(field, CauseType::FieldValueNotFound, body)
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self::new(
            field,
            CauseType::FieldValueForbidden,
            with_detail(CauseType::FieldValueForbidden.label(), detail),
        )
    }

    /// `field: Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        let body = format!(
            "{}: may not be more than {max_bytes} bytes",
            CauseType::FieldValueTooLong.label()
        );
        Self::new(field, CauseType::FieldValueTooLong, body)
    }

    /// `field: Invalid value: <value>: <type error>` for values of the wrong JSON type.
    pub fn type_invalid(field: impl Into<String>, detail: &str) -> Self {
        Self::new(
            field,
            CauseType::FieldValueTypeInvalid,
            with_detail(CauseType::FieldValueTypeInvalid.label(), detail),
        )
    }

    /// The `metav1.StatusCause` JSON: `{type, message, field}`.
    pub fn to_cause(&self) -> Value {
        json!({"type": self.reason.as_str(), "message": self.message, "field": self.field})
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Kubernetes' aggregate error text: one error as is, several as `[a, b]`.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// All causes as a JSON array for `details.causes`.
pub fn causes_json(errors: &[FieldError]) -> Value {
    Value::Array(errors.iter().map(FieldError::to_cause).collect())
}

fn with_detail(body: &str, detail: &str) -> String {
    if detail.is_empty() {
        body.to_string()
    } else {
        format!("{body}: {detail}")
    }
}

/// Renders a value the way Kubernetes prints it in field errors: strings quoted,
/// numbers and booleans bare, anything else as compact JSON.
pub fn render_value(value: &Value) -> String {
    match value {
        Value::String(_) | Value::Object(_) | Value::Array(_) => value.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
    }
}

/// Renders a string map as Go's `%#v` of `map[string]string` (sorted keys), the form
/// Kubernetes uses for the selector/labels mismatch error.
pub fn render_go_string_map(map: Option<&serde_json::Map<String, Value>>) -> String {
    let Some(map) = map else {
        return "map[string]string(nil)".to_string();
    };
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .map(|s| Value::from(s).to_string())
                .unwrap_or_else(|| v.to_string());
            format!("{}:{}", Value::from(k.as_str()), v)
        })
        .collect();
    format!("map[string]string{{{}}}", body.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_value_message_matches_kubernetes_style() {
        let e = FieldError::invalid("metadata.name", &json!("Foo"), "a lowercase thing");
        assert_eq!(
            e.to_string(),
            r#"metadata.name: Invalid value: "Foo": a lowercase thing"#
        );
        assert_eq!(e.reason, CauseType::FieldValueInvalid);
        assert_eq!(e.to_cause()["type"], "FieldValueInvalid");
        assert_eq!(
            e.to_cause()["message"],
            r#"Invalid value: "Foo": a lowercase thing"#
        );
        assert_eq!(e.to_cause()["field"], "metadata.name");
    }

    #[test]
    fn other_constructors() {
        assert_eq!(
            FieldError::required("spec.selector", "").to_string(),
            "spec.selector: Required value"
        );
        assert_eq!(
            FieldError::not_supported("spec.type", &json!("Foo"), &["ClusterIP", "NodePort"])
                .to_string(),
            r#"spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "NodePort""#
        );
        assert_eq!(
            FieldError::duplicate("a[1].name", &json!("x")).to_string(),
            r#"a[1].name: Duplicate value: "x""#
        );
        assert_eq!(
            FieldError::invalid(
                "spec.replicas",
                &json!(-1),
                "must be greater than or equal to 0"
            )
            .message,
            "Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldError::too_long("metadata.annotations", 262144).message,
            "Too long: may not be more than 262144 bytes"
        );
        assert_eq!(
            FieldError::forbidden("metadata.namespace", "not allowed on this type").message,
            "Forbidden: not allowed on this type"
        );
    }

    #[test]
    fn aggregate_formats() {
        let a = FieldError::required("a", "");
        let b = FieldError::required("b", "");
        assert_eq!(
            aggregate_message(std::slice::from_ref(&a)),
            "a: Required value"
        );
        assert_eq!(
            aggregate_message(&[a, b]),
            "[a: Required value, b: Required value]"
        );
    }

    #[test]
    fn go_map_rendering() {
        let m = json!({"tier": "fe", "app": "web"});
        assert_eq!(
            render_go_string_map(m.as_object()),
            r#"map[string]string{"app":"web", "tier":"fe"}"#
        );
        assert_eq!(render_go_string_map(None), "map[string]string(nil)");
    }
}
