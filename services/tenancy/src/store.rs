//! Tenancy's SQL. Small functions over one transaction; the caller commits.
//! Every query names the tenant it works on, and row-level security checks
//! the same thing a second time inside Postgres.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use manifold_auth::Role;
use manifold_db::{DbError, Scope, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::*;
use crate::error::TenancyError;

/// Narrows the rest of the transaction to one tenant's rows.
pub async fn narrow(tx: &mut Tx, tenant_id: Uuid) -> Result<(), DbError> {
    manifold_db::set_scope(tx, Scope::Tenant(tenant_id)).await
}

fn labels_of(v: serde_json::Value) -> HashMap<String, String> {
    serde_json::from_value(v).unwrap_or_default()
}

fn labels_json(labels: &HashMap<String, String>) -> serde_json::Value {
    serde_json::to_value(labels).unwrap_or_default()
}

// ------------------------------------------------------------------ tenants

fn tenant_row(r: sqlx::postgres::PgRow) -> TenantRecord {
    TenantRecord {
        id: r.get("id"),
        name: r.get("name"),
        display_name: r.get("display_name"),
        labels: labels_of(r.get("labels")),
        state: TenantState::parse(r.get::<&str, _>("state")),
        version: r.get("version"),
        create_time: r.get("create_time"),
        update_time: r.get("update_time"),
    }
}

const TENANT_COLS: &str =
    "id, name, display_name, labels, state, version, create_time, update_time";

pub async fn insert_tenant(
    tx: &mut Tx,
    name: &str,
    display_name: &str,
    labels: &HashMap<String, String>,
    state: TenantState,
) -> Result<TenantRecord, TenancyError> {
    let id = Uuid::now_v7();
    narrow(tx, id).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tenancy.tenants (id, name, display_name, labels, state) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {TENANT_COLS}"
    )))
    .bind(id)
    .bind(name)
    .bind(display_name)
    .bind(labels_json(labels))
    .bind(state.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match DbError::from(e) {
        DbError::UniqueViolation(_) => TenancyError::AlreadyExists(tenant_name(name)),
        other => other.into(),
    })?;
    Ok(tenant_row(row))
}

/// Looks a tenant up by name (the transaction must be system-scoped or
/// already narrowed to it).
pub async fn get_tenant(tx: &mut Tx, name: &str) -> Result<TenantRecord, TenancyError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TENANT_COLS} FROM tenancy.tenants WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .map(tenant_row)
    .ok_or_else(|| TenancyError::NotFound(tenant_name(name)))
}

/// Resolves a tenant and narrows the transaction to it.
pub async fn enter_tenant(tx: &mut Tx, name: &str) -> Result<TenantRecord, TenancyError> {
    let t = get_tenant(tx, name).await?;
    narrow(tx, t.id).await?;
    Ok(t)
}

/// Tenants after `after` by name; `only`, when given, limits to those names.
pub async fn list_tenants(
    tx: &mut Tx,
    after: &str,
    limit: i64,
    only: Option<&[String]>,
) -> Result<Vec<TenantRecord>, TenancyError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TENANT_COLS} FROM tenancy.tenants \
         WHERE name > $1 AND ($3::text[] IS NULL OR name = ANY($3)) ORDER BY name LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .bind(only)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(rows.into_iter().map(tenant_row).collect())
}

pub async fn update_tenant(
    tx: &mut Tx,
    current: &TenantRecord,
    display_name: &str,
    labels: &HashMap<String, String>,
    state: TenantState,
) -> Result<TenantRecord, TenancyError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE tenancy.tenants SET display_name = $2, labels = $3, state = $4, \
         version = version + 1, update_time = now() \
         WHERE id = $1 AND version = $5 RETURNING {TENANT_COLS}"
    )))
    .bind(current.id)
    .bind(display_name)
    .bind(labels_json(labels))
    .bind(state.as_str())
    .bind(current.version)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?;
    row.map(tenant_row)
        .ok_or_else(|| TenancyError::Aborted(tenant_name(&current.name)))
}

