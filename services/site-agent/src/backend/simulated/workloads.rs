//! Workload specs of the simulated cluster and what their controllers decide: which
//! pods to create and which to delete, following Kubernetes' rules (ReplicaSet scaling
//! and rolling updates with maxSurge/maxUnavailable, StatefulSet ordinals, one
//! DaemonSet pod per ready node, Job completions and parallelism).
//!
//! Plans are computed from a read-only view; `state` carries them out. Deletion in the
//! simulation is immediate (no Terminating phase), so a plan may delete and create in
//! one go where Kubernetes would wait for termination.

use std::collections::BTreeMap;

use serde_json::Value;

use super::state::{SimNode, SimPod};
use crate::model::PodId;

/// `intstr.IntOrString` as used by maxSurge / maxUnavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IntOrPercent {
    Int(i64),
    Percent(i64),
}

impl IntOrPercent {
    fn parse(value: Option<&Value>, default: IntOrPercent) -> IntOrPercent {
        match value {
            Some(Value::Number(n)) => n.as_i64().map_or(default, IntOrPercent::Int),
            Some(Value::String(s)) => match s.strip_suffix('%').map(str::parse::<i64>) {
                Some(Ok(p)) => IntOrPercent::Percent(p),
                _ => s.parse().map_or(default, IntOrPercent::Int),
            },
            _ => default,
        }
    }

    /// `intstr.GetScaledValueFromIntOrPercent`.
    pub(super) fn scaled(self, total: i64, round_up: bool) -> i64 {
        match self {
            IntOrPercent::Int(n) => n.max(0),
            IntOrPercent::Percent(p) => {
                let v = p.max(0) * total.max(0);
                if round_up { (v + 99) / 100 } else { v / 100 }
            }
        }
    }
}

const QUARTER: IntOrPercent = IntOrPercent::Percent(25);

/// What the simulation does with an object of a kind.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Workload {
    Deployment {
        replicas: i64,
        recreate: bool,
        max_surge: IntOrPercent,
        max_unavailable: IntOrPercent,
        paused: bool,
    },
    StatefulSet {
        replicas: i64,
        parallel: bool,
        on_delete: bool,
        service_name: String,
    },
    DaemonSet {
        max_unavailable: IntOrPercent,
        on_delete: bool,
    },
    Job {
        completions: i64,
        parallelism: i64,
        suspend: bool,
    },
    /// Tracked and given a status, never scheduled (see the crate docs).
    CronJob,
    /// Gets a fake cluster IP on the site.
    Service,
    /// Goes Bound at once.
    PersistentVolumeClaim,
    /// ConfigMap, Secret, ServiceAccount and anything else: stored as-is.
    Stored,
}

fn int_at(obj: &Value, pointer: &str, default: i64) -> i64 {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

impl Workload {
    pub(super) fn parse(kind: &str, obj: &Value) -> Workload {
        match kind {
            "Deployment" => Workload::Deployment {
                replicas: int_at(obj, "/spec/replicas", 1),
                recreate: str_at(obj, "/spec/strategy/type") == "Recreate",
                max_surge: IntOrPercent::parse(
                    obj.pointer("/spec/strategy/rollingUpdate/maxSurge"),
                    QUARTER,
                ),
                max_unavailable: IntOrPercent::parse(
                    obj.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
                    QUARTER,
                ),
                paused: obj
                    .pointer("/spec/paused")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            },
            "StatefulSet" => Workload::StatefulSet {
                replicas: int_at(obj, "/spec/replicas", 1),
                parallel: str_at(obj, "/spec/podManagementPolicy") == "Parallel",
                on_delete: str_at(obj, "/spec/updateStrategy/type") == "OnDelete",
                service_name: str_at(obj, "/spec/serviceName").to_owned(),
            },
            "DaemonSet" => Workload::DaemonSet {
                max_unavailable: IntOrPercent::parse(
                    obj.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
                    IntOrPercent::Int(1),
                ),
                on_delete: str_at(obj, "/spec/updateStrategy/type") == "OnDelete",
            },
            "Job" => {
                let parallelism = int_at(obj, "/spec/parallelism", 1);
                Workload::Job {
                    // A work-queue Job (no completions) is treated as needing one
                    // success.
                    completions: int_at(obj, "/spec/completions", 1),
                    parallelism,
                    suspend: obj
                        .pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                }
            }
            "CronJob" => Workload::CronJob,
            "Service" => Workload::Service,
            "PersistentVolumeClaim" => Workload::PersistentVolumeClaim,
            _ => Workload::Stored,
        }
    }

    /// The kind of the pods' controller as Kubernetes names it (a Deployment's pods
    /// belong to a ReplicaSet), for workloads that have pods.
    pub(super) fn pod_owner_kind(&self) -> Option<&'static str> {
        match self {
            Workload::Deployment { .. } => Some("ReplicaSet"),
            Workload::StatefulSet { .. } => Some("StatefulSet"),
            Workload::DaemonSet { .. } => Some("DaemonSet"),
            Workload::Job { .. } => Some("Job"),
            _ => None,
        }
    }
}

