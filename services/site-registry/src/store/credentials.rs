//! `sites.registration_tokens` and `sites.issued_certs`: the one-time tokens
//! agents exchange for certificates, and every certificate issued.

use chrono::{DateTime, Utc};
use manifold_db::{DbError, Tx, sqlx};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{PodSecurityLevel, RegistrationSecret, SiteState};
use crate::error::SiteError;

/// Tokens are kept this long after expiring or being used, then purged.
const TOKEN_RETENTION: &str = "1 day";

pub async fn insert_token(
    tx: &mut Tx,
    site_id: Uuid,
    tenant_id: Option<Uuid>,
    secret: &RegistrationSecret,
    created_by: &str,
    expire_time: DateTime<Utc>,
) -> Result<(), SiteError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM sites.registration_tokens WHERE site_id = $1 \
         AND coalesce(use_time, expire_time) < now() - interval '{TOKEN_RETENTION}'"
    )))
    .bind(site_id)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    sqlx::query(
        "INSERT INTO sites.registration_tokens \
         (token_id, site_id, tenant_id, secret_hash, created_by, expire_time) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&secret.token_id)
    .bind(site_id)
    .bind(tenant_id)
    .bind(&secret.hash)
    .bind(created_by)
    .bind(expire_time)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(())
}

/// A registration token as stored, with its site.
pub struct StoredToken {
    pub secret_hash: Vec<u8>,
    pub expire_time: DateTime<Utc>,
    pub use_time: Option<DateTime<Utc>>,
    pub site_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub site: String,
    pub site_state: SiteState,
}

/// Looks a token up and locks it: a concurrent use of the same token waits
/// here and then sees it used.
pub async fn lock_token(tx: &mut Tx, token_id: &str) -> Result<Option<StoredToken>, SiteError> {
    let row = sqlx::query(
        "SELECT t.secret_hash, t.expire_time, t.use_time, t.site_id, t.tenant_id, \
         s.name, s.state FROM sites.registration_tokens t JOIN sites.sites s ON s.id = t.site_id \
         WHERE t.token_id = $1 FOR UPDATE OF t",
    )
    .bind(token_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(row.map(|r| StoredToken {
        secret_hash: r.get("secret_hash"),
        expire_time: r.get("expire_time"),
        use_time: r.get("use_time"),
        site_id: r.get("site_id"),
        tenant_id: r.get("tenant_id"),
        site: r.get("name"),
        site_state: SiteState::parse(r.get::<&str, _>("state")),
    }))
}

pub async fn consume_token(tx: &mut Tx, token_id: &str) -> Result<(), SiteError> {
    sqlx::query("UPDATE sites.registration_tokens SET use_time = now() WHERE token_id = $1")
        .bind(token_id)
        .execute(&mut **tx)
        .await
        .map_err(DbError::from)?;
    Ok(())
}

/// Why a certificate was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueReason {
    Registration,
    Renewal,
}

impl IssueReason {
    fn as_str(self) -> &'static str {
        match self {
            IssueReason::Registration => "registration",
            IssueReason::Renewal => "renewal",
        }
    }
}

pub struct NewCert<'a> {
    pub serial: &'a str,
    pub site_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub certificate_pem: &'a str,
    pub reason: IssueReason,
    pub not_after: DateTime<Utc>,
    /// The serial a renewal replaces.
    pub replaces: Option<&'a str>,
}

pub async fn insert_cert(tx: &mut Tx, cert: &NewCert<'_>) -> Result<(), SiteError> {
    sqlx::query(
        "INSERT INTO sites.issued_certs \
         (serial, site_id, tenant_id, certificate_pem, reason, not_after, replaces) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(cert.serial)
    .bind(cert.site_id)
    .bind(cert.tenant_id)
    .bind(cert.certificate_pem)
    .bind(cert.reason.as_str())
    .bind(cert.not_after)
    .bind(cert.replaces)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(())
}

/// Marks certificate `serial` as renewed: revoked `grace` from now. False
/// when it was already renewed or revoked (a certificate is renewed once).
/// The row lock makes concurrent renewals of one certificate take turns.
pub async fn supersede_cert(
    tx: &mut Tx,
    serial: &str,
    grace: std::time::Duration,
) -> Result<bool, SiteError> {
    let done = sqlx::query(
        "UPDATE sites.issued_certs SET revoke_time = now() + make_interval(secs => $2) \
         WHERE serial = $1 AND revoke_time IS NULL",
    )
    .bind(serial)
    .bind(grace.as_secs_f64())
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(done.rows_affected() == 1)
}

/// The certificate that renewed `serial`, if any: (serial, PEM, not_after,
/// revoke_time).
pub async fn successor_of(
    tx: &mut Tx,
    serial: &str,
) -> Result<Option<(String, String, DateTime<Utc>, Option<DateTime<Utc>>)>, SiteError> {
    let row = sqlx::query(
        "SELECT serial, certificate_pem, not_after, revoke_time FROM sites.issued_certs \
         WHERE replaces = $1",
    )
    .bind(serial)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(row.map(|r| {
        (
            r.get("serial"),
            r.get("certificate_pem"),
            r.get("not_after"),
            r.get("revoke_time"),
        )
    }))
}

/// Revokes the site's certificates now, except `keep` (by serial); also
/// those renewed and still in their grace period.
pub async fn revoke_certs(tx: &mut Tx, site_id: Uuid, keep: Option<&str>) -> Result<(), SiteError> {
    sqlx::query(
        "UPDATE sites.issued_certs SET revoke_time = now() \
         WHERE site_id = $1 AND (revoke_time IS NULL OR revoke_time > now()) \
           AND serial IS DISTINCT FROM $2",
    )
    .bind(site_id)
    .bind(keep)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(())
}

/// A certificate as recorded, with its site.
pub struct StoredCert {
    pub certificate_pem: String,
    pub not_after: DateTime<Utc>,
    pub revoke_time: Option<DateTime<Utc>>,
    pub site_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub site: String,
    pub site_state: SiteState,
    pub pod_security: PodSecurityLevel,
}

pub async fn get_cert(tx: &mut Tx, serial: &str) -> Result<Option<StoredCert>, SiteError> {
    let row = sqlx::query(
        "SELECT c.certificate_pem, c.not_after, c.revoke_time, c.site_id, c.tenant_id, \
         s.name, s.state, s.pod_security FROM sites.issued_certs c JOIN sites.sites s ON s.id = c.site_id \
         WHERE c.serial = $1",
    )
    .bind(serial)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?;
    Ok(row.map(|r| StoredCert {
        certificate_pem: r.get("certificate_pem"),
        not_after: r.get("not_after"),
        revoke_time: r.get("revoke_time"),
        site_id: r.get("site_id"),
        tenant_id: r.get("tenant_id"),
        site: r.get("name"),
        site_state: SiteState::parse(r.get::<&str, _>("state")),
        pod_security: PodSecurityLevel::parse(r.get::<&str, _>("pod_security")).unwrap_or_default(),
    }))
}
