//! Who reads Secret data. Kubernetes' `view` role grants no access to
//! Secrets at all (reading them would let a viewer act as any service
//! account); Manifold's namespace viewers may still see that a Secret
//! exists, its type and how many keys it holds, but never its values:
//!
//! - `get` of a Secret needs editor (Write): a viewer gets 403 Forbidden,
//!   worded as kube-apiserver words an RBAC refusal;
//! - `list` and `watch` by a viewer return each Secret without `data`,
//!   `stringData` and the `kubectl.kubernetes.io/last-applied-configuration`
//!   annotation (client-side apply copies the whole object, values included,
//!   into it), so `kubectl get secrets` still prints its Table (the DATA
//!   count is computed before redaction);
//! - `kubectl auth can-i get secrets` answers no for viewers, `list` yes.
//!
//! Editors and admins read Secrets in full, as Kubernetes' `edit` and
//! `admin` roles do.

use manifold_auth::Permission;
use manifold_kube_model::kinds::ResourceKind;
use serde_json::Value;

use super::Ctx;

/// The annotation `kubectl apply` keeps the whole applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether this caller may read Secret data of this kind: true unless the
/// kind is Secret and the caller is below editor on the virtual cluster.
pub fn hides_data(ctx: &Ctx, kind: &ResourceKind) -> bool {
    is_secret(kind.kind) && !may_read_data(ctx)
}

pub fn is_secret(kind: &str) -> bool {
    kind == "Secret"
}

/// Editor (Write) or above on the virtual cluster.
pub fn may_read_data(ctx: &Ctx) -> bool {
    ctx.principal
        .grant(&ctx.vc.name.resource_name())
        .is_some_and(|g| g >= Permission::Write)
}

/// Removes what carries a Secret's values from a Secret (or from the
/// `PartialObjectMetadata` of one).
pub fn redact(object: &mut Value) {
    if let Some(o) = object.as_object_mut() {
        o.remove("data");
        o.remove("stringData");
    }
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
}

/// Redacts the objects a Table's rows carry (`includeObject=Object` or
/// `Metadata`); the cells (name, type, key count, age) stay.
pub fn redact_table(table: &mut Value) {
    if let Some(rows) = table.get_mut("rows").and_then(Value::as_array_mut) {
        for row in rows {
            if let Some(object) = row.get_mut("object") {
                redact(object);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_their_copies_go_metadata_stays() {
        let mut s = json!({
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": "db", "labels": {"app": "web"}, "annotations": {
                LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMg==\"}}",
                "team": "payments",
            }},
            "data": {"password": "aHVudGVyMg=="},
            "stringData": {"user": "admin"},
        });
        redact(&mut s);
        assert_eq!(
            s,
            json!({
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": "db", "labels": {"app": "web"},
                             "annotations": {"team": "payments"}},
            })
        );
        let mut table = json!({"rows": [
            {"cells": ["db", "Opaque", 1, "1m"], "object": {"metadata": {"annotations": {LAST_APPLIED: "x"}}, "data": {"k": "v"}}},
            {"cells": ["tls", "kubernetes.io/tls", 2, "1m"]},
        ]});
        redact_table(&mut table);
        assert_eq!(table["rows"][0]["cells"][2], 1);
        assert_eq!(
            table["rows"][0]["object"],
            json!({"metadata": {"annotations": {}}})
        );
        assert!(table["rows"][1].get("object").is_none());
    }
}
