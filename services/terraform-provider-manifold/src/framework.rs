//! What every resource and data source shares: the traits they implement
//! (plain create/read/update/delete against the API) and the generic
//! Terraform semantics on top (plan with unknowns and RequiresReplace,
//! applying a plan so the result matches it exactly, refresh that drops
//! objects deleted elsewhere and does not invent diffs, import by name).

use crate::client::Client;
use crate::diag::Diag;
use crate::schema::Schema;
use crate::value::{Obj, Value};

#[tonic::async_trait]
pub trait Resource: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    /// Checks beyond the schema's own (required/optional/types). Values may
    /// be unknown at this point: skip those.
    fn validate(&self, _config: &Obj) -> Vec<Diag> {
        Vec::new()
    }
    /// Creates the object; returns the attributes the API reports.
    async fn create(&self, client: &Client, planned: &Obj) -> Result<Obj, CreateError>;
    /// The attributes the API reports now, `None` when the object is gone.
    /// `state` holds at least `name` (and `id`).
    async fn read(&self, client: &Client, state: &Obj) -> Result<Option<Obj>, Diag>;
    /// Updates in place what changed between `prior` and `planned`; only
    /// attributes without `force_new` differ.
    async fn update(&self, client: &Client, prior: &Obj, planned: &Obj) -> Result<Obj, Diag>;
    async fn delete(&self, client: &Client, state: &Obj) -> Result<(), Diag>;
    /// The state `terraform import ID` starts from before the first read.
    fn import_state(&self, id: &str) -> Result<Obj, Diag> {
        let mut o = Obj::new();
        o.insert("id".into(), Value::str(id));
        o.insert("name".into(), Value::str(id));
        Ok(o)
    }
}

/// A failed create. `partial` is set when the object was created but a later
/// step failed: it goes into the state with the error, so Terraform records
/// the object (as tainted) instead of losing track of it.
#[derive(Debug)]
pub struct CreateError {
    pub diag: Diag,
    pub partial: Option<Obj>,
}

impl From<Diag> for CreateError {
    fn from(diag: Diag) -> CreateError {
        CreateError {
            diag,
            partial: None,
        }
    }
}

#[tonic::async_trait]
pub trait DataSource: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    fn validate(&self, _config: &Obj) -> Vec<Diag> {
        Vec::new()
    }
    /// The computed attributes for `config`.
    async fn read(&self, client: &Client, config: &Obj) -> Result<Obj, Diag>;
}

/// Equal, or both "not set" in the API's eyes ("" / {} / [] / null).
pub fn equivalent(a: &Value, b: &Value) -> bool {
    a == b || (a.is_empty_like() && b.is_empty_like())
}

pub struct Plan {
    pub planned: Option<Obj>,
    pub requires_replace: Vec<String>,
}

pub fn plan(schema: &Schema, prior: Option<&Obj>, proposed: Option<Obj>) -> Plan {
    let Some(mut planned) = proposed else {
        return Plan {
            planned: None,
            requires_replace: Vec::new(),
        };
    };
    let mut requires_replace = Vec::new();
    match prior {
        None => {
            for a in schema.attrs.iter().filter(|a| a.is_computed()) {
                if planned.get(a.name).is_none_or(Value::is_null) {
                    planned.insert(a.name.to_owned(), Value::Unknown);
                }
            }
        }
        Some(prior) => {
            for a in schema.attrs.iter().filter(|a| a.force_new) {
                let (old, new) = (
                    prior.get(a.name).unwrap_or(&Value::Null),
                    planned.get(a.name).unwrap_or(&Value::Null),
                );
                if !new.is_wholly_known() || !equivalent(old, new) {
                    requires_replace.push(a.name.to_owned());
                }
            }
        }
    }
    Plan {
        planned: Some(planned),
        requires_replace,
    }
}

/// The new state after create/update: what the plan promised where it was
/// known (Terraform insists on that), what the API said where it was not.
pub fn settle(schema: &Schema, planned: &Obj, mut api: Obj) -> Obj {
    let merged = schema
        .attrs
        .iter()
        .map(|a| {
            let p = planned.get(a.name).cloned().unwrap_or(Value::Null);
            let v = if p.is_wholly_known() {
                p
            } else {
                api.remove(a.name).unwrap_or(Value::Null)
            };
            (a.name.to_owned(), v)
        })
        .collect();
    schema.conform(merged)
}

/// Refreshed state: the API's view, except where it only differs from the
/// prior state in how "unset" is spelled; attributes the API does not report
/// (secrets shown once, provider-only settings) keep their prior value.
pub fn refresh(schema: &Schema, prior: &Obj, api: Obj) -> Obj {
    let mut out = prior.clone();
    for (k, v) in api {
        if schema.attr(&k).is_none() {
            continue;
        }
        let keep = prior.get(&k).is_some_and(|p| equivalent(p, &v));
        if !keep {
            out.insert(k, v);
        }
    }
    schema.conform(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Attr;
    use crate::value::Type;

    fn schema() -> Schema {
        Schema::new(
            "t",
            vec![
                Attr::required("id_in", Type::String, "").force_new(),
                Attr::optional("label", Type::String, ""),
                Attr::computed("uid", Type::String, ""),
            ],
        )
    }

    fn obj(pairs: &[(&str, Value)]) -> Obj {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn create_marks_computed_unknown() {
        let p = plan(
            &schema(),
            None,
            Some(obj(&[("id_in", Value::str("a")), ("uid", Value::Null)])),
        );
        assert_eq!(p.planned.unwrap()["uid"], Value::Unknown);
    }

    #[test]
    fn force_new_change_requires_replace_and_other_changes_do_not() {
        let prior = obj(&[("id_in", Value::str("a")), ("label", Value::Null)]);
        let p = plan(
            &schema(),
            Some(&prior),
            Some(obj(&[
                ("id_in", Value::str("b")),
                ("label", Value::str("x")),
            ])),
        );
        assert_eq!(p.requires_replace, vec!["id_in".to_owned()]);
    }

    #[test]
    fn refresh_keeps_null_for_empty_api_values() {
        let prior = obj(&[("label", Value::Null), ("uid", Value::str("u"))]);
        let api = obj(&[("label", Value::str("")), ("uid", Value::str("u"))]);
        assert_eq!(refresh(&schema(), &prior, api)["label"], Value::Null);
    }
}
