//! What the simulated cluster shows: Pod objects with the status a kubelet would
//! write, and workload `.status` as the Kubernetes controllers maintain it (counters
//! omitted when zero, as Kubernetes' `omitempty` does).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::state::{Phase, SimNode, SimObject, SimPod, SimState};
use super::workloads::{self, Workload};
use crate::model::{ObservedPod, well_known};

pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Inserts `key: n` unless `n` is zero.
fn put_nonzero(status: &mut Map<String, Value>, key: &str, n: i64) {
    if n != 0 {
        status.insert(key.into(), n.into());
    }
}

fn containers(template: &Value) -> Vec<(String, String)> {
    let list: Vec<(String, String)> = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("main")
                            .to_owned(),
                        c.get("image")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        vec![("main".into(), String::new())]
    } else {
        list
    }
}

/// The names of a pod's containers, first one first.
pub(super) fn container_names(template: &Value) -> Vec<String> {
    containers(template).into_iter().map(|(n, _)| n).collect()
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<&str>, at: &str) -> Value {
    let mut c = json!({
        "type": kind,
        "status": if ok { "True" } else { "False" },
        "lastProbeTime": null,
        "lastTransitionTime": at,
    });
    if let Some(r) = reason {
        c["reason"] = r.into();
    }
    if let Some(m) = message {
        c["message"] = m.into();
    }
    c
}

fn labels(state: &SimState, pod: &SimPod) -> Map<String, Value> {
    let mut labels = pod
        .template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut put = |k: &str, v: String| {
        labels.insert(k.to_owned(), Value::String(v));
    };
    match pod.owner_kind {
        "ReplicaSet" => put("pod-template-hash", pod.hash.clone()),
        "StatefulSet" => {
            put(
                "controller-revision-hash",
                format!("{}-{}", pod.owner_name, pod.hash),
            );
            put("statefulset.kubernetes.io/pod-name", pod.id.name.clone());
            if let Some(o) = pod.ordinal {
                put("apps.kubernetes.io/pod-index", o.to_string());
            }
        }
        "DaemonSet" => {
            put("controller-revision-hash", pod.hash.clone());
            let generation = state
                .objects
                .get(&pod.owner)
                .map_or(1, |o| o.desired.generation());
            put("pod-template-generation", generation.to_string());
        }
        "Job" => {
            put("batch.kubernetes.io/controller-uid", pod.owner_uid.clone());
            put("batch.kubernetes.io/job-name", pod.owner_name.clone());
            put("controller-uid", pod.owner_uid.clone());
            put("job-name", pod.owner_name.clone());
        }
        _ => {}
    }
    put(well_known::SITE_LABEL, state.site.clone());
    labels
}