pub async fn count_namespaces(tx: &mut Tx, tenant_id: Uuid) -> Result<i64, TenancyError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM tenancy.namespaces WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&mut **tx)
            .await
            .map_err(DbError::from)?,
    )
}

/// Deletes a tenant; everything it owns in this schema goes with it (cascade).
pub async fn delete_tenant(tx: &mut Tx, tenant_id: Uuid) -> Result<(), TenancyError> {
    sqlx::query("DELETE FROM tenancy.tenants WHERE id = $1")
        .bind(tenant_id)
        .execute(&mut **tx)
        .await
        .map_err(DbError::from)?;
    Ok(())
}

// --------------------------------------------------------------- namespaces

const NS_COLS: &str =
    "n.id, t.name AS tenant, n.name, n.display_name, n.labels, n.version, n.create_time";

fn ns_row(r: sqlx::postgres::PgRow) -> NamespaceRecord {
    NamespaceRecord {
        id: r.get("id"),
        tenant: r.get("tenant"),
        name: r.get("name"),
        display_name: r.get("display_name"),
        labels: labels_of(r.get("labels")),
        version: r.get("version"),
        create_time: r.get("create_time"),
    }
}

pub async fn insert_namespace(
    tx: &mut Tx,
    tenant: &TenantRecord,
    name: &str,
    display_name: &str,
    labels: &HashMap<String, String>,
) -> Result<NamespaceRecord, TenancyError> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO tenancy.namespaces (id, tenant_id, name, display_name, labels) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tenant.id)
    .bind(name)
    .bind(display_name)
    .bind(labels_json(labels))
    .execute(&mut **tx)
    .await
    .map_err(|e| match DbError::from(e) {
        DbError::UniqueViolation(_) => {
            TenancyError::AlreadyExists(format!("tenants/{}/namespaces/{name}", tenant.name))
        }
        other => other.into(),
    })?;
    get_namespace(tx, tenant, name).await
}

pub async fn get_namespace(
    tx: &mut Tx,
    tenant: &TenantRecord,
    name: &str,
) -> Result<NamespaceRecord, TenancyError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {NS_COLS} FROM tenancy.namespaces n JOIN tenancy.tenants t ON t.id = n.tenant_id \
         WHERE n.tenant_id = $1 AND n.name = $2"
    )))
    .bind(tenant.id)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .map(ns_row)
    .ok_or_else(|| TenancyError::NotFound(format!("tenants/{}/namespaces/{name}", tenant.name)))
}

pub async fn update_namespace(
    tx: &mut Tx,
    current: &NamespaceRecord,
    display_name: &str,
    labels: &HashMap<String, String>,
) -> Result<NamespaceRecord, TenancyError> {
    let name = format!("tenants/{}/namespaces/{}", current.tenant, current.name);
    let updated = sqlx::query(
        "UPDATE tenancy.namespaces SET display_name = $2, labels = $3, version = version + 1 \
         WHERE id = $1 AND version = $4",
    )
    .bind(current.id)
    .bind(display_name)
    .bind(labels_json(labels))
    .bind(current.version)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    if updated.rows_affected() == 0 {
        return Err(TenancyError::Aborted(name));
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {NS_COLS} FROM tenancy.namespaces n JOIN tenancy.tenants t ON t.id = n.tenant_id \
         WHERE n.id = $1"
    )))
    .bind(current.id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?;
    row.map(ns_row).ok_or(TenancyError::NotFound(name))
}

pub async fn list_namespaces(
    tx: &mut Tx,
    tenant: &TenantRecord,
    after: &str,
    limit: i64,
) -> Result<Vec<NamespaceRecord>, TenancyError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {NS_COLS} FROM tenancy.namespaces n JOIN tenancy.tenants t ON t.id = n.tenant_id \
         WHERE n.tenant_id = $1 AND n.name > $2 ORDER BY n.name LIMIT $3"
    )))
    .bind(tenant.id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(rows.into_iter().map(ns_row).collect())
}

