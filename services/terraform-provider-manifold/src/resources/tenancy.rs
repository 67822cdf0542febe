//! `manifold_tenant`, `manifold_namespace`, `manifold_user`,
//! `manifold_role_binding`, `manifold_api_token` over `manifold.tenancy.v1`.

use manifold_proto::tenancy::v1 as pb;

use super::{api, check_id, check_name, deleted, found, mask, named, split_name, ts};
use crate::client::Client;
use crate::diag::Diag;
use crate::framework::{CreateError, Resource};
use crate::schema::{Attr, Schema};
use crate::value::{Obj, ObjExt, Type, Value};

// ------------------------------------------------------------------ tenant

pub struct Tenant;

fn tenant_obj(t: &pb::Tenant) -> Obj {
    let mut o = named(&t.name);
    o.insert(
        "tenant_id".into(),
        Value::str(t.name.strip_prefix("tenants/").unwrap_or(&t.name)),
    );
    o.insert("display_name".into(), Value::str_or_null(&t.display_name));
    o.insert("labels".into(), Value::string_map_or_null(&t.labels));
    o.insert("uid".into(), Value::str(&t.uid));
    o.insert(
        "state".into(),
        Value::str(
            pb::tenant::State::try_from(t.state)
                .unwrap_or_default()
                .as_str_name(),
        ),
    );
    o.insert("create_time".into(), ts(t.create_time.as_ref()));
    o
}

#[tonic::async_trait]
impl Resource for Tenant {
    fn type_name(&self) -> &'static str {
        "manifold_tenant"
    }

    fn schema(&self) -> Schema {
        let [id, name] = super::id_attrs();
        Schema::new(
            "A tenant: the hard isolation boundary that owns namespaces, users and tokens. Needs a system-admin token.",
            vec![
                id,
                name,
                Attr::required(
                    "tenant_id",
                    Type::String,
                    "DNS label, e.g. `acme`. Changing it replaces the tenant.",
                )
                .force_new(),
                Attr::optional("display_name", Type::String, "Human-readable name."),
                Attr::optional("labels", Type::map(Type::String), "Labels."),
                Attr::optional(
                    "force_destroy",
                    Type::Bool,
                    "Delete the tenant even when it still has namespaces (everything it owns goes with it). Default false.",
                ),
                Attr::computed("uid", Type::String, "Stable unique id."),
                Attr::computed("state", Type::String, "ACTIVE or SUSPENDED."),
                Attr::computed("create_time", Type::String, "RFC 3339."),
            ],
        )
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let mut d = Vec::new();
        check_id(config, "tenant_id", &mut d);
        d
    }

    async fn create(&self, c: &Client, p: &Obj) -> Result<Obj, CreateError> {
        let t = api(
            "CreateTenant",
            c.tenants()
                .create_tenant(c.req(pb::CreateTenantRequest {
                    tenant_id: p.string("tenant_id"),
                    tenant: Some(pb::Tenant {
                        display_name: p.string("display_name"),
                        labels: p.string_map("labels"),
                        ..Default::default()
                    }),
                }))
                .await,
        )?;
        Ok(tenant_obj(&t))
    }

    async fn read(&self, c: &Client, s: &Obj) -> Result<Option<Obj>, Diag> {
        let t = found(
            "GetTenant",
            c.tenants()
                .get_tenant(c.req(pb::GetTenantRequest {
                    name: s.string("name"),
                }))
                .await,
        )?;
        Ok(t.as_ref().map(tenant_obj))
    }

    async fn update(&self, c: &Client, prior: &Obj, p: &Obj) -> Result<Obj, Diag> {
        let m = mask(prior, p, &["display_name", "labels"]);
        if m.paths.is_empty() {
            return Ok(Obj::new());
        }
        let t = api(
            "UpdateTenant",
            c.tenants()
                .update_tenant(c.req(pb::UpdateTenantRequest {
                    tenant: Some(pb::Tenant {
                        name: prior.string("name"),
                        display_name: p.string("display_name"),
                        labels: p.string_map("labels"),
                        ..Default::default()
                    }),
                    update_mask: Some(m),
                }))
                .await,
        )?;
        Ok(tenant_obj(&t))
    }

    async fn delete(&self, c: &Client, s: &Obj) -> Result<(), Diag> {
        deleted(
            "DeleteTenant",
            c.tenants()
                .delete_tenant(c.req(pb::DeleteTenantRequest {
                    name: s.string("name"),
                    force: s.boolean("force_destroy").unwrap_or(false),
                    etag: String::new(),
                }))
                .await,
        )
    }

    fn import_state(&self, id: &str) -> Result<Obj, Diag> {
        // `acme` or `tenants/acme`.
        let name = if id.contains('/') {
            id.to_owned()
        } else {
            format!("tenants/{id}")
        };
        Ok(named(&name))
    }
}

