//! `UserService`, `RoleBindingService`, `ApiTokenService` and
//! `AuthorizationService`.

use std::sync::Arc;

use chrono::Utc;
use manifold_auth::{Authenticator, Permission, Role, principal};
use manifold_db::{Scope, Tx};
use manifold_proto::tenancy::v1 as pb;
use tonic::{Request, Response, Status};

use super::{convert, tenants::paginate};
use crate::{core::Core, domain::*, error::TenancyError, store};

/// Enters the tenant of `tenant` (if any) and returns its record.
async fn enter(tx: &mut Tx, tenant: Option<&str>) -> Result<Option<TenantRecord>, TenancyError> {
    match tenant {
        Some(t) => Ok(Some(store::enter_tenant(tx, t).await?)),
        None => Ok(None),
    }
}

/// The parent of users: `""` (system) or `tenants/{t}`.
fn user_parent(field: &str, parent: &str) -> Result<Option<String>, TenancyError> {
    if parent.is_empty() {
        Ok(None)
    } else {
        Ok(Some(parse_tenant_name(field, parent)?.to_owned()))
    }
}

pub struct Users(pub Arc<Core>);

#[tonic::async_trait]
impl pb::user_service_server::UserService for Users {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let tenant = user_parent("parent", &req.parent)?;
        p.check(Permission::Admin, &req.parent)
            .map_err(TenancyError::from)?;
        validate_id("user_id", &req.user_id)?;
        let u = req.user.unwrap_or_default();
        if !u.email.is_empty() && !u.email.contains('@') {
            return Err(TenancyError::invalid("user.email", "not an email address").into());
        }
        let rec = manifold_db::transaction!(
            self.0.db,
            "create_user",
            Scope::System,
            TenancyError,
            |tx| {
                let t = enter(tx, tenant.as_deref()).await?;
                store::insert_user(tx, t.as_ref(), &req.user_id, &u.display_name, &u.email).await
            }
        )?;
        Ok(Response::new(convert::user(rec)))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let p = principal(&request)?;
        let user = parse_user_name("name", &request.get_ref().name)?;
        p.check(Permission::Read, &user.name())
            .map_err(TenancyError::from)?;
        let rec =
            manifold_db::transaction!(self.0.db, "get_user", Scope::System, TenancyError, |tx| {
                enter(tx, user.tenant.as_deref()).await?;
                store::get_user(tx, &user).await
            })?;
        Ok(Response::new(convert::user(rec)))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let tenant = user_parent("parent", &req.parent)?;
        // Hide the tenant's existence first, then require admin for the directory.
        if !req.parent.is_empty() {
            p.check(Permission::Read, &req.parent)
                .map_err(TenancyError::from)?;
        }
        p.check(Permission::Admin, &req.parent)
            .map_err(TenancyError::from)?;
        let limit = page_size(req.page_size)?;
        let after = decode_page_token(&req.page_token)?;
        let rows = manifold_db::transaction!(
            self.0.db,
            "list_users",
            Scope::System,
            TenancyError,
            |tx| {
                let t = enter(tx, tenant.as_deref()).await?;
                store::list_users(tx, t.as_ref(), &after, limit + 1).await
            }
        )?;
        Ok(Response::new(paginate(
            rows,
            limit,
            |u| u.user.user.clone(),
            |rows, next| pb::ListUsersResponse {
                users: rows.into_iter().map(convert::user).collect(),
                next_page_token: next,
            },
        )))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<()>, Status> {
        let p = principal(&request)?;
        let user = parse_user_name("name", &request.get_ref().name)?;
        let parent = user.tenant.as_deref().map(tenant_name).unwrap_or_default();
        p.check(Permission::Read, &user.name())
            .map_err(TenancyError::from)?;
        p.check(Permission::Admin, &parent)
            .map_err(TenancyError::from)?;
        manifold_db::transaction!(
            self.0.db,
            "delete_user",
            Scope::System,
            TenancyError,
            |tx| {
                enter(tx, user.tenant.as_deref()).await?;
                let rec = store::get_user(tx, &user).await?;
                store::delete_user(tx, &rec).await
            }
        )?;
        self.0.access_changed();
        Ok(Response::new(()))
    }
}

pub struct RoleBindings(pub Arc<Core>);

fn role_fits_scope(role: Role, scope: &BindingScope) -> bool {
    matches!(
        (role, scope),
        (Role::SystemAdmin, BindingScope::System)
            | (Role::TenantAdmin, BindingScope::Tenant(_))
            | (
                Role::NamespaceAdmin | Role::NamespaceEditor | Role::NamespaceViewer,
                BindingScope::Namespace(..)
            )
    )
}

