//! The agent-facing flows: registration with a one-time token, certificate
//! renewal and verification by the presented certificate, and status reports.

use chrono::{DateTime, Utc};
use manifold_db::Scope;

use super::Core;
use crate::domain::*;
use crate::error::SiteError;
use crate::store::{
    self, Visible,
    credentials::{IssueReason, NewCert},
};

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certificate_pem: String,
    pub ca_bundle_pem: String,
    pub expire_time: DateTime<Utc>,
}

/// A site certificate the registry issued and still trusts.
#[derive(Debug, Clone)]
pub struct VerifiedSite {
    /// The site id (`pa2-par`).
    pub site: String,
    pub serial: String,
    pub expire_time: DateTime<Utc>,
    /// The site's Pod Security level now (the agent labels its namespaces).
    pub pod_security: PodSecurityLevel,
}

/// Who is reporting a site's status.
#[derive(Debug, Clone)]
pub enum Reporter {
    /// The site itself, by its verified certificate.
    Site(String),
    /// A system-admin (replication).
    Operator,
}

/// Hex of a DER certificate's serial number.
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(hex::encode(cert.tbs_certificate.raw_serial()))
}

fn pem_to_der(field: &str, pem: &str) -> Result<Vec<u8>, SiteError> {
    manifold_pki::certs_from_pem(pem)
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| SiteError::invalid(field, "not a PEM certificate"))
}

fn pki_error(e: manifold_pki::PkiError) -> SiteError {
    match e {
        manifold_pki::PkiError::InvalidCsr(m) => SiteError::invalid(
            "csr_pem",
            format!("not a usable PEM PKCS#10 certificate signing request: {m}"),
        ),
        other => SiteError::Pki(other),
    }
}

impl Core {
    fn ca(&self) -> Result<&manifold_pki::Ca, SiteError> {
        self.ca.as_deref().ok_or(SiteError::NoCa)
    }

    /// Exchanges a registration token and a CSR for a certificate naming
    /// `site`. The token is checked and consumed in one transaction; a second
    /// use is UNAUTHENTICATED. Earlier certificates of the site are revoked.
    pub async fn register(
        &self,
        site: &str,
        token: &str,
        csr_pem: &str,
        agent_version: &str,
    ) -> Result<Issued, SiteError> {
        let ca = self.ca()?;
        if csr_pem.trim().is_empty() {
            return Err(SiteError::invalid(
                "csr_pem",
                "required: a PEM PKCS#10 CSR; the key stays with the agent",
            ));
        }
        let invalid = || SiteError::Unauthenticated("invalid registration token".into());
        let (token_id, secret) = split_registration_token(token).ok_or_else(invalid)?;
        let presented = hash_secret(secret);
        let validity = self.options.certificate_validity;
        manifold_db::transaction!(self.db, "register", Scope::System, SiteError, |tx| {
            let stored = store::credentials::lock_token(tx, token_id)
                .await?
                .ok_or_else(invalid)?;
            if !hashes_equal(&stored.secret_hash, &presented) {
                return Err(invalid());
            }
            if stored.site != site {
                return Err(SiteError::Unauthenticated(format!(
                    "the registration token is not valid for {}",
                    site_name(site)
                )));
            }
            if stored.use_time.is_some() {
                return Err(SiteError::Unauthenticated(
                    "the registration token was already used; create a new one".into(),
                ));
            }
            if stored.expire_time <= Utc::now() {
                return Err(SiteError::Unauthenticated(format!(
                    "the registration token expired at {}; create a new one",
                    stored.expire_time.to_rfc3339()
                )));
            }
            if stored.site_state == SiteState::Decommissioned {
                return Err(SiteError::Unauthenticated(format!(
                    "{} is decommissioned",
                    site_name(site)
                )));
            }
            // Only the CSR's key is used: the certificate names `site`, whatever
            // the CSR asked for.
            let signed = ca
                .sign_site_csr(csr_pem, site, validity)
                .map_err(pki_error)?;
            let der = pem_to_der("certificate_pem", &signed.cert_pem)?;
            let serial = serial_of(&der).ok_or_else(|| {
                SiteError::Pki(manifold_pki::PkiError::InvalidCertificate(
                    "issued certificate does not parse".into(),
                ))
            })?;
            store::credentials::consume_token(tx, token_id).await?;
            store::credentials::revoke_certs(tx, stored.site_id, None).await?;
            store::credentials::insert_cert(
                tx,
                &NewCert {
                    serial: &serial,
                    site_id: stored.site_id,
                    tenant_id: stored.tenant_id,
                    certificate_pem: &signed.cert_pem,
                    reason: IssueReason::Registration,
                    not_after: signed.not_after,
                    replaces: None,
                },
            )
            .await?;
            store::sites::mark_registered(tx, stored.site_id, agent_version).await?;
            Ok(Issued {
                certificate_pem: signed.cert_pem,
                ca_bundle_pem: self.ca_pem.clone(),
                expire_time: signed.not_after,
            })
        })
    }

