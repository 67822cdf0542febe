//! Validation of incoming objects: envelope, metadata, typed decoding, unknown fields, semantic checks.

mod immutable;
mod pod;
mod semantic;
mod typed;

use serde_json::{Map, Value, json};

use crate::field_error::{FieldError, aggregate_message, causes_json};
use crate::kinds::ResourceKind;
use crate::names::validate_object_meta;

pub use immutable::{check_update, immutable_changes};
pub use semantic::{MAX_DATA_SIZE, check_kind};
pub use typed::{DecodeError, round_trip, unknown_fields};

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown fields fail the request.
    Strict,
    /// Unknown fields become `Warning` headers (the server default).
    #[default]
    Warn,
    /// Unknown fields are dropped silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query value; `None` (a 400) for anything else.
    pub fn parse(value: &str) -> Option<FieldValidation> {
        match value {
            "Strict" => Some(FieldValidation::Strict),
            "Warn" => Some(FieldValidation::Warn),
            "Ignore" => Some(FieldValidation::Ignore),
            _ => None,
        }
    }
}

/// The verb the object arrives with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// What the URL says about the object being written.
#[derive(Debug, Clone, Copy)]
pub struct ValidationRequest<'a> {
    pub kind: &'a ResourceKind,
    /// The URL namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<&'a str>,
    /// The URL name (PUT/PATCH); `None` on POST.
    pub name: Option<&'a str>,
    pub operation: Operation,
    pub field_validation: FieldValidation,
}

/// A valid object, with `apiVersion`, `kind` and `metadata.namespace` filled in from the URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub object: Value,
    /// `Warning` header texts (`unknown field "spec.foo"`).
    pub warnings: Vec<String>,
}

/// Why an object was refused; maps to a `metav1.Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The body cannot be decoded as the kind (HTTP 400 BadRequest).
    #[error("{message}")]
    BadRequest { message: String },
    /// The object breaks validation rules (HTTP 422 Invalid).
    #[error("{}", invalid_message(.qualified_kind, .name, .causes))]
    Invalid {
        group: String,
        kind: String,
        qualified_kind: String,
        name: String,
        causes: Vec<FieldError>,
    },
}

fn invalid_message(qualified_kind: &str, name: &str, causes: &[FieldError]) -> String {
    format!(
        "{qualified_kind} {} is invalid: {}",
        Value::from(name),
        aggregate_message(causes)
    )
}

impl ValidationError {
    pub fn code(&self) -> u16 {
        match self {
            ValidationError::BadRequest { .. } => 400,
            ValidationError::Invalid { .. } => 422,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::BadRequest { .. } => "BadRequest",
            ValidationError::Invalid { .. } => "Invalid",
        }
    }

    pub fn causes(&self) -> &[FieldError] {
        match self {
            ValidationError::BadRequest { .. } => &[],
            ValidationError::Invalid { causes, .. } => causes,
        }
    }

    /// The complete `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let ValidationError::Invalid {
            group,
            kind,
            name,
            causes,
            ..
        } = self
        {
            status["details"] =
                json!({"name": name, "group": group, "kind": kind, "causes": causes_json(causes)});
        }
        status
    }
}

fn bad_request(message: impl Into<String>) -> ValidationError {
    ValidationError::BadRequest {
        message: message.into(),
    }
}

/// Validates a request body for `req.kind` the way the API server does: envelope and
/// URL consistency (400), typed decoding and unknown fields per `fieldValidation` (400 or
/// warnings), then metadata and semantic rules (422).
pub fn validate_object(
    req: &ValidationRequest<'_>,
    body: &Value,
) -> Result<Validated, ValidationError> {
    let kind = req.kind;
    let Value::Object(_) = body else {
        return Err(bad_request("the body of the request must be a JSON object"));
    };
    let mut object = body.clone();
    let obj = object.as_object_mut().expect("checked above");

    let expected_av = kind.api_version();
    match obj.get("apiVersion") {
        None | Some(Value::Null) => {
            obj.insert("apiVersion".into(), expected_av.clone().into());
        }
        Some(Value::String(s)) if s.is_empty() => {
            obj.insert("apiVersion".into(), expected_av.clone().into());
        }
        Some(Value::String(s)) if *s == expected_av => {}
        Some(other) => {
            let shown = other
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| other.to_string());
            return Err(bad_request(format!(
                "the API version in the data ({shown}) does not match the expected API version ({expected_av})"
            )));
        }
    }
    match obj.get("kind") {
        None | Some(Value::Null) => {
            obj.insert("kind".into(), kind.kind.into());
        }
        Some(Value::String(s)) if s.is_empty() => {
            obj.insert("kind".into(), kind.kind.into());
        }
        Some(Value::String(s)) if s == kind.kind => {}
        Some(other) => {
            let shown = other
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| other.to_string());
            return Err(bad_request(format!(
                "the kind in the data ({shown}) does not match the expected kind ({})",
                kind.kind
            )));
        }
    }

    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return Err(cannot_handle(
            kind,
            "metadata: invalid type, expected an object",
        ));
    };
    let body_ns = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match (kind.namespaced, req.namespace) {
        (true, Some(url_ns)) if body_ns.is_empty() => {
            meta.insert("namespace".into(), url_ns.into());
        }
        (true, Some(url_ns)) if body_ns != url_ns => {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        // Cluster-scoped objects carry no namespace.
        (false, _) if !body_ns.is_empty() => {
            meta.remove("namespace");
        }
        _ => {}
    }
    let body_name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(url_name) = req.name {
        if body_name.is_empty() {
            meta.insert("name".into(), url_name.into());
        } else if body_name != url_name {
            return Err(bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
            )));
        }
    }
    if req.operation == Operation::Update {
        meta.remove("generateName");
    }

    let warnings = match round_trip(kind.kind, &object) {
        None => Vec::new(),
        Some(Err(e)) => return Err(cannot_handle(kind, &e.to_string())),
        Some(Ok(rt)) => {
            let unknown: Vec<String> = unknown_fields(&object, &rt)
                .into_iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            match req.field_validation {
                FieldValidation::Strict if !unknown.is_empty() => {
                    return Err(cannot_handle(
                        kind,
                        &format!("strict decoding error: {}", unknown.join(", ")),
                    ));
                }
                FieldValidation::Warn => unknown,
                _ => Vec::new(),
            }
        }
    };

    let mut causes = validate_object_meta(kind, object.get("metadata").unwrap_or(&Value::Null));
    causes.extend(check_kind(kind.kind, &object));
    if !causes.is_empty() {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        return Err(ValidationError::Invalid {
            group: kind.group.to_string(),
            kind: kind.kind.to_string(),
            qualified_kind: kind.qualified_kind(),
            name,
            causes,
        });
    }
    Ok(Validated { object, warnings })
}

fn cannot_handle(kind: &ResourceKind, detail: &str) -> ValidationError {
    bad_request(format!(
        "{} in version {} cannot be handled as a {}: {detail}",
        kind.kind,
        Value::from(kind.version),
        kind.kind
    ))
}

#[cfg(test)]
mod tests;