/// A pod to create.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NewPod {
    pub ordinal: Option<u32>,
    /// Bound to this node at creation (DaemonSet pods).
    pub node: Option<usize>,
}

/// What a controller wants done.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub create: Vec<NewPod>,
    pub delete: Vec<PodId>,
}

impl Plan {
    pub(super) fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }

    fn create_n(&mut self, n: i64) {
        for _ in 0..n.max(0) {
            self.create.push(NewPod {
                ordinal: None,
                node: None,
            });
        }
    }
}

/// Deletion preference when scaling down: unscheduled, then not ready, then newest.
fn deletion_order(pods: &mut [&SimPod], nodes: &[SimNode]) {
    pods.sort_by_key(|p| {
        (
            p.node.is_some(),
            p.is_ready(nodes),
            std::cmp::Reverse(p.seq),
        )
    });
}

/// Pods to delete so that `pods` shrinks to `target`.
fn scale_down(pods: &[&SimPod], target: i64, nodes: &[SimNode], plan: &mut Plan) {
    let excess = pods.len() as i64 - target.max(0);
    if excess <= 0 {
        return;
    }
    let mut order = pods.to_vec();
    deletion_order(&mut order, nodes);
    plan.delete
        .extend(order.iter().take(excess as usize).map(|p| p.id.clone()));
}

/// The Deployment controller with its ReplicaSets: pods of the current template hash
/// form the new ReplicaSet, every other hash an old one.
pub(super) fn plan_deployment(
    workload: &Workload,
    hash: &str,
    pods: &[&SimPod],
    nodes: &[SimNode],
) -> Plan {
    let Workload::Deployment {
        replicas,
        recreate,
        max_surge,
        max_unavailable,
        paused,
    } = *workload
    else {
        return Plan::default();
    };
    let r = replicas.max(0);
    let (new, old): (Vec<&SimPod>, Vec<&SimPod>) = pods.iter().partition(|p| p.hash == hash);
    let mut plan = Plan::default();

    if old.is_empty() {
        // Plain scaling of the current ReplicaSet.
        plan.create_n(r - new.len() as i64);
        scale_down(&new, r, nodes, &mut plan);
        return plan;
    }
    if paused {
        return plan;
    }
    if recreate {
        plan.delete.extend(old.iter().map(|p| p.id.clone()));
        plan.create_n(r - new.len() as i64);
        scale_down(&new, r, nodes, &mut plan);
        return plan;
    }

    let surge = max_surge.scaled(r, true);
    let mut unavailable = max_unavailable.scaled(r, false).min(r);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    // The new ReplicaSet never grows beyond the desired count.
    scale_down(&new, r, nodes, &mut plan);
    let new_kept: Vec<&SimPod> = new
        .iter()
        .copied()
        .filter(|p| !plan.delete.contains(&p.id))
        .collect();

    // Scale up the new ReplicaSet within the surge.
    let total = (new_kept.len() + old.len()) as i64;
    let room = (r + surge - total).max(0);
    let create = (r - new_kept.len() as i64).clamp(0, room);
    plan.create_n(create);

    // Scale down old ReplicaSets while keeping the minimum available.
    let min_available = r - unavailable;
    let all_count = total + create;
    let new_unready = new_kept.iter().filter(|p| !p.is_ready(nodes)).count() as i64 + create;
    let mut max_scaled_down = all_count - min_available - new_unready;
    let mut old_sorted = old.clone();
    deletion_order(&mut old_sorted, nodes);
    let (unhealthy, healthy): (Vec<&SimPod>, Vec<&SimPod>) =
        old_sorted.iter().partition(|p| !p.is_ready(nodes));
    for p in unhealthy {
        if max_scaled_down <= 0 {
            break;
        }
        plan.delete.push(p.id.clone());
        max_scaled_down -= 1;
    }
    let available =
        new_kept.iter().filter(|p| p.is_ready(nodes)).count() as i64 + healthy.len() as i64;
    let can = available - min_available;
    plan.delete.extend(
        healthy
            .iter()
            .take(can.max(0) as usize)
            .map(|p| p.id.clone()),
    );
    plan
}

