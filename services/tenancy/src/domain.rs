//! Tenancy's domain: validated identifiers, parsed resource names, stored
//! records and the token secret format. No tonic, no SQL.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::TenancyError;

/// A DNS label: what tenant, namespace, user and binding ids must be.
pub fn validate_id(field: &str, value: &str) -> Result<(), TenancyError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.as_bytes()[0].is_ascii_lowercase()
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(TenancyError::invalid(
            field,
            format!(
                "{value:?} is not a valid id: use 1-63 lowercase letters, digits and '-', \
                 starting with a letter and not ending with '-' (e.g. \"acme\")"
            ),
        ))
    }
}

pub fn validate_labels(
    field: &str,
    labels: &std::collections::HashMap<String, String>,
) -> Result<(), TenancyError> {
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let value_ok = v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !key_ok || !value_ok {
            return Err(TenancyError::invalid(
                &format!("{field}[{k}]"),
                "label keys and values are at most 63 letters, digits, '-', '_' or '.'",
            ));
        }
    }
    Ok(())
}

pub fn tenant_name(tenant: &str) -> String {
    format!("tenants/{tenant}")
}

/// `tenants/{t}` → `t`.
pub fn parse_tenant_name<'a>(field: &str, name: &'a str) -> Result<&'a str, TenancyError> {
    match name.strip_prefix("tenants/") {
        Some(t) if !t.is_empty() && !t.contains('/') => Ok(t),
        _ => Err(TenancyError::invalid(
            field,
            format!("{name:?} is not a tenant name; expected \"tenants/{{tenant}}\""),
        )),
    }
}

/// `tenants/{t}/namespaces/{n}` → `(t, n)`.
pub fn parse_namespace_name<'a>(
    field: &str,
    name: &'a str,
) -> Result<(&'a str, &'a str), TenancyError> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["tenants", t, "namespaces", n] if !t.is_empty() && !n.is_empty() => Ok((t, n)),
        _ => Err(TenancyError::invalid(
            field,
            format!(
                "{name:?} is not a namespace name; expected \"tenants/{{tenant}}/namespaces/{{namespace}}\""
            ),
        )),
    }
}

/// Who a user belongs to: the system (operators) or one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub tenant: Option<String>,
    pub user: String,
}

impl UserRef {
    pub fn name(&self) -> String {
        match &self.tenant {
            Some(t) => format!("tenants/{t}/users/{}", self.user),
            None => format!("users/{}", self.user),
        }
    }
}

/// `users/{u}` or `tenants/{t}/users/{u}`.
pub fn parse_user_name(field: &str, name: &str) -> Result<UserRef, TenancyError> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["users", u] if !u.is_empty() => Ok(UserRef {
            tenant: None,
            user: (*u).to_owned(),
        }),
        ["tenants", t, "users", u] if !t.is_empty() && !u.is_empty() => Ok(UserRef {
            tenant: Some((*t).to_owned()),
            user: (*u).to_owned(),
        }),
        _ => Err(TenancyError::invalid(
            field,
            format!(
                "{name:?} is not a user name; expected \"users/{{user}}\" or \"tenants/{{tenant}}/users/{{user}}\""
            ),
        )),
    }
}

/// `{user}/tokens/{id}`.
pub fn parse_token_name(field: &str, name: &str) -> Result<(UserRef, String), TenancyError> {
    let bad = || {
        TenancyError::invalid(
            field,
            format!("{name:?} is not a token name; expected \"{{user}}/tokens/{{token}}\""),
        )
    };
    let (user, id) = name.rsplit_once("/tokens/").ok_or_else(bad)?;
    if id.is_empty() || id.contains('/') {
        return Err(bad());
    }
    Ok((
        parse_user_name(field, user).map_err(|_| bad())?,
        id.to_owned(),
    ))
}

/// Where a role binding lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingScope {
    System,
    Tenant(String),
    Namespace(String, String),
}