pub async fn delete_namespace(
    tx: &mut Tx,
    ns: &NamespaceRecord,
    version: Option<i64>,
) -> Result<(), TenancyError> {
    let done = sqlx::query(
        "DELETE FROM tenancy.namespaces WHERE id = $1 AND ($2::bigint IS NULL OR version = $2)",
    )
    .bind(ns.id)
    .bind(version)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::Aborted(format!(
            "tenants/{}/namespaces/{}",
            ns.tenant, ns.name
        )));
    }
    // Bindings scoped to the namespace go with it (cascade on namespace_id).
    Ok(())
}

// -------------------------------------------------------------------- users

const USER_COLS: &str =
    "u.id, t.name AS tenant, u.name, u.display_name, u.email, u.version, u.create_time";

fn user_row(r: sqlx::postgres::PgRow) -> UserRecord {
    UserRecord {
        id: r.get("id"),
        user: UserRef {
            tenant: r.get("tenant"),
            user: r.get("name"),
        },
        display_name: r.get("display_name"),
        email: r.get("email"),
        version: r.get("version"),
        create_time: r.get("create_time"),
    }
}

pub async fn insert_user(
    tx: &mut Tx,
    tenant: Option<&TenantRecord>,
    user: &str,
    display_name: &str,
    email: &str,
) -> Result<UserRecord, TenancyError> {
    let id = Uuid::now_v7();
    let r = UserRef {
        tenant: tenant.map(|t| t.name.clone()),
        user: user.to_owned(),
    };
    sqlx::query(
        "INSERT INTO tenancy.users (id, tenant_id, name, display_name, email) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tenant.map(|t| t.id))
    .bind(user)
    .bind(display_name)
    .bind(email)
    .execute(&mut **tx)
    .await
    .map_err(|e| match DbError::from(e) {
        DbError::UniqueViolation(_) => TenancyError::AlreadyExists(r.name()),
        other => other.into(),
    })?;
    get_user(tx, &r).await
}

pub async fn get_user(tx: &mut Tx, r: &UserRef) -> Result<UserRecord, TenancyError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLS} FROM tenancy.users u LEFT JOIN tenancy.tenants t ON t.id = u.tenant_id \
         WHERE u.name = $1 AND t.name IS NOT DISTINCT FROM $2"
    )))
    .bind(&r.user)
    .bind(&r.tenant)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .map(user_row)
    .ok_or_else(|| TenancyError::NotFound(r.name()))
}

pub async fn list_users(
    tx: &mut Tx,
    tenant: Option<&TenantRecord>,
    after: &str,
    limit: i64,
) -> Result<Vec<UserRecord>, TenancyError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLS} FROM tenancy.users u LEFT JOIN tenancy.tenants t ON t.id = u.tenant_id \
         WHERE u.tenant_id IS NOT DISTINCT FROM $1 AND u.name > $2 ORDER BY u.name LIMIT $3"
    )))
    .bind(tenant.map(|t| t.id))
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(rows.into_iter().map(user_row).collect())
}

pub async fn delete_user(tx: &mut Tx, user: &UserRecord) -> Result<(), TenancyError> {
    // The user's tokens go with the user; what they minted for others is
    // revoked first (it would otherwise outlive its parent, detached).
    revoke_offspring_of_user(tx, user.id).await?;
    sqlx::query("DELETE FROM tenancy.users WHERE id = $1")
        .bind(user.id)
        .execute(&mut **tx)
        .await
        .map_err(DbError::from)?;
    Ok(())
}

// ------------------------------------------------------------ role bindings

const BINDING_COLS: &str = "b.scope, b.binding_id, b.role, u.name AS user_name, \
     ut.name AS user_tenant, b.create_time";

