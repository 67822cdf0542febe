//! Reading collections: paged lists at one consistent revision (continue
//! tokens carry it), and the start of a watch (initial state, then a log
//! cursor), with label and field selectors applied to both.

use std::sync::Arc;

use base64::Engine;
use manifold_db::Scope;
use manifold_kube_model::kinds::ResourceKind;
use manifold_kube_model::selectors::{FieldSelector, LabelSelector};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Core;
use crate::domain::object::meta_str;
use crate::domain::{Change, EventType, VirtualCluster};
use crate::error::GatewayError;
use crate::feed::{Cursor, Filter};
use crate::storage::changes;
use crate::storage::objects::{self, ListScope};

/// Label and field selectors of a request.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub label: LabelSelector,
    pub field: FieldSelector,
}

impl Selectors {
    pub fn matches(&self, object: &Value) -> bool {
        self.label.matches_object(object) && self.field.matches(object)
    }

    fn name(&self) -> Option<&str> {
        self.field.required_value("metadata.name")
    }
}

/// Where a list reads from.
#[derive(Debug, Clone)]
pub enum ListFrom {
    /// The newest state.
    Latest,
    /// The state at exactly this revision.
    Exact(i64),
    /// Where an earlier page stopped.
    Continue(ContinueToken),
}

#[derive(Debug, Clone)]
pub struct ListOptions {
    pub selectors: Selectors,
    /// Page size; `None` reads everything.
    pub limit: Option<i64>,
    pub from: ListFrom,
}

#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Value>,
    /// The revision the whole list is consistent at.
    pub resource_version: i64,
    pub continue_token: Option<String>,
}

/// The opaque `continue` value: the list's revision and the last key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    pub rv: i64,
    pub ns: String,
    pub name: String,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(token: &str) -> Result<Self, GatewayError> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| GatewayError::BadRequest("continue key is not valid".into()))
    }
}