/// The StatefulSet controller: pods `<name>-<ordinal>`, created in order (or all at
/// once with `Parallel`), updated from the highest ordinal down, one at a time.
pub(super) fn plan_statefulset(
    workload: &Workload,
    hash: &str,
    pods: &[&SimPod],
    nodes: &[SimNode],
) -> Plan {
    let Workload::StatefulSet {
        replicas,
        parallel,
        on_delete,
        ..
    } = *workload
    else {
        return Plan::default();
    };
    let r = replicas.max(0) as u32;
    let by_ordinal: BTreeMap<u32, &SimPod> = pods
        .iter()
        .filter_map(|p| p.ordinal.map(|o| (o, *p)))
        .collect();
    let mut plan = Plan::default();
    for (ordinal, pod) in by_ordinal.range(r..).rev() {
        let _ = ordinal;
        plan.delete.push(pod.id.clone());
    }
    for ordinal in 0..r {
        if by_ordinal.contains_key(&ordinal) {
            continue;
        }
        let predecessors_ready =
            (0..ordinal).all(|o| by_ordinal.get(&o).is_some_and(|p| p.is_ready(nodes)));
        if parallel || predecessors_ready {
            plan.create.push(NewPod {
                ordinal: Some(ordinal),
                node: None,
            });
        }
        if !parallel {
            break;
        }
    }
    if plan.is_empty() && !on_delete {
        let all_ready = (0..r).all(|o| by_ordinal.get(&o).is_some_and(|p| p.is_ready(nodes)));
        if all_ready
            && let Some(stale) = by_ordinal
                .range(..r)
                .rev()
                .map(|(_, p)| *p)
                .find(|p| p.hash != hash)
        {
            plan.delete.push(stale.id.clone());
        }
    }
    plan
}

/// Whether `node` satisfies the pod template's `nodeSelector`.
pub(super) fn node_matches(template: &Value, node: &SimNode) -> bool {
    match template
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
    {
        None => true,
        Some(selector) => selector.iter().all(|(k, v)| {
            v.as_str()
                .is_some_and(|v| node.labels.get(k).map(String::as_str) == Some(v))
        }),
    }
}

/// Nodes a DaemonSet should run on: ready and matching its node selector.
pub(super) fn daemonset_nodes(template: &Value, nodes: &[SimNode]) -> Vec<usize> {
    (0..nodes.len())
        .filter(|&i| nodes[i].ready && node_matches(template, &nodes[i]))
        .collect()
}

