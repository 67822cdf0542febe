//! Aggregation of per-site workload status into the one status a vK8s shows.

use serde_json::{Map, Value};

/// Integer status fields that add up across sites, per kind.
fn summed_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Deployment" => &[
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "terminatingReplicas",
        ],
        "StatefulSet" => &[
            "replicas",
            "readyReplicas",
            "currentReplicas",
            "updatedReplicas",
            "availableReplicas",
        ],
        "ReplicaSet" => &[
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "terminatingReplicas",
        ],
        "DaemonSet" => &[
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
        ],
        "Job" => &["active", "succeeded", "failed", "ready", "terminating"],
        _ => &[],
    }
}

/// How a condition type combines across sites.
enum Combine {
    /// True only if every site says True (Available, Complete, ...).
    All,
    /// True if any site says True (ReplicaFailure, Failed, ...).
    Any,
}

fn combine_rule(condition_type: &str) -> Combine {
    match condition_type {
        "ReplicaFailure" | "Failed" | "FailureTarget" => Combine::Any,
        _ => Combine::All,
    }
}

/// Sums per-site `status` objects of a workload `kind` into one: counters add up,
/// `observedGeneration` is the minimum, conditions combine (Available is True only when
/// every site is; a site whose Progressing reason is ProgressDeadlineExceeded makes the
/// whole Progressing so). CronJob `active` lists concatenate and times take the latest.
pub fn sum_workload_status(kind: &str, statuses: Vec<Value>) -> Value {
    let sites: Vec<&Map<String, Value>> = statuses.iter().filter_map(Value::as_object).collect();
    let mut out = Map::new();
    if sites.is_empty() {
        return Value::Object(out);
    }
    for field in summed_fields(kind) {
        let values: Vec<i64> = sites
            .iter()
            .filter_map(|s| s.get(*field).and_then(Value::as_i64))
            .collect();
        if !values.is_empty() {
            out.insert((*field).to_string(), values.iter().sum::<i64>().into());
        }
    }
    let generations: Vec<i64> = sites
        .iter()
        .filter_map(|s| s.get("observedGeneration").and_then(Value::as_i64))
        .collect();
    if generations.len() == sites.len() {
        out.insert(
            "observedGeneration".into(),
            generations.iter().min().copied().unwrap_or(0).into(),
        );
    }
    for field in ["collisionCount"] {
        if let Some(max) = sites
            .iter()
            .filter_map(|s| s.get(field).and_then(Value::as_i64))
            .max()
        {
            out.insert(field.into(), max.into());
        }
    }
    // Revisions only mean something when every site agrees.
    for field in ["currentRevision", "updateRevision"] {
        let first = sites[0].get(field);
        if first.is_some() && sites.iter().all(|s| s.get(field) == first) {
            out.insert(field.into(), first.cloned().unwrap_or_default());
        }
    }
    match kind {
        "Job" => {
            if let Some(t) = earliest(&sites, "startTime") {
                out.insert("startTime".into(), t);
            }
            if sites.iter().all(|s| s.get("completionTime").is_some())
                && let Some(t) = latest(&sites, "completionTime")
            {
                out.insert("completionTime".into(), t);
            }
        }
        "CronJob" => {
            let active: Vec<Value> = sites
                .iter()
                .flat_map(|s| {
                    s.get("active")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            if !active.is_empty() {
                out.insert("active".into(), Value::Array(active));
            }
            for field in ["lastScheduleTime", "lastSuccessfulTime"] {
                if let Some(t) = latest(&sites, field) {
                    out.insert(field.into(), t);
                }
            }
        }
        _ => {}
    }
    let conditions = merge_conditions(&sites);
    if !conditions.is_empty() {
        out.insert("conditions".into(), Value::Array(conditions));
    }
    Value::Object(out)
}

/// RFC 3339 UTC timestamps in the same format compare correctly as strings.
fn times<'a>(sites: &'a [&Map<String, Value>], field: &str) -> impl Iterator<Item = &'a str> {
    let field = field.to_string();
    sites
        .iter()
        .filter_map(move |s| s.get(&field).and_then(Value::as_str))
}

fn earliest(sites: &[&Map<String, Value>], field: &str) -> Option<Value> {
    times(sites, field).min().map(Value::from)
}

fn latest(sites: &[&Map<String, Value>], field: &str) -> Option<Value> {
    times(sites, field).max().map(Value::from)
}

