//! The two document formats: Swagger 2.0 (`/openapi/v2`) and OpenAPI 3.0
//! (`/openapi/v3/...`), and how a definition is written in each.

use serde_json::{Map, Value, json};

use crate::definitions::{CANONICAL_REF_PREFIX, INT_OR_STRING, QUANTITY};

/// A document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Swagger 2.0, definitions under `#/definitions/`.
    V2,
    /// OpenAPI 3.0, definitions under `#/components/schemas/`.
    V3,
}

impl Dialect {
    pub(crate) fn ref_prefix(self) -> &'static str {
        match self {
            Dialect::V2 => "#/definitions/",
            Dialect::V3 => "#/components/schemas/",
        }
    }

    /// A schema that refers to the named definition.
    pub(crate) fn schema_ref(self, name: &str) -> Value {
        json!({ "$ref": format!("{}{name}", self.ref_prefix()) })
    }

    /// The definition as this format writes it.
    pub(crate) fn definition(self, name: &str, canonical: &Value) -> Value {
        let description = canonical.get("description").cloned();
        let mut out = match (name, self) {
            // Kubernetes writes these two with a plain `type` in Swagger 2.0
            // and with `oneOf` in OpenAPI 3.0; kubectl explain shows them as
            // `<IntOrString>` and `<Quantity>` only when v3 has no `type`.
            (INT_OR_STRING, Dialect::V2) => json!({
                "type": "string",
                "format": "int-or-string",
                "x-kubernetes-int-or-string": true,
            }),
            (INT_OR_STRING, Dialect::V3) => json!({
                "format": "int-or-string",
                "oneOf": [{ "type": "integer" }, { "type": "string" }],
                "x-kubernetes-int-or-string": true,
            }),
            (QUANTITY, Dialect::V2) => json!({ "type": "string" }),
            (QUANTITY, Dialect::V3) => json!({
                "oneOf": [{ "type": "string" }, { "type": "number" }],
            }),
            _ => {
                let mut out = canonical.clone();
                self.rewrite(&mut out);
                return out;
            }
        };
        if let (Some(description), Value::Object(out)) = (description, &mut out) {
            out.insert("description".into(), description);
        }
        out
    }

    /// Points `$ref`s at this format's definitions. In OpenAPI 3.0 a `$ref`
    /// makes its siblings (`description`, extensions) ignorable, so like
    /// Kubernetes it is wrapped in a single-element `allOf` whenever it has any.
    fn rewrite(self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get_mut("$ref")
                    && let Some(name) = reference.strip_prefix(CANONICAL_REF_PREFIX)
                {
                    *reference = format!("{}{name}", self.ref_prefix());
                }
                if self == Dialect::V3 && map.len() > 1 && map.contains_key("$ref") {
                    wrap_ref_in_all_of(map);
                }
                map.values_mut().for_each(|v| self.rewrite(v));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.rewrite(v)),
            _ => {}
        }
    }
}

fn wrap_ref_in_all_of(map: &mut Map<String, Value>) {
    if let Some(reference) = map.remove("$ref") {
        map.insert("allOf".into(), json!([{ "$ref": reference }]));
    }
}