    /// Checks a presented client certificate (DER) against the issue record:
    /// issued by this registry (byte for byte), for the site it names, not
    /// revoked, not expired, site not decommissioned. UNAUTHENTICATED
    /// otherwise, with the reason.
    pub async fn verify_site_certificate(&self, der: &[u8]) -> Result<VerifiedSite, SiteError> {
        let site = manifold_pki::site_from_cert_der(der).ok_or_else(|| {
            SiteError::Unauthenticated("the client certificate names no site".into())
        })?;
        let serial = serial_of(der).ok_or_else(|| {
            SiteError::Unauthenticated("the client certificate does not parse".into())
        })?;
        let stored = manifold_db::transaction!(
            self.db,
            "verify_certificate",
            Scope::System,
            SiteError,
            |tx| { store::credentials::get_cert(tx, &serial).await }
        )?;
        let unknown = || {
            SiteError::Unauthenticated(
                "the client certificate was not issued by this registry".into(),
            )
        };
        let stored = stored.ok_or_else(unknown)?;
        let stored_der =
            pem_to_der("certificate_pem", &stored.certificate_pem).map_err(|_| unknown())?;
        if stored_der != der || stored.site != site {
            return Err(unknown());
        }
        if stored.site_state == SiteState::Decommissioned {
            return Err(SiteError::Unauthenticated(format!(
                "{} is decommissioned; its certificates are revoked",
                site_name(&site)
            )));
        }
        // A renewed certificate carries a revoke time a short grace ahead:
        // it stays valid until then (for the stream it carries).
        if let Some(t) = stored.revoke_time.filter(|t| *t <= Utc::now()) {
            return Err(SiteError::Unauthenticated(format!(
                "the client certificate was revoked at {}",
                t.to_rfc3339()
            )));
        }
        if stored.not_after <= Utc::now() {
            return Err(SiteError::Unauthenticated(
                "the client certificate has expired; register again".into(),
            ));
        }
        Ok(VerifiedSite {
            site,
            serial,
            expire_time: stored.not_after,
            pod_security: stored.pod_security,
        })
    }

