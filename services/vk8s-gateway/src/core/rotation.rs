//! Key rotation for Secrets at rest: which keys the stored Secrets use, and
//! re-encryption of everything not sealed with the primary key (plain
//! Secrets from before encryption included) in batches, in place. Runs
//! from `manifold rotate-encryption`; safe beside serving replicas (row
//! locks, no new revisions) and repeatable (a second run finds nothing).

use manifold_db::{Db, Scope};

use crate::domain::object::scrub_secret;
use crate::encryption::{Encryption, KeyInfo, Location};
use crate::error::GatewayError;
use crate::storage::objects::stub;
use crate::storage::secrets::{self, ObjectCursor};

/// Rows re-encrypted per transaction.
const BATCH: i64 = 200;
/// Failures listed in a report (the rest are only counted).
const MAX_LISTED: usize = 100;

/// How many stored Secret bodies one key seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyUsage {
    /// The key id; `None`: stored unencrypted.
    pub kid: Option<String>,
    /// The key's name as recorded when it sealed.
    pub name: Option<String>,
    /// Whether this process has the key (`true` for unencrypted bodies).
    pub configured: bool,
    /// Whether it is this process's primary key.
    pub primary: bool,
    pub objects: i64,
    pub changes: i64,
}

impl std::fmt::Display for SecretKeyUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (&self.kid, &self.name) {
            (None, _) => "unencrypted".to_owned(),
            (Some(id), name) => format!(
                "key {:?} (id {id}){}",
                name.as_deref().unwrap_or("?"),
                match (self.primary, self.configured) {
                    (true, _) => ", primary",
                    (false, true) => ", configured",
                    (false, false) => ", NOT CONFIGURED",
                }
            ),
        };
        write!(
            f,
            "{what}: {} Secrets, {} change-log bodies",
            self.objects, self.changes
        )
    }
}

/// What a re-encryption run did.
#[derive(Debug, Clone)]
pub struct ReencryptReport {
    /// The key everything was re-encrypted with.
    pub primary: KeyInfo,
    /// Secrets re-encrypted.
    pub objects: u64,
    /// Change-log rows re-encrypted.
    pub changes: u64,
    /// Change-log rows of deleted Secrets whose data was removed on the way.
    pub scrubbed: u64,
    /// Bodies that do not decrypt (listed up to 100) and how many in all.
    pub failures: Vec<String>,
    pub failed: u64,
    /// The keys in use afterwards.
    pub usage: Vec<SecretKeyUsage>,
}

fn note(report: &mut ReencryptReport, failures: Vec<String>) {
    report.failed += failures.len() as u64;
    for f in failures {
        if report.failures.len() < MAX_LISTED {
            report.failures.push(f);
        }
    }
}

/// Which keys the stored Secrets (object table and change log) are sealed
/// with.
pub async fn secret_key_usage(
    db: &Db,
    enc: &Encryption,
) -> Result<Vec<SecretKeyUsage>, GatewayError> {
    let counts = manifold_db::transaction!(
        db,
        "vk8s_secret_key_usage",
        Scope::System,
        GatewayError,
        |tx| { Ok(secrets::key_counts(tx).await?) }
    )?;
    let keys = enc.keys();
    let primary = enc.primary();
    Ok(counts
        .into_iter()
        .map(|c| SecretKeyUsage {
            configured: c
                .kid
                .as_ref()
                .is_none_or(|id| keys.iter().any(|k| &k.id == id)),
            primary: c.kid.as_deref() == Some(primary.id.as_str()),
            kid: c.kid,
            name: c.name,
            objects: c.objects,
            changes: c.changes,
        })
        .collect())
}

/// Logs, once at start, what an operator should act on: Secrets sealed with
/// keys this process lacks (they cannot be read), unencrypted ones, and
/// ones still under an old key.
pub async fn check_key_usage(db: &Db, enc: &Encryption) {
    let usage = match secret_key_usage(db, enc).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "checking which keys the stored Secrets use");
            return;
        }
    };
    for u in usage {
        match (&u.kid, u.configured, u.primary) {
            (_, _, true) => {}
            (None, _, _) => tracing::warn!(
                "{u}: stored unencrypted (written before encryption at rest); run \
                 `manifold rotate-encryption` to encrypt them"
            ),
            (Some(_), false, _) => tracing::error!(
                "{u}: this key is not in encryption.key_files, so these Secrets cannot be \
                 read; add the key back"
            ),
            (Some(_), true, false) => tracing::info!(
                "{u}: not the primary key; run `manifold rotate-encryption` before removing it"
            ),
        }
    }
}