#[tonic::async_trait]
impl pb::role_binding_service_server::RoleBindingService for RoleBindings {
    async fn create_role_binding(
        &self,
        request: Request<pb::CreateRoleBindingRequest>,
    ) -> Result<Response<pb::RoleBinding>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let scope = parse_scope("parent", &req.parent)?;
        if !req.parent.is_empty() {
            p.check(Permission::Read, &req.parent)
                .map_err(TenancyError::from)?;
        }
        p.check(Permission::Admin, &req.parent)
            .map_err(TenancyError::from)?;
        let b = req
            .role_binding
            .ok_or_else(|| TenancyError::invalid("role_binding", "required"))?;
        let role = convert::role_from_proto(b.role).ok_or_else(|| {
            TenancyError::invalid(
                "role_binding.role",
                "required: SYSTEM_ADMIN, TENANT_ADMIN, NAMESPACE_ADMIN, NAMESPACE_EDITOR or NAMESPACE_VIEWER",
            )
        })?;
        if !role_fits_scope(role, &scope) {
            return Err(TenancyError::invalid(
                "role_binding.role",
                format!(
                    "{} cannot be bound at {:?}: SYSTEM_ADMIN binds at \"\", TENANT_ADMIN at tenants/{{t}}, namespace roles at tenants/{{t}}/namespaces/{{n}}",
                    role.as_str(),
                    scope.name()
                ),
            )
            .into());
        }
        let user = parse_user_name("role_binding.user", &b.user)?;
        // Tenant users are bound inside their own tenant only.
        if user.tenant.is_some() && user.tenant.as_deref() != scope.tenant() {
            return Err(TenancyError::invalid(
                "role_binding.user",
                "a tenant's user can only be bound inside that tenant",
            )
            .into());
        }
        let binding_id = if req.role_binding_id.is_empty() {
            format!("{}-{}", role.as_str(), uuid::Uuid::new_v4().simple())
                .chars()
                .take(40)
                .collect()
        } else {
            validate_id("role_binding_id", &req.role_binding_id)?;
            req.role_binding_id.clone()
        };
        let rec = manifold_db::transaction!(
            self.0.db,
            "create_role_binding",
            Scope::System,
            TenancyError,
            |tx| {
                let t = enter(tx, scope.tenant()).await?;
                let ns_id = match (&scope, &t) {
                    (BindingScope::Namespace(_, n), Some(t)) => {
                        Some(store::get_namespace(tx, t, n).await?.id)
                    }
                    _ => None,
                };
                // A system user bound in a tenant is looked up system-wide.
                if user.tenant.is_none() {
                    manifold_db::set_scope(tx, Scope::System).await?;
                }
                let u = store::get_user(tx, &user).await?;
                // Narrow to the tenant for the write, except for a system
                // user: its row is invisible in a tenant's scope, so the
                // binding's read-back (which names the user) would miss.
                if let (Some(t), Some(_)) = (&t, &user.tenant) {
                    store::narrow(tx, t.id).await?;
                }
                store::insert_binding(
                    tx,
                    &scope,
                    t.as_ref().map(|t| t.id),
                    ns_id,
                    &binding_id,
                    role,
                    &u,
                )
                .await
            }
        )?;
        self.0.access_changed();
        Ok(Response::new(convert::binding(rec)))
    }

    async fn get_role_binding(
        &self,
        request: Request<pb::GetRoleBindingRequest>,
    ) -> Result<Response<pb::RoleBinding>, Status> {
        let p = principal(&request)?;
        let (scope, id) = parse_binding_name("name", &request.get_ref().name)?;
        let needed = if scope == BindingScope::System {
            Permission::Admin
        } else {
            Permission::Read
        };
        p.check(needed, &scope.name()).map_err(TenancyError::from)?;
        let rec = manifold_db::transaction!(
            self.0.db,
            "get_role_binding",
            Scope::System,
            TenancyError,
            |tx| {
                enter(tx, scope.tenant()).await?;
                store::get_binding(tx, &scope, &id).await
            }
        )?;
        Ok(Response::new(convert::binding(rec)))
    }

    async fn list_role_bindings(
        &self,
        request: Request<pb::ListRoleBindingsRequest>,
    ) -> Result<Response<pb::ListRoleBindingsResponse>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let scope = parse_scope("parent", &req.parent)?;
        let needed = if scope == BindingScope::System {
            Permission::Admin
        } else {
            Permission::Read
        };
        p.check(needed, &scope.name()).map_err(TenancyError::from)?;
        let limit = page_size(req.page_size)?;
        let after = decode_page_token(&req.page_token)?;
        let rows = manifold_db::transaction!(
            self.0.db,
            "list_role_bindings",
            Scope::System,
            TenancyError,
            |tx| {
                enter(tx, scope.tenant()).await?;
                store::list_bindings(tx, &scope, &after, limit + 1).await
            }
        )?;
        Ok(Response::new(paginate(
            rows,
            limit,
            |b| b.binding_id.clone(),
            |rows, next| pb::ListRoleBindingsResponse {
                role_bindings: rows.into_iter().map(convert::binding).collect(),
                next_page_token: next,
            },
        )))
    }

    async fn delete_role_binding(
        &self,
        request: Request<pb::DeleteRoleBindingRequest>,
    ) -> Result<Response<()>, Status> {
        let p = principal(&request)?;
        let (scope, id) = parse_binding_name("name", &request.get_ref().name)?;
        if scope != BindingScope::System {
            p.check(Permission::Read, &scope.name())
                .map_err(TenancyError::from)?;
        }
        p.check(Permission::Admin, &scope.name())
            .map_err(TenancyError::from)?;
        manifold_db::transaction!(
            self.0.db,
            "delete_role_binding",
            Scope::System,
            TenancyError,
            |tx| {
                enter(tx, scope.tenant()).await?;
                store::delete_binding(tx, &scope, &id).await
            }
        )?;
        self.0.access_changed();
        Ok(Response::new(()))
    }
}