fn binding_row(r: sqlx::postgres::PgRow) -> Result<BindingRecord, TenancyError> {
    let scope: String = r.get("scope");
    Ok(BindingRecord {
        scope: parse_scope("scope", &scope)?,
        binding_id: r.get("binding_id"),
        role: Role::parse(r.get::<&str, _>("role"))
            .ok_or_else(|| TenancyError::FailedPrecondition("unknown stored role".into()))?,
        user: UserRef {
            tenant: r.get("user_tenant"),
            user: r.get("user_name"),
        },
        create_time: r.get("create_time"),
    })
}

const BINDING_FROM: &str = "tenancy.role_bindings b JOIN tenancy.users u ON u.id = b.user_id \
     LEFT JOIN tenancy.tenants ut ON ut.id = u.tenant_id";

pub async fn insert_binding(
    tx: &mut Tx,
    scope: &BindingScope,
    tenant_id: Option<Uuid>,
    namespace_id: Option<Uuid>,
    binding_id: &str,
    role: Role,
    user: &UserRecord,
) -> Result<BindingRecord, TenancyError> {
    sqlx::query(
        "INSERT INTO tenancy.role_bindings (id, tenant_id, namespace_id, scope, binding_id, role, user_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(namespace_id)
    .bind(scope.name())
    .bind(binding_id)
    .bind(role.as_str())
    .bind(user.id)
    .execute(&mut **tx)
    .await
    .map_err(|e| match DbError::from(e) {
        DbError::UniqueViolation(c) if c.contains("role_user") || c.contains("role_user_id") => {
            TenancyError::AlreadyExists(format!(
                "a {} binding for {} at this scope",
                role.as_str(),
                user.user.name()
            ))
        }
        DbError::UniqueViolation(_) => TenancyError::AlreadyExists(scope.binding_name(binding_id)),
        other => other.into(),
    })?;
    get_binding(tx, scope, binding_id).await
}

pub async fn get_binding(
    tx: &mut Tx,
    scope: &BindingScope,
    binding_id: &str,
) -> Result<BindingRecord, TenancyError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {BINDING_COLS} FROM {BINDING_FROM} WHERE b.scope = $1 AND b.binding_id = $2"
    )))
    .bind(scope.name())
    .bind(binding_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .ok_or_else(|| TenancyError::NotFound(scope.binding_name(binding_id)))?;
    binding_row(row)
}

pub async fn list_bindings(
    tx: &mut Tx,
    scope: &BindingScope,
    after: &str,
    limit: i64,
) -> Result<Vec<BindingRecord>, TenancyError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {BINDING_COLS} FROM {BINDING_FROM} \
         WHERE b.scope = $1 AND b.binding_id > $2 ORDER BY b.binding_id LIMIT $3"
    )))
    .bind(scope.name())
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?
    .into_iter()
    .map(binding_row)
    .collect()
}

pub async fn bindings_of_user(
    tx: &mut Tx,
    user_id: Uuid,
) -> Result<Vec<BindingRecord>, TenancyError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {BINDING_COLS} FROM {BINDING_FROM} WHERE b.user_id = $1 ORDER BY b.scope, b.binding_id"
    )))
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?
    .into_iter()
    .map(binding_row)
    .collect()
}

pub async fn delete_binding(
    tx: &mut Tx,
    scope: &BindingScope,
    binding_id: &str,
) -> Result<(), TenancyError> {
    let done =
        sqlx::query("DELETE FROM tenancy.role_bindings WHERE scope = $1 AND binding_id = $2")
            .bind(scope.name())
            .bind(binding_id)
            .execute(&mut **tx)
            .await
            .map_err(DbError::from)?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound(scope.binding_name(binding_id)));
    }
    Ok(())
}

/// True when some system-admin binding has a usable token.
pub async fn system_admin_token_exists(tx: &mut Tx) -> Result<bool, TenancyError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tenancy.role_bindings b \
         JOIN tenancy.api_tokens k ON k.user_id = b.user_id \
         WHERE b.role = 'system-admin' AND k.revoke_time IS NULL AND k.expire_time > now())",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::from)?)
}

// ------------------------------------------------------------------- tokens

