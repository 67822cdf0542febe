//! The RBAC rules: which permission a principal holds on a resource name.
//!
//! Resources form a tree by name (`tenants/acme/namespaces/shop/...`); a role
//! bound at a scope applies to everything under it. A principal that holds no
//! permission at all on a tenant's resource gets NOT_FOUND, so tenants cannot
//! even learn what exists in another tenant.

use chrono::{DateTime, Utc};

/// What an action needs. Ordered: `Admin` implies `Write` implies `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Read,
    Write,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    SystemAdmin,
    TenantAdmin,
    NamespaceAdmin,
    NamespaceEditor,
    NamespaceViewer,
}

impl Role {
    /// The stored spelling (`system-admin`, `tenant-admin`, `admin`, `editor`, `viewer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SystemAdmin => "system-admin",
            Role::TenantAdmin => "tenant-admin",
            Role::NamespaceAdmin => "admin",
            Role::NamespaceEditor => "editor",
            Role::NamespaceViewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "system-admin" => Role::SystemAdmin,
            "tenant-admin" => Role::TenantAdmin,
            "admin" => Role::NamespaceAdmin,
            "editor" => Role::NamespaceEditor,
            "viewer" => Role::NamespaceViewer,
            _ => return None,
        })
    }

    fn permission(self) -> Permission {
        match self {
            Role::SystemAdmin | Role::TenantAdmin | Role::NamespaceAdmin => Permission::Admin,
            Role::NamespaceEditor => Permission::Write,
            Role::NamespaceViewer => Permission::Read,
        }
    }
}

/// A role held at a scope (`""`, `tenants/t` or `tenants/t/namespaces/n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub role: Role,
    pub scope: String,
}

