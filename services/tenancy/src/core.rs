//! The service core shared by every tenancy gRPC service: the database, the
//! authenticator backed by it, and the first-start bootstrap of an operator
//! token.

use std::{path::Path, sync::Arc, time::Duration};

use chrono::Utc;
use manifold_auth::{AuthError, Authenticator, Binding, CachingAuthenticator, Principal, Role};
use manifold_db::{Db, DbError, Scope, Tx, sqlx};

use crate::{domain::*, error::TenancyError, store};

/// Resolves tokens against the tenancy schema.
pub struct LocalAuthenticator {
    db: Db,
}

#[async_trait::async_trait]
impl Authenticator for LocalAuthenticator {
    async fn authenticate(&self, bearer: &str) -> Result<Arc<Principal>, AuthError> {
        let (token_id, secret) = split_bearer(bearer).ok_or(AuthError::Invalid)?;
        let presented = hash_secret(secret);
        let result: Result<Result<Principal, AuthError>, TenancyError> =
            manifold_db::transaction!(self.db, "authenticate", Scope::System, TenancyError, |tx| {
                let Some(found) = store::lookup_token(tx, token_id).await? else {
                    return Ok(Err(AuthError::Invalid));
                };
                check_token(tx, found, &presented).await
            });
        match result {
            Ok(Ok(p)) => Ok(Arc::new(p)),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(AuthError::Unavailable(e.to_string())),
        }
    }
}

async fn check_token(
    tx: &mut Tx,
    found: store::TokenLookup,
    presented: &[u8],
) -> Result<Result<Principal, AuthError>, TenancyError> {
    if !hashes_equal(&found.secret_hash, presented) {
        return Ok(Err(AuthError::Invalid));
    }
    if found.record.revoke_time.is_some() {
        return Ok(Err(AuthError::Revoked));
    }
    if found.record.expire_time <= Utc::now() {
        return Ok(Err(AuthError::Expired(
            found.record.expire_time.to_rfc3339(),
        )));
    }
    // A token minted from a revoked (or expired) token dies with it.
    if store::ancestor_lapsed(tx, &found.record.token_id).await? {
        return Ok(Err(AuthError::Revoked));
    }
    if found.tenant_state == Some(TenantState::Suspended) {
        let tenant = found.record.user.tenant.clone().unwrap_or_default();
        return Ok(Err(AuthError::TenantSuspended(tenant_name(&tenant))));
    }
    let bindings = store::bindings_of_user(tx, found.user_id)
        .await?
        .into_iter()
        .map(|b| Binding {
            role: b.role,
            scope: b.scope.name(),
        })
        .collect();
    Ok(Ok(Principal {
        user: found.record.user.name(),
        tenant: found.record.user.tenant.clone(),
        bindings,
        token: found.record.name(),
        token_scope: found.record.scope.clone(),
        token_expire_time: found.record.expire_time,
    }))
}

/// Everything the tenancy handlers share.
pub struct Core {
    pub db: Db,
    pub auth: CachingAuthenticator<LocalAuthenticator>,
}

