//! Server-side apply: managedFields bookkeeping, conflicts, merge and pruning; plus ownership for plain updates.

use std::fmt;

use serde_json::{Map, Value, json};

use super::fieldset::{
    FieldSet, PathElement, Scope, changed_paths, field_set, path_string, remove_at,
};
use super::schema::{ListType, Schema, schema_for_kind};
use crate::json::strip_nulls;

/// `managedFields[].operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Parses an entry; `None` for entries that are not FieldsV1 or are malformed.
    pub fn from_json(v: &Value) -> Option<ManagedFieldsEntry> {
        let operation = match v.get("operation")?.as_str()? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        if v.get("fieldsType")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "FieldsV1")
        {
            return None;
        }
        let fields = match v.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f).ok()?,
            None => FieldSet::new(),
        };
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(ManagedFieldsEntry {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields,
        })
    }

    /// The exact wire shape: `{manager, operation, apiVersion, time, fieldsType, fieldsV1[, subresource]}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), self.manager.clone().into());
        m.insert("operation".into(), self.operation.as_str().into());
        m.insert("apiVersion".into(), self.api_version.clone().into());
        if let Some(t) = &self.time {
            m.insert("time".into(), t.clone().into());
        }
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), s.clone().into());
        }
        Value::Object(m)
    }

    fn is(&self, manager: &str, operation: Operation, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    /// How Kubernetes names a manager in conflict messages.
    fn describe(&self) -> String {
        let mut s = Value::from(self.manager.as_str()).to_string();
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {}", Value::from(sub.as_str())));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// The parsable entries of an object's `metadata.managedFields`.
pub fn managed_fields(object: &Value) -> Vec<ManagedFieldsEntry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(ManagedFieldsEntry::from_json)
                .collect()
        })
        .unwrap_or_default()
}

fn set_managed_fields(object: &mut Value, entries: Vec<ManagedFieldsEntry>) {
    let entries: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(ManagedFieldsEntry::to_json)
        .collect();
    if let Some(meta) = crate::json::obj_mut(object, &["metadata"]) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// A field another manager owns and the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub operation: Operation,
    pub subresource: Option<String>,
    pub api_version: String,
    /// `.spec.replicas`, `.spec.template.spec.containers[name="nginx"].image`.
    pub field_path: String,
}

impl Conflict {
    fn manager_description(&self) -> String {
        ManagedFieldsEntry {
            manager: self.manager.clone(),
            operation: self.operation,
            api_version: self.api_version.clone(),
            time: None,
            subresource: self.subresource.clone(),
            fields: FieldSet::new(),
        }
        .describe()
    }

    /// `details.causes[]` entry: `{type: FieldManagerConflict, message: "conflict with \"m\" using apps/v1", field}`.
    pub fn to_cause(&self) -> Value {
        json!({
            "type": "FieldManagerConflict",
            "message": format!("conflict with {}", self.manager_description()),
            "field": self.field_path,
        })
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conflict with {}: {}",
            self.manager_description(),
            self.field_path
        )
    }
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (HTTP 409, reason Conflict).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration cannot be used (HTTP 400/422).
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    /// `details.causes` for a conflict error.
    pub fn causes(&self) -> Vec<Value> {
        match self {
            ApplyError::Conflicts(c) => c.iter().map(Conflict::to_cause).collect(),
            ApplyError::Invalid(_) => Vec::new(),
        }
    }
}

/// Kubernetes' text: `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`,
/// or per manager `conflicts with "m":\n- path` for several.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!("Apply failed with 1 conflict: {one}");
    }
    let mut by_manager: Vec<(String, Vec<&str>)> = Vec::new();
    for c in conflicts {
        let who = c.manager_description();
        match by_manager.iter_mut().find(|(m, _)| *m == who) {
            Some((_, paths)) => paths.push(&c.field_path),
            None => by_manager.push((who, vec![&c.field_path])),
        }
    }
    by_manager.sort_by(|a, b| a.0.cmp(&b.0));
    let mut lines = Vec::new();
    for (who, paths) in by_manager {
        lines.push(format!("conflicts with {who}:"));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

const NOT_MERGED_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
];