fn expired_continue() -> GatewayError {
    GatewayError::Gone(
        "The provided continue parameter is too old to display a consistent list result. \
         You can start a new list without the continue parameter."
            .into(),
    )
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
pub enum WatchFrom {
    /// Synthetic ADDED events for the current state, then changes.
    InitialState,
    /// Changes after this revision.
    After(i64),
}

/// A watch ready to stream.
pub struct WatchStart {
    pub initial: Vec<Value>,
    /// The revision the initial state is at (and the cursor starts after).
    pub initial_revision: i64,
    pub cursor: Cursor,
}

/// What a watcher with `selectors` sees of a change: objects moving into
/// the selection appear as ADDED, objects leaving it as DELETED.
pub fn watch_event(selectors: &Selectors, change: &Change) -> Option<(EventType, Arc<Value>)> {
    let now = selectors.matches(&change.object);
    let before = change.prev.as_deref().is_some_and(|p| selectors.matches(p));
    match (change.event, before, now) {
        (EventType::Deleted, _, _) if before || now => {
            Some((EventType::Deleted, change.object.clone()))
        }
        (EventType::Deleted, _, _) => None,
        (_, true, true) => Some((change.event, change.object.clone())),
        (_, false, true) => Some((EventType::Added, change.object.clone())),
        (_, true, false) => Some((EventType::Deleted, change.object.clone())),
        (_, false, false) => None,
    }
}

/// Rows read per statement when a list filters or has no limit.
const BATCH: i64 = 1000;

impl Core {
    /// The newest committed revision.
    pub async fn head_revision(&self) -> Result<i64, GatewayError> {
        let (head, _) = manifold_db::transaction!(
            self.db,
            "head_revision",
            Scope::System,
            GatewayError,
            |tx| { Ok(changes::revisions(tx).await?) }
        )?;
        Ok(head)
    }

    pub async fn list_objects(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        opts: &ListOptions,
    ) -> Result<ListPage, GatewayError> {
        let (mut revision, mut after) = match &opts.from {
            ListFrom::Latest => (None, (String::new(), String::new())),
            ListFrom::Exact(rv) => (Some(*rv), (String::new(), String::new())),
            ListFrom::Continue(t) => (Some(t.rv), (t.ns.clone(), t.name.clone())),
        };
        let name = opts.selectors.name();
        let filtered =
            !opts.selectors.label.is_everything() || !opts.selectors.field.is_everything();
        let mut items: Vec<Value> = Vec::new();
        loop {
            let wanted = opts.limit.map(|l| l - items.len() as i64);
            // One row beyond the page tells whether another page follows.
            let batch = match wanted {
                Some(w) if !filtered => w + 1,
                _ => BATCH,
            };
            let scope = ListScope {
                vcluster_id: vc.id,
                group: kind.group,
                kind: kind.kind,
                name,
                after: (&after.0, &after.1),
                limit: batch,
            };
            let at = revision;
            let exact = matches!(opts.from, ListFrom::Exact(_));
            let enc = &*self.config.encryption;
            let rows = manifold_db::transaction!(
                self.db,
                "list_objects",
                Scope::Tenant(vc.tenant_id),
                GatewayError,
                |tx| {
                    match at {
                        None => {
                            let (head, rows) = objects::list_current(tx, enc, &scope).await?;
                            Ok((head, rows))
                        }
                        Some(rv) => match objects::list_at(tx, enc, &scope, rv).await? {
                            Ok(rows) => Ok((rv, rows)),
                            Err(compacted) if exact => Err(GatewayError::Gone(format!(
                                "too old resource version: {rv} ({compacted})"
                            ))),
                            Err(_) => Err(expired_continue()),
                        },
                    }
                }
            )?;
            revision = Some(rows.0);
            let exhausted = (rows.1.len() as i64) < batch;
            for object in rows.1 {
                let key = (
                    meta_str(&object, "namespace")
                        .unwrap_or_default()
                        .to_owned(),
                    meta_str(&object, "name").unwrap_or_default().to_owned(),
                );
                if let Some(limit) = opts.limit
                    && items.len() as i64 == limit
                {
                    // A full page and at least one more object to come.
                    return Ok(ListPage {
                        items,
                        resource_version: rows.0,
                        continue_token: Some(
                            ContinueToken {
                                rv: rows.0,
                                ns: after.0,
                                name: after.1,
                            }
                            .encode(),
                        ),
                    });
                }
                after = key;
                if opts.selectors.matches(&object) {
                    items.push(object);
                }
            }
            let full = opts.limit.is_some_and(|l| items.len() as i64 >= l);
            if exhausted || (full && filtered) {
                let continue_token = (!exhausted).then(|| {
                    ContinueToken {
                        rv: rows.0,
                        ns: after.0.clone(),
                        name: after.1.clone(),
                    }
                    .encode()
                });
                return Ok(ListPage {
                    items,
                    resource_version: rows.0,
                    continue_token,
                });
            }
        }
    }

    /// Starts a watch: the initial state when asked for, then a cursor on
    /// the log. `Gone` when `from` was compacted away.
    pub async fn start_watch(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        selectors: &Selectors,
        from: WatchFrom,
    ) -> Result<WatchStart, GatewayError> {
        let (initial, revision) = match from {
            WatchFrom::InitialState => {
                let page = self
                    .list_objects(
                        vc,
                        kind,
                        &ListOptions {
                            selectors: selectors.clone(),
                            limit: None,
                            from: ListFrom::Latest,
                        },
                    )
                    .await?;
                (page.items, page.resource_version)
            }
            WatchFrom::After(rv) => (Vec::new(), rv),
        };
        let filter = Filter {
            vcluster_id: vc.id,
            group: kind.group.to_owned(),
            kind: kind.kind.to_owned(),
        };
        let cursor = Cursor::start(
            &self.hub,
            self.db.clone(),
            self.config.encryption.clone(),
            Scope::Tenant(vc.tenant_id),
            Some(filter),
            revision,
        )
        .await?;
        Ok(WatchStart {
            initial,
            initial_revision: revision,
            cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn change(event: EventType, labels: Value, prev: Option<Value>) -> Change {
        Change {
            revision: 1,
            tenant_id: Uuid::nil(),
            vcluster_id: Uuid::nil(),
            vcluster: String::new(),
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: "n".into(),
            name: "c".into(),
            event,
            object: Arc::new(json!({"metadata": {"name": "c", "labels": labels}})),
            prev: prev.map(|l| Arc::new(json!({"metadata": {"name": "c", "labels": l}}))),
            unreadable: None,
        }
    }

    #[test]
    fn selections_turn_modifications_into_adds_and_deletes() {
        let s = Selectors {
            label: LabelSelector::parse("app=web").unwrap(),
            field: FieldSelector::everything(),
        };
        let into = change(EventType::Modified, json!({"app": "web"}), Some(json!({})));
        assert_eq!(watch_event(&s, &into).unwrap().0, EventType::Added);
        let out = change(EventType::Modified, json!({}), Some(json!({"app": "web"})));
        assert_eq!(watch_event(&s, &out).unwrap().0, EventType::Deleted);
        let neither = change(EventType::Modified, json!({}), Some(json!({})));
        assert!(watch_event(&s, &neither).is_none());
        let added = change(EventType::Added, json!({"app": "web"}), None);
        assert_eq!(watch_event(&s, &added).unwrap().0, EventType::Added);
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = ContinueToken {
            rv: 7,
            ns: "n".into(),
            name: "x".into(),
        };
        assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        assert!(ContinueToken::decode("%%").is_err());
    }
}
