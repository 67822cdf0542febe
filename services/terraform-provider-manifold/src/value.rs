//! Terraform values as the provider handles them, and their two wire forms:
//! cty's msgpack encoding (what Terraform sends and expects in
//! `DynamicValue`) and JSON (stored state handed to `UpgradeResourceState`).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

/// A value of a schema type. Objects and maps are both `Map`: the schema says
/// which, and an object always carries every attribute (null when unset).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    /// Not known until apply (cty's unknown, refined or not).
    Unknown,
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

/// An object value: attribute name to value.
pub type Obj = BTreeMap<String, Value>;

/// The type of an attribute, as Terraform's type system (cty) names it.
#[derive(Clone, Debug)]
pub enum Type {
    String,
    Bool,
    Number,
    List(Box<Type>),
    Map(Box<Type>),
    Object(Vec<(&'static str, Type)>),
}

impl Type {
    pub fn list(t: Type) -> Type {
        Type::List(Box::new(t))
    }

    pub fn map(t: Type) -> Type {
        Type::Map(Box::new(t))
    }

    /// The JSON form `Schema.Attribute.type` carries, e.g. `["map","string"]`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Type::String => json!("string"),
            Type::Bool => json!("bool"),
            Type::Number => json!("number"),
            Type::List(t) => json!(["list", t.to_json()]),
            Type::Map(t) => json!(["map", t.to_json()]),
            Type::Object(attrs) => {
                let fields: serde_json::Map<String, serde_json::Value> = attrs
                    .iter()
                    .map(|(n, t)| ((*n).to_owned(), t.to_json()))
                    .collect();
                json!(["object", fields])
            }
        }
    }
}

/// cty's extension type for an unknown value (refined unknowns use 12; both
/// decode to `Unknown`).
const UNKNOWN_EXT: i8 = 0;

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// A string, or null when empty (the API's "unset").
    pub fn str_or_null(s: &str) -> Value {
        if s.is_empty() {
            Value::Null
        } else {
            Value::String(s.to_owned())
        }
    }

    pub fn string_map(m: &std::collections::HashMap<String, String>) -> Value {
        Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    /// A map of strings, or null when empty (the API's "unset", like
    /// `str_or_null`): an object imported without labels then matches a
    /// configuration that leaves them out. A configured `{}` stays `{}`
    /// because refresh keeps equivalent prior values.
    pub fn string_map_or_null(m: &std::collections::HashMap<String, String>) -> Value {
        if m.is_empty() {
            Value::Null
        } else {
            Value::string_map(m)
        }
    }

    /// A list of strings, or null when empty (see `string_map_or_null`).
    pub fn string_list_or_null(l: &[String]) -> Value {
        if l.is_empty() {
            Value::Null
        } else {
            Value::List(l.iter().map(Value::str).collect())
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// Known all the way down (no unknown inside).
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(l) => l.iter().all(Value::is_wholly_known),
            Value::Map(m) => m.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Null, empty string, empty list and empty map all mean "not set" to the
    /// API; treating them alike keeps refreshes from inventing diffs.
    pub fn is_empty_like(&self) -> bool {
        match self {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Map(m) => m.is_empty(),
            _ => false,
        }
    }

    // ------------------------------------------------------------ msgpack

    pub fn from_msgpack(bytes: &[u8]) -> Result<Value> {
        let mut rd = bytes;
        let v = rmpv::decode::read_value(&mut rd).context("decoding msgpack")?;
        from_rmpv(v)
    }

    pub fn to_msgpack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &to_rmpv(self)).expect("writing to a Vec");
        out
    }

    // --------------------------------------------------------------- JSON

    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or_default()),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

