//! Field selectors (`metadata.name=web,status.phase!=Running`) evaluated against JSON objects.

use std::fmt;

use serde_json::Value;

use super::SelectorError;

/// Field selectors only know equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

/// One `path op value` term; `field` is a dotted path into the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

impl FieldRequirement {
    fn matches(&self, object: &Value) -> bool {
        let actual = field_value(object, &self.field);
        let equal = actual == self.value;
        match self.op {
            FieldOp::Equals => equal,
            FieldOp::NotEquals => !equal,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOp::Equals => "=",
            FieldOp::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape(&self.value))
    }
}

/// A conjunction of field requirements; empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parses the `fieldSelector` query syntax: comma-separated `field=value`,
    /// `field==value` or `field!=value`; `\,` `\=` `\!` and `\\` escape in values.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_terms(input) {
            if term.trim().is_empty() {
                continue;
            }
            let (field, op, value) = split_term(&term).ok_or_else(|| {
                SelectorError(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                ))
            })?;
            let field = field.trim();
            if field.is_empty() {
                return Err(SelectorError(format!(
                    "invalid selector: '{input}'; field name missing in '{term}'"
                )));
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value: unescape(value)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether `object` satisfies every requirement. A missing field reads as `""`.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(object))
    }

    /// The value required by `field=value`, if the selector has one (used to narrow queries,
    /// e.g. `metadata.name`).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The string form of the value at a dotted path: strings as is, numbers and booleans
/// printed, missing or null as `""`, anything else as compact JSON.
pub(crate) fn field_value(object: &Value, path: &str) -> String {
    let found = path
        .split('.')
        .try_fold(object, |v, key| v.as_object()?.get(key));
    match found {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
    }
}

/// Splits on commas not preceded by a backslash escape.
fn split_terms(input: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut cur = String::new();
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => terms.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    terms.push(cur);
    terms
}

/// Finds the first operator (`!=`, `==`, `=`) left to right.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if rest.starts_with(op) {
                return Some((&term[..i], kind, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape(value: &str) -> Result<String, SelectorError> {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=' | '!')) => out.push(n),
                Some(n) => {
                    return Err(SelectorError(format!(
                        "invalid field selector value: unrecognized escape sequence '\\{n}'"
                    )));
                }
                None => {
                    return Err(SelectorError(
                        "invalid field selector value: trailing backslash".into(),
                    ));
                }
            }
        } else if c == ',' || c == '=' {
            return Err(SelectorError(format!(
                "invalid field selector value: unescaped '{c}' in '{value}'"
            )));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "shop"},
            "spec": {"nodeName": "node-a", "priority": 5, "hostNetwork": false},
            "status": {"phase": "Running"},
        })
    }

    #[test]
    fn metadata_fields() {
        let p = pod();
        assert!(
            FieldSelector::parse("metadata.name=web-1")
                .unwrap()
                .matches(&p)
        );
        assert!(
            FieldSelector::parse("metadata.name==web-1")
                .unwrap()
                .matches(&p)
        );
        assert!(
            !FieldSelector::parse("metadata.name=web-2")
                .unwrap()
                .matches(&p)
        );
        assert!(
            FieldSelector::parse("metadata.name!=web-2")
                .unwrap()
                .matches(&p)
        );
        assert!(
            FieldSelector::parse("metadata.namespace=shop,metadata.name=web-1")
                .unwrap()
                .matches(&p)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace=shop,metadata.name=x")
                .unwrap()
                .matches(&p)
        );
        assert!(FieldSelector::parse("").unwrap().is_everything());
        assert!(FieldSelector::parse("").unwrap().matches(&p));
    }

    #[test]
    fn arbitrary_paths() {
        let p = pod();
        assert!(
            FieldSelector::parse("spec.nodeName=node-a")
                .unwrap()
                .matches(&p)
        );
        assert!(
            FieldSelector::parse("status.phase!=Pending")
                .unwrap()
                .matches(&p)
        );
        assert!(FieldSelector::parse("spec.priority=5").unwrap().matches(&p));
        assert!(
            FieldSelector::parse("spec.hostNetwork=false")
                .unwrap()
                .matches(&p)
        );
        // Unscheduled pods match `spec.nodeName=`.
        let unscheduled = json!({"metadata": {"name": "x"}, "spec": {}});
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches(&unscheduled)
        );
        assert!(
            !FieldSelector::parse("spec.nodeName!=")
                .unwrap()
                .matches(&unscheduled)
        );
        assert!(FieldSelector::parse("spec.nodeName!=").unwrap().matches(&p));
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "u1"}});
        let sel = FieldSelector::parse("involvedObject.name=web-1,involvedObject.namespace=shop,involvedObject.kind=Pod,involvedObject.uid=u1").unwrap();
        assert!(sel.matches(&ev));
    }

    #[test]
    fn escapes_and_errors() {
        let obj = json!({"metadata": {"name": "a,b=c"}});
        let sel = FieldSelector::parse(r"metadata.name=a\,b\=c").unwrap();
        assert!(sel.matches(&obj));
        assert_eq!(sel.to_string(), r"metadata.name=a\,b\=c");
        assert_eq!(FieldSelector::parse(&sel.to_string()).unwrap(), sel);
        assert!(FieldSelector::parse("metadata.name").is_err());
        assert!(FieldSelector::parse("=x").is_err());
        assert!(FieldSelector::parse(r"metadata.name=a\q").is_err());
        assert_eq!(
            FieldSelector::parse("foo").unwrap_err().to_string(),
            "invalid selector: 'foo'; can't understand 'foo'"
        );
    }

    #[test]
    fn required_value() {
        let sel = FieldSelector::parse("metadata.name=web,status.phase!=Failed").unwrap();
        assert_eq!(sel.required_value("metadata.name"), Some("web"));
        assert_eq!(sel.required_value("status.phase"), None);
        assert_eq!(sel.requirements().len(), 2);
    }
}
