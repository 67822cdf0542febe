//! Storing one StatusReport of a site: object status and the pod changes it
//! implies (new and changed pods, tombstones for pods that left), in one
//! transaction. A full report replaces everything stored for the site.

use std::collections::{BTreeMap, HashMap, HashSet};

use manifold_db::{DbError, Tx};
use uuid::Uuid;

use super::{events, objects, pods, pods::PodRow};
use crate::domain::status::{PodRemoval, Report, StoredPod};

type Key = (String, String, String);

fn key_of(p: &StoredPod) -> Key {
    (
        p.pod.virtual_cluster.clone(),
        p.pod.namespace.clone(),
        p.pod.name.clone(),
    )
}

pub async fn apply(
    tx: &mut Tx,
    site: &str,
    report: &Report,
    tenants: &HashMap<String, Uuid>,
) -> Result<(), DbError> {
    let mut touched: Vec<String> = if report.full {
        objects::clear_site(tx, site).await?
    } else {
        Vec::new()
    };
    for o in &report.objects {
        if let Some(t) = tenants.get(&o.key.virtual_cluster) {
            objects::upsert(tx, *t, site, o).await?;
        }
    }
    for k in &report.deleted_objects {
        if objects::delete(tx, k, Some(site)).await? {
            touched.push(k.virtual_cluster.clone());
        }
    }
    // Wake the status watchers of every vK8s this report spoke of (a
    // reader finds what really changed; an unchanged status is no change).
    touched.extend(
        report
            .objects
            .iter()
            .map(|o| o.key.virtual_cluster.clone())
            .filter(|vk| tenants.contains_key(vk)),
    );
    touched.sort_unstable();
    touched.dedup();
    objects::notify_changed(tx, touched.iter().map(String::as_str)).await?;
    for e in &report.events {
        if let Some(t) = tenants.get(&e.virtual_cluster) {
            events::upsert(tx, *t, site, e).await?;
        }
    }
    let existing = if report.full {
        pods::of_site(tx, site).await?
    } else {
        matching(tx, site, report).await?
    };
    let rows = pod_rows(site, &existing, report, tenants);
    if rows.is_empty() {
        return Ok(());
    }
    let clusters: BTreeMap<String, Uuid> = rows
        .iter()
        .map(|r| (r.pod.virtual_cluster.clone(), r.tenant_id))
        .collect();
    let mut heads = pods::lock_heads(tx, &clusters).await?;
    pods::write(tx, &mut heads, &rows).await
}

/// The stored live pods of `site` an incremental report mentions.
async fn matching(
    tx: &mut Tx,
    site: &str,
    report: &Report,
) -> Result<Vec<(Uuid, StoredPod)>, DbError> {
    let mut vks = Vec::new();
    let mut nss = Vec::new();
    let mut names = Vec::new();
    let mut push = |vk: &str, ns: &str, name: &str| {
        vks.push(vk.to_owned());
        nss.push(ns.to_owned());
        names.push(name.to_owned());
    };
    for p in &report.pods {
        push(&p.virtual_cluster, &p.namespace, &p.name);
    }
    for r in &report.removed_pods {
        match r {
            // '*' matches any vK8s.
            PodRemoval::Exact {
                virtual_cluster,
                namespace,
                name,
            } => push(virtual_cluster, namespace, name),
            PodRemoval::AnyCluster { namespace, name } => push("*", namespace, name),
        }
    }
    if vks.is_empty() {
        return Ok(Vec::new());
    }
    pods::of_site_matching(tx, site, &vks, &nss, &names).await
}

