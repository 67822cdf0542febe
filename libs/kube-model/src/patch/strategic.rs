//! Strategic merge patch (`application/strategic-merge-patch+json`) with all directives.

use serde_json::{Map, Value};

use super::PatchError;
use super::schema::{ListType, Schema, schema_for_kind};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `original`, an object of `kind`. Lists with a known
/// merge key merge item by item; unknown lists are replaced; `null` deletes a key.
pub fn strategic_merge_patch(
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let Some(patch) = patch.as_object() else {
        return Err(PatchError::Malformed(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = match original {
        Value::Object(o) => o.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(PatchError::Unprocessable(
                "the object to patch is not a JSON object".into(),
            ));
        }
    };
    merge_map(original, patch.clone(), Some(schema_for_kind(kind))).map(Value::Object)
}

fn child(schema: Option<&'static Schema>, field: &str) -> Option<&'static Schema> {
    schema.and_then(|s| s.child(field))
}

fn list_meta(schema: Option<&'static Schema>, field: &str) -> (ListType, Option<&'static Schema>) {
    schema
        .map(|s| s.list(field))
        .unwrap_or((ListType::Atomic, None))
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Option<&'static Schema>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Map::new(), patch, schema),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::Malformed(format!(
                    "Unknown patch type: {directive} in map"
                )));
            }
        }
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        apply_retain_keys(&mut original, &patch, &retain)?;
    }

    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER_PREFIX))
        .cloned()
        .collect();
    for key in order_keys {
        let field = key[SET_ORDER_PREFIX.len()..].to_string();
        let order = match patch.remove(&key) {
            Some(Value::Array(order)) => order,
            _ => {
                return Err(PatchError::Malformed(format!(
                    "invalid patch: {key} must be a list"
                )));
            }
        };
        let (list_type, item) = list_meta(schema, &field);
        let server = match original.remove(&field) {
            Some(Value::Array(items)) => Some(items),
            Some(other) => {
                original.insert(field.clone(), other);
                None
            }
            None => None,
        };
        let merged = match (server.clone(), patch.remove(&field)) {
            (Some(o), None) => o,
            (o, Some(Value::Array(p))) => merge_list(o.unwrap_or_default(), p, list_type, item)?,
            (_, Some(_)) => {
                return Err(PatchError::Malformed(format!(
                    "invalid patch: {field} must be a list"
                )));
            }
            (None, None) => continue,
        };
        let ident = identity(list_type);
        let order_ids: Vec<Value> = order.iter().map(&ident).collect();
        let server_ids: Vec<Value> = server.unwrap_or_default().iter().map(&ident).collect();
        original.insert(
            field,
            Value::Array(reorder(merged, &order_ids, &server_ids, &ident)),
        );
    }

    let delete_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(DELETE_PRIMITIVE_PREFIX))
        .cloned()
        .collect();
    for key in delete_keys {
        let Some(Value::Array(remove)) = patch.remove(&key) else {
            return Err(PatchError::Malformed(format!(
                "invalid patch: {key} must be a list of primitives"
            )));
        };
        if let Some(Value::Array(items)) = original.get_mut(&key[DELETE_PRIMITIVE_PREFIX.len()..]) {
            items.retain(|v| !remove.contains(v));
        }
    }

    for (key, patch_value) in patch {
        if key.starts_with('$') {
            return Err(PatchError::Malformed(format!(
                "unknown strategic merge patch directive {key:?}"
            )));
        }
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let merged = match (original.remove(&key), patch_value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                Value::Object(merge_map(o, p, child(schema, &key))?)
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                let (t, item) = list_meta(schema, &key);
                Value::Array(merge_list(o, p, t, item)?)
            }
            // New keys and type changes take the patch value, with its directives resolved.
            (_, Value::Object(p)) => Value::Object(merge_map(Map::new(), p, child(schema, &key))?),
            (_, Value::Array(p)) => {
                let (t, item) = list_meta(schema, &key);
                Value::Array(merge_list(Vec::new(), p, t, item)?)
            }
            (_, scalar) => scalar,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
) -> Result<(), PatchError> {
    let Some(list) = retain.as_array() else {
        return Err(PatchError::Malformed(
            "invalid patch: $retainKeys must be a list of strings".into(),
        ));
    };
    let keys: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch {
        if v.is_null() || k.starts_with('$') {
            continue;
        }
        if !keys.contains(&k.as_str()) {
            return Err(PatchError::Unprocessable(
                "The patch content doesn't match retainKeys list".into(),
            ));
        }
    }
    original.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

fn identity(list_type: ListType) -> impl Fn(&Value) -> Value {
    move |v: &Value| match list_type {
        ListType::Map(key) => v.get(key).cloned().unwrap_or(Value::Null),
        _ => v.clone(),
    }
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    list_type: ListType,
    item: Option<&'static Schema>,
) -> Result<Vec<Value>, PatchError> {
    match list_type {
        ListType::Atomic => Ok(patch),
        ListType::Set => {
            if patch
                .iter()
                .chain(&original)
                .any(|v| v.is_object() || v.is_array())
            {
                return Err(PatchError::Unprocessable(
                    "cannot merge lists without merge key".into(),
                ));
            }
            let mut merged = original.clone();
            for v in &patch {
                if !merged.contains(v) {
                    merged.push(v.clone());
                }
            }
            Ok(reorder(merged, &patch, &original, &identity(list_type)))
        }
        ListType::Map(key) => merge_keyed_list(original, patch, key, item),
    }
}

fn merge_keyed_list(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &'static str,
    item: Option<&'static Schema>,
) -> Result<Vec<Value>, PatchError> {
    let missing_key = |m: &Map<String, Value>| {
        PatchError::Unprocessable(format!(
            "map: {} does not contain declared merge key: {key}",
            Value::Object(m.clone())
        ))
    };
    let mut items = Vec::new();
    let mut replace = false;
    for element in patch {
        let Value::Object(mut m) = element else {
            return Err(PatchError::Unprocessable(format!(
                "list items must be objects with merge key {key:?}"
            )));
        };
        match m.get(DIRECTIVE).map(|d| d.as_str()) {
            None => items.push(m),
            Some(Some("delete")) => {
                let value = m.get(key).ok_or_else(|| missing_key(&m))?;
                original.retain(|o| o.get(key) != Some(value));
            }
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) => {
                m.remove(DIRECTIVE);
                items.push(m);
            }
            Some(_) => {
                return Err(PatchError::Malformed(format!(
                    "Unknown patch type: {} in list element",
                    m[DIRECTIVE]
                )));
            }
        }
    }
    if replace {
        return items
            .into_iter()
            .map(|m| merge_map(Map::new(), m, item).map(Value::Object))
            .collect();
    }
    let server: Vec<Value> = original
        .iter()
        .map(|o| o.get(key).cloned().unwrap_or(Value::Null))
        .collect();
    let mut patch_ids = Vec::with_capacity(items.len());
    let mut merged = original;
    for m in items {
        let id = m.get(key).cloned().ok_or_else(|| missing_key(&m))?;
        match merged.iter().position(|o| o.get(key) == Some(&id)) {
            Some(pos) => {
                let existing = match std::mem::take(&mut merged[pos]) {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                merged[pos] = Value::Object(merge_map(existing, m, item)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), m, item)?)),
        }
        patch_ids.push(id);
    }
    Ok(reorder(
        merged,
        &patch_ids,
        &server,
        &identity(ListType::Map(key)),
    ))
}

/// Orders merged items: items named by the patch (or `$setElementOrder`) follow that order,
/// server-only items keep their live order, and the two are interleaved by live position
/// (a server-only item goes first only when it stood before the patch item on the server).
fn reorder(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    ident: &dyn Fn(&Value) -> Value,
) -> Vec<Value> {
    let pos = |list: &[Value], v: &Value| list.iter().position(|x| *x == ident(v));
    let (mut patch_items, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| pos(patch_order, v).is_some());
    patch_items.sort_by_key(|v| pos(patch_order, v));
    server_only.sort_by_key(|v| pos(server_order, v).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((pos(server_order, l), pos(server_order, r)), (Some(a), Some(b)) if a < b)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}