const TOKEN_COLS: &str = "k.token_id, k.display_name, k.scope, k.create_time, k.expire_time, \
     k.revoke_time, u.name AS user_name, ut.name AS user_tenant";
const TOKEN_FROM: &str = "tenancy.api_tokens k JOIN tenancy.users u ON u.id = k.user_id \
     LEFT JOIN tenancy.tenants ut ON ut.id = u.tenant_id";

fn token_row(r: &sqlx::postgres::PgRow) -> TokenRecord {
    TokenRecord {
        user: UserRef {
            tenant: r.get("user_tenant"),
            user: r.get("user_name"),
        },
        token_id: r.get("token_id"),
        display_name: r.get("display_name"),
        scope: r.get("scope"),
        create_time: r.get("create_time"),
        expire_time: r.get("expire_time"),
        revoke_time: r.get("revoke_time"),
    }
}

/// A token that mints another: its row id (the parent of what it mints).
/// Looked up in system scope, because a system user's token may mint for a
/// tenant's user. The row is share-locked so a concurrent revocation waits
/// for the mint (and then revokes the new token too); a revoked or expired
/// parent mints nothing.
pub async fn lock_parent(tx: &mut Tx, token_id: &str) -> Result<Uuid, TenancyError> {
    manifold_db::set_scope(tx, Scope::System).await?;
    let row = sqlx::query(
        "SELECT id, revoke_time, expire_time FROM tenancy.api_tokens WHERE token_id = $1 FOR SHARE",
    )
    .bind(token_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .ok_or(TenancyError::Auth(manifold_auth::AuthError::Invalid))?;
    if row.get::<Option<DateTime<Utc>>, _>("revoke_time").is_some() {
        return Err(TenancyError::Auth(manifold_auth::AuthError::Revoked));
    }
    let expire: DateTime<Utc> = row.get("expire_time");
    if expire <= Utc::now() {
        return Err(TenancyError::Auth(manifold_auth::AuthError::Expired(
            expire.to_rfc3339(),
        )));
    }
    Ok(row.get("id"))
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_token(
    tx: &mut Tx,
    user: &UserRecord,
    tenant_id: Option<Uuid>,
    secret: &NewSecret,
    display_name: &str,
    scope: &str,
    expire_time: DateTime<Utc>,
    parent: Option<Uuid>,
) -> Result<TokenRecord, TenancyError> {
    sqlx::query(
        "INSERT INTO tenancy.api_tokens (id, tenant_id, user_id, token_id, secret_hash, display_name, scope, expire_time, parent_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(user.id)
    .bind(&secret.token_id)
    .bind(&secret.hash)
    .bind(display_name)
    .bind(scope)
    .bind(expire_time)
    .bind(parent)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    get_token(tx, &user.user, &secret.token_id).await
}

pub async fn get_token(
    tx: &mut Tx,
    user: &UserRef,
    token_id: &str,
) -> Result<TokenRecord, TenancyError> {
    let name = format!("{}/tokens/{token_id}", user.name());
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLS} FROM {TOKEN_FROM} \
         WHERE k.token_id = $1 AND u.name = $2 AND ut.name IS NOT DISTINCT FROM $3"
    )))
    .bind(token_id)
    .bind(&user.user)
    .bind(&user.tenant)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?
    .ok_or(TenancyError::NotFound(name))?;
    Ok(token_row(&row))
}

pub async fn list_tokens(
    tx: &mut Tx,
    user: &UserRecord,
    after: &str,
    limit: i64,
) -> Result<Vec<TokenRecord>, TenancyError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLS} FROM {TOKEN_FROM} WHERE k.user_id = $1 AND k.token_id > $2 \
         ORDER BY k.token_id LIMIT $3"
    )))
    .bind(user.id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(rows.iter().map(token_row).collect())
}