fn spec(state: &SimState, pod: &SimPod) -> Value {
    let mut spec = pod
        .template
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let defaults = [
        ("restartPolicy", json!("Always")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("serviceAccountName", json!("default")),
        ("securityContext", json!({})),
    ];
    for (k, v) in defaults {
        spec.entry(k).or_insert(v);
    }
    if let Some(i) = pod.node {
        spec.insert("nodeName".into(), state.nodes[i].name.clone().into());
    }
    if let (Some(o), Some(obj)) = (pod.ordinal, state.objects.get(&pod.owner))
        && let Workload::StatefulSet { service_name, .. } = &obj.workload
    {
        spec.insert("hostname".into(), format!("{}-{o}", pod.owner_name).into());
        if !service_name.is_empty() {
            spec.insert("subdomain".into(), service_name.clone().into());
        }
    }
    Value::Object(spec)
}

fn container_status(
    pod: &SimPod,
    name: &str,
    image: &str,
    ready_node: bool,
    backoff_message: &str,
) -> Value {
    let mut c = json!({
        "name": name,
        "image": image,
        "imageID": "",
        "ready": false,
        "started": false,
        "restartCount": pod.restarts,
    });
    let container_id = format!(
        "containerd://{}",
        super::names::derived_uid(&pod.uid, name).replace('-', "")
    );
    let image_id = format!(
        "{}@sha256:{}",
        image.split(':').next().unwrap_or(image),
        super::names::derived_uid(image, "image").replace('-', "")
    );
    if let Some((started, finished)) = pod.last_crash {
        c["lastState"] = json!({"terminated": {
            "exitCode": 1, "reason": "Error",
            "startedAt": ts(started), "finishedAt": ts(finished),
            "containerID": container_id,
        }});
    }
    let state = match pod.phase {
        Phase::Unscheduled | Phase::Creating => {
            json!({"waiting": {"reason": "ContainerCreating"}})
        }
        Phase::Running => {
            c["ready"] = ready_node.into();
            c["started"] = true.into();
            c["containerID"] = container_id.clone().into();
            c["imageID"] = image_id.into();
            json!({"running": {"startedAt": pod.started.map(ts)}})
        }
        Phase::CrashBackoff => {
            c["containerID"] = container_id.clone().into();
            c["imageID"] = image_id.into();
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": backoff_message}})
        }
        Phase::Succeeded => {
            c["containerID"] = container_id.clone().into();
            c["imageID"] = image_id.into();
            json!({"terminated": {
                "exitCode": 0, "reason": "Completed",
                "startedAt": pod.started.map(ts), "finishedAt": pod.finished.map(ts),
                "containerID": container_id,
            }})
        }
    };
    c["state"] = state;
    c
}

fn pod_status(state: &SimState, pod: &SimPod) -> Value {
    let node = pod.node.map(|i| &state.nodes[i]);
    let node_ready = node.is_some_and(|n| n.ready);
    let cs = containers(&pod.template);
    let names: Vec<&str> = cs.iter().map(|(n, _)| n.as_str()).collect();
    let unready = format!("containers with unready status: [{}]", names.join(" "));
    let scheduled = pod.scheduled.map(ts).unwrap_or_else(|| ts(pod.created));
    let started = pod
        .first_started
        .map(ts)
        .unwrap_or_else(|| scheduled.clone());
    let phase = match pod.phase {
        Phase::Unscheduled | Phase::Creating => "Pending",
        Phase::Running | Phase::CrashBackoff => "Running",
        Phase::Succeeded => "Succeeded",
    };
    let mut status = Map::new();
    status.insert("phase".into(), phase.into());
    let conditions = match pod.phase {
        Phase::Unscheduled if pod.unschedulable => vec![condition(
            "PodScheduled",
            false,
            Some("Unschedulable"),
            Some(&format!(
                "0/{} nodes are available: no ready node matches the pod.",
                state.nodes.len()
            )),
            &ts(pod.created),
        )],
        Phase::Unscheduled => Vec::new(),
        Phase::Creating => vec![
            condition("PodReadyToStartContainers", false, None, None, &scheduled),
            condition("Initialized", true, None, None, &scheduled),
            condition(
                "Ready",
                false,
                Some("ContainersNotReady"),
                Some(&unready),
                &scheduled,
            ),
            condition(
                "ContainersReady",
                false,
                Some("ContainersNotReady"),
                Some(&unready),
                &scheduled,
            ),
            condition("PodScheduled", true, None, None, &scheduled),
        ],
        Phase::Running if node_ready => {
            let at = pod.started.map(ts).unwrap_or_else(|| started.clone());
            vec![
                condition("PodReadyToStartContainers", true, None, None, &started),
                condition("Initialized", true, None, None, &scheduled),
                condition("Ready", true, None, None, &at),
                condition("ContainersReady", true, None, None, &at),
                condition("PodScheduled", true, None, None, &scheduled),
            ]
        }
        Phase::Running => vec![
            condition("PodReadyToStartContainers", true, None, None, &started),
            condition("Initialized", true, None, None, &scheduled),
            condition(
                "Ready",
                false,
                Some("NodeNotReady"),
                Some("Node is not ready"),
                &started,
            ),
            condition("ContainersReady", true, None, None, &started),
            condition("PodScheduled", true, None, None, &scheduled),
        ],
        Phase::CrashBackoff => {
            let at = pod
                .last_crash
                .map(|(_, f)| ts(f))
                .unwrap_or_else(|| started.clone());
            vec![
                condition("PodReadyToStartContainers", true, None, None, &started),
                condition("Initialized", true, None, None, &scheduled),
                condition(
                    "Ready",
                    false,
                    Some("ContainersNotReady"),
                    Some(&unready),
                    &at,
                ),
                condition(
                    "ContainersReady",
                    false,
                    Some("ContainersNotReady"),
                    Some(&unready),
                    &at,
                ),
                condition("PodScheduled", true, None, None, &scheduled),
            ]
        }
        Phase::Succeeded => {
            let at = pod.finished.map(ts).unwrap_or_else(|| started.clone());
            vec![
                condition("PodReadyToStartContainers", false, None, None, &at),
                condition("Initialized", true, Some("PodCompleted"), None, &scheduled),
                condition("Ready", false, Some("PodCompleted"), None, &at),
                condition("ContainersReady", false, Some("PodCompleted"), None, &at),
                condition("PodScheduled", true, None, None, &scheduled),
            ]
        }
    };
    if !conditions.is_empty() {
        status.insert("conditions".into(), conditions.into());
    }
    if let Some(n) = node {
        status.insert("hostIP".into(), n.ip.clone().into());
        status.insert("hostIPs".into(), json!([{"ip": n.ip}]));
        status.insert("startTime".into(), scheduled.into());
        let backoff = format!(
            "back-off restarting failed container pod={}_{}({})",
            pod.id.name, pod.id.namespace, pod.uid
        );
        let statuses: Vec<Value> = cs
            .iter()
            .map(|(name, image)| container_status(pod, name, image, node_ready, &backoff))
            .collect();
        status.insert("containerStatuses".into(), statuses.into());
    }
    if matches!(
        pod.phase,
        Phase::Running | Phase::CrashBackoff | Phase::Succeeded
    ) {
        status.insert("podIP".into(), pod.ip.clone().into());
        status.insert("podIPs".into(), json!([{"ip": pod.ip}]));
    }
    let burstable = pod
        .template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("resources")
                    .is_some_and(|r| r.as_object().is_some_and(|r| !r.is_empty()))
            })
        });
    status.insert(
        "qosClass".into(),
        if burstable { "Burstable" } else { "BestEffort" }.into(),
    );
    Value::Object(status)
}