/// Re-encrypts with the primary key every stored Secret body sealed with
/// another key or stored unencrypted, and removes the data of deleted
/// Secrets still in the change log. Bodies that do not decrypt are left as
/// they are and reported.
pub async fn reencrypt_secrets(db: &Db, enc: &Encryption) -> Result<ReencryptReport, GatewayError> {
    let mut report = ReencryptReport {
        primary: enc.primary(),
        objects: 0,
        changes: 0,
        scrubbed: 0,
        failures: Vec::new(),
        failed: 0,
        usage: Vec::new(),
    };
    let mut after: Option<ObjectCursor> = None;
    loop {
        let dek = enc.data_key().await?;
        let primary = dek.kek().id.clone();
        let from = after.clone();
        let (seen, last, done, failures) = manifold_db::transaction!(
            db,
            "vk8s_reencrypt_objects",
            Scope::System,
            GatewayError,
            |tx| {
                secrets::lock_rotation(tx).await?;
                let rows = secrets::stale_objects(tx, &primary, from.as_ref(), BATCH).await?;
                let mut done = 0u64;
                let mut failures = Vec::new();
                for row in &rows {
                    let at = Location {
                        vcluster_id: row.vcluster_id,
                        group: "",
                        kind: "Secret",
                        namespace: &row.namespace,
                        name: &row.name,
                    };
                    match enc.open(&at, row.body.clone()).await {
                        Ok(plain) => {
                            let sealed = dek.seal(&at, &plain)?;
                            secrets::replace_object_body(tx, row, &sealed).await?;
                            done += 1;
                        }
                        Err(e) if e.is_permanent() => {
                            failures.push(format!("virtual cluster {}: {e}", row.vcluster_id))
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                let last = rows
                    .last()
                    .map(|r| (r.vcluster_id, r.namespace.clone(), r.name.clone()));
                Ok((rows.len() as i64, last, done, failures))
            }
        )?;
        report.objects += done;
        note(&mut report, failures);
        if seen < BATCH {
            break;
        }
        after = last;
    }

    let mut after = 0i64;
    loop {
        let dek = enc.data_key().await?;
        let primary = dek.kek().id.clone();
        let (seen, last, done, scrubbed, failures) = manifold_db::transaction!(
            db,
            "vk8s_reencrypt_changes",
            Scope::System,
            GatewayError,
            |tx| {
                secrets::lock_rotation(tx).await?;
                let rows = secrets::stale_changes(tx, &primary, after, BATCH).await?;
                let (mut done, mut scrubbed) = (0u64, 0u64);
                let mut failures = Vec::new();
                for row in &rows {
                    let at = Location {
                        vcluster_id: row.vcluster_id,
                        group: "",
                        kind: "Secret",
                        namespace: &row.namespace,
                        name: &row.name,
                    };
                    let body = enc.open(&at, row.body.clone()).await;
                    let prev = match &row.prev_body {
                        Some(p) => Some(enc.open(&at, p.clone()).await),
                        None => None,
                    };
                    let (body, prev) = match (body, prev.transpose()) {
                        (Ok(b), Ok(p)) if row.deleted_since => {
                            scrubbed += 1;
                            (scrub_secret(&b), p.map(|p| scrub_secret(&p)))
                        }
                        (Ok(b), Ok(p)) => (b, p),
                        // The data of a deleted Secret must go in any case.
                        (Err(e), _) | (_, Err(e)) if e.is_permanent() && row.deleted_since => {
                            scrubbed += 1;
                            let identity = stub("", "Secret", &row.namespace, &row.name, None);
                            let prev = row.prev_body.as_ref().map(|_| identity.clone());
                            (identity, prev)
                        }
                        (Err(e), _) | (_, Err(e)) if e.is_permanent() => {
                            failures.push(format!(
                                "change-log revision {} (virtual cluster {}): {e}",
                                row.revision, row.vcluster_id
                            ));
                            continue;
                        }
                        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
                    };
                    let sealed = dek.seal(&at, &body)?;
                    let sealed_prev = prev.map(|p| dek.seal(&at, &p)).transpose()?;
                    secrets::replace_change_bodies(tx, row.revision, &sealed, sealed_prev.as_ref())
                        .await?;
                    done += 1;
                }
                let last = rows.last().map(|r| r.revision).unwrap_or(after);
                Ok((rows.len() as i64, last, done, scrubbed, failures))
            }
        )?;
        report.changes += done;
        report.scrubbed += scrubbed;
        note(&mut report, failures);
        if seen < BATCH {
            break;
        }
        after = last;
    }

    report.usage = secret_key_usage(db, enc).await?;
    Ok(report)
}