fn schema_of(object: &Value) -> &'static Schema {
    schema_for_kind(
        object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// Server-side apply of `applied` (the request body) by `manager` onto `live` (None on
/// create). Returns the new object with `metadata.managedFields` updated, or the conflicts.
/// `now` is the RFC 3339 time recorded in the manager's entry.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let api_version = text(applied, "apiVersion");
    let kind = text(applied, "kind");
    if api_version.is_empty() || kind.is_empty() {
        return Err(ApplyError::Invalid(
            "apiVersion and kind must be set in the applied configuration".into(),
        ));
    }
    if let Some(live) = live
        && text(live, "kind") != kind
    {
        return Err(ApplyError::Invalid(format!(
            "the applied kind {kind} does not match the existing object's kind {}",
            text(live, "kind")
        )));
    }
    let schema = schema_of(applied);
    let mut config = applied.clone();
    strip_nulls(&mut config);
    if let Some(obj) = config.as_object_mut() {
        obj.remove("status");
    }
    if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !NOT_MERGED_METADATA.contains(&k.as_str()));
    }
    let config_set = field_set(&config, Some(schema), Scope::Main).map_err(ApplyError::Invalid)?;
    let own_entry = |fields: FieldSet| ManagedFieldsEntry {
        manager: manager.to_string(),
        operation: Operation::Apply,
        api_version: api_version.clone(),
        time: Some(now.to_string()),
        subresource: None,
        fields,
    };

    let Some(live) = live else {
        set_managed_fields(&mut config, vec![own_entry(config_set)]);
        return Ok(config);
    };

    let mut entries = managed_fields(live);
    let own = entries
        .iter()
        .position(|e| e.is(manager, Operation::Apply, None));
    let last_set = own.map(|i| entries[i].fields.clone()).unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != own)
        .fold(FieldSet::new(), |acc, (_, e)| acc.union(&e.fields));

    let mut base = live.clone();
    if let Some(meta) = base.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let mut merged = merge_values(&base, &config, Some(schema));

    // Fields this manager applied before and no longer applies go away unless someone
    // (including its new configuration) still owns them or something beneath them.
    for path in last_set.difference(&config_set).iter().rev() {
        if others.covers(path) || config_set.covers(path) || is_item_key(path) {
            continue;
        }
        remove_at(&mut merged, path);
    }

    let base_set = field_set(&base, Some(schema), Scope::Main).map_err(ApplyError::Invalid)?;
    let merged_set = field_set(&merged, Some(schema), Scope::Main).map_err(ApplyError::Invalid)?;
    let changed = changed_paths(Some(&base), &merged_set, &merged);
    let removed = base_set.difference(&merged_set);

    let mut conflicts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) == own {
            continue;
        }
        for path in e.fields.intersection(&changed).iter() {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                operation: e.operation,
                subresource: e.subresource.clone(),
                api_version: e.api_version.clone(),
                field_path: path_string(path),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != own {
            e.fields = e.fields.difference(&changed).difference(&removed);
        }
    }
    match own {
        Some(i) => entries[i] = own_entry(config_set),
        None => entries.push(own_entry(config_set)),
    }
    set_managed_fields(&mut merged, entries);
    Ok(merged)
}

/// Records ownership for a non-apply write (create, update, patch) to the main resource:
/// `manager` (operation Update) gains the fields it added or changed, every other
/// manager loses them, and removed fields leave all managers.
pub fn record_update(old: Option<&Value>, new: &Value, manager: &str, now: &str) -> Value {
    record_update_subresource(old, new, manager, None, now)
}

/// [`record_update`] for a write through a subresource (`status`, `scale`); `status`
/// writes track only `.status`, the others everything else.
pub fn record_update_subresource(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) -> Value {
    let scope = if subresource == Some("status") {
        Scope::Status
    } else {
        Scope::Main
    };
    let schema = Some(schema_of(new));
    let mut out = new.clone();
    let mut entries = old.map(managed_fields).unwrap_or_default();
    // Objects that break list keys cannot be tracked; keep the old ownership as is.
    let (Ok(new_set), Ok(old_set)) = (
        field_set(new, schema, scope),
        old.map(|o| field_set(o, schema, scope))
            .unwrap_or_else(|| Ok(FieldSet::new())),
    ) else {
        set_managed_fields(&mut out, entries);
        return out;
    };
    let changed = changed_paths(old, &new_set, new);
    let removed = old_set.difference(&new_set);
    let own = entries
        .iter()
        .position(|e| e.is(manager, Operation::Update, subresource));
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != own {
            e.fields = e.fields.difference(&changed).difference(&removed);
        }
    }
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match own {
        Some(i) => {
            let e = &mut entries[i];
            e.fields = e.fields.difference(&removed).union(&changed);
            if !changed.is_empty() {
                e.time = Some(now.to_string());
                e.api_version = api_version;
            }
        }
        None if !changed.is_empty() => entries.push(ManagedFieldsEntry {
            manager: manager.to_string(),
            operation: Operation::Update,
            api_version,
            time: Some(now.to_string()),
            subresource: subresource.map(str::to_string),
            fields: changed,
        }),
        None => {}
    }
    set_managed_fields(&mut out, entries);
    out
}

/// The merge key field of a keyed list item (`...containers[name="x"].name`): removing it
/// alone would break the item, so pruning leaves it to the item's own removal.
fn is_item_key(path: &[PathElement]) -> bool {
    let [.., PathElement::Key(k), PathElement::Field(f)] = path else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|keys| keys.contains_key(f))
}

/// Deep merge of an applied configuration into the live object: objects merge per key,
/// keyed lists per item (live order, new items appended), sets by union, other lists
/// and scalars are replaced.
fn merge_values(live: &Value, config: &Value, schema: Option<&'static Schema>) -> Value {
    let (Value::Object(l), Value::Object(c)) = (live, config) else {
        return config.clone();
    };
    let mut out = l.clone();
    for (k, cv) in c {
        let merged = match (out.get(k), cv) {
            (Some(lv @ Value::Object(_)), Value::Object(_)) => {
                merge_values(lv, cv, schema.and_then(|s| s.child(k)))
            }
            (Some(Value::Array(la)), Value::Array(ca)) => {
                let (t, item) = schema
                    .map(|s| s.list(k))
                    .unwrap_or((ListType::Atomic, None));
                Value::Array(merge_lists(la, ca, t, item))
            }
            _ => cv.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Value::Object(out)
}

fn merge_lists(
    live: &[Value],
    config: &[Value],
    t: ListType,
    item: Option<&'static Schema>,
) -> Vec<Value> {
    match t {
        ListType::Atomic => config.to_vec(),
        ListType::Set => {
            let mut out = live.to_vec();
            out.extend(config.iter().filter(|v| !live.contains(v)).cloned());
            out
        }
        ListType::Map(key) => {
            let mut out = live.to_vec();
            for ci in config {
                match out
                    .iter()
                    .position(|li| li.get(key).is_some() && li.get(key) == ci.get(key))
                {
                    Some(pos) => out[pos] = merge_values(&out[pos], ci, item),
                    None => out.push(ci.clone()),
                }
            }
            out
        }
    }
}