/// A pod as the vK8s shows it.
pub(super) fn observed_pod(state: &SimState, pod: &SimPod) -> ObservedPod {
    let owner_api = if pod.owner_kind == "Job" {
        "batch/v1"
    } else {
        "apps/v1"
    };
    let mut metadata = json!({
        "name": pod.id.name,
        "namespace": pod.id.namespace,
        "uid": pod.uid,
        "creationTimestamp": ts(pod.created),
        "labels": labels(state, pod),
        "ownerReferences": [{
            "apiVersion": owner_api,
            "kind": pod.owner_kind,
            "name": pod.owner_name,
            "uid": pod.owner_uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    if pod.ordinal.is_none() {
        metadata["generateName"] = format!("{}-", pod.owner_name).into();
    }
    if let Some(a) = pod.template.pointer("/metadata/annotations") {
        metadata["annotations"] = a.clone();
    }
    let status = pod_status(state, pod);
    let phase = status["phase"].as_str().unwrap_or("Pending").to_owned();
    let object = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec(state, pod),
        "status": status,
    });
    ObservedPod {
        id: pod.id.clone(),
        node: pod
            .node
            .map(|i| state.nodes[i].name.clone())
            .unwrap_or_default(),
        phase,
        pod_ip: if pod.node.is_some() && pod.phase != Phase::Creating {
            pod.ip.clone()
        } else {
            String::new()
        },
        restarts: pod.restarts,
        owner_kind: pod.owner_kind.to_owned(),
        owner_name: pod.owner_name.clone(),
        object,
    }
}

/// A workload condition that keeps its timestamps while its status and reason hold.
fn workload_condition(
    previous: &[Value],
    kind: &str,
    ok: bool,
    reason: &str,
    message: &str,
    with_update_time: bool,
    now: &str,
) -> Value {
    let prev = previous.iter().find(|c| c["type"] == kind);
    let status = if ok { "True" } else { "False" };
    let same_status = prev.is_some_and(|c| c["status"] == status);
    let same_all =
        same_status && prev.is_some_and(|c| c["reason"] == reason && c["message"] == message);
    let transition = match prev {
        Some(c) if same_status => c["lastTransitionTime"].clone(),
        _ => now.into(),
    };
    let mut c = json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": transition,
    });
    if with_update_time {
        c["lastUpdateTime"] = match prev {
            Some(p) if same_all => p["lastUpdateTime"].clone(),
            _ => now.into(),
        };
    }
    c
}

