//! Turning what users type (short ids or full AIP resource names) into the
//! resource names the API expects.

use crate::{Ctx, error::Result};

/// `prefix + rest` → `rest`; anything else unchanged.
pub fn strip(prefix: &str, s: &str) -> String {
    s.strip_prefix(prefix).unwrap_or(s).to_owned()
}

/// A tenant as saved in a context or given to `--tenant`: `acme`,
/// `tenants/acme` and ` tenants/acme/ ` all → `acme`; empty → `None`.
pub fn tenant_id(arg: &str) -> Option<String> {
    let t = arg.trim();
    let t = t.strip_prefix("tenants/").unwrap_or(t).trim_matches('/');
    Some(t.to_owned()).filter(|t| !t.is_empty())
}

/// `acme` or `tenants/acme` → `tenants/acme`.
pub fn tenant(arg: &str) -> String {
    format!("tenants/{}", strip("tenants/", arg))
}

/// `pa2-par` or `sites/pa2-par` → `sites/pa2-par`.
pub fn site(arg: &str) -> String {
    format!("sites/{}", strip("sites/", arg))
}

/// `shop` (with the tenant from the flags/context) or a full name.
pub fn namespace(ctx: &mut Ctx, arg: &str) -> Result<String> {
    if arg.contains('/') {
        return Ok(arg.to_owned());
    }
    Ok(format!("tenants/{}/namespaces/{arg}", ctx.tenant()?))
}

/// A resource inside a namespace: `demo` → `{namespace}/{collection}/demo`,
/// full names unchanged.
pub fn in_namespace(ctx: &mut Ctx, collection: &str, arg: &str) -> Result<String> {
    if arg.contains('/') {
        return Ok(arg.to_owned());
    }
    Ok(format!("{}/{collection}/{arg}", ctx.namespace_parent()?))
}

/// `alice` → `tenants/{t}/users/alice` when a tenant is known, else the system
/// user `users/alice`; full names unchanged.
pub fn user(ctx: &mut Ctx, arg: &str) -> String {
    if arg.contains('/') {
        return arg.to_owned();
    }
    match ctx.tenant_opt() {
        Some(t) => format!("tenants/{t}/users/{arg}"),
        None => format!("users/{arg}"),
    }
}

/// Splits `parent/collection/id` into (parent, id) for create calls, or
/// returns (default parent, id) for a short id.
pub fn split_create(arg: &str, collection: &str) -> Option<(String, String)> {
    let marker = format!("/{collection}/");
    let i = arg.rfind(&marker)?;
    Some((arg[..i].to_owned(), arg[i + marker.len()..].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_names_split() {
        assert_eq!(
            split_create("tenants/a/namespaces/b", "namespaces"),
            Some(("tenants/a".into(), "b".into()))
        );
        assert_eq!(split_create("b", "namespaces"), None);
        assert_eq!(tenant("tenants/acme"), "tenants/acme");
        assert_eq!(site("x"), "sites/x");
    }

    #[test]
    fn tenant_ids_are_normalised() {
        assert_eq!(tenant_id("acme").as_deref(), Some("acme"));
        assert_eq!(tenant_id("tenants/acme").as_deref(), Some("acme"));
        assert_eq!(tenant_id(" tenants/acme/ ").as_deref(), Some("acme"));
        assert_eq!(tenant_id(""), None);
        assert_eq!(tenant_id("tenants/"), None);
    }
}