fn merge_conditions(sites: &[&Map<String, Value>]) -> Vec<Value> {
    let per_site: Vec<&[Value]> = sites
        .iter()
        .map(|s| {
            s.get("conditions")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        })
        .collect();
    let mut types: Vec<&str> = Vec::new();
    for conds in &per_site {
        for c in conds.iter() {
            if let Some(t) = c.get("type").and_then(Value::as_str)
                && !types.contains(&t)
            {
                types.push(t);
            }
        }
    }
    let mut out = Vec::new();
    for t in types {
        let found: Vec<Option<&Value>> = per_site
            .iter()
            .map(|conds| {
                conds
                    .iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
            })
            .collect();
        fn status_of<'a>(c: &Option<&'a Value>) -> &'a str {
            c.and_then(|c| c.get("status"))
                .and_then(Value::as_str)
                .unwrap_or("Unknown")
        }
        let pick = |status: &str| {
            found
                .iter()
                .flatten()
                .find(|c| c.get("status").and_then(Value::as_str) == Some(status))
        };

        if t == "Progressing"
            && let Some(c) = found.iter().flatten().find(|c| {
                c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
            })
        {
            out.push((*c).clone());
            continue;
        }
        let chosen = match combine_rule(t) {
            Combine::All => {
                if found.iter().all(|c| status_of(c) == "True") {
                    pick("True").map(|c| (*c).clone())
                } else if let Some(c) = pick("False") {
                    Some((*c).clone())
                } else {
                    // Some site has not reported the condition yet.
                    let mut c = pick("Unknown").map(|c| (*c).clone()).unwrap_or_else(|| {
                        serde_json::json!({"type": t, "reason": "SitesNotReporting", "message": "Not every site reports this condition yet."})
                    });
                    c["status"] = "Unknown".into();
                    Some(c)
                }
            }
            Combine::Any => pick("True")
                .or_else(|| pick("False"))
                .or_else(|| pick("Unknown"))
                .map(|c| (*c).clone()),
        };
        out.extend(chosen);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn available(status: &str, reason: &str) -> Value {
        json!({"type": "Available", "status": status, "reason": reason})
    }

    fn progressing(status: &str, reason: &str) -> Value {
        json!({"type": "Progressing", "status": status, "reason": reason})
    }

    #[test]
    fn deployment_counters_sum_and_generation_is_min() {
        let site = |ready: i64, generation: i64| {
            json!({"replicas": 2, "readyReplicas": ready, "availableReplicas": ready,
            "updatedReplicas": 2, "observedGeneration": generation,
            "conditions": [available("True", "MinimumReplicasAvailable"), progressing("True", "NewReplicaSetAvailable")]})
        };
        let out = sum_workload_status("Deployment", vec![site(2, 3), site(2, 3), site(1, 2)]);
        assert_eq!(out["replicas"], 6);
        assert_eq!(out["readyReplicas"], 5);
        assert_eq!(out["availableReplicas"], 5);
        assert_eq!(out["updatedReplicas"], 6);
        assert_eq!(out["observedGeneration"], 2);
        assert!(out.get("unavailableReplicas").is_none());
        assert_eq!(
            out["conditions"],
            json!([
                available("True", "MinimumReplicasAvailable"),
                progressing("True", "NewReplicaSetAvailable")
            ])
        );
    }

    #[test]
    fn available_needs_every_site() {
        let a = json!({"conditions": [available("True", "MinimumReplicasAvailable")]});
        let b = json!({"conditions": [available("False", "MinimumReplicasUnavailable")]});
        let out = sum_workload_status("Deployment", vec![a.clone(), b]);
        assert_eq!(
            out["conditions"][0],
            available("False", "MinimumReplicasUnavailable")
        );
        // A site that has not reported yet makes it Unknown, not True.
        let out = sum_workload_status("Deployment", vec![a, json!({"replicas": 0})]);
        assert_eq!(out["conditions"][0]["status"], "Unknown");
        assert_eq!(out["conditions"][0]["type"], "Available");
    }

    #[test]
    fn progress_deadline_exceeded_anywhere_wins() {
        let ok = json!({"conditions": [progressing("True", "NewReplicaSetAvailable")]});
        let stuck = json!({"conditions": [json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-1\" has timed out progressing."})]});
        let out = sum_workload_status("Deployment", vec![ok, stuck]);
        assert_eq!(out["conditions"][0]["reason"], "ProgressDeadlineExceeded");
        assert_eq!(out["conditions"][0]["status"], "False");
    }

    #[test]
    fn observed_generation_only_when_every_site_reports() {
        let out = sum_workload_status(
            "Deployment",
            vec![json!({"observedGeneration": 4}), json!({})],
        );
        assert!(out.get("observedGeneration").is_none());
        assert_eq!(sum_workload_status("Deployment", vec![]), json!({}));
    }

    #[test]
    fn statefulset_replicaset_daemonset() {
        let out = sum_workload_status(
            "StatefulSet",
            vec![
                json!({"replicas": 1, "readyReplicas": 1, "currentReplicas": 1, "updatedReplicas": 1, "currentRevision": "r1", "updateRevision": "r1"}),
                json!({"replicas": 1, "readyReplicas": 0, "currentReplicas": 1, "updatedReplicas": 1, "currentRevision": "r2", "updateRevision": "r1"}),
            ],
        );
        assert_eq!(
            (
                out["replicas"].as_i64(),
                out["readyReplicas"].as_i64(),
                out["currentReplicas"].as_i64()
            ),
            (Some(2), Some(1), Some(2))
        );
        assert!(out.get("currentRevision").is_none());
        assert_eq!(out["updateRevision"], "r1");
        let out = sum_workload_status(
            "ReplicaSet",
            vec![
                json!({"replicas": 2, "fullyLabeledReplicas": 2}),
                json!({"replicas": 3}),
            ],
        );
        assert_eq!(
            (
                out["replicas"].as_i64(),
                out["fullyLabeledReplicas"].as_i64()
            ),
            (Some(5), Some(2))
        );
        let ds = |n: i64| {
            json!({"currentNumberScheduled": n, "numberReady": n, "desiredNumberScheduled": n,
            "numberAvailable": n, "updatedNumberScheduled": n, "numberMisscheduled": 0})
        };
        let out = sum_workload_status("DaemonSet", vec![ds(2), ds(3)]);
        for f in [
            "currentNumberScheduled",
            "numberReady",
            "desiredNumberScheduled",
            "numberAvailable",
            "updatedNumberScheduled",
        ] {
            assert_eq!(out[f], 5, "{f}");
        }
        assert_eq!(out["numberMisscheduled"], 0);
    }

    #[test]
    fn jobs() {
        let done = |start: &str, end: &str| {
            json!({"succeeded": 1, "startTime": start, "completionTime": end,
            "conditions": [{"type": "Complete", "status": "True"}]})
        };
        let running = json!({"active": 1, "startTime": "2025-01-01T00:00:30Z"});
        let out = sum_workload_status(
            "Job",
            vec![
                done("2025-01-01T00:00:10Z", "2025-01-01T00:01:00Z"),
                running,
            ],
        );
        assert_eq!(out["active"], 1);
        assert_eq!(out["succeeded"], 1);
        assert_eq!(out["startTime"], "2025-01-01T00:00:10Z");
        assert!(out.get("completionTime").is_none());
        assert_eq!(out["conditions"][0]["status"], "Unknown");
        let out = sum_workload_status(
            "Job",
            vec![
                done("2025-01-01T00:00:10Z", "2025-01-01T00:01:00Z"),
                done("2025-01-01T00:00:05Z", "2025-01-01T00:02:00Z"),
            ],
        );
        assert_eq!(out["completionTime"], "2025-01-01T00:02:00Z");
        assert_eq!(
            out["conditions"][0],
            json!({"type": "Complete", "status": "True"})
        );
        let failed = json!({"failed": 6, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]});
        let out = sum_workload_status("Job", vec![json!({"succeeded": 1}), failed]);
        assert_eq!(out["failed"], 6);
        assert_eq!(out["conditions"][0]["reason"], "BackoffLimitExceeded");
    }

    #[test]
    fn cronjobs() {
        let out = sum_workload_status(
            "CronJob",
            vec![
                json!({"active": [{"name": "a"}], "lastScheduleTime": "2025-01-01T00:01:00Z"}),
                json!({"active": [{"name": "b"}], "lastScheduleTime": "2025-01-01T00:02:00Z", "lastSuccessfulTime": "2025-01-01T00:00:00Z"}),
            ],
        );
        assert_eq!(out["active"], json!([{"name": "a"}, {"name": "b"}]));
        assert_eq!(out["lastScheduleTime"], "2025-01-01T00:02:00Z");
        assert_eq!(out["lastSuccessfulTime"], "2025-01-01T00:00:00Z");
    }
}