/// The `.status` of an object on this site, for kinds that have one.
pub(super) fn object_status(
    obj: &SimObject,
    pods: &[&SimPod],
    nodes: &[SimNode],
    wall: DateTime<Utc>,
) -> Option<Value> {
    let now = ts(wall);
    let generation = obj.desired.generation();
    let ready = pods.iter().filter(|p| p.is_ready(nodes)).count() as i64;
    let prev = &obj.rt.conditions;
    let mut s = Map::new();
    match &obj.workload {
        Workload::Deployment {
            replicas,
            max_unavailable,
            ..
        } => {
            let r = (*replicas).max(0);
            let total = pods.len() as i64;
            let updated = pods.iter().filter(|p| p.hash == obj.hash).count() as i64;
            let unavailable_allowed = max_unavailable.scaled(r, false).min(r);
            let rs = format!("{}-{}", obj.desired.key.name, obj.hash);
            s.insert("observedGeneration".into(), generation.into());
            put_nonzero(&mut s, "replicas", total);
            put_nonzero(&mut s, "updatedReplicas", updated);
            put_nonzero(&mut s, "readyReplicas", ready);
            put_nonzero(&mut s, "availableReplicas", ready);
            put_nonzero(&mut s, "unavailableReplicas", (total.max(r) - ready).max(0));
            let available = ready >= r - unavailable_allowed;
            let complete = updated == r && total == r && ready == r;
            let conditions = vec![
                if available {
                    workload_condition(
                        prev,
                        "Available",
                        true,
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                        true,
                        &now,
                    )
                } else {
                    workload_condition(
                        prev,
                        "Available",
                        false,
                        "MinimumReplicasUnavailable",
                        "Deployment does not have minimum availability.",
                        true,
                        &now,
                    )
                },
                if complete {
                    workload_condition(
                        prev,
                        "Progressing",
                        true,
                        "NewReplicaSetAvailable",
                        &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                        true,
                        &now,
                    )
                } else {
                    workload_condition(
                        prev,
                        "Progressing",
                        true,
                        "ReplicaSetUpdated",
                        &format!("ReplicaSet \"{rs}\" is progressing."),
                        true,
                        &now,
                    )
                },
            ];
            s.insert("conditions".into(), conditions.into());
        }
        Workload::StatefulSet { .. } => {
            let update = format!("{}-{}", obj.desired.key.name, obj.hash);
            let current_hash = obj
                .rt
                .current_hash
                .clone()
                .unwrap_or_else(|| obj.hash.clone());
            let current = format!("{}-{}", obj.desired.key.name, current_hash);
            s.insert("observedGeneration".into(), generation.into());
            s.insert("replicas".into(), (pods.len() as i64).into());
            put_nonzero(&mut s, "readyReplicas", ready);
            put_nonzero(
                &mut s,
                "currentReplicas",
                pods.iter().filter(|p| p.hash == current_hash).count() as i64,
            );
            put_nonzero(
                &mut s,
                "updatedReplicas",
                pods.iter().filter(|p| p.hash == obj.hash).count() as i64,
            );
            s.insert("availableReplicas".into(), ready.into());
            s.insert("currentRevision".into(), current.into());
            s.insert("updateRevision".into(), update.into());
            s.insert("collisionCount".into(), 0.into());
        }
        Workload::DaemonSet { .. } => {
            let template = obj.template.as_deref().unwrap_or(&Value::Null);
            let eligible = workloads::daemonset_nodes(template, nodes);
            let desired = eligible.len() as i64;
            let on = |i: usize| pods.iter().filter(move |p| p.node == Some(i));
            let current = eligible.iter().filter(|&&i| on(i).next().is_some()).count() as i64;
            let ready_nodes = eligible
                .iter()
                .filter(|&&i| on(i).any(|p| p.is_ready(nodes)))
                .count() as i64;
            let updated = eligible
                .iter()
                .filter(|&&i| on(i).any(|p| p.hash == obj.hash))
                .count() as i64;
            let misscheduled = pods
                .iter()
                .filter(|p| {
                    p.node
                        .is_some_and(|i| nodes[i].ready && !eligible.contains(&i))
                })
                .count() as i64;
            s.insert("currentNumberScheduled".into(), current.into());
            s.insert("numberMisscheduled".into(), misscheduled.into());
            s.insert("desiredNumberScheduled".into(), desired.into());
            s.insert("numberReady".into(), ready_nodes.into());
            s.insert("observedGeneration".into(), generation.into());
            put_nonzero(&mut s, "updatedNumberScheduled", updated);
            put_nonzero(&mut s, "numberAvailable", ready_nodes);
            put_nonzero(&mut s, "numberUnavailable", desired - ready_nodes);
        }
        Workload::Job { .. } => {
            let succeeded = pods.iter().filter(|p| p.succeeded()).count() as i64;
            let active = pods.len() as i64 - succeeded;
            if let Some(t) = obj.rt.start_time {
                s.insert("startTime".into(), ts(t).into());
            }
            put_nonzero(&mut s, "active", active);
            put_nonzero(&mut s, "succeeded", succeeded);
            s.insert("ready".into(), ready.into());
            s.insert("terminating".into(), 0.into());
            s.insert("uncountedTerminatedPods".into(), json!({}));
            if let Some(t) = obj.rt.completion_time {
                s.insert("completionTime".into(), ts(t).into());
                let msg = "Reached expected number of succeeded pods";
                s.insert(
                    "conditions".into(),
                    json!([
                        workload_condition(
                            prev,
                            "SuccessCriteriaMet",
                            true,
                            "CompletionsReached",
                            msg,
                            false,
                            &now
                        ),
                        workload_condition(
                            prev,
                            "Complete",
                            true,
                            "CompletionsReached",
                            msg,
                            false,
                            &now
                        ),
                    ]),
                );
            }
        }
        Workload::CronJob => {}
        Workload::Service => {
            s.insert("loadBalancer".into(), json!({}));
        }
        Workload::PersistentVolumeClaim => {
            let spec = obj.desired.object.get("spec");
            s.insert("phase".into(), "Bound".into());
            if let Some(modes) = spec.and_then(|s| s.get("accessModes")) {
                s.insert("accessModes".into(), modes.clone());
            }
            if let Some(storage) = spec.and_then(|s| s.pointer("/resources/requests/storage")) {
                s.insert("capacity".into(), json!({"storage": storage}));
            }
        }
        Workload::Stored => return None,
    }
    Some(Value::Object(s))
}
