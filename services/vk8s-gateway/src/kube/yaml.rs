//! YAML request bodies decoded under an expansion budget.
//!
//! YAML aliases let a small document name one node thousands of times; the
//! decoder replays the anchored events for every alias, so a ~100 KB body can
//! expand to gigabytes (the "billion laughs" shape). The value is built here
//! by a visitor that charges every node it receives (aliases included, since
//! they arrive replayed) against a budget proportional to the body, and stops
//! at the first node over it: memory and time stay linear in the body size.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// What one node costs beyond its scalar text, in budget bytes.
pub const NODE_COST: usize = 4;
/// Budget every body gets regardless of its size.
pub const BASE_BUDGET: usize = 64 * 1024;
/// Budget per byte of body. An alias-free document costs at most ~2.5
/// budget bytes per body byte (`1,` is one node of cost 5), so only
/// aliasing can go over.
pub const BUDGET_PER_BODY_BYTE: usize = 4;

/// The budget for a body of `len` bytes.
pub fn budget_for(len: usize) -> usize {
    BASE_BUDGET.saturating_add(len.saturating_mul(BUDGET_PER_BODY_BYTE))
}

/// Why a YAML body was not decoded.
#[derive(Debug)]
pub enum YamlError {
    /// The expanded document would exceed `limit` budget bytes.
    TooLarge { limit: usize },
    /// Not YAML, or not representable as JSON.
    Syntax(String),
}

/// Decodes one YAML document into a JSON value, refusing documents that
/// expand beyond `budget` (nodes × [`NODE_COST`] + scalar bytes).
pub fn decode(body: &[u8], budget: usize) -> Result<Value, YamlError> {
    let mut remaining = budget;
    let de = serde_yaml_ng::Deserializer::from_slice(body);
    let result = Bounded {
        remaining: &mut remaining,
    }
    .deserialize(de);
    match result {
        Ok(v) => Ok(v),
        Err(e) if e.to_string().contains(OVER_BUDGET) => Err(YamlError::TooLarge { limit: budget }),
        Err(e) => Err(YamlError::Syntax(e.to_string())),
    }
}

const OVER_BUDGET: &str = "manifold: YAML expansion budget exceeded";

struct Bounded<'a> {
    remaining: &'a mut usize,
}

impl Bounded<'_> {
    fn charge<E: de::Error>(&mut self, cost: usize) -> Result<(), E> {
        match self.remaining.checked_sub(cost) {
            Some(left) => {
                *self.remaining = left;
                Ok(())
            }
            None => Err(E::custom(OVER_BUDGET)),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON-representable YAML value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<Value, E> {
        self.charge(NODE_COST)?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Value, E> {
        self.charge(NODE_COST)?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<Value, E> {
        self.charge(NODE_COST)?;
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Value, E> {
        self.charge(NODE_COST)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Value, E> {
        self.charge(NODE_COST.saturating_add(v.len()))?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(mut self, v: String) -> Result<Value, E> {
        self.charge(NODE_COST.saturating_add(v.len()))?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<Value, E> {
        self.charge(NODE_COST)?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.charge(NODE_COST)?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Bounded {
            remaining: &mut *self.remaining,
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.charge(NODE_COST)?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.charge(NODE_COST.saturating_add(key.len()))?;
            let v = map.next_value_seed(Bounded {
                remaining: &mut *self.remaining,
            })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One anchored list of `width` items referenced `refs` times.
    pub(crate) fn laughs(width: usize, refs: usize) -> String {
        let mut s = String::from("a: &a [");
        s.push_str(&vec!["x"; width].join(","));
        s.push_str("]\nb: [");
        s.push_str(&vec!["*a"; refs].join(","));
        s.push_str("]\n");
        s
    }

    #[test]
    fn ordinary_documents_decode_as_before() {
        let doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  a: '1'\n  b: &v two\n  c: *v\nn: 3\nf: 1.5\nt: true\nz: ~\n";
        let ours = decode(doc, budget_for(doc.len())).unwrap();
        let theirs: Value = serde_yaml_ng::from_slice(doc).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn alias_bomb_is_refused_within_the_budget() {
        // ~100 KB: 5,000 items referenced 20,000 times = 100M nodes expanded.
        let bomb = laughs(5_000, 20_000);
        assert!(bomb.len() < 120_000);
        let limit = budget_for(bomb.len());
        match decode(bomb.as_bytes(), limit) {
            Err(YamlError::TooLarge { limit: l }) => assert_eq!(l, limit),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn a_large_alias_free_document_fits() {
        // The densest plain YAML: one-character items.
        let doc = format!("[{}]", vec!["1"; 200_000].join(","));
        let v = decode(doc.as_bytes(), budget_for(doc.len())).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 200_000);
    }

    #[test]
    fn syntax_errors_are_syntax_errors() {
        assert!(matches!(
            decode(b"a: [", 1 << 20),
            Err(YamlError::Syntax(_))
        ));
    }
}