fn from_rmpv(v: rmpv::Value) -> Result<Value> {
    Ok(match v {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => Value::Number(
            i.as_i64()
                .map(|x| x as f64)
                .or_else(|| i.as_u64().map(|x| x as f64))
                .unwrap_or_default(),
        ),
        rmpv::Value::F32(f) => Value::Number(f64::from(f)),
        rmpv::Value::F64(f) => Value::Number(f),
        // cty writes numbers too large for int64/float64 as decimal strings;
        // the schema decides what a string means, so keep it as text.
        rmpv::Value::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => bail!("string is not UTF-8"),
        },
        rmpv::Value::Binary(b) => Value::String(String::from_utf8(b).context("bytes")?),
        rmpv::Value::Array(a) => Value::List(a.into_iter().map(from_rmpv).collect::<Result<_>>()?),
        rmpv::Value::Map(m) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let key = match k {
                    rmpv::Value::String(s) => s.into_str().context("map key")?,
                    other => bail!("map key {other} is not a string"),
                };
                out.insert(key, from_rmpv(v)?);
            }
            Value::Map(out)
        }
        rmpv::Value::Ext(_, _) => Value::Unknown,
    })
}

fn to_rmpv(v: &Value) -> rmpv::Value {
    match v {
        Value::Null => rmpv::Value::Nil,
        Value::Unknown => rmpv::Value::Ext(UNKNOWN_EXT, vec![0]),
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                rmpv::Value::Integer((*n as i64).into())
            } else {
                rmpv::Value::F64(*n)
            }
        }
        Value::String(s) => rmpv::Value::String(s.as_str().into()),
        Value::List(l) => rmpv::Value::Array(l.iter().map(to_rmpv).collect()),
        Value::Map(m) => rmpv::Value::Map(
            m.iter()
                .map(|(k, v)| (rmpv::Value::String(k.as_str().into()), to_rmpv(v)))
                .collect(),
        ),
    }
}

/// Typed access to an object's attributes.
pub trait ObjExt {
    fn val(&self, name: &str) -> &Value;
    /// The string, or "" when null.
    fn string(&self, name: &str) -> String;
    fn opt_str(&self, name: &str) -> Option<&str>;
    fn int(&self, name: &str) -> Option<i64>;
    fn boolean(&self, name: &str) -> Option<bool>;
    fn string_map(&self, name: &str) -> std::collections::HashMap<String, String>;
    fn string_list(&self, name: &str) -> Vec<String>;
}

static NULL: Value = Value::Null;

impl ObjExt for Obj {
    fn val(&self, name: &str) -> &Value {
        self.get(name).unwrap_or(&NULL)
    }

    fn string(&self, name: &str) -> String {
        self.opt_str(name).unwrap_or_default().to_owned()
    }

    fn opt_str(&self, name: &str) -> Option<&str> {
        self.val(name).as_str()
    }

    fn int(&self, name: &str) -> Option<i64> {
        match self.val(name) {
            Value::Number(n) => Some(*n as i64),
            _ => None,
        }
    }

    fn boolean(&self, name: &str) -> Option<bool> {
        match self.val(name) {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn string_map(&self, name: &str) -> std::collections::HashMap<String, String> {
        match self.val(name) {
            Value::Map(m) => m
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect(),
            _ => Default::default(),
        }
    }

    fn string_list(&self, name: &str) -> Vec<String> {
        match self.val(name) {
            Value::List(l) => l
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_round_trip_keeps_unknowns_and_nulls() {
        let mut o = Obj::new();
        o.insert("a".into(), Value::str("x"));
        o.insert("b".into(), Value::Null);
        o.insert("c".into(), Value::Unknown);
        o.insert("d".into(), Value::Number(42.0));
        o.insert("e".into(), Value::List(vec![Value::str("y")]));
        let v = Value::Map(o);
        assert_eq!(Value::from_msgpack(&v.to_msgpack()).unwrap(), v);
    }

    #[test]
    fn refined_unknowns_decode_as_unknown() {
        // fixext1 with type 12 (cty's refined unknown).
        assert_eq!(Value::from_msgpack(&[0xd4, 12, 0]).unwrap(), Value::Unknown);
    }

    #[test]
    fn types_serialise_like_cty() {
        let t = Type::list(Type::Object(vec![("name", Type::String)]));
        assert_eq!(
            t.to_json().to_string(),
            r#"["list",["object",{"name":"string"}]]"#
        );
    }
}