// --------------------------------------------------------------- namespace

pub struct Namespace;

fn namespace_obj(n: &pb::Namespace) -> Obj {
    let mut o = named(&n.name);
    if let Some((parent, id)) = split_name(&n.name, "namespaces") {
        o.insert("parent".into(), Value::str(parent));
        o.insert("namespace_id".into(), Value::str(id));
    }
    o.insert("display_name".into(), Value::str_or_null(&n.display_name));
    o.insert("labels".into(), Value::string_map_or_null(&n.labels));
    o.insert("uid".into(), Value::str(&n.uid));
    o.insert("create_time".into(), ts(n.create_time.as_ref()));
    o
}

#[tonic::async_trait]
impl Resource for Namespace {
    fn type_name(&self) -> &'static str {
        "manifold_namespace"
    }

    fn schema(&self) -> Schema {
        let [id, name] = super::id_attrs();
        Schema::new(
            "A namespace of a tenant: where virtual sites, vK8s and role bindings live. Display name and labels change in place; a new parent or id replaces it (deleting every vK8s in it).",
            vec![
                id,
                name,
                Attr::required(
                    "parent",
                    Type::String,
                    "The tenant, `tenants/{tenant}` (a `manifold_tenant`'s `name`).",
                )
                .force_new(),
                Attr::required("namespace_id", Type::String, "DNS label, e.g. `shop`.").force_new(),
                Attr::optional("display_name", Type::String, "Human-readable name."),
                Attr::optional("labels", Type::map(Type::String), "Labels."),
                Attr::computed("uid", Type::String, "Stable unique id."),
                Attr::computed("create_time", Type::String, "RFC 3339."),
            ],
        )
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let mut d = Vec::new();
        check_name(config, "parent", &["tenants"], &mut d);
        check_id(config, "namespace_id", &mut d);
        d
    }

    async fn create(&self, c: &Client, p: &Obj) -> Result<Obj, CreateError> {
        let n = api(
            "CreateNamespace",
            c.namespaces()
                .create_namespace(c.req(pb::CreateNamespaceRequest {
                    parent: p.string("parent"),
                    namespace_id: p.string("namespace_id"),
                    namespace: Some(pb::Namespace {
                        display_name: p.string("display_name"),
                        labels: p.string_map("labels"),
                        ..Default::default()
                    }),
                }))
                .await,
        )?;
        Ok(namespace_obj(&n))
    }

    async fn read(&self, c: &Client, s: &Obj) -> Result<Option<Obj>, Diag> {
        let n = found(
            "GetNamespace",
            c.namespaces()
                .get_namespace(c.req(pb::GetNamespaceRequest {
                    name: s.string("name"),
                }))
                .await,
        )?;
        Ok(n.as_ref().map(namespace_obj))
    }

    async fn update(&self, c: &Client, prior: &Obj, p: &Obj) -> Result<Obj, Diag> {
        let m = mask(prior, p, &["display_name", "labels"]);
        if m.paths.is_empty() {
            return Ok(Obj::new());
        }
        let n = api(
            "UpdateNamespace",
            c.namespaces()
                .update_namespace(c.req(pb::UpdateNamespaceRequest {
                    namespace: Some(pb::Namespace {
                        name: prior.string("name"),
                        display_name: p.string("display_name"),
                        labels: p.string_map("labels"),
                        ..Default::default()
                    }),
                    update_mask: Some(m),
                }))
                .await,
        )?;
        Ok(namespace_obj(&n))
    }

    async fn delete(&self, c: &Client, s: &Obj) -> Result<(), Diag> {
        deleted(
            "DeleteNamespace",
            c.namespaces()
                .delete_namespace(c.req(pb::DeleteNamespaceRequest {
                    name: s.string("name"),
                    etag: String::new(),
                }))
                .await,
        )
    }
}

