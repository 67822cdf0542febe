//! The four Kubernetes patch types: JSON patch, merge patch, strategic merge patch, server-side apply.

mod apply;
mod fieldset;
pub mod schema;
mod strategic;

use serde_json::Value;

pub use apply::{
    ApplyError, Conflict, ManagedFieldsEntry, Operation, apply, managed_fields, record_update,
    record_update_subresource,
};
pub use fieldset::{FieldPath, FieldSet, PathElement, path_string};
pub use strategic::strategic_merge_patch;

/// A patch document that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed (HTTP 400 BadRequest).
    #[error("{0}")]
    Malformed(String),
    /// The patch is well formed but cannot be applied to this object (HTTP 422).
    #[error("{0}")]
    Unprocessable(String),
}

/// The patch type chosen by the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    /// Maps a Content-Type (parameters ignored) to a patch type; `None` → 415.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }

    /// Every accepted patch Content-Type, for the `Accept-Patch` header and 415 messages.
    pub const SUPPORTED: &'static [&'static str] = &[
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];
}

/// RFC 6902 JSON patch.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| PatchError::Unprocessable(e.to_string()))?;
    Ok(doc)
}

/// RFC 7396 JSON merge patch; the patch must be an object.
pub fn merge_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "merge patch must be a JSON object".into(),
        ));
    }
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    Ok(doc)
}

/// Applies a JSON, merge or strategic merge patch to an object of `kind`. Server-side
/// apply needs a field manager and goes through [`apply`] instead.
pub fn apply_patch(
    patch_type: PatchType,
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json_patch(original, patch),
        PatchType::Merge => merge_patch(original, patch),
        PatchType::StrategicMerge => strategic_merge_patch(kind, original, patch),
        PatchType::Apply => Err(PatchError::Malformed(
            "server-side apply needs a field manager; use patch::apply".into(),
        )),
    }
}

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod strategic_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        for ct in PatchType::SUPPORTED {
            assert_eq!(
                PatchType::from_content_type(ct).unwrap().content_type(),
                *ct
            );
        }
    }

    #[test]
    fn rfc6902() {
        let doc = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let out = json_patch(&doc, &json!([
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "b", "image": "y"}},
            {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "a"},
        ])).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["name"],
            "b"
        );
        let failed = json_patch(
            &doc,
            &json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
        );
        assert!(matches!(failed, Err(PatchError::Unprocessable(_))));
        let missing = json_patch(&doc, &json!([{"op": "remove", "path": "/spec/nope"}]));
        assert!(matches!(missing, Err(PatchError::Unprocessable(_))));
        assert!(matches!(
            json_patch(&doc, &json!({"op": "add"})),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!([{"op": "frobnicate", "path": "/a"}])),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn rfc7396() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1, "list": [1, 2]}});
        let out = merge_patch(
            &doc,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"list": [3]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(out["spec"]["list"], json!([3]));
        assert_eq!(out["spec"]["replicas"], 1);
        assert!(merge_patch(&doc, &json!([1])).is_err());
        // The scale subresource patch kubectl sends.
        let out = apply_patch(
            PatchType::Merge,
            "Deployment",
            &doc,
            &json!({"spec": {"replicas": 4}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 4);
        assert!(apply_patch(PatchType::Apply, "Deployment", &doc, &json!({})).is_err());
    }
}
