//! FieldsV1 field sets (`f:`, `k:`, `v:`, `i:`, `.`) and the field paths of JSON objects.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::schema::{ListType, Schema};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// `f:<name>`: an object field.
    Field(String),
    /// `k:{"name":"nginx"}`: a keyed list item, as compact JSON of its key fields.
    Key(String),
    /// `v:"x"`: an item of a set list, as compact JSON.
    Value(String),
    /// `i:3`: a list position.
    Index(usize),
}

impl PathElement {
    /// A `k:` element for an item whose merge key `key` has `value`.
    pub fn key(key: &str, value: &Value) -> PathElement {
        let mut m = Map::new();
        m.insert(key.to_string(), value.clone());
        PathElement::Key(Value::Object(m).to_string())
    }

    /// The FieldsV1 map key.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 map key; JSON payloads are re-serialised so equal keys compare equal.
    pub fn decode(s: &str) -> Option<PathElement> {
        let (prefix, rest) = s.split_once(':')?;
        let canonical = || {
            serde_json::from_str::<Value>(rest)
                .ok()
                .map(|v| v.to_string())
        };
        Some(match prefix {
            "f" => PathElement::Field(rest.to_string()),
            "k" => PathElement::Key(canonical().filter(|k| k.starts_with('{'))?),
            "v" => PathElement::Value(canonical()?),
            "i" => PathElement::Index(rest.parse().ok()?),
            _ => return None,
        })
    }