// -------------------------------------------------------------------- user

pub struct User;

fn user_obj(u: &pb::User) -> Obj {
    let mut o = named(&u.name);
    if let Some((parent, id)) = split_name(&u.name, "users") {
        o.insert("parent".into(), Value::str_or_null(parent));
        o.insert("user_id".into(), Value::str(id));
    }
    o.insert("display_name".into(), Value::str_or_null(&u.display_name));
    o.insert("email".into(), Value::str_or_null(&u.email));
    o.insert("uid".into(), Value::str(&u.uid));
    o.insert("create_time".into(), ts(u.create_time.as_ref()));
    o
}

#[tonic::async_trait]
impl Resource for User {
    fn type_name(&self) -> &'static str {
        "manifold_user"
    }

    fn schema(&self) -> Schema {
        let [id, name] = super::id_attrs();
        Schema::new(
            "A user, of a tenant or of the system; what role bindings and API tokens belong to. Users cannot be updated: every change replaces it.",
            vec![
                id,
                name,
                Attr::optional(
                    "parent",
                    Type::String,
                    "`tenants/{t}` for a tenant user; unset for a system user.",
                )
                .force_new(),
                Attr::required("user_id", Type::String, "DNS label, e.g. `alice`.").force_new(),
                Attr::optional("display_name", Type::String, "Human-readable name.").force_new(),
                Attr::optional("email", Type::String, "E-mail address.").force_new(),
                Attr::computed("uid", Type::String, "Stable unique id."),
                Attr::computed("create_time", Type::String, "RFC 3339."),
            ],
        )
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let mut d = Vec::new();
        check_name(config, "parent", &["tenants"], &mut d);
        check_id(config, "user_id", &mut d);
        d
    }

    async fn create(&self, c: &Client, p: &Obj) -> Result<Obj, CreateError> {
        let u = api(
            "CreateUser",
            c.users()
                .create_user(c.req(pb::CreateUserRequest {
                    parent: p.string("parent"),
                    user_id: p.string("user_id"),
                    user: Some(pb::User {
                        display_name: p.string("display_name"),
                        email: p.string("email"),
                        ..Default::default()
                    }),
                }))
                .await,
        )?;
        Ok(user_obj(&u))
    }

    async fn read(&self, c: &Client, s: &Obj) -> Result<Option<Obj>, Diag> {
        let u = found(
            "GetUser",
            c.users()
                .get_user(c.req(pb::GetUserRequest {
                    name: s.string("name"),
                }))
                .await,
        )?;
        Ok(u.as_ref().map(user_obj))
    }

    async fn update(&self, _: &Client, _: &Obj, _: &Obj) -> Result<Obj, Diag> {
        Ok(Obj::new())
    }

    async fn delete(&self, c: &Client, s: &Obj) -> Result<(), Diag> {
        deleted(
            "DeleteUser",
            c.users()
                .delete_user(c.req(pb::DeleteUserRequest {
                    name: s.string("name"),
                }))
                .await,
        )
    }
}

// ------------------------------------------------------------ role binding

pub struct RoleBinding;

const ROLES: &[&str] = &[
    "SYSTEM_ADMIN",
    "TENANT_ADMIN",
    "NAMESPACE_ADMIN",
    "NAMESPACE_EDITOR",
    "NAMESPACE_VIEWER",
];