pub struct ApiTokens(pub Arc<Core>);

const DEFAULT_TTL_DAYS: i64 = 90;
const MAX_TTL_DAYS: i64 = 365;

#[tonic::async_trait]
impl pb::api_token_service_server::ApiTokenService for ApiTokens {
    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let user = parse_user_name("parent", &req.parent)?;
        p.check(Permission::Admin, &user.name())
            .map_err(TenancyError::from)?;
        let t = req.token.unwrap_or_default();
        let ttl = match req.ttl {
            None => chrono::Duration::days(DEFAULT_TTL_DAYS),
            Some(d) if d.seconds > 0 && d.seconds <= MAX_TTL_DAYS * 86_400 => {
                chrono::Duration::seconds(d.seconds)
            }
            Some(_) => {
                return Err(
                    TenancyError::invalid("ttl", "must be between 1 second and 365 days").into(),
                );
            }
        };
        if !t.scope.is_empty() && !t.scope.starts_with("tenants/") {
            return Err(TenancyError::invalid(
                "token.scope",
                "must be empty or a resource name under tenants/",
            )
            .into());
        }
        // A scoped token never mints a token that reaches further than itself.
        let scope = match (p.token_scope.as_str(), t.scope.as_str()) {
            ("", s) => s.to_owned(),
            (own, "") => own.to_owned(),
            (own, s) if manifold_auth::is_under(s, own) => s.to_owned(),
            _ => {
                return Err(TenancyError::invalid(
                    "token.scope",
                    format!(
                        "must lie within the calling token's scope {:?}",
                        p.token_scope
                    ),
                )
                .into());
            }
        };
        let secret = new_secret();
        // Never outlive the calling token: a token cannot extend itself.
        let expire = (Utc::now() + ttl).min(p.token_expire_time);
        let parent_token = p.token_id().map(str::to_owned);
        let rec = manifold_db::transaction!(
            self.0.db,
            "create_api_token",
            Scope::System,
            TenancyError,
            |tx| {
                // The minting token is the new one's parent: revoking it
                // revokes this one too.
                let parent = match &parent_token {
                    Some(id) => Some(store::lock_parent(tx, id).await?),
                    None => None,
                };
                let tenant = enter(tx, user.tenant.as_deref()).await?;
                let u = store::get_user(tx, &user).await?;
                store::insert_token(
                    tx,
                    &u,
                    tenant.map(|t| t.id),
                    &secret,
                    &t.display_name,
                    &scope,
                    expire,
                    parent,
                )
                .await
            }
        )?;
        Ok(Response::new(pb::CreateApiTokenResponse {
            token: Some(convert::token(rec)),
            secret: secret.bearer,
        }))
    }

    async fn get_api_token(
        &self,
        request: Request<pb::GetApiTokenRequest>,
    ) -> Result<Response<pb::ApiToken>, Status> {
        let p = principal(&request)?;
        let (user, id) = parse_token_name("name", &request.get_ref().name)?;
        p.check(Permission::Read, &user.name())
            .map_err(TenancyError::from)?;
        let rec = manifold_db::transaction!(
            self.0.db,
            "get_api_token",
            Scope::System,
            TenancyError,
            |tx| {
                enter(tx, user.tenant.as_deref()).await?;
                store::get_token(tx, &user, &id).await
            }
        )?;
        Ok(Response::new(convert::token(rec)))
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        let p = principal(&request)?;
        let req = request.into_inner();
        let user = parse_user_name("parent", &req.parent)?;
        p.check(Permission::Read, &user.name())
            .map_err(TenancyError::from)?;
        let limit = page_size(req.page_size)?;
        let after = decode_page_token(&req.page_token)?;
        let rows = manifold_db::transaction!(
            self.0.db,
            "list_api_tokens",
            Scope::System,
            TenancyError,
            |tx| {
                enter(tx, user.tenant.as_deref()).await?;
                let u = store::get_user(tx, &user).await?;
                store::list_tokens(tx, &u, &after, limit + 1).await
            }
        )?;
        Ok(Response::new(paginate(
            rows,
            limit,
            |t| t.token_id.clone(),
            |rows, next| pb::ListApiTokensResponse {
                tokens: rows.into_iter().map(convert::token).collect(),
                next_page_token: next,
            },
        )))
    }

    async fn revoke_api_token(
        &self,
        request: Request<pb::RevokeApiTokenRequest>,
    ) -> Result<Response<pb::ApiToken>, Status> {
        let p = principal(&request)?;
        let name = request.get_ref().name.clone();
        let (user, id) = parse_token_name("name", &name)?;
        p.check(Permission::Admin, &name)
            .map_err(TenancyError::from)?;
        let (rec, offspring) = manifold_db::transaction!(
            self.0.db,
            "revoke_api_token",
            Scope::System,
            TenancyError,
            |tx| {
                enter(tx, user.tenant.as_deref()).await?;
                store::revoke_token(tx, &user, &id).await
            }
        )?;
        if offspring > 0 {
            tracing::info!(token = %name, offspring, "revoked a token and the tokens minted from it");
        }
        self.0.access_changed();
        Ok(Response::new(convert::token(rec)))
    }
}