    /// True when a presented site certificate is no longer trusted (revoked,
    /// unknown, expired, or its site decommissioned). For replication's
    /// connect path; errors only when the database is unreachable.
    pub async fn is_certificate_revoked(&self, der: &[u8]) -> Result<bool, SiteError> {
        match self.verify_site_certificate(der).await {
            Ok(_) => Ok(false),
            Err(SiteError::Unauthenticated(_)) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Issues a fresh certificate for the site the presented certificate
    /// names; the CSR supplies only the new public key. The presented
    /// certificate is superseded: it stays valid for the renewal grace (the
    /// stream it carries), then it is revoked, and it cannot be renewed
    /// again. So a copy of an agent's certificate cannot be renewed beside
    /// the agent: once either renews, the other's renewal is refused and its
    /// certificate dies at the end of the grace. The one exception is the
    /// same agent asking again with the key of the certificate already
    /// issued (its first answer was lost): it gets that certificate again.
    pub async fn renew(&self, presented_der: &[u8], csr_pem: &str) -> Result<Issued, SiteError> {
        let ca = self.ca()?;
        let verified = self.verify_site_certificate(presented_der).await?;
        let signed = ca
            .sign_site_csr(csr_pem, &verified.site, self.options.certificate_validity)
            .map_err(pki_error)?;
        let der = pem_to_der("certificate_pem", &signed.cert_pem)?;
        let serial = serial_of(&der).ok_or_else(|| {
            SiteError::Pki(manifold_pki::PkiError::InvalidCertificate(
                "issued certificate does not parse".into(),
            ))
        })?;
        let grace = self.options.renewal_grace;
        let issued = manifold_db::transaction!(
            self.db,
            "renew_certificate",
            Scope::System,
            SiteError,
            |tx| {
                let site = store::sites::get_site(tx, &verified.site, &Visible::All, true).await?;
                if site.state == SiteState::Decommissioned {
                    return Err(SiteError::Unauthenticated(format!(
                        "{} is decommissioned",
                        site.name()
                    )));
                }
                if !store::credentials::supersede_cert(tx, &verified.serial, grace).await? {
                    return match store::credentials::successor_of(tx, &verified.serial).await? {
                        Some((_, pem, not_after, None))
                            if not_after > Utc::now()
                                && manifold_pki::csr_matches_cert(csr_pem, &pem)
                                    .unwrap_or(false) =>
                        {
                            Ok(Issued {
                                certificate_pem: pem,
                                ca_bundle_pem: self.ca_pem.clone(),
                                expire_time: not_after,
                            })
                        }
                        _ => Err(SiteError::Unauthenticated(format!(
                            "this certificate of {} was already renewed and is valid only until its grace ends; \
                             the agent holding the renewed certificate is the site now (if that is not this agent, \
                             register the site again with a new registration token)",
                            site.name()
                        ))),
                    };
                }
                store::credentials::insert_cert(
                    tx,
                    &NewCert {
                        serial: &serial,
                        site_id: site.id,
                        tenant_id: site.tenant_id,
                        certificate_pem: &signed.cert_pem,
                        reason: IssueReason::Renewal,
                        not_after: signed.not_after,
                        replaces: Some(&verified.serial),
                    },
                )
                .await?;
                Ok(Issued {
                    certificate_pem: signed.cert_pem.clone(),
                    ca_bundle_pem: self.ca_pem.clone(),
                    expire_time: signed.not_after,
                })
            }
        )?;
        tracing::info!(site = %verified.site, renewed = %verified.serial, grace_secs = grace.as_secs(),
            "agent certificate renewed; the old one is revoked after the grace");
        Ok(issued)
    }

    /// Certificate status for a PEM certificate (the public check).
    pub async fn check_certificate(
        &self,
        pem: &str,
    ) -> Result<(String, Result<VerifiedSite, String>), SiteError> {
        let der = pem_to_der("certificate_pem", pem)?;
        let site = manifold_pki::site_from_cert_der(&der).ok_or_else(|| {
            SiteError::invalid(
                "certificate_pem",
                "not a site certificate (no spiffe://manifold/site/ URI SAN)",
            )
        })?;
        match self.verify_site_certificate(&der).await {
            Ok(v) => Ok((site, Ok(v))),
            Err(SiteError::Unauthenticated(reason)) => Ok((site, Err(reason))),
            Err(e) => Err(e),
        }
    }

    /// Moves the heartbeat time of every listed site that is ONLINE or
    /// DEGRADED forward, in one statement. Returns how many are live and the
    /// listed sites that are not (they need a full status report).
    pub async fn report_heartbeats(
        &self,
        beats: Vec<(String, DateTime<Utc>)>,
    ) -> Result<(u64, Vec<String>), SiteError> {
        if beats.is_empty() {
            return Ok((0, Vec::new()));
        }
        let now = Utc::now();
        let (sites, times): (Vec<String>, Vec<DateTime<Utc>>) =
            beats.into_iter().map(|(s, t)| (s, t.min(now))).unzip();
        manifold_db::transaction!(
            self.db,
            "report_site_heartbeats",
            Scope::System,
            SiteError,
            |tx| { store::sites::touch_heartbeats(tx, &sites, &times).await }
        )
    }

    /// Records an observed status. A site may report only for itself.
    pub async fn report_status(
        &self,
        reporter: &Reporter,
        report: StatusReport,
    ) -> Result<SiteRecord, SiteError> {
        if let Reporter::Site(own) = reporter
            && own != &report.site
        {
            return Err(SiteError::PermissionDenied(format!(
                "the certificate of {} cannot report for {}",
                site_name(own),
                site_name(&report.site)
            )));
        }
        if !matches!(
            report.state,
            SiteState::Online | SiteState::Degraded | SiteState::Offline
        ) {
            return Err(SiteError::invalid(
                "state",
                "must be ONLINE, DEGRADED or OFFLINE",
            ));
        }
        if report.state_message.len() > 1024 {
            return Err(SiteError::invalid("state_message", "at most 1024 bytes"));
        }
        validate_nodes("nodes", &report.nodes)?;
        // A clock ahead of ours must not freeze the site's status: stale
        // reports are told apart by this time.
        let mut report = report;
        report.heartbeat_time = report.heartbeat_time.min(Utc::now());
        manifold_db::transaction!(
            self.db,
            "report_site_status",
            Scope::System,
            SiteError,
            |tx| {
                let current = store::sites::get_site(tx, &report.site, &Visible::All, true).await?;
                store::sites::apply_status(tx, &current, &report).await
            }
        )
    }
}