fn binding_obj(b: &pb::RoleBinding) -> Obj {
    let mut o = named(&b.name);
    if let Some((parent, id)) = split_name(&b.name, "roleBindings") {
        o.insert("parent".into(), Value::str_or_null(parent));
        o.insert("role_binding_id".into(), Value::str(id));
    }
    o.insert(
        "role".into(),
        Value::str(pb::Role::try_from(b.role).unwrap_or_default().as_str_name()),
    );
    o.insert("user".into(), Value::str(&b.user));
    o.insert("create_time".into(), ts(b.create_time.as_ref()));
    o
}

#[tonic::async_trait]
impl Resource for RoleBinding {
    fn type_name(&self) -> &'static str {
        "manifold_role_binding"
    }

    fn schema(&self) -> Schema {
        let [id, name] = super::id_attrs();
        Schema::new(
            "Grants a user a role at a scope. Bindings cannot be updated: every change replaces it.",
            vec![
                id,
                name,
                Attr::optional(
                    "parent",
                    Type::String,
                    "The scope: `tenants/{t}` (TENANT_ADMIN), `tenants/{t}/namespaces/{n}` (NAMESPACE_*), unset for SYSTEM_ADMIN.",
                )
                .force_new(),
                Attr::required("role", Type::String, "One of SYSTEM_ADMIN, TENANT_ADMIN, NAMESPACE_ADMIN, NAMESPACE_EDITOR, NAMESPACE_VIEWER.").force_new(),
                Attr::required("user", Type::String, "The user, `users/{u}` or `tenants/{t}/users/{u}`.").force_new(),
                Attr::optional_computed("role_binding_id", Type::String, "DNS label; generated when unset.").force_new(),
                Attr::computed("create_time", Type::String, "RFC 3339."),
            ],
        )
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let mut d = Vec::new();
        if let Some(r) = config.opt_str("role")
            && !ROLES.contains(&r)
        {
            d.push(Diag::attr(
                "role",
                "Invalid role",
                format!("{r:?} is not a role; use one of {}.", ROLES.join(", ")),
            ));
        }
        check_id(config, "role_binding_id", &mut d);
        if let Some(u) = config.opt_str("user")
            && !super::matches_shape(u, &["users"])
            && !super::matches_shape(u, &["tenants", "users"])
        {
            d.push(Diag::attr(
                "user",
                "Invalid user",
                format!("{u:?} is not a user name: use users/{{user}} or tenants/{{tenant}}/users/{{user}}."),
            ));
        }
        d
    }

    async fn create(&self, c: &Client, p: &Obj) -> Result<Obj, CreateError> {
        let role = pb::Role::from_str_name(&p.string("role")).unwrap_or_default();
        let b = api(
            "CreateRoleBinding",
            c.role_bindings()
                .create_role_binding(c.req(pb::CreateRoleBindingRequest {
                    parent: p.string("parent"),
                    role_binding_id: p.string("role_binding_id"),
                    role_binding: Some(pb::RoleBinding {
                        role: role as i32,
                        user: p.string("user"),
                        ..Default::default()
                    }),
                }))
                .await,
        )?;
        Ok(binding_obj(&b))
    }

    async fn read(&self, c: &Client, s: &Obj) -> Result<Option<Obj>, Diag> {
        let b = found(
            "GetRoleBinding",
            c.role_bindings()
                .get_role_binding(c.req(pb::GetRoleBindingRequest {
                    name: s.string("name"),
                }))
                .await,
        )?;
        Ok(b.as_ref().map(binding_obj))
    }

    async fn update(&self, _: &Client, _: &Obj, _: &Obj) -> Result<Obj, Diag> {
        Ok(Obj::new())
    }

    async fn delete(&self, c: &Client, s: &Obj) -> Result<(), Diag> {
        deleted(
            "DeleteRoleBinding",
            c.role_bindings()
                .delete_role_binding(c.req(pb::DeleteRoleBindingRequest {
                    name: s.string("name"),
                }))
                .await,
        )
    }
}

