//! Label selectors (`app=web,tier in (fe,be),!canary`) and `metav1.LabelSelector` conversion.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::SelectorError;
use crate::names::{is_qualified_name, is_valid_label_value};

/// A label requirement operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and deduplicated.
    pub values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, checking key, values and their count for the operator.
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        if let Some(msg) = is_qualified_name(key).into_iter().next() {
            return Err(SelectorError(format!("invalid label key \"{key}\": {msg}")));
        }
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError(
                    "for 'in', 'notin' operators, values set can't be empty".into(),
                ));
            }
            Operator::Equals | Operator::NotEquals if values.len() != 1 => {
                return Err(SelectorError(
                    "exact-match compatibility requires one single value".into(),
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError(
                    "values set must be empty for exists and does not exist".into(),
                ));
            }
            Operator::GreaterThan | Operator::LessThan
                if values.len() != 1 || values[0].parse::<i64>().is_err() =>
            {
                return Err(SelectorError(
                    "for 'Gt', 'Lt' operators, exactly one integer value is required".into(),
                ));
            }
            _ => {}
        }
        if !matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for v in &values {
                if let Some(msg) = is_valid_label_value(v).into_iter().next() {
                    return Err(SelectorError(format!(
                        "invalid label value: \"{v}\": {msg}"
                    )));
                }
            }
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        let actual = get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => actual.is_some_and(|a| self.values.contains(&a)),
            Operator::NotEquals | Operator::NotIn => {
                actual.is_none_or(|a| !self.values.contains(&a))
            }
            Operator::Exists => actual.is_some(),
            Operator::DoesNotExist => actual.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(a), Some(bound)) = (
                    actual.and_then(|a| a.parse::<i64>().ok()),
                    self.values[0].parse::<i64>().ok(),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    a > bound
                } else {
                    a < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.key;
        match self.operator {
            Operator::Equals => write!(f, "{k}={}", self.values[0]),
            Operator::NotEquals => write!(f, "{k}!={}", self.values[0]),
            Operator::In => write!(f, "{k} in ({})", self.values.join(",")),
            Operator::NotIn => write!(f, "{k} notin ({})", self.values.join(",")),
            Operator::Exists => write!(f, "{k}"),
            Operator::DoesNotExist => write!(f, "!{k}"),
            Operator::GreaterThan => write!(f, "{k}>{}", self.values[0]),
            Operator::LessThan => write!(f, "{k}<{}", self.values[0]),
        }
    }
}

/// A conjunction of requirements. No requirements selects everything; `nothing()` selects nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Selects every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Selects no object (a null `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// Parses the `labelSelector` query syntax.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        Parser::new(input)?.parse().map(Self::from_requirements)
    }

    /// Converts a `metav1.LabelSelector` (`matchLabels` + `matchExpressions`). `null`
    /// selects nothing and `{}` everything, as in Kubernetes.
    pub fn from_label_selector(selector: &Value) -> Result<Self, SelectorError> {
        let obj = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(o) => o,
            _ => return Err(SelectorError("label selector must be an object".into())),
        };
        let mut reqs = Vec::new();
        if let Some(labels) = obj.get("matchLabels").filter(|v| !v.is_null()) {
            let labels = labels
                .as_object()
                .ok_or_else(|| SelectorError("matchLabels must be an object".into()))?;
            for (k, v) in labels {
                let v = v.as_str().ok_or_else(|| {
                    SelectorError(format!("matchLabels value of \"{k}\" must be a string"))
                })?;
                reqs.push(Requirement::new(k, Operator::Equals, vec![v.to_string()])?);
            }
        }
        if let Some(exprs) = obj.get("matchExpressions").filter(|v| !v.is_null()) {
            let exprs = exprs
                .as_array()
                .ok_or_else(|| SelectorError("matchExpressions must be a list".into()))?;
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let op = match e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => {
                        return Err(SelectorError(format!(
                            "\"{other}\" is not a valid label selector operator"
                        )));
                    }
                };
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .map(|v| v.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                reqs.push(Requirement::new(key, op, values)?);
            }
        }
        Ok(Self::from_requirements(reqs))
    }

    /// Matches a label map given as JSON (`metadata.labels`).
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.matches_with(&|k| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }

    /// Matches an object by its `metadata.labels`.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(
            object
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object),
        )
    }

    /// Matches a label map of strings.
    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(&|k| labels.get(k).cloned())
    }

    fn matches_with(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(get))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// kubectl's rendering of a `metav1.LabelSelector` (`app=web,tier in (a,b)`), `<none>` when empty.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|v| !v.is_null()) else {
        return "<none>".to_string();
    };
    match LabelSelector::from_label_selector(selector) {
        Ok(s) if s.is_everything() => "<none>".to_string(),
        Ok(s) => s.to_string(),
        Err(_) => "<error>".to_string(),
    }
}

