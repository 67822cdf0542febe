//! The resources, and what they share: id checks, name parsing, timestamps,
//! update masks and "is it gone" for gRPC errors.

use prost_types::FieldMask;
use tonic::{Code, Status};

use crate::diag::Diag;
use crate::framework::{Resource, equivalent};
use crate::value::{Obj, ObjExt, Value};

mod sites;
mod tenancy;
mod vk8s;

/// Site conversions the data sources share.
pub(crate) mod sites_public {
    pub(crate) use super::sites::{site_obj, state_name};
}

pub fn all() -> Vec<Box<dyn Resource>> {
    vec![
        Box::new(tenancy::Tenant),
        Box::new(tenancy::Namespace),
        Box::new(tenancy::User),
        Box::new(tenancy::RoleBinding),
        Box::new(tenancy::ApiToken),
        Box::new(sites::Site),
        Box::new(sites::VirtualSite),
        Box::new(vk8s::VirtualK8s),
    ]
}

pub(crate) fn is_not_found(s: &Status) -> bool {
    s.code() == Code::NotFound
}

/// `Ok(None)` for NOT_FOUND, the API error as a diagnostic otherwise.
pub(crate) fn found<T>(
    what: &str,
    r: Result<tonic::Response<T>, Status>,
) -> Result<Option<T>, Diag> {
    match r {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if is_not_found(&s) => Ok(None),
        Err(s) => Err(Diag::api(what, &s)),
    }
}

pub(crate) fn api<T>(what: &str, r: Result<tonic::Response<T>, Status>) -> Result<T, Diag> {
    r.map(tonic::Response::into_inner)
        .map_err(|s| Diag::api(what, &s))
}

/// Deleting what is already gone is fine.
pub(crate) fn deleted<T>(what: &str, r: Result<tonic::Response<T>, Status>) -> Result<(), Diag> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if is_not_found(&s) => Ok(()),
        Err(s) => Err(Diag::api(what, &s)),
    }
}

/// A DNS label, the rule for every Manifold id.
pub(crate) fn is_dns_label(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && v.as_bytes()[0].is_ascii_lowercase()
        && !v.ends_with('-')
}

/// Checks a known id attribute.
pub(crate) fn check_id(config: &Obj, attr: &str, diags: &mut Vec<Diag>) {
    if let Some(v) = config.opt_str(attr)
        && !is_dns_label(v)
    {
        diags.push(Diag::attr(
            attr,
            format!("Invalid {attr}"),
            format!(
                "{v:?} is not a valid id: use 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-' (e.g. \"acme\")."
            ),
        ));
    }
}

/// Checks a known resource-name attribute against its shape, e.g.
/// `tenants/{tenant}/namespaces/{namespace}`.
pub(crate) fn check_name(config: &Obj, attr: &str, shape: &[&str], diags: &mut Vec<Diag>) {
    let Some(v) = config.opt_str(attr) else {
        return;
    };
    if !matches_shape(v, shape) {
        let want: Vec<String> = shape
            .chunks(2)
            .map(|c| format!("{}/{{{}}}", c[0], c[0].trim_end_matches('s')))
            .collect();
        diags.push(Diag::attr(
            attr,
            format!("Invalid {attr}"),
            format!(
                "{v:?} is not a resource name of the form {}; reference the parent resource's `name` attribute.",
                want.join("/")
            ),
        ));
    }
}

/// `shape` alternates collection ids; every other segment is a DNS label.
pub(crate) fn matches_shape(v: &str, shape: &[&str]) -> bool {
    let parts: Vec<&str> = v.split('/').collect();
    parts.len() == shape.len() * 2
        && parts
            .chunks(2)
            .zip(shape)
            .all(|(p, want)| p[0] == *want && is_dns_label(p[1]))
}

/// `a/b/coll/id` → (`a/b`, `id`).
pub(crate) fn split_name<'a>(name: &'a str, collection: &str) -> Option<(&'a str, &'a str)> {
    let marker = format!("{collection}/");
    if let Some(id) = name.strip_prefix(&marker) {
        return Some(("", id));
    }
    let idx = name.rfind(&format!("/{marker}"))?;
    Some((&name[..idx], &name[idx + marker.len() + 1..]))
}

pub(crate) fn ts(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// The update mask: `fields` (schema attribute = API field) that changed.
pub(crate) fn mask(prior: &Obj, planned: &Obj, fields: &[&str]) -> FieldMask {
    FieldMask {
        paths: fields
            .iter()
            .filter(|f| !equivalent(prior.val(f), planned.val(f)))
            .map(|f| (*f).to_owned())
            .collect(),
    }
}

/// `name` and `id`, which every resource carries.
pub(crate) fn named(name: &str) -> Obj {
    let mut o = Obj::new();
    o.insert("id".into(), Value::str(name));
    o.insert("name".into(), Value::str(name));
    o
}

pub(crate) fn id_attrs() -> [crate::schema::Attr; 2] {
    use crate::schema::Attr;
    use crate::value::Type;
    [
        Attr::computed("id", Type::String, "The resource name (same as `name`)."),
        Attr::computed(
            "name",
            Type::String,
            "The resource name, e.g. `tenants/acme`; what `terraform import` takes.",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(matches_shape(
            "tenants/acme/namespaces/shop",
            &["tenants", "namespaces"]
        ));
        assert!(!matches_shape("tenants/acme", &["tenants", "namespaces"]));
        assert!(!matches_shape("tenants/Acme", &["tenants"]));
        assert_eq!(
            split_name("tenants/a/namespaces/b/virtualSites/c", "virtualSites"),
            Some(("tenants/a/namespaces/b", "c"))
        );
        assert_eq!(
            split_name("roleBindings/x", "roleBindings"),
            Some(("", "x"))
        );
        assert_eq!(split_name("tenants/a", "namespaces"), None);
    }
}