/// The rows a report writes, given what is stored for the site.
pub fn pod_rows(
    site: &str,
    existing: &[(Uuid, StoredPod)],
    report: &Report,
    tenants: &HashMap<String, Uuid>,
) -> Vec<PodRow> {
    let live: HashMap<Key, &(Uuid, StoredPod)> = existing
        .iter()
        .filter(|(_, p)| !p.deleted)
        .map(|e| (key_of(&e.1), e))
        .collect();
    let mut rows = Vec::new();
    let mut reported: HashSet<Key> = HashSet::new();
    let mut gone: HashSet<Key> = HashSet::new();
    for p in &report.pods {
        let Some(tenant_id) = tenants.get(&p.virtual_cluster) else {
            continue;
        };
        let key = (
            p.virtual_cluster.clone(),
            p.namespace.clone(),
            p.name.clone(),
        );
        let unchanged = live
            .get(&key)
            .is_some_and(|(_, s)| !s.site_offline && s.pod == *p);
        reported.insert(key);
        if !unchanged {
            rows.push(PodRow {
                tenant_id: *tenant_id,
                site: site.to_owned(),
                pod: p.clone(),
                site_offline: false,
                deleted: false,
            });
        }
    }
    let mut tombstone = |e: &(Uuid, StoredPod), rows: &mut Vec<PodRow>| {
        if gone.insert(key_of(&e.1)) {
            rows.push(PodRow {
                tenant_id: e.0,
                site: site.to_owned(),
                pod: e.1.pod.clone(),
                site_offline: false,
                deleted: true,
            });
        }
    };
    for r in &report.removed_pods {
        for e in live.values() {
            let p = &e.1.pod;
            let hit = match r {
                PodRemoval::Exact {
                    virtual_cluster,
                    namespace,
                    name,
                } => {
                    &p.virtual_cluster == virtual_cluster
                        && &p.namespace == namespace
                        && &p.name == name
                }
                PodRemoval::AnyCluster { namespace, name } => {
                    &p.namespace == namespace && &p.name == name
                }
            };
            if hit && !reported.contains(&key_of(&e.1)) {
                tombstone(e, &mut rows);
            }
        }
    }
    if report.full {
        for e in existing.iter().filter(|(_, p)| !p.deleted) {
            if !reported.contains(&key_of(&e.1)) {
                tombstone(e, &mut rows);
            }
        }
    }
    rows
}

/// Marks every live pod of `site` as possibly stale (its stream is gone), or
/// as current again (it is back).
pub async fn set_site_offline(tx: &mut Tx, site: &str, offline: bool) -> Result<(), DbError> {
    let touched = objects::touch_site(tx, site).await?;
    objects::notify_changed(tx, touched.iter().map(String::as_str)).await?;
    let existing = pods::of_site(tx, site).await?;
    let rows: Vec<PodRow> = existing
        .into_iter()
        .filter(|(_, p)| !p.deleted && p.site_offline != offline)
        .map(|(tenant_id, p)| PodRow {
            tenant_id,
            site: site.to_owned(),
            pod: p.pod,
            site_offline: offline,
            deleted: false,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let clusters: BTreeMap<String, Uuid> = rows
        .iter()
        .map(|r| (r.pod.virtual_cluster.clone(), r.tenant_id))
        .collect();
    let mut heads = pods::lock_heads(tx, &clusters).await?;
    pods::write(tx, &mut heads, &rows).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::status::PodState;
    use serde_json::json;

    const VK: &str = "tenants/a/namespaces/n/virtualClusters/v";

    fn pod(name: &str, phase: &str) -> PodState {
        PodState {
            virtual_cluster: VK.into(),
            namespace: "n".into(),
            name: name.into(),
            node: "node-1".into(),
            phase: phase.into(),
            pod_ip: String::new(),
            restarts: 0,
            owner_kind: String::new(),
            owner_name: String::new(),
            object: json!({"metadata": {"name": name}}),
        }
    }

    fn stored(p: PodState) -> (Uuid, StoredPod) {
        (
            Uuid::nil(),
            StoredPod {
                site: "s".into(),
                pod: p,
                site_offline: false,
                revision: 1,
                deleted: false,
            },
        )
    }

    #[test]
    fn reports_write_only_what_changed() {
        let tenants: HashMap<String, Uuid> = [(VK.to_owned(), Uuid::nil())].into();
        let existing = vec![stored(pod("a", "Running")), stored(pod("b", "Running"))];
        let incremental = Report {
            pods: vec![pod("a", "Running"), pod("c", "Pending")],
            removed_pods: vec![PodRemoval::AnyCluster {
                namespace: "n".into(),
                name: "b".into(),
            }],
            ..Default::default()
        };
        let rows = pod_rows("s", &existing, &incremental, &tenants);
        let summary: Vec<(&str, bool)> = rows
            .iter()
            .map(|r| (r.pod.name.as_str(), r.deleted))
            .collect();
        assert_eq!(summary, [("c", false), ("b", true)]);
        let full = Report {
            full: true,
            pods: vec![pod("a", "Succeeded")],
            ..Default::default()
        };
        let rows = pod_rows("s", &existing, &full, &tenants);
        let summary: Vec<(&str, bool)> = rows
            .iter()
            .map(|r| (r.pod.name.as_str(), r.deleted))
            .collect();
        assert_eq!(summary, [("a", false), ("b", true)]);
        // Pods of vK8s without a tenant (not placed here) are ignored.
        let stray = Report {
            pods: vec![PodState {
                virtual_cluster: "tenants/x/namespaces/y/virtualClusters/z".into(),
                ..pod("z", "Running")
            }],
            ..Default::default()
        };
        assert!(pod_rows("s", &existing, &stray, &tenants).is_empty());
    }
}