/// kubectl's rendering of a plain label map (`a=b,c=d`, sorted), `<none>` when empty.
pub fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let Some(labels) = labels.filter(|l| !l.is_empty()) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("'{s}'"),
            Token::Eq => "'='".into(),
            Token::DoubleEq => "'=='".into(),
            Token::NotEq => "'!='".into(),
            Token::Bang => "'!'".into(),
            Token::Gt => "'>'".into(),
            Token::Lt => "'<'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::End => "end of input".into(),
        }
    }
}

fn lex(input: &str) -> Result<Vec<Token>, SelectorError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '=' if next == Some('=') => (Token::DoubleEq, 2),
            '=' => (Token::Eq, 1),
            '!' if next == Some('=') => (Token::NotEq, 2),
            '!' => (Token::Bang, 1),
            '>' => (Token::Gt, 1),
            '<' => (Token::Lt, 1),
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            ',' => (Token::Comma, 1),
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"=!<>(),".contains(chars[i])
                {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
                continue;
            }
        };
        tokens.push(tok);
        i += len;
    }
    tokens.push(Token::End);
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn new(input: &str) -> Result<Self, SelectorError> {
        Ok(Parser {
            tokens: lex(input)?,
            pos: 0,
        })
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn err(found: &Token, expected: &str) -> SelectorError {
        SelectorError(format!(
            "unable to parse requirement: found {}, expected: {expected}",
            found.describe()
        ))
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        if *self.peek() == Token::End {
            return Ok(reqs);
        }
        loop {
            reqs.push(self.requirement()?);
            match self.next() {
                Token::End => return Ok(reqs),
                Token::Comma => {}
                other => return Err(Self::err(&other, "',' or end of input")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if *self.peek() == Token::Bang {
            self.next();
            let key = self.identifier("label key after '!'")?;
            return Requirement::new(&key, Operator::DoesNotExist, vec![]);
        }
        let key = self.identifier("label key")?;
        let op = match self.peek().clone() {
            Token::End | Token::Comma => return Requirement::new(&key, Operator::Exists, vec![]),
            Token::Eq | Token::DoubleEq => Operator::Equals,
            Token::NotEq => Operator::NotEquals,
            Token::Gt => Operator::GreaterThan,
            Token::Lt => Operator::LessThan,
            Token::Ident(w) if w == "in" => Operator::In,
            Token::Ident(w) if w == "notin" => Operator::NotIn,
            other => {
                return Err(Self::err(
                    &other,
                    "one of '=', '==', '!=', 'in', 'notin', '>', '<', ',' or end of input",
                ));
            }
        };
        self.next();
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => match self.peek().clone() {
                // `key=` selects an empty value.
                Token::End | Token::Comma => vec![String::new()],
                Token::Ident(v) => {
                    self.next();
                    vec![v]
                }
                other => return Err(Self::err(&other, "a label value")),
            },
        };
        Requirement::new(&key, op, values)
    }

    fn identifier(&mut self, what: &str) -> Result<String, SelectorError> {
        match self.next() {
            Token::Ident(s) => Ok(s),
            other => Err(Self::err(&other, what)),
        }
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Token::Open => {}
            other => return Err(Self::err(&other, "'(' after 'in'/'notin'")),
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::Ident(v) if expect_value => {
                    values.push(v);
                    expect_value = false;
                }
                Token::Comma => {
                    if expect_value {
                        values.push(String::new());
                    }
                    expect_value = true;
                }
                Token::Close => {
                    if expect_value && !values.is_empty() {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                other => return Err(Self::err(&other, "a value, ',' or ')'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn m(sel: &str, l: &Value) -> bool {
        LabelSelector::parse(sel).unwrap().matches(l.as_object())
    }

    #[test]
    fn equality_operators() {
        let l = json!({"app": "web", "tier": "fe"});
        assert!(m("app=web", &l));
        assert!(m("app==web", &l));
        assert!(!m("app=db", &l));
        assert!(m("app!=db", &l));
        assert!(m("missing!=x", &l));
        assert!(!m("app!=web", &l));
        assert!(m("app=web,tier=fe", &l));
        assert!(!m("app=web,tier=be", &l));
        assert!(m("  app = web ,  tier == fe ", &l));
    }

    #[test]
    fn set_and_existence_operators() {
        let l = json!({"env": "prod", "canary": "true"});
        assert!(m("env in (prod,staging)", &l));
        assert!(m("env in ( staging , prod )", &l));
        assert!(!m("env in (dev)", &l));
        assert!(m("env notin (dev,qa)", &l));
        assert!(!m("env notin (prod)", &l));
        assert!(m("missing notin (prod)", &l));
        assert!(!m("missing in (prod)", &l));
        assert!(m("canary", &l));
        assert!(!m("!canary", &l));
        assert!(m("!missing", &l));
        assert!(m("env,!missing,env in (prod)", &l));
        assert!(m("", &l));
        assert!(m("env=prod,canary", &l));
    }

    #[test]
    fn empty_value_and_numeric_comparisons() {
        assert!(m("a=", &json!({"a": ""})));
        assert!(!m("a=", &json!({"a": "x"})));
        assert!(!m("a=", &json!({})));
        assert!(m("gen>3", &json!({"gen": "5"})));
        assert!(!m("gen>3", &json!({"gen": "2"})));
        assert!(m("gen<3", &json!({"gen": "2"})));
        assert!(!m("gen<3", &json!({"gen": "x"})));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "app=web,",
            "app in prod",
            "app in (a",
            "=web",
            "app=web=x",
            "!",
            "app in ()",
            "a b",
            "a,,b",
            "bad key/x/y=1",
            "app=-bad",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?} should fail");
        }
        let e = LabelSelector::parse("app in prod").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to parse requirement: found 'prod', expected: '(' after 'in'/'notin'"
        );
        let e = LabelSelector::parse("app=web,").unwrap_err();
        assert!(
            e.to_string()
                .contains("found end of input, expected: label key"),
            "{e}"
        );
    }

    #[test]
    fn canonical_string() {
        let s = LabelSelector::parse("tier in (fe, be),app==web,!x,y,z!=1").unwrap();
        assert_eq!(s.to_string(), "app=web,tier in (be,fe),!x,y,z!=1");
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn metav1_label_selector() {
        let sel = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ]
        });
        let s = LabelSelector::from_label_selector(&sel).unwrap();
        assert!(s.matches(Some(&labels(json!({"app": "web", "tier": "fe"})))));
        assert!(!s.matches(Some(&labels(
            json!({"app": "web", "tier": "fe", "canary": "1"})
        ))));
        assert!(!s.matches(Some(&labels(json!({"app": "web"})))));
        assert!(!s.matches(None));
        assert_eq!(s.to_string(), "app=web,!canary,tier in (be,fe)");

        assert!(
            LabelSelector::from_label_selector(&json!({}))
                .unwrap()
                .is_everything()
        );
        let nothing = LabelSelector::from_label_selector(&Value::Null).unwrap();
        assert!(nothing.is_nothing());
        assert!(!nothing.matches(Some(&labels(json!({"a": "b"})))));
        assert!(
            LabelSelector::from_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
            )
            .is_err()
        );
        assert!(
            LabelSelector::from_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
            )
            .is_err()
        );
        assert!(
            LabelSelector::from_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
            )
            .is_err()
        );
        assert!(LabelSelector::from_label_selector(&json!({"matchLabels": {"a": 1}})).is_err());
    }

    #[test]
    fn objects_and_maps() {
        let obj = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        assert!(
            LabelSelector::parse("app=web")
                .unwrap()
                .matches_object(&obj)
        );
        assert!(
            !LabelSelector::parse("app")
                .unwrap()
                .matches_object(&json!({"metadata": {}}))
        );
        assert!(
            LabelSelector::parse("!app")
                .unwrap()
                .matches_object(&json!({"metadata": {}}))
        );
        let mut map = BTreeMap::new();
        map.insert("app".to_string(), "web".to_string());
        assert!(
            LabelSelector::parse("app in (web)")
                .unwrap()
                .matches_map(&map)
        );
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(
            format_label_selector(Some(&json!({"matchLabels": {"app": "web"}}))),
            "app=web"
        );
        assert_eq!(
            format_labels(json!({"b": "2", "a": "1"}).as_object()),
            "a=1,b=2"
        );
        assert_eq!(format_labels(None), "<none>");
    }
}