// --------------------------------------------------------------- API token

pub struct ApiToken;

fn token_obj(t: &pb::ApiToken) -> Obj {
    let mut o = named(&t.name);
    if let Some((parent, _)) = split_name(&t.name, "tokens") {
        o.insert("parent".into(), Value::str(parent));
    }
    o.insert("display_name".into(), Value::str_or_null(&t.display_name));
    o.insert("scope".into(), Value::str_or_null(&t.scope));
    o.insert("expire_time".into(), ts(t.expire_time.as_ref()));
    o.insert(
        "state".into(),
        Value::str(
            pb::api_token::State::try_from(t.state)
                .unwrap_or_default()
                .as_str_name(),
        ),
    );
    o
}

#[tonic::async_trait]
impl Resource for ApiToken {
    fn type_name(&self) -> &'static str {
        "manifold_api_token"
    }

    fn schema(&self) -> Schema {
        let [id, name] = super::id_attrs();
        Schema::new(
            "An API token of a user. The secret is known only to the apply that created it (stored in state, sensitive). Destroying revokes it; a token revoked or expired elsewhere is created anew.",
            vec![
                id,
                name,
                Attr::required("parent", Type::String, "The user, `users/{u}` or `tenants/{t}/users/{u}`.").force_new(),
                Attr::optional("display_name", Type::String, "What the token is for.").force_new(),
                Attr::optional(
                    "scope",
                    Type::String,
                    "Resource-name prefix the token is limited to, e.g. `tenants/acme/namespaces/shop`.",
                )
                .force_new(),
                Attr::optional("ttl_seconds", Type::Number, "Lifetime in seconds; default 90 days, at most one year.").force_new(),
                Attr::computed("secret", Type::String, "The bearer secret.").sensitive(),
                Attr::computed("expire_time", Type::String, "RFC 3339."),
                Attr::computed("state", Type::String, "ACTIVE, EXPIRED or REVOKED."),
            ],
        )
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let mut d = Vec::new();
        if let Some(t) = config.int("ttl_seconds")
            && !(1..=366 * 86400).contains(&t)
        {
            d.push(Diag::attr(
                "ttl_seconds",
                "Invalid ttl_seconds",
                "The lifetime must be between 1 second and one year.",
            ));
        }
        d
    }

    async fn create(&self, c: &Client, p: &Obj) -> Result<Obj, CreateError> {
        let r = api(
            "CreateApiToken",
            c.api_tokens()
                .create_api_token(c.req(pb::CreateApiTokenRequest {
                    parent: p.string("parent"),
                    token: Some(pb::ApiToken {
                        display_name: p.string("display_name"),
                        scope: p.string("scope"),
                        ..Default::default()
                    }),
                    ttl: p.int("ttl_seconds").map(|s| prost_types::Duration {
                        seconds: s,
                        nanos: 0,
                    }),
                }))
                .await,
        )?;
        let mut o = r.token.as_ref().map(token_obj).unwrap_or_default();
        o.insert("secret".into(), Value::str(r.secret));
        Ok(o)
    }

    async fn read(&self, c: &Client, s: &Obj) -> Result<Option<Obj>, Diag> {
        let t = found(
            "GetApiToken",
            c.api_tokens()
                .get_api_token(c.req(pb::GetApiTokenRequest {
                    name: s.string("name"),
                }))
                .await,
        )?;
        // A revoked or expired token is as good as gone: plan a new one.
        Ok(t.filter(|t| t.state == pb::api_token::State::Active as i32)
            .as_ref()
            .map(token_obj))
    }

    async fn update(&self, _: &Client, _: &Obj, _: &Obj) -> Result<Obj, Diag> {
        Ok(Obj::new())
    }

    async fn delete(&self, c: &Client, s: &Obj) -> Result<(), Diag> {
        deleted(
            "RevokeApiToken",
            c.api_tokens()
                .revoke_api_token(c.req(pb::RevokeApiTokenRequest {
                    name: s.string("name"),
                }))
                .await,
        )
    }
}
