//! `meta.k8s.io/v1` Table output for `kubectl get`, with kubectl's columns, ages and pod status.

mod columns;
mod pod;
mod rows;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

pub use columns::{Column, columns};
pub use pod::{PodSummary, pod_summary};
pub use rows::{SITE_LABEL, SITE_READY_ANNOTATION, row_cells, row_cells_scaled};

/// The `includeObject` query parameter of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// The full object in each row.
    Object,
    /// A `PartialObjectMetadata` in each row (the server default).
    #[default]
    Metadata,
    /// No object.
    None,
}

impl IncludeObject {
    pub fn parse(value: &str) -> Option<IncludeObject> {
        match value {
            "Object" => Some(IncludeObject::Object),
            "Metadata" => Some(IncludeObject::Metadata),
            "None" => Some(IncludeObject::None),
            _ => None,
        }
    }
}

/// How to build a Table.
#[derive(Clone, Copy)]
pub struct TableOptions<'a> {
    pub include_object: IncludeObject,
    /// The time ages are computed against.
    pub now: DateTime<Utc>,
    /// Number of sites an object is placed on. A vK8s runs `spec.replicas` per site, so
    /// desired counts (Deployment/StatefulSet READY, ReplicaSet DESIRED, Job COMPLETIONS)
    /// are multiplied by it to line up with the summed status (`READY 6/6` for 2 replicas
    /// on 3 sites). `None` means 1.
    pub replica_multiplier: Option<&'a dyn Fn(&Value) -> i64>,
}

impl<'a> TableOptions<'a> {
    pub fn new(include_object: IncludeObject, now: DateTime<Utc>) -> Self {
        TableOptions {
            include_object,
            now,
            replica_multiplier: None,
        }
    }

    pub fn with_replica_multiplier(mut self, f: &'a dyn Fn(&Value) -> i64) -> Self {
        self.replica_multiplier = Some(f);
        self
    }
}

impl std::fmt::Debug for TableOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableOptions")
            .field("include_object", &self.include_object)
            .field("now", &self.now)
            .field("replica_multiplier", &self.replica_multiplier.is_some())
            .finish()
    }
}

/// kubectl's human duration: `5s`, `3m2s`, `10m`, `5h`, `2d3h`, `15d`, `2y30d`.
pub fn human_duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses an RFC 3339 timestamp (`metav1.Time` or `MicroTime`).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(crate) fn age_since(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    human_duration(now - t)
}

/// The AGE of a timestamp at `now`; `<unknown>` when missing or unparsable.
pub fn age(timestamp: Option<&str>, now: DateTime<Utc>) -> String {
    match timestamp.and_then(parse_time) {
        Some(t) => age_since(t, now),
        None => "<unknown>".into(),
    }
}

fn row(kind: &str, obj: &Value, opts: &TableOptions<'_>) -> Value {
    let mut r = Map::new();
    let multiplier = opts.replica_multiplier.map_or(1, |f| f(obj));
    r.insert(
        "cells".into(),
        Value::Array(row_cells_scaled(kind, obj, opts.now, multiplier)),
    );
    match opts.include_object {
        IncludeObject::Object => {
            r.insert("object".into(), obj.clone());
        }
        IncludeObject::Metadata => {
            r.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            );
        }
        IncludeObject::None => {}
    }
    Value::Object(r)
}

fn table(kind: &str, rows: Vec<Value>, metadata: Map<String, Value>) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns(kind).iter().map(Column::to_json).collect::<Vec<_>>(),
        "rows": rows,
    })
}

/// The Table for a list response, carrying the list's `resourceVersion` and `continue`.
pub fn list_table(
    kind: &str,
    items: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    opts: &TableOptions<'_>,
) -> Value {
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), resource_version.into());
    if let Some(c) = continue_token.filter(|c| !c.is_empty()) {
        metadata.insert("continue".into(), c.into());
    }
    table(
        kind,
        items.iter().map(|o| row(kind, o, opts)).collect(),
        metadata,
    )
}

/// The Table for one object (a GET, or one watch event), at the object's `resourceVersion`.
pub fn object_table(kind: &str, obj: &Value, opts: &TableOptions<'_>) -> Value {
    let mut metadata = Map::new();
    if let Some(rv) = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        metadata.insert("resourceVersion".into(), rv.into());
    }
    table(kind, vec![row(kind, obj, opts)], metadata)
}

#[cfg(test)]
mod tests;
