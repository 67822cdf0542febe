//! The Swagger 2.0 document in the protobuf form kubectl ≤ 1.27 asks for
//! (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`,
//! the `openapi.v2.Document` message of google/gnostic). Those clients read
//! only the definitions (schemas and their `x-kubernetes-*` extensions) to
//! look up kinds and merge keys, so only that part of the message is encoded;
//! paths are left empty. Field numbers follow the published message.

use prost::Message;
use serde_json::{Map, Value};

/// Media type clients put in `Accept` for the protobuf OpenAPI v2 document.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The `Content-Type` of the answer: the same type with `.` for `@`, since
/// Go's media-type parser rejects `@` in a response header.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

#[derive(Clone, PartialEq, Message)]
struct Document {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "2")]
    info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
struct Info {
    #[prost(string, tag = "1")]
    title: String,
    #[prost(string, tag = "2")]
    version: String,
}

#[derive(Clone, PartialEq, Message)]
struct Paths {}

#[derive(Clone, PartialEq, Message)]
struct Definitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSchema {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Schema>,
}

/// A JSON value as YAML text (JSON is YAML); the clients parse `yaml`.
#[derive(Clone, PartialEq, Message)]
struct AnyValue {
    #[prost(string, tag = "2")]
    yaml: String,
}

#[derive(Clone, PartialEq, Message)]
struct NamedAny {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct Schema {
    #[prost(string, tag = "1")]
    reference: String,
    #[prost(string, tag = "2")]
    format: String,
    #[prost(string, tag = "3")]
    title: String,
    #[prost(string, tag = "4")]
    description: String,
    #[prost(message, optional, tag = "5")]
    default: Option<AnyValue>,
    #[prost(string, repeated, tag = "19")]
    required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    enumeration: Vec<AnyValue>,
    #[prost(message, optional, tag = "21")]
    additional_properties: Option<AdditionalProperties>,
    #[prost(message, optional, tag = "22")]
    r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    read_only: bool,
    #[prost(message, repeated, tag = "31")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct AdditionalProperties {
    #[prost(oneof = "AdditionalPropertiesKind", tags = "1, 2")]
    kind: Option<AdditionalPropertiesKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum AdditionalPropertiesKind {
    #[prost(message, boxed, tag = "1")]
    Schema(Box<Schema>),
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

#[derive(Clone, PartialEq, Message)]
struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Properties {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

fn any(v: &Value) -> AnyValue {
    AnyValue {
        yaml: v.to_string(),
    }
}

fn text(o: &Map<String, Value>, key: &str) -> String {
    o.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn schema(v: &Value) -> Schema {
    let Some(o) = v.as_object() else {
        return Schema::default();
    };
    let named = |m: &Map<String, Value>| -> Vec<NamedSchema> {
        m.iter()
            .map(|(name, s)| NamedSchema {
                name: name.clone(),
                value: Some(schema(s)),
            })
            .collect()
    };
    Schema {
        reference: text(o, "$ref"),
        format: text(o, "format"),
        title: text(o, "title"),
        description: text(o, "description"),
        default: o.get("default").map(any),
        required: o
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        enumeration: o
            .get("enum")
            .and_then(Value::as_array)
            .map(|e| e.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties: o.get("additionalProperties").map(|a| AdditionalProperties {
            kind: Some(match a {
                Value::Bool(b) => AdditionalPropertiesKind::Boolean(*b),
                other => AdditionalPropertiesKind::Schema(Box::new(schema(other))),
            }),
        }),
        r#type: o.get("type").map(|t| TypeItem {
            value: match t {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
                other => other.as_str().map(str::to_owned).into_iter().collect(),
            },
        }),
        items: o.get("items").map(|i| ItemsItem {
            schema: match i {
                Value::Array(a) => a.iter().map(schema).collect(),
                other => vec![schema(other)],
            },
        }),
        all_of: o
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(schema).collect())
            .unwrap_or_default(),
        properties: o
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| Properties {
                additional_properties: named(p),
            }),
        read_only: o.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
        vendor_extension: o
            .iter()
            .filter(|(k, _)| k.starts_with("x-"))
            .map(|(k, v)| NamedAny {
                name: k.clone(),
                value: Some(any(v)),
            })
            .collect(),
    }
}

/// Encodes the definitions of a Swagger 2.0 JSON document as `openapi.v2.Document`.
pub(crate) fn encode(swagger: &Value) -> Vec<u8> {
    let info = swagger.get("info").and_then(Value::as_object);
    let doc = Document {
        swagger: swagger
            .get("swagger")
            .and_then(Value::as_str)
            .unwrap_or("2.0")
            .to_owned(),
        info: Some(Info {
            title: info.map(|i| text(i, "title")).unwrap_or_default(),
            version: info.map(|i| text(i, "version")).unwrap_or_default(),
        }),
        paths: Some(Paths {}),
        definitions: Some(Definitions {
            additional_properties: swagger
                .get("definitions")
                .and_then(Value::as_object)
                .map(|d| {
                    d.iter()
                        .map(|(name, s)| NamedSchema {
                            name: name.clone(),
                            value: Some(schema(s)),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }),
    };
    doc.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_and_extensions_round_trip() {
        let swagger = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "unversioned"},
            "definitions": {
                "io.k8s.api.core.v1.ConfigMap": {
                    "type": "object",
                    "properties": {"data": {"type": "object", "additionalProperties": {"type": "string"}}},
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "ConfigMap", "version": "v1"}]
                }
            }
        });
        let doc = Document::decode(encode(&swagger).as_slice()).unwrap();
        let defs = doc.definitions.unwrap().additional_properties;
        assert_eq!(defs[0].name, "io.k8s.api.core.v1.ConfigMap");
        let s = defs[0].value.as_ref().unwrap();
        assert_eq!(s.r#type.as_ref().unwrap().value, ["object"]);
        assert_eq!(
            s.vendor_extension[0].name,
            "x-kubernetes-group-version-kind"
        );
        let yaml = &s.vendor_extension[0].value.as_ref().unwrap().yaml;
        assert!(yaml.contains("\"kind\":\"ConfigMap\""), "{yaml}");
        let data = &s.properties.as_ref().unwrap().additional_properties[0];
        assert!(matches!(
            data.value.as_ref().unwrap().additional_properties.as_ref(),
            Some(AdditionalProperties {
                kind: Some(AdditionalPropertiesKind::Schema(_))
            })
        ));
    }
}