    /// The item this element selects in a list.
    fn find(&self, items: &[Value]) -> Option<usize> {
        match self {
            PathElement::Key(k) => {
                let keys: Map<String, Value> = serde_json::from_str(k).ok()?;
                items
                    .iter()
                    .position(|item| keys.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
            }
            PathElement::Value(v) => {
                let v: Value = serde_json::from_str(v).ok()?;
                items.iter().position(|item| *item == v)
            }
            PathElement::Index(i) => (*i < items.len()).then_some(*i),
            PathElement::Field(_) => None,
        }
    }
}

/// A path from the object root.
pub type FieldPath = Vec<PathElement>;

/// The path in the notation of Kubernetes conflict messages:
/// `.spec.template.spec.containers[name="nginx"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for el in path {
        match el {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => out.push_str(&format!("[={v}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A set of owned field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<FieldPath>);

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, path: FieldPath) {
        self.0.insert(path);
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.0.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &FieldPath> {
        self.0.iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// Whether the set holds `prefix` itself or anything below it.
    pub fn covers(&self, prefix: &[PathElement]) -> bool {
        self.0
            .range(prefix.to_vec()..)
            .next()
            .is_some_and(|p| p.starts_with(prefix))
    }

    /// Parses a `fieldsV1` object.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, String> {
        fn walk(node: &Value, path: &mut FieldPath, out: &mut FieldSet) -> Result<(), String> {
            let obj = node.as_object().ok_or("fieldsV1 nodes must be objects")?;
            for (k, child) in obj {
                if k == "." {
                    out.insert(path.clone());
                    continue;
                }
                let el =
                    PathElement::decode(k).ok_or_else(|| format!("invalid fieldsV1 key {k:?}"))?;
                path.push(el);
                if child.as_object().is_some_and(Map::is_empty) {
                    out.insert(path.clone());
                } else {
                    walk(child, path, out)?;
                }
                path.pop();
            }
            Ok(())
        }
        let mut out = FieldSet::new();
        walk(value, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    /// Encodes as a `fieldsV1` object; a member with children gets a `.` entry.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Value::Object(Map::new());
        for path in &self.0 {
            let mut node = &mut root;
            for el in path {
                node = node
                    .as_object_mut()
                    .expect("fieldsV1 nodes are objects")
                    .entry(el.encode())
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            // Marks membership of a node that already has (or will get) children.
            let is_root = path.is_empty();
            if !is_root {
                node.as_object_mut()
                    .expect("fieldsV1 nodes are objects")
                    .insert(".".into(), Value::Object(Map::new()));
            }
        }
        strip_lone_dots(&mut root);
        root
    }
}

/// Leaves are `{}`, not `{".": {}}`.
fn strip_lone_dots(node: &mut Value) {
    if let Some(obj) = node.as_object_mut() {
        if obj.len() == 1 && obj.contains_key(".") {
            obj.clear();
            return;
        }
        obj.values_mut().for_each(strip_lone_dots);
    }
}

/// Which part of the object an operation manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Everything but `status` (writes to the main resource).
    Main,
    /// Only `status` (writes to the status subresource).
    Status,
}

const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Fields never tracked: type and identity metadata, plus the part outside `scope`.
pub(crate) fn is_ignored(path: &[PathElement], scope: Scope) -> bool {
    let field = |i: usize| match path.get(i) {
        Some(PathElement::Field(f)) => Some(f.as_str()),
        _ => None,
    };
    match (field(0), field(1)) {
        (Some("apiVersion" | "kind"), _) => true,
        (Some("metadata"), Some(f)) if SYSTEM_METADATA.contains(&f) => true,
        (Some("status"), _) => scope == Scope::Main,
        _ => scope == Scope::Status,
    }
}

/// The field set of an object: leaves, keyed list items (and their fields), set items,
/// and atomic lists as leaves. Objects that hold fields are not members themselves.
pub(crate) fn field_set(
    value: &Value,
    schema: Option<&'static Schema>,
    scope: Scope,
) -> Result<FieldSet, String> {
    fn object(
        map: &Map<String, Value>,
        schema: Option<&'static Schema>,
        path: &mut FieldPath,
        out: &mut FieldSet,
        scope: Scope,
    ) -> Result<(), String> {
        for (k, v) in map {
            if v.is_null() {
                continue;
            }
            path.push(PathElement::Field(k.clone()));
            if !is_ignored(path, scope) {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        object(m, schema.and_then(|s| s.child(k)), path, out, scope)?
                    }
                    Value::Array(items) if !items.is_empty() => {
                        let (t, item) = schema
                            .map(|s| s.list(k))
                            .unwrap_or((ListType::Atomic, None));
                        list(items, t, item, path, out, scope)?;
                    }
                    _ => out.insert(path.clone()),
                }
            }
            path.pop();
        }
        Ok(())
    }
    fn list(
        items: &[Value],
        t: ListType,
        item_schema: Option<&'static Schema>,
        path: &mut FieldPath,
        out: &mut FieldSet,
        scope: Scope,
    ) -> Result<(), String> {
        match t {
            ListType::Atomic => out.insert(path.clone()),
            ListType::Set => {
                for item in items {
                    path.push(PathElement::Value(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListType::Map(key) => {
                for item in items {
                    let (Some(m), Some(kv)) = (item.as_object(), item.get(key)) else {
                        return Err(format!(
                            "{}: associative list with key {key:?} has an element that omits the key field",
                            path_string(path)
                        ));
                    };
                    path.push(PathElement::key(key, kv));
                    out.insert(path.clone());
                    object(m, item_schema, path, out, scope)?;
                    path.pop();
                }
            }
        }
        Ok(())
    }
    let mut out = FieldSet::new();
    if let Some(map) = value.as_object() {
        object(map, schema, &mut Vec::new(), &mut out, scope)?;
    }
    Ok(out)
}

/// The value at a path.
pub(crate) fn value_at<'a>(value: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    path.iter().try_fold(value, |cur, el| match el {
        PathElement::Field(f) => cur.as_object()?.get(f),
        _ => {
            let items = cur.as_array()?;
            items.get(el.find(items)?)
        }
    })
}

/// Removes the value at a path, then any object or list left empty by it (but never a
/// top-level field). Returns whether something was removed.
pub(crate) fn remove_at(value: &mut Value, path: &[PathElement]) -> bool {
    enum Loc {
        Field(String),
        Index(usize),
    }
    fn go(cur: &mut Value, path: &[PathElement], depth: usize) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        let loc = match (first, &*cur) {
            (PathElement::Field(f), Value::Object(m)) if m.contains_key(f) => Loc::Field(f.clone()),
            (PathElement::Field(_), _) => return false,
            (el, Value::Array(items)) => match el.find(items) {
                Some(i) => Loc::Index(i),
                None => return false,
            },
            _ => return false,
        };
        let remove = |cur: &mut Value| match (&loc, cur) {
            (Loc::Field(f), Value::Object(m)) => {
                m.remove(f);
            }
            (Loc::Index(i), Value::Array(items)) => {
                items.remove(*i);
            }
            _ => {}
        };
        if rest.is_empty() {
            remove(cur);
            return true;
        }
        let child = match (&loc, &mut *cur) {
            (Loc::Field(f), Value::Object(m)) => m.get_mut(f),
            (Loc::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        let Some(child) = child else { return false };
        if !go(child, rest, depth + 1) {
            return false;
        }
        let emptied = match child {
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        if emptied && depth > 0 {
            remove(cur);
        }
        true
    }
    go(value, path, 0)
}

/// Paths of `new` that `old` lacks or holds with a different value (added or modified).
pub(crate) fn changed_paths(old: Option<&Value>, new_set: &FieldSet, new: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    for path in new_set.iter() {
        let before = old.and_then(|o| value_at(o, path));
        let changed = match path.last() {
            // Items and set members change only by appearing; their fields are paths of their own.
            Some(PathElement::Key(_) | PathElement::Value(_)) => before.is_none(),
            _ => before != value_at(new, path),
        };
        if changed {
            out.insert(path.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::schema::schema_for_kind;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn fields_v1_round_trip() {
        let v1 = json!({
            "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {"v:\"a\"": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}},
                }}},
            },
        });
        let set = FieldSet::from_fields_v1(&v1).unwrap();
        assert_eq!(set.len(), 6);
        assert!(set.contains(&[f("spec"), f("replicas")]));
        let item = vec![
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            PathElement::key("name", &json!("nginx")),
        ];
        assert!(set.contains(&item));
        assert_eq!(set.to_fields_v1(), v1);
        assert_eq!(
            path_string(&item),
            r#".spec.template.spec.containers[name="nginx"]"#
        );
        assert_eq!(
            path_string(&[
                f("metadata"),
                f("finalizers"),
                PathElement::Value("\"a\"".into())
            ]),
            r#".metadata.finalizers[="a"]"#
        );
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert_eq!(
            PathElement::decode("k:{ \"name\" : \"a\" }"),
            Some(PathElement::key("name", &json!("a")))
        );
        assert_eq!(PathElement::decode("i:3"), Some(PathElement::Index(3)));
    }

    #[test]
    fn object_field_set() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["x"]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "n", "args": ["a"]}], "tolerations": [{"k": 1}]}},
            },
            "status": {"replicas": 2},
        });
        let set = field_set(&d, Some(schema_for_kind("Deployment")), Scope::Main).unwrap();
        let paths: Vec<String> = set.iter().map(|p| path_string(p)).collect();
        assert_eq!(
            paths,
            [
                ".metadata.finalizers[=\"x\"]",
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.selector.matchLabels.app",
                ".spec.strategy",
                ".spec.template.spec.containers[name=\"nginx\"]",
                ".spec.template.spec.containers[name=\"nginx\"].args",
                ".spec.template.spec.containers[name=\"nginx\"].image",
                ".spec.template.spec.containers[name=\"nginx\"].name",
                ".spec.template.spec.tolerations",
            ]
        );
        let status = field_set(&d, Some(schema_for_kind("Deployment")), Scope::Status).unwrap();
        assert_eq!(
            status.iter().map(|p| path_string(p)).collect::<Vec<_>>(),
            [".status.replicas"]
        );
        let bad = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert!(field_set(&bad, Some(schema_for_kind("Deployment")), Scope::Main).is_err());
    }

    #[test]
    fn covers_and_value_access() {
        let mut set = FieldSet::new();
        set.insert(vec![f("spec"), f("template"), f("x")]);
        assert!(set.covers(&[f("spec")]));
        assert!(set.covers(&[f("spec"), f("template"), f("x")]));
        assert!(!set.covers(&[f("spec"), f("templatex")]));
        assert!(!set.covers(&[f("status")]));
        let v = json!({"a": {"list": [{"name": "x", "v": 1}, {"name": "y", "v": 2}], "set": ["p", "q"]}});
        let y = [
            f("a"),
            f("list"),
            PathElement::key("name", &json!("y")),
            f("v"),
        ];
        assert_eq!(value_at(&v, &y), Some(&json!(2)));
        assert_eq!(
            value_at(&v, &[f("a"), f("set"), PathElement::Value("\"q\"".into())]),
            Some(&json!("q"))
        );
        assert_eq!(
            value_at(&v, &[f("a"), f("list"), PathElement::Index(0), f("name")]),
            Some(&json!("x"))
        );
        assert_eq!(value_at(&v, &[f("a"), f("nope")]), None);
    }

    #[test]
    fn removal_cleans_up_empty_parents() {
        let mut v = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"list": [{"name": "x"}], "keep": 1}});
        assert!(remove_at(&mut v, &[f("metadata"), f("labels"), f("a")]));
        assert_eq!(v["metadata"], json!({"name": "x"}));
        assert!(remove_at(
            &mut v,
            &[f("spec"), f("list"), PathElement::key("name", &json!("x"))]
        ));
        assert_eq!(v["spec"], json!({"keep": 1}));
        assert!(!remove_at(&mut v, &[f("spec"), f("missing")]));
        assert!(remove_at(&mut v, &[f("spec"), f("keep")]));
        // Top-level fields stay even when emptied.
        assert_eq!(v["spec"], json!({}));
    }

    #[test]
    fn changed_detects_added_and_modified() {
        let schema = Some(schema_for_kind("Deployment"));
        let old = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let new = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "y"},
        ]}}}});
        let set = field_set(&new, schema, Scope::Main).unwrap();
        let changed: Vec<String> = changed_paths(Some(&old), &set, &new)
            .iter()
            .map(|p| path_string(p))
            .collect();
        assert_eq!(
            changed,
            [
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"b\"]",
                ".spec.template.spec.containers[name=\"b\"].image",
                ".spec.template.spec.containers[name=\"b\"].name",
            ]
        );
        assert_eq!(changed_paths(None, &set, &new).len(), set.len());
    }
}
