//! Conversions between protobuf well-known types and JSON / chrono.

use chrono::{DateTime, Utc};
use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_ts(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// A JSON object as a protobuf Struct (None for non-objects).
pub fn to_struct(value: &Value) -> Option<prost_types::Struct> {
    match value {
        Value::Object(map) => Some(prost_types::Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
        _ => None,
    }
}

fn to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Value::Object(_) => Kind::StructValue(to_struct(value).unwrap_or_default()),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A protobuf Struct as a JSON object. Whole numbers come back as integers
/// (a Struct only has doubles), so `replicas: 2` stays `2`.
pub fn from_struct(s: &prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), from_value(v)))
            .collect::<Map<String, Value>>(),
    )
}

fn from_value(v: &prost_types::Value) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => number(*n),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => from_struct(s),
    }
}

fn number(n: f64) -> Value {
    // 2^53: beyond it doubles no longer hold every integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// A string field of a Struct, by path (`["metadata", "annotations", "x"]`).
pub fn struct_str<'a>(s: &'a prost_types::Struct, path: &[&str]) -> Option<&'a str> {
    let (last, parents) = path.split_last()?;
    let mut cur = s;
    for p in parents {
        match &cur.fields.get(*p)?.kind {
            Some(Kind::StructValue(inner)) => cur = inner,
            _ => return None,
        }
    }
    match &cur.fields.get(*last)?.kind {
        Some(Kind::StringValue(v)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn structs_round_trip_with_integers() {
        let v = json!({"spec": {"replicas": 2, "ratio": 0.5, "list": [1, "a", null, true]}});
        let s = to_struct(&v).unwrap();
        assert_eq!(from_struct(&s), v);
        let with_annotation =
            to_struct(&json!({"metadata": {"annotations": {"a/b": "x"}}})).unwrap();
        assert_eq!(
            struct_str(&with_annotation, &["metadata", "annotations", "a/b"]),
            Some("x")
        );
        assert_eq!(
            struct_str(&with_annotation, &["metadata", "labels", "a/b"]),
            None
        );
    }
}