impl Binding {
    /// Whether `others` still grant everything this binding granted: some
    /// binding at this scope or above it, with at least this role's
    /// permission. A stream opened under this binding may go on.
    pub fn covered_by(&self, others: &[Binding]) -> bool {
        others.iter().any(|o| {
            o.role.permission() >= self.role.permission()
                && (self.role != Role::SystemAdmin || o.role == Role::SystemAdmin)
                && is_under(&self.scope, &o.scope)
        })
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `users/u` or `tenants/t/users/u`.
    pub user: String,
    /// The tenant name (`acme`) for tenant users.
    pub tenant: Option<String>,
    pub bindings: Vec<Binding>,
    /// The token's resource name.
    pub token: String,
    /// Non-empty: the token only reaches resources under this name.
    pub token_scope: String,
    pub token_expire_time: DateTime<Utc>,
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The principal may not even see the resource.
    #[error("{0} not found")]
    NotFound(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
}

impl From<Denied> for tonic::Status {
    fn from(d: Denied) -> Self {
        match d {
            Denied::NotFound(_) => tonic::Status::not_found(d.to_string()),
            Denied::PermissionDenied(_) => tonic::Status::permission_denied(d.to_string()),
        }
    }
}

/// True when `resource` is `scope` or lies below it. The empty scope covers
/// everything.
pub fn is_under(resource: &str, scope: &str) -> bool {
    scope.is_empty()
        || resource == scope
        || (resource.len() > scope.len()
            && resource.starts_with(scope)
            && resource.as_bytes()[scope.len()] == b'/')
}

/// The `tenants/{t}` prefix of a resource name, if it has one.
pub fn tenant_of(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix("tenants/")?;
    let end = rest
        .find('/')
        .map_or(resource.len(), |i| "tenants/".len() + i);
    Some(&resource[..end])
}

impl Principal {
    /// True when the principal holds system-admin over the whole system: a
    /// system-admin binding *and* an unscoped token. A scoped token of an
    /// operator (the kind `GetKubeconfig` mints) is bound by its scope like
    /// any other token, so it never passes this check.
    pub fn is_system_admin(&self) -> bool {
        self.token_scope.is_empty() && self.holds_system_admin()
    }

    /// True when the principal holds system-admin power over `resource`: a
    /// system-admin binding, and `resource` inside the token's scope. For
    /// decisions reserved to operators on one resource (suspending a tenant).
    pub fn is_system_admin_on(&self, resource: &str) -> bool {
        self.holds_system_admin()
            && (self.token_scope.is_empty() || is_under(resource, &self.token_scope))
    }

    fn holds_system_admin(&self) -> bool {
        self.bindings.iter().any(|b| b.role == Role::SystemAdmin)
    }

    /// The tenants (ids, `acme`) this principal can read, as far as its own
    /// tenant, its bindings and its token's scope name them. Callers that
    /// list "what may I see" use this when [`Principal::is_system_admin`]
    /// is false; an unscoped system-admin sees every tenant.
    pub fn readable_tenants(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tenant
            .iter()
            .cloned()
            .chain(
                self.bindings
                    .iter()
                    .map(|b| b.scope.as_str())
                    .chain(std::iter::once(self.token_scope.as_str()))
                    .filter_map(|scope| {
                        tenant_of(scope)
                            .and_then(|t| t.strip_prefix("tenants/"))
                            .map(str::to_owned)
                    }),
            )
            .filter(|t| !t.is_empty() && self.grant(&format!("tenants/{t}")).is_some())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The id of the token the principal authenticated with (the last
    /// segment of [`Principal::token`], `…/tokens/{id}`).
    pub fn token_id(&self) -> Option<&str> {
        self.token
            .rsplit_once("/tokens/")
            .map(|(_, id)| id)
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }

    /// The tenant's resource name, `tenants/{t}`.
    pub fn tenant_resource(&self) -> Option<String> {
        self.tenant.as_ref().map(|t| format!("tenants/{t}"))
    }

    /// The highest permission held on `resource`, if any.
    pub fn grant(&self, resource: &str) -> Option<Permission> {
        // A user always manages itself and its own tokens.
        if is_under(resource, &self.user) {
            return Some(Permission::Admin);
        }
        if !self.token_scope.is_empty() && !is_under(resource, &self.token_scope) {
            // A scoped token may still read the tenant that holds its scope.
            return (tenant_of(&self.token_scope) == Some(resource)).then_some(Permission::Read);
        }
        let mut best: Option<Permission> = None;
        for b in &self.bindings {
            let granted = match b.role {
                Role::SystemAdmin => Some(Permission::Admin),
                _ if is_under(resource, &b.scope) => Some(b.role.permission()),
                // A namespace role lets its holder read the enclosing tenant.
                _ if tenant_of(&b.scope) == Some(resource) => Some(Permission::Read),
                _ => None,
            };
            best = best.max(granted);
        }
        if best.is_none() && self.tenant_resource().as_deref() == Some(resource) {
            best = Some(Permission::Read);
        }
        best
    }

    /// Ok when the principal holds `needed` on `resource`. A resource of a
    /// tenant the principal cannot see at all is reported as not found.
    pub fn check(&self, needed: Permission, resource: &str) -> Result<Permission, Denied> {
        match self.grant(resource) {
            Some(g) if g >= needed => Ok(g),
            Some(_) => Err(Denied::PermissionDenied(format!(
                "{} may not {} {}",
                self.user,
                verb(needed),
                display(resource)
            ))),
            None if resource.starts_with("tenants/") => Err(Denied::NotFound(resource.to_owned())),
            None => Err(Denied::PermissionDenied(format!(
                "{} may not {} {}",
                self.user,
                verb(needed),
                display(resource)
            ))),
        }
    }
}

fn verb(p: Permission) -> &'static str {
    match p {
        Permission::Read => "read",
        Permission::Write => "write",
        Permission::Admin => "administer",
    }
}

fn display(resource: &str) -> &str {
    if resource.is_empty() {
        "the system"
    } else {
        resource
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(tenant: Option<&str>, bindings: &[(Role, &str)], scope: &str) -> Principal {
        Principal {
            user: match tenant {
                Some(t) => format!("tenants/{t}/users/u"),
                None => "users/u".into(),
            },
            tenant: tenant.map(str::to_owned),
            bindings: bindings
                .iter()
                .map(|(role, scope)| Binding {
                    role: *role,
                    scope: (*scope).to_owned(),
                })
                .collect(),
            token: "t".into(),
            token_scope: scope.into(),
            token_expire_time: Utc::now(),
        }
    }

    #[test]
    fn prefixes_respect_segment_boundaries() {
        assert!(is_under("tenants/acme/namespaces/shop", "tenants/acme"));
        assert!(is_under("tenants/acme", "tenants/acme"));
        assert!(!is_under("tenants/acme2", "tenants/acme"));
        assert!(is_under("anything", ""));
        assert_eq!(tenant_of("tenants/acme/namespaces/x"), Some("tenants/acme"));
        assert_eq!(tenant_of("tenants/acme"), Some("tenants/acme"));
        assert_eq!(tenant_of("sites/x"), None);
    }

    #[test]
    fn a_binding_is_covered_only_by_as_much_at_or_above_its_scope() {
        let b = |role, scope: &str| Binding {
            role,
            scope: scope.into(),
        };
        let editor = b(Role::NamespaceEditor, "tenants/acme/namespaces/shop");
        assert!(editor.covered_by(std::slice::from_ref(&editor)));
        assert!(editor.covered_by(&[b(Role::TenantAdmin, "tenants/acme")]));
        assert!(editor.covered_by(&[b(Role::NamespaceAdmin, "tenants/acme/namespaces/shop")]));
        assert!(!editor.covered_by(&[]));
        assert!(!editor.covered_by(&[b(Role::NamespaceViewer, "tenants/acme/namespaces/shop")]));
        assert!(!editor.covered_by(&[b(Role::NamespaceEditor, "tenants/acme/namespaces/web")]));
        assert!(!editor.covered_by(&[b(Role::TenantAdmin, "tenants/acme2")]));
        let root = b(Role::SystemAdmin, "");
        assert!(root.covered_by(std::slice::from_ref(&root)));
        assert!(!root.covered_by(&[b(Role::TenantAdmin, "tenants/acme")]));
    }

    #[test]
    fn system_admin_holds_everything() {
        let p = principal(None, &[(Role::SystemAdmin, "")], "");
        assert_eq!(p.grant(""), Some(Permission::Admin));
        assert_eq!(p.grant("tenants/b/namespaces/x"), Some(Permission::Admin));
    }

    #[test]
    fn other_tenants_are_not_found_and_system_level_is_denied() {
        let p = principal(Some("a"), &[(Role::TenantAdmin, "tenants/a")], "");
        assert!(matches!(
            p.check(Permission::Read, "tenants/b"),
            Err(Denied::NotFound(_))
        ));
        assert!(matches!(
            p.check(Permission::Read, "tenants/b/namespaces/x"),
            Err(Denied::NotFound(_))
        ));
        assert!(matches!(
            p.check(Permission::Admin, ""),
            Err(Denied::PermissionDenied(_))
        ));
        assert_eq!(
            p.check(Permission::Admin, "tenants/a/namespaces/x"),
            Ok(Permission::Admin)
        );
    }

    #[test]
    fn namespace_roles_are_ordered_and_read_their_tenant() {
        let ns = "tenants/a/namespaces/shop";
        let viewer = principal(Some("a"), &[(Role::NamespaceViewer, ns)], "");
        assert_eq!(
            viewer.check(Permission::Read, &format!("{ns}/virtualClusters/d")),
            Ok(Permission::Read)
        );
        assert!(matches!(
            viewer.check(Permission::Write, ns),
            Err(Denied::PermissionDenied(_))
        ));
        assert_eq!(viewer.grant("tenants/a"), Some(Permission::Read));
        assert_eq!(viewer.grant("tenants/a/namespaces/other"), None);
        let editor = principal(Some("a"), &[(Role::NamespaceEditor, ns)], "");
        assert_eq!(editor.grant(ns), Some(Permission::Write));
    }

    #[test]
    fn scoped_tokens_stay_inside_their_scope() {
        let ns = "tenants/a/namespaces/shop";
        let p = principal(Some("a"), &[(Role::TenantAdmin, "tenants/a")], ns);
        assert_eq!(
            p.grant(&format!("{ns}/virtualClusters/d")),
            Some(Permission::Admin)
        );
        assert_eq!(p.grant("tenants/a/namespaces/other"), None);
        assert_eq!(p.grant("tenants/a"), Some(Permission::Read));
        // Own user and tokens stay reachable (to revoke the token itself).
        assert_eq!(
            p.grant("tenants/a/users/u/tokens/x"),
            Some(Permission::Admin)
        );
    }

    #[test]
    fn a_scoped_operator_token_is_bound_by_its_scope() {
        let ns = "tenants/a/namespaces/shop";
        let p = principal(None, &[(Role::SystemAdmin, "")], ns);
        assert!(
            !p.is_system_admin(),
            "a scoped token is no system-wide admin"
        );
        assert!(p.is_system_admin_on(&format!("{ns}/virtualClusters/d")));
        assert!(!p.is_system_admin_on("tenants/a"));
        assert!(!p.is_system_admin_on("tenants/b"));
        assert_eq!(p.grant(""), None);
        assert_eq!(p.grant("tenants/b/namespaces/x"), None);
        assert!(matches!(
            p.check(Permission::Read, "tenants/b"),
            Err(Denied::NotFound(_))
        ));
        assert_eq!(p.readable_tenants(), ["a"]);
        let unscoped = principal(None, &[(Role::SystemAdmin, "")], "");
        assert!(unscoped.is_system_admin());
        assert!(unscoped.is_system_admin_on("tenants/b"));
        let tenant_scoped = principal(None, &[(Role::SystemAdmin, "")], "tenants/a");
        assert!(tenant_scoped.is_system_admin_on("tenants/a"));
        assert!(!tenant_scoped.is_system_admin_on("tenants/b"));
    }

    #[test]
    fn readable_tenants_follow_bindings_and_scope() {
        let p = principal(
            Some("a"),
            &[(Role::NamespaceViewer, "tenants/a/namespaces/shop")],
            "",
        );
        assert_eq!(p.readable_tenants(), ["a"]);
        let scoped_elsewhere = principal(
            Some("a"),
            &[(Role::TenantAdmin, "tenants/a")],
            "tenants/a/namespaces/x",
        );
        assert_eq!(scoped_elsewhere.readable_tenants(), ["a"]);
    }

    #[test]
    fn token_ids_come_from_the_token_name() {
        let mut p = principal(Some("a"), &[], "");
        p.token = "tenants/a/users/u/tokens/0123abcd".into();
        assert_eq!(p.token_id(), Some("0123abcd"));
        p.token = "users/admin/tokens/ff".into();
        assert_eq!(p.token_id(), Some("ff"));
        p.token = "t".into();
        assert_eq!(p.token_id(), None);
    }

    #[test]
    fn users_without_bindings_only_read_their_tenant() {
        let p = principal(Some("a"), &[], "");
        assert_eq!(p.grant("tenants/a"), Some(Permission::Read));
        assert_eq!(p.grant("tenants/a/namespaces/x"), None);
    }
}