/// The DaemonSet controller: one pod per eligible node, rolling updates within
/// maxUnavailable. Pods on a NotReady node stay until the node is declared lost.
pub(super) fn plan_daemonset(
    workload: &Workload,
    hash: &str,
    template: &Value,
    pods: &[&SimPod],
    nodes: &[SimNode],
) -> Plan {
    let Workload::DaemonSet {
        max_unavailable,
        on_delete,
    } = *workload
    else {
        return Plan::default();
    };
    let eligible = daemonset_nodes(template, nodes);
    let mut plan = Plan::default();
    let mut unavailable = 0;
    let mut stale = Vec::new();
    for &i in &eligible {
        let mut on_node: Vec<&SimPod> =
            pods.iter().copied().filter(|p| p.node == Some(i)).collect();
        if on_node.is_empty() {
            plan.create.push(NewPod {
                ordinal: None,
                node: Some(i),
            });
            unavailable += 1;
            continue;
        }
        // Keep the best pod (current hash, ready, oldest); delete duplicates.
        on_node.sort_by_key(|p| (p.hash != hash, !p.is_ready(nodes), p.seq));
        plan.delete
            .extend(on_node[1..].iter().map(|p| p.id.clone()));
        let kept = on_node[0];
        if !kept.is_ready(nodes) {
            unavailable += 1;
        }
        if kept.hash != hash {
            stale.push(kept);
        }
    }
    // Pods on nodes that exist, are ready, but no longer match the selector.
    for p in pods {
        if let Some(i) = p.node
            && nodes[i].ready
            && !eligible.contains(&i)
        {
            plan.delete.push(p.id.clone());
        }
    }
    if !on_delete {
        let mut budget = max_unavailable.scaled(eligible.len() as i64, true).max(1) - unavailable;
        for p in stale {
            if !p.is_ready(nodes) {
                plan.delete.push(p.id.clone());
            } else if budget > 0 {
                plan.delete.push(p.id.clone());
                budget -= 1;
            }
        }
    }
    plan
}

/// The Job controller: keeps `min(parallelism, completions - succeeded)` pods active
/// until enough pods succeeded.
pub(super) fn plan_job(
    workload: &Workload,
    complete: bool,
    pods: &[&SimPod],
    nodes: &[SimNode],
) -> Plan {
    let Workload::Job {
        completions,
        parallelism,
        suspend,
    } = *workload
    else {
        return Plan::default();
    };
    let succeeded = pods.iter().filter(|p| p.succeeded()).count() as i64;
    let active: Vec<&SimPod> = pods.iter().copied().filter(|p| !p.succeeded()).collect();
    let want = if complete || suspend {
        0
    } else {
        parallelism.min(completions - succeeded).max(0)
    };
    let mut plan = Plan::default();
    plan.create_n(want - active.len() as i64);
    scale_down(&active, want, nodes, &mut plan);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn int_or_percent() {
        assert_eq!(
            IntOrPercent::parse(Some(&json!("25%")), QUARTER).scaled(2, true),
            1
        );
        assert_eq!(
            IntOrPercent::parse(Some(&json!("25%")), QUARTER).scaled(2, false),
            0
        );
        assert_eq!(
            IntOrPercent::parse(Some(&json!(3)), QUARTER).scaled(2, false),
            3
        );
        assert_eq!(IntOrPercent::parse(Some(&json!("x")), QUARTER), QUARTER);
        assert_eq!(
            IntOrPercent::parse(None, IntOrPercent::Int(1)),
            IntOrPercent::Int(1)
        );
    }

    #[test]
    fn parses_specs_with_kubernetes_defaults() {
        let d = Workload::parse("Deployment", &json!({"spec": {}}));
        assert_eq!(
            d,
            Workload::Deployment {
                replicas: 1,
                recreate: false,
                max_surge: QUARTER,
                max_unavailable: QUARTER,
                paused: false
            }
        );
        let j = Workload::parse(
            "Job",
            &json!({"spec": {"completions": 3, "parallelism": 2}}),
        );
        assert_eq!(
            j,
            Workload::Job {
                completions: 3,
                parallelism: 2,
                suspend: false
            }
        );
        assert_eq!(Workload::parse("ConfigMap", &json!({})), Workload::Stored);
        assert_eq!(d.pod_owner_kind(), Some("ReplicaSet"));
    }
}