/// Revokes a token and everything minted from it, transitively; returns the
/// token and how many others were revoked with it. The offspring may belong
/// to other users (an admin mints for a user), so the cascade runs in system
/// scope; the caller has already been authorized on the token itself.
pub async fn revoke_token(
    tx: &mut Tx,
    user: &UserRef,
    token_id: &str,
) -> Result<(TokenRecord, u64), TenancyError> {
    let record = get_token(tx, user, token_id).await?;
    manifold_db::set_scope(tx, Scope::System).await?;
    let done = sqlx::query(
        "WITH RECURSIVE tree(id) AS ( \
             SELECT id FROM tenancy.api_tokens WHERE token_id = $1 \
             UNION \
             SELECT k.id FROM tenancy.api_tokens k JOIN tree t ON k.parent_id = t.id \
         ) \
         UPDATE tenancy.api_tokens SET revoke_time = coalesce(revoke_time, now()) \
         WHERE id IN (SELECT id FROM tree) AND revoke_time IS NULL",
    )
    .bind(token_id)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    let revoked = get_token(tx, &record.user, token_id).await?;
    let offspring = done
        .rows_affected()
        .saturating_sub(u64::from(record.revoke_time.is_none()));
    Ok((revoked, offspring))
}

/// Revokes every token minted (transitively) from the tokens of `user_id`,
/// except the user's own (deleted with the user).
async fn revoke_offspring_of_user(tx: &mut Tx, user_id: Uuid) -> Result<(), TenancyError> {
    manifold_db::set_scope(tx, Scope::System).await?;
    sqlx::query(
        "WITH RECURSIVE tree(id) AS ( \
             SELECT id FROM tenancy.api_tokens WHERE user_id = $1 \
             UNION \
             SELECT k.id FROM tenancy.api_tokens k JOIN tree t ON k.parent_id = t.id \
         ) \
         UPDATE tenancy.api_tokens SET revoke_time = coalesce(revoke_time, now()) \
         WHERE id IN (SELECT id FROM tree) AND user_id <> $1 AND revoke_time IS NULL",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(())
}

/// Longest token lineage followed at authentication (a chain is one mint
/// per step; real ones are a handful long).
const MAX_LINEAGE: i32 = 64;

/// Whether some ancestor of token `token_id` (not the token itself) is
/// revoked or expired: then the token is not honoured either.
pub async fn ancestor_lapsed(tx: &mut Tx, token_id: &str) -> Result<bool, TenancyError> {
    Ok(sqlx::query_scalar(
        "WITH RECURSIVE chain(id, parent_id, revoke_time, expire_time, depth) AS ( \
             SELECT id, parent_id, revoke_time, expire_time, 0 FROM tenancy.api_tokens \
             WHERE token_id = $1 \
             UNION ALL \
             SELECT k.id, k.parent_id, k.revoke_time, k.expire_time, c.depth + 1 \
             FROM tenancy.api_tokens k JOIN chain c ON k.id = c.parent_id \
             WHERE c.depth < $2 \
         ) \
         SELECT EXISTS (SELECT 1 FROM chain WHERE depth > 0 \
                        AND (revoke_time IS NOT NULL OR expire_time <= now()))",
    )
    .bind(token_id)
    .bind(MAX_LINEAGE)
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::from)?)
}

/// What authentication needs to know about a presented token.
pub struct TokenLookup {
    pub record: TokenRecord,
    pub secret_hash: Vec<u8>,
    pub user_id: Uuid,
    pub tenant_state: Option<TenantState>,
}

pub async fn lookup_token(
    tx: &mut Tx,
    token_id: &str,
) -> Result<Option<TokenLookup>, TenancyError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLS}, k.secret_hash, k.user_id, ut.state AS tenant_state \
         FROM {TOKEN_FROM} WHERE k.token_id = $1"
    )))
    .bind(token_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(row.map(|r| TokenLookup {
        record: token_row(&r),
        secret_hash: r.get("secret_hash"),
        user_id: r.get("user_id"),
        tenant_state: r
            .get::<Option<&str>, _>("tenant_state")
            .map(TenantState::parse),
    }))
}