impl BindingScope {
    pub fn name(&self) -> String {
        match self {
            BindingScope::System => String::new(),
            BindingScope::Tenant(t) => format!("tenants/{t}"),
            BindingScope::Namespace(t, n) => format!("tenants/{t}/namespaces/{n}"),
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        match self {
            BindingScope::System => None,
            BindingScope::Tenant(t) | BindingScope::Namespace(t, _) => Some(t),
        }
    }

    pub fn binding_name(&self, id: &str) -> String {
        match self {
            BindingScope::System => format!("roleBindings/{id}"),
            other => format!("{}/roleBindings/{id}", other.name()),
        }
    }
}

pub fn parse_scope(field: &str, parent: &str) -> Result<BindingScope, TenancyError> {
    if parent.is_empty() {
        return Ok(BindingScope::System);
    }
    if let Ok(t) = parse_tenant_name(field, parent) {
        return Ok(BindingScope::Tenant(t.to_owned()));
    }
    if let Ok((t, n)) = parse_namespace_name(field, parent) {
        return Ok(BindingScope::Namespace(t.to_owned(), n.to_owned()));
    }
    Err(TenancyError::invalid(
        field,
        format!(
            "{parent:?} is not a scope; expected \"\" (system), \"tenants/{{tenant}}\" or \"tenants/{{tenant}}/namespaces/{{namespace}}\""
        ),
    ))
}

/// `{scope}/roleBindings/{id}`.
pub fn parse_binding_name(field: &str, name: &str) -> Result<(BindingScope, String), TenancyError> {
    let (scope, id) = match name.strip_prefix("roleBindings/") {
        Some(id) => ("", id),
        None => name.rsplit_once("/roleBindings/").ok_or_else(|| {
            TenancyError::invalid(
                field,
                format!("{name:?} is not a role binding name; expected \"{{scope}}/roleBindings/{{id}}\""),
            )
        })?,
    };
    Ok((parse_scope(field, scope)?, id.to_owned()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantState {
    Active,
    Suspended,
}

impl TenantState {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Active => "active",
            TenantState::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> TenantState {
        if s == "suspended" {
            TenantState::Suspended
        } else {
            TenantState::Active
        }
    }
}

#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub id: uuid::Uuid,
    pub name: String,
    pub display_name: String,
    pub labels: std::collections::HashMap<String, String>,
    pub state: TenantState,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NamespaceRecord {
    pub id: uuid::Uuid,
    pub tenant: String,
    pub name: String,
    pub display_name: String,
    pub labels: std::collections::HashMap<String, String>,
    pub version: i64,
    pub create_time: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: uuid::Uuid,
    pub user: UserRef,
    pub display_name: String,
    pub email: String,
    pub version: i64,
    pub create_time: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct BindingRecord {
    pub scope: BindingScope,
    pub binding_id: String,
    pub role: manifold_auth::Role,
    pub user: UserRef,
    pub create_time: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub user: UserRef,
    pub token_id: String,
    pub display_name: String,
    pub scope: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    pub revoke_time: Option<DateTime<Utc>>,
}

impl TokenRecord {
    pub fn name(&self) -> String {
        format!("{}/tokens/{}", self.user.name(), self.token_id)
    }
}

/// A freshly minted bearer secret: `mft_<token_id>_<secret>`. The token id is
/// the public lookup key; only SHA-256 of the secret half is stored.
#[derive(Clone)]
pub struct NewSecret {
    pub token_id: String,
    pub bearer: String,
    pub hash: Vec<u8>,
}

const TOKEN_PREFIX: &str = "mft_";

pub fn new_secret() -> NewSecret {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let token_id = hex::encode(id);
    let secret = hex::encode(secret);
    NewSecret {
        bearer: format!("{TOKEN_PREFIX}{token_id}_{secret}"),
        hash: hash_secret(&secret),
        token_id,
    }
}

/// A bearer provisioned ahead of time (e.g. a Kubernetes Secret mounted as
/// the bootstrap token file), in the form [`new_secret`] produces.
pub fn provisioned_secret(bearer: &str) -> Option<NewSecret> {
    let bearer = bearer.trim();
    let (id, secret) = split_bearer(bearer)?;
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id) && hex(secret) && secret.len() >= 32).then(|| NewSecret {
        bearer: bearer.to_owned(),
        hash: hash_secret(secret),
        token_id: id.to_owned(),
    })
}

/// Splits a bearer into (token id, secret half).
pub fn split_bearer(bearer: &str) -> Option<(&str, &str)> {
    let rest = bearer.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && !secret.is_empty()).then_some((id, secret))
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Constant-time comparison of two hashes.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Opaque keyset page token: the last name returned.
pub fn encode_page_token(last: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

pub fn decode_page_token(token: &str) -> Result<String, TenancyError> {
    use base64::Engine;
    if token.is_empty() {
        return Ok(String::new());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            TenancyError::invalid(
                "page_token",
                "not a token from a previous response; omit it to start over",
            )
        })
}

/// Page size after defaults and bounds (AIP-158).
pub fn page_size(requested: i32) -> Result<i64, TenancyError> {
    match requested {
        0 => Ok(50),
        n if n < 0 => Err(TenancyError::invalid("page_size", "must not be negative")),
        n => Ok(i64::from(n.min(1000))),
    }
}

pub fn parse_etag(field: &str, etag: &str) -> Result<Option<i64>, TenancyError> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.trim_matches('"').parse().map(Some).map_err(|_| {
        TenancyError::invalid(
            field,
            "not an etag from this API; send back the etag you read",
        )
    })
}

pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dns_labels() {
        assert!(validate_id("x", "acme").is_ok());
        assert!(validate_id("x", "a-1").is_ok());
        for bad in ["", "Acme", "1abc", "a_b", "a-", &"a".repeat(64)] {
            assert!(validate_id("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_tenant_name("f", "tenants/acme").unwrap(), "acme");
        assert!(parse_tenant_name("f", "tenants/acme/x").is_err());
        assert_eq!(
            parse_namespace_name("f", "tenants/a/namespaces/b").unwrap(),
            ("a", "b")
        );
        assert_eq!(parse_user_name("f", "users/root").unwrap().tenant, None);
        let (u, id) = parse_token_name("f", "tenants/a/users/bob/tokens/abc").unwrap();
        assert_eq!(u.name(), "tenants/a/users/bob");
        assert_eq!(id, "abc");
        let (scope, id) = parse_binding_name("f", "roleBindings/x").unwrap();
        assert_eq!((scope, id.as_str()), (BindingScope::System, "x"));
        let (scope, _) = parse_binding_name("f", "tenants/a/namespaces/s/roleBindings/x").unwrap();
        assert_eq!(scope.name(), "tenants/a/namespaces/s");
    }

    #[test]
    fn secrets_round_trip() {
        let s = new_secret();
        let (id, secret) = split_bearer(&s.bearer).unwrap();
        assert_eq!(id, s.token_id);
        assert!(hashes_equal(&hash_secret(secret), &s.hash));
        assert!(split_bearer("nope").is_none());
    }

    #[test]
    fn page_tokens_round_trip() {
        assert_eq!(
            decode_page_token(&encode_page_token("tenants/x")).unwrap(),
            "tenants/x"
        );
        assert!(decode_page_token("!!").is_err());
    }
}
