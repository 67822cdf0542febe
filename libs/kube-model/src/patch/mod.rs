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
    /// The patch has too many operations, or its result would be larger than
    /// [`MAX_RESULT_BYTES`] (HTTP 413 RequestEntityTooLarge).
    #[error("{0}")]
    TooLarge(String),
}

/// At most this many operations in one JSON patch, as kube-apiserver allows.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// A patched object may serialize to at most this many bytes: the request
/// body limit, as kube-apiserver bounds a patch result by its request size
/// limit. Without it a JSON patch of `copy` operations doubles the object
/// per operation.
pub const MAX_RESULT_BYTES: usize = 3 * 1024 * 1024;

/// A writer that only counts, and fails once past a limit so measuring a
/// huge value stops early.
struct Counter {
    n: usize,
    limit: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.n = self.n.saturating_add(buf.len());
        if self.n > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The serialized size of `v`, or `None` when it exceeds `limit` (measured
/// in at most `limit` bytes of work).
fn size_within(v: &Value, limit: usize) -> Option<usize> {
    let mut c = Counter { n: 0, limit };
    serde_json::to_writer(&mut c, v).ok()?;
    Some(c.n)
}

fn result_too_large() -> PatchError {
    PatchError::TooLarge(format!(
        "Request entity too large: the patched object would exceed the limit of {MAX_RESULT_BYTES} bytes"
    ))
}

/// Refuses a result over [`MAX_RESULT_BYTES`].
fn bounded(v: Value) -> Result<Value, PatchError> {
    size_within(&v, MAX_RESULT_BYTES)
        .map(|_| v)
        .ok_or_else(result_too_large)
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

/// RFC 6902 JSON patch, with at most [`MAX_JSON_PATCH_OPERATIONS`]
/// operations and a result of at most [`MAX_RESULT_BYTES`].
///
/// Only `copy` can grow the document beyond the patch's own size, so the
/// bytes copied are summed as the operations run (the source value is
/// measured before it is copied) and the patch stops at the limit: a run of
/// doubling copies costs at most the limit in work and memory.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if let Some(ops) = patch
        .as_array()
        .filter(|a| a.len() > MAX_JSON_PATCH_OPERATIONS)
    {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.len()
        )));
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
    let mut doc = original.clone();
    let base = size_within(&doc, MAX_RESULT_BYTES).ok_or_else(result_too_large)?;
    let mut copied = 0usize;
    for op in &ops.0 {
        if let json_patch::PatchOperation::Copy(c) = op
            && let Some(source) = doc.pointer(c.from.as_str())
        {
            let budget = MAX_RESULT_BYTES.saturating_sub(base.saturating_add(copied));
            let n = size_within(source, budget).ok_or_else(result_too_large)?;
            copied = copied.saturating_add(n);
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op))
            .map_err(|e| PatchError::Unprocessable(e.to_string()))?;
    }
    bounded(doc)
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
    bounded(doc)
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
        PatchType::StrategicMerge => bounded(strategic_merge_patch(kind, original, patch)?),
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

#[cfg(test)]
mod limit_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn doubling_copies_stop_at_the_result_limit() {
        // Each copy doubles /a: 64 copies would be 2^64 times the seed.
        let mut ops = vec![json!({"op": "add", "path": "/a", "value": ["x".repeat(1000)]})];
        for _ in 0..64 {
            ops.push(json!({"op": "copy", "from": "/a", "path": "/a/-"}));
            ops.push(json!({"op": "copy", "from": "/a", "path": "/b"}));
            ops.push(json!({"op": "move", "from": "/b", "path": "/a/0"}));
        }
        let err = json_patch(&json!({}), &Value::Array(ops)).unwrap_err();
        assert!(
            matches!(&err, PatchError::TooLarge(m) if m.contains(&MAX_RESULT_BYTES.to_string())),
            "{err:?}"
        );
    }

    #[test]
    fn too_many_operations_are_refused_before_decoding() {
        let op = json!({"op": "test", "path": "/a", "value": 1});
        let ops = Value::Array(vec![op; MAX_JSON_PATCH_OPERATIONS + 1]);
        let err = json_patch(&json!({"a": 1}), &ops).unwrap_err();
        assert_eq!(
            err,
            PatchError::TooLarge(format!(
                "The allowed maximum operations in a JSON patch is 10000, got {}",
                MAX_JSON_PATCH_OPERATIONS + 1
            ))
        );
        // At the limit it applies.
        let ops = Value::Array(vec![
            json!({"op": "test", "path": "/a", "value": 1});
            10_000
        ]);
        assert_eq!(json_patch(&json!({"a": 1}), &ops).unwrap(), json!({"a": 1}));
    }

    #[test]
    fn small_copies_still_work() {
        let out = json_patch(
            &json!({"a": {"b": 1}}),
            &json!([{"op": "copy", "from": "/a", "path": "/c"}]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": 1}, "c": {"b": 1}}));
    }

    #[test]
    fn merge_and_strategic_results_are_bounded() {
        let big = "x".repeat(MAX_RESULT_BYTES / 2 + 10);
        let original = json!({"data": {"a": big}});
        let patch = json!({"data": {"b": big}});
        for t in [PatchType::Merge, PatchType::StrategicMerge] {
            let err = apply_patch(t, "ConfigMap", &original, &patch).unwrap_err();
            assert!(matches!(err, PatchError::TooLarge(_)), "{t:?}: {err:?}");
        }
        let ok = apply_patch(
            PatchType::Merge,
            "ConfigMap",
            &original,
            &json!({"data": {"b": "1"}}),
        );
        assert!(ok.is_ok());
    }
}