impl Core {
    pub fn new(db: Db, cache_ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            auth: CachingAuthenticator::new(LocalAuthenticator { db: db.clone() }, cache_ttl),
            db,
        })
    }

    /// Called after any change that can take access away (revocation,
    /// suspension, deletion), so this process honours it at once.
    pub fn access_changed(&self) {
        self.auth.invalidate_all();
    }

    /// Creates a system-admin user and token when no usable system-admin token
    /// exists, and writes the secret to `token_file` (mode 0600). Safe to run
    /// from several replicas at once.
    ///
    /// When `token_file` already holds a well-formed token (`mft_<16 hex>_<hex>`,
    /// e.g. a Kubernetes Secret generated at install), that token becomes the
    /// bootstrap token and the file is left alone (it may be read-only).
    pub async fn bootstrap(&self, token_file: &Path) -> Result<bool, BootstrapError> {
        let provisioned = std::fs::read_to_string(token_file)
            .ok()
            .and_then(|text| crate::domain::provisioned_secret(&text));
        let provided = provisioned.is_some();
        let secret: Option<String> =
            manifold_db::transaction!(self.db, "bootstrap", Scope::System, TenancyError, |tx| {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext('manifold.tenancy.bootstrap'))")
                    .execute(&mut **tx)
                    .await
                    .map_err(DbError::from)?;
                if store::system_admin_token_exists(tx).await? {
                    return Ok::<_, TenancyError>(None);
                }
                let admin = UserRef {
                    tenant: None,
                    user: "admin".into(),
                };
                let user = match store::get_user(tx, &admin).await {
                    Ok(u) => u,
                    Err(TenancyError::NotFound(_)) => {
                        store::insert_user(tx, None, "admin", "Bootstrap operator", "").await?
                    }
                    Err(e) => return Err(e),
                };
                let has_binding = store::bindings_of_user(tx, user.id)
                    .await?
                    .iter()
                    .any(|b| b.role == Role::SystemAdmin);
                if !has_binding {
                    store::insert_binding(
                        tx,
                        &BindingScope::System,
                        None,
                        None,
                        "bootstrap-admin",
                        Role::SystemAdmin,
                        &user,
                    )
                    .await?;
                }
                let secret = provisioned.clone().unwrap_or_else(new_secret);
                let expire = Utc::now() + chrono::Duration::days(365);
                store::insert_token(tx, &user, None, &secret, "bootstrap", "", expire, None)
                    .await?;
                Ok(Some(secret.bearer))
            })?;
        match secret {
            Some(_) if provided => {
                tracing::info!(file = %token_file.display(), "bootstrapped the provisioned system-admin token");
                Ok(true)
            }
            Some(s) => {
                write_secret_file(token_file, &s)?;
                tracing::info!(file = %token_file.display(), "bootstrapped a system-admin token");
                Ok(true)
            }
            None => {
                if !token_file.exists() {
                    tracing::warn!(
                        file = %token_file.display(),
                        "a system-admin token exists but its file is missing; use that token, or revoke every system-admin token and restart to mint a new one"
                    );
                }
                Ok(false)
            }
        }
    }
}

impl Core {
    /// A fresh system-admin token for an internal service of this process
    /// (user `users/svc-<service>`), so services call each other's public
    /// APIs with their own identity rather than an operator's. Each start
    /// mints its own (replicas of one service may run side by side, so
    /// earlier tokens stay valid until they expire).
    pub async fn service_token(&self, service: &str) -> Result<String, TenancyError> {
        validate_id("service", service)?;
        let user_id = format!("svc-{service}");
        manifold_db::transaction!(
            self.db,
            "service_token",
            Scope::System,
            TenancyError,
            |tx| {
                sqlx::query(
                    "SELECT pg_advisory_xact_lock(hashtext('manifold.tenancy.service_token'))",
                )
                .execute(&mut **tx)
                .await
                .map_err(DbError::from)?;
                let r = UserRef {
                    tenant: None,
                    user: user_id.clone(),
                };
                let user = match store::get_user(tx, &r).await {
                    Ok(u) => u,
                    Err(TenancyError::NotFound(_)) => {
                        store::insert_user(tx, None, &user_id, &format!("{service} service"), "")
                            .await?
                    }
                    Err(e) => return Err(e),
                };
                if !store::bindings_of_user(tx, user.id)
                    .await?
                    .iter()
                    .any(|b| b.role == Role::SystemAdmin)
                {
                    store::insert_binding(
                        tx,
                        &BindingScope::System,
                        None,
                        None,
                        &user_id,
                        Role::SystemAdmin,
                        &user,
                    )
                    .await?;
                }
                let secret = new_secret();
                let expire = Utc::now() + chrono::Duration::days(365);
                store::insert_token(tx, &user, None, &secret, "service", "", expire, None).await?;
                Ok(secret.bearer)
            }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("bootstrap: {0}")]
    Tenancy(#[from] TenancyError),
    #[error("writing the admin token file: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes `secret` to `path` readable by the owner only, atomically.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