pub struct Authorization(pub Arc<Core>);

pub fn principal_to_proto(p: &manifold_auth::Principal) -> pb::Principal {
    pb::Principal {
        user: p.user.clone(),
        tenant: p.tenant_resource().unwrap_or_default(),
        role_bindings: p
            .bindings
            .iter()
            .map(|b| pb::RoleBinding {
                // The binding's own id is not part of the principal; the scope
                // is what callers need.
                name: if b.scope.is_empty() {
                    "roleBindings/-".into()
                } else {
                    format!("{}/roleBindings/-", b.scope)
                },
                role: convert::role_to_proto(b.role) as i32,
                user: p.user.clone(),
                create_time: None,
            })
            .collect(),
        token: p.token.clone(),
        token_scope: p.token_scope.clone(),
        token_expire_time: Some(convert::ts(p.token_expire_time)),
    }
}

#[tonic::async_trait]
impl pb::authorization_service_server::AuthorizationService for Authorization {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let p = principal(&request)?;
        Ok(Response::new(principal_to_proto(&p)))
    }

    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let req = request.into_inner();
        let needed = match pb::Permission::try_from(req.permission) {
            Ok(pb::Permission::Read) => Permission::Read,
            Ok(pb::Permission::Write) => Permission::Write,
            Ok(pb::Permission::Admin) => Permission::Admin,
            _ => {
                return Err(
                    TenancyError::invalid("permission", "required: READ, WRITE or ADMIN").into(),
                );
            }
        };
        if req.token.is_empty() {
            return Err(
                TenancyError::invalid("token", "required: the bearer token to check").into(),
            );
        }
        let p = self
            .0
            .auth
            .authenticate(&req.token)
            .await
            .map_err(TenancyError::from)?;
        let granted = p.check(needed, &req.resource).map_err(TenancyError::from)?;
        Ok(Response::new(pb::AuthorizeResponse {
            principal: Some(principal_to_proto(&p)),
            granted: match granted {
                Permission::Read => pb::Permission::Read,
                Permission::Write => pb::Permission::Write,
                Permission::Admin => pb::Permission::Admin,
            } as i32,
        }))
    }
}
