//! Fair use per vK8s: objects and stored bytes (checked in the write's
//! transaction, after the write, so the new object counts), the pods its
//! workloads ask of each site, and Kubernetes watches one principal holds
//! open at once (per gateway process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use manifold_db::{Tx, sqlx};
use sqlx::Row;

use crate::domain::VirtualCluster;
use crate::error::{GatewayError, Target};

/// The limits; see `vk8s.max_objects`, `vk8s.max_bytes`,
/// `vk8s.max_pods_per_site` and `vk8s.max_watches_per_principal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub max_objects: i64,
    pub max_bytes: i64,
    pub max_pods_per_site: i64,
    pub max_watches_per_principal: usize,
}

impl Default for Quota {
    /// 10,000 objects, 256 MiB, 1,000 pods per site, 100 watches.
    fn default() -> Self {
        Self {
            max_objects: 10_000,
            max_bytes: 256 * 1024 * 1024,
            max_pods_per_site: 1_000,
            max_watches_per_principal: 100,
        }
    }
}

/// The pods one object asks of every site it lands on: a Deployment's,
/// ReplicaSet's or StatefulSet's replicas, a Job's parallelism (a CronJob's
/// job template's), 1 for a bare Pod; 0 for everything else. A DaemonSet's
/// pods follow the site's nodes, not the tenant, and are not counted.
pub fn pods_of(api_group: &str, kind: &str, object: &serde_json::Value) -> i64 {
    let count = |path: &str| {
        object
            .pointer(path)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(1)
            .max(0)
    };
    match (api_group, kind) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet") => count("/spec/replicas"),
        ("batch", "Job") => count("/spec/parallelism"),
        ("batch", "CronJob") => count("/spec/jobTemplate/spec/parallelism"),
        ("", "Pod") => 1,
        _ => 0,
    }
}

/// The pods the vK8s's workloads ask of a site, counted as if every one of
/// them lands on every site (the most any one site can be asked for), in
/// SQL so the whole vK8s is never loaded.
pub async fn pods_per_site(tx: &mut Tx, vc: &VirtualCluster) -> Result<i64, GatewayError> {
    let row = sqlx::query(
        "SELECT COALESCE(sum(CASE \
           WHEN api_group = 'apps' AND kind IN ('Deployment', 'ReplicaSet', 'StatefulSet') \
             THEN CASE WHEN jsonb_typeof(body #> '{spec,replicas}') = 'number' \
               THEN greatest((body #>> '{spec,replicas}')::numeric, 0) ELSE 1 END \
           WHEN api_group = 'batch' AND kind = 'Job' \
             THEN CASE WHEN jsonb_typeof(body #> '{spec,parallelism}') = 'number' \
               THEN greatest((body #>> '{spec,parallelism}')::numeric, 0) ELSE 1 END \
           WHEN api_group = 'batch' AND kind = 'CronJob' \
             THEN CASE WHEN jsonb_typeof(body #> '{spec,jobTemplate,spec,parallelism}') = 'number' \
               THEN greatest((body #>> '{spec,jobTemplate,spec,parallelism}')::numeric, 0) ELSE 1 END \
           WHEN api_group = '' AND kind = 'Pod' THEN 1 \
           ELSE 0 END), 0)::bigint AS pods \
         FROM vk8s.objects WHERE vcluster_id = $1 AND deletion_time IS NULL",
    )
    .bind(vc.id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.get("pods"))
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

    /// After a write that asks `added` more pods of each site (a new
    /// workload, or more replicas): the vK8s must still be within
    /// `max_pods_per_site`. Fewer pods are always allowed.
    pub async fn check_pods_after_write(
        &self,
        tx: &mut Tx,
        vc: &VirtualCluster,
        target: &Target,
        added: i64,
    ) -> Result<(), GatewayError> {
        if added <= 0 {
            return Ok(());
        }
        let pods = pods_per_site(tx, vc).await?;
        if pods > self.max_pods_per_site {
            return Err(GatewayError::Forbidden(format!(
                "{target} is forbidden: exceeded quota: vk8s, requested: pods={added}, \
                 used: pods={}, limited: pods={} per site (vk8s.max_pods_per_site); \
                 scale something down or ask the operator for more",
                (pods - added).max(0),
                self.max_pods_per_site
            )));
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
    fn pods_are_counted_from_replicas_parallelism_and_bare_pods() {
        use serde_json::json as j;
        assert_eq!(
            pods_of("apps", "Deployment", &j!({"spec": {"replicas": 3}})),
            3
        );
        assert_eq!(pods_of("apps", "StatefulSet", &j!({"spec": {}})), 1);
        assert_eq!(
            pods_of("apps", "Deployment", &j!({"spec": {"replicas": 0}})),
            0
        );
        assert_eq!(
            pods_of("batch", "Job", &j!({"spec": {"parallelism": 4}})),
            4
        );
        assert_eq!(
            pods_of(
                "batch",
                "CronJob",
                &j!({"spec": {"jobTemplate": {"spec": {"parallelism": 2}}}})
            ),
            2
        );
        assert_eq!(pods_of("", "Pod", &j!({})), 1);
        assert_eq!(pods_of("apps", "DaemonSet", &j!({})), 0);
        assert_eq!(pods_of("", "ConfigMap", &j!({})), 0);
    }

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
