//! Fair use per vK8s: objects and stored bytes (checked in the write's
//! transaction, after the write, so the new object counts), and Kubernetes
//! watches one principal holds open at once (per gateway process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use manifold_db::{Tx, sqlx};
use sqlx::Row;

use crate::domain::VirtualCluster;
use crate::error::{GatewayError, Target};

/// The limits; see `vk8s.max_objects`, `vk8s.max_bytes` and
/// `vk8s.max_watches_per_principal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub max_objects: i64,
    pub max_bytes: i64,
    pub max_watches_per_principal: usize,
}

impl Default for Quota {
    /// 10,000 objects, 256 MiB, 100 watches.
    fn default() -> Self {
        Self {
            max_objects: 10_000,
            max_bytes: 256 * 1024 * 1024,
            max_watches_per_principal: 100,
        }
    }
}

/// What a vK8s stores now: (objects, bytes as Postgres stores the JSON).
pub async fn usage(tx: &mut Tx, vc: &VirtualCluster) -> Result<(i64, i64), GatewayError> {
    let row = sqlx::query(
        "SELECT count(*)::bigint AS n, COALESCE(sum(pg_column_size(body)), 0)::bigint AS bytes \
         FROM vk8s.objects WHERE vcluster_id = $1",
    )
    .bind(vc.id)
    .fetch_one(&mut **tx)
    .await?;
    Ok((row.get("n"), row.get("bytes")))
}

/// 403 as kube-apiserver's ResourceQuota admission words it.
fn exceeded(
    target: &Target,
    resource: &str,
    requested: i64,
    used: i64,
    limit: i64,
) -> GatewayError {
    GatewayError::Forbidden(format!(
        "{target} is forbidden: exceeded quota: vk8s, requested: {resource}={requested}, \
         used: {resource}={used}, limited: {resource}={limit}"
    ))
}

impl Quota {
    /// After inserting (`created`) or growing an object by `grown` bytes:
    /// the vK8s must still be within its limits.
    pub async fn check_after_write(
        &self,
        tx: &mut Tx,
        vc: &VirtualCluster,
        target: &Target,
        created: bool,
        grown: i64,
    ) -> Result<(), GatewayError> {
        if !created && grown <= 0 {
            return Ok(());
        }
        let (n, bytes) = usage(tx, vc).await?;
        if created && n > self.max_objects {
            return Err(exceeded(target, "objects", 1, n - 1, self.max_objects));
        }
        if bytes > self.max_bytes {
            return Err(exceeded(
                target,
                "bytes",
                grown.max(1),
                (bytes - grown.max(0)).max(0),
                self.max_bytes,
            ));
        }
        Ok(())
    }
}

/// Open watches by principal.
#[derive(Default, Clone)]
pub struct Watches {
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open watch; dropping it frees the slot.
pub struct WatchSlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

fn lock(m: &Mutex<HashMap<String, usize>>) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Watches {
    /// A slot for `user`, or 429 once `max` of its watches are open.
    pub fn acquire(&self, user: &str, max: usize) -> Result<WatchSlot, GatewayError> {
        let mut open = lock(&self.open);
        let n = open.entry(user.to_owned()).or_insert(0);
        if *n >= max {
            return Err(GatewayError::TooManyRequests(format!(
                "too many open watches: {user} holds {n} (limit {max}, vk8s.max_watches_per_principal); \
                 close some and retry"
            )));
        }
        *n += 1;
        Ok(WatchSlot {
            open: self.open.clone(),
            user: user.to_owned(),
        })
    }

    #[cfg(test)]
    fn open(&self, user: &str) -> usize {
        lock(&self.open).get(user).copied().unwrap_or(0)
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_slots_are_bounded_per_principal_and_freed_on_drop() {
        let w = Watches::default();
        let a = w.acquire("tenants/acme/users/ann", 2).unwrap();
        let _b = w.acquire("tenants/acme/users/ann", 2).unwrap();
        let err = w.acquire("tenants/acme/users/ann", 2).err().unwrap();
        assert_eq!(err.http_code(), 429);
        assert!(err.to_string().contains("limit 2"), "{err}");
        // Another principal has its own slots.
        let _c = w.acquire("tenants/acme/users/bob", 2).unwrap();
        drop(a);
        assert_eq!(w.open("tenants/acme/users/ann"), 1);
        let _d = w.acquire("tenants/acme/users/ann", 2).unwrap();
    }
}
