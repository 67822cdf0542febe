//! Pod READY / STATUS / RESTARTS computed the way kubectl's printer does.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{age_since, parse_time};
use crate::json::{arr_at, str_at};

/// The computed summary columns of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    /// `1/2`.
    pub ready: String,
    /// `Running`, `ContainerCreating`, `CrashLoopBackOff`, `Init:0/1`, `Terminating`, ...
    pub status: String,
    /// `0`, or `3 (5m ago)`.
    pub restarts: String,
}

fn condition_true(pod: &Value, kind: &str) -> bool {
    arr_at(pod, &["status", "conditions"])
        .iter()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

fn count(v: &Value) -> i64 {
    v.get("restartCount").and_then(Value::as_i64).unwrap_or(0)
}

fn last_termination(v: &Value) -> Option<DateTime<Utc>> {
    v.pointer("/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(parse_time)
}

/// `Reason`, else `Signal:N` / `ExitCode:N` (with `prefix` for init containers).
fn terminated_reason(t: &Value, prefix: &str) -> String {
    match t
        .get("reason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        Some(r) => format!("{prefix}{r}"),
        None => match t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0) {
            Some(sig) => format!("{prefix}Signal:{sig}"),
            None => format!(
                "{prefix}ExitCode:{}",
                t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
            ),
        },
    }
}

/// Computes READY, STATUS and RESTARTS for a pod at `now`.
pub fn pod_summary(pod: &Value, now: DateTime<Utc>) -> PodSummary {
    let init_specs = arr_at(pod, &["spec", "initContainers"]);
    let sidecar = |name: &str| {
        init_specs.iter().any(|c| {
            c["name"] == name && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
        })
    };
    let total = arr_at(pod, &["spec", "containers"]).len()
        + init_specs
            .iter()
            .filter(|c| c["restartPolicy"] == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut note_restart = |s: &Value, restarts: &mut i64| {
        *restarts += count(s);
        if let Some(t) = last_termination(s)
            && last_restart.is_none_or(|l| l < t)
        {
            last_restart = Some(t);
        }
    };

    let phase = str_at(pod, &["status", "phase"]).unwrap_or_default();
    let mut reason = str_at(pod, &["status", "reason"])
        .filter(|r| !r.is_empty())
        .unwrap_or(phase)
        .to_string();
    if arr_at(pod, &["status", "conditions"])
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let init_statuses = arr_at(pod, &["status", "initContainerStatuses"]);
    let mut initializing = false;
    for (i, s) in init_statuses.iter().enumerate() {
        note_restart(s, &mut restarts);
        let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
        if sidecar(name) && s.get("started").and_then(Value::as_bool) == Some(true) {
            if s.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        let state = s.get("state").cloned().unwrap_or(Value::Null);
        let waiting = state
            .pointer("/waiting/reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty());
        match state.get("terminated") {
            Some(t) if t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) == 0 => continue,
            Some(t) => reason = terminated_reason(t, "Init:"),
            None => match waiting {
                Some(w) if w != "PodInitializing" => reason = format!("Init:{w}"),
                _ => reason = format!("Init:{i}/{}", init_specs.len()),
            },
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = 0;
        let mut has_running = false;
        for s in arr_at(pod, &["status", "containerStatuses"]).iter().rev() {
            note_restart(s, &mut restarts);
            let state = s.get("state").cloned().unwrap_or(Value::Null);
            let waiting = state
                .pointer("/waiting/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty());
            if let Some(w) = waiting {
                reason = w.to_string();
            } else if let Some(t) = state.get("terminated") {
                reason = terminated_reason(t, "");
            } else if s.get("ready").and_then(Value::as_bool) == Some(true)
                && state.get("running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && str_at(pod, &["status", "reason"]) == Some("NodeLost") {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", age_since(t, now)),
        _ => restarts.to_string(),
    };
    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        parse_time("2025-01-01T12:00:00Z").unwrap()
    }

    fn pod(status: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": status})
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": "2025-01-01T11:00:00Z"}}})
    }

    #[test]
    fn running_and_ready() {
        let p = pod(
            json!({"phase": "Running", "containerStatuses": [running("a", true, 0), running("b", true, 0)]}),
        );
        assert_eq!(
            pod_summary(&p, now()),
            PodSummary {
                ready: "2/2".into(),
                status: "Running".into(),
                restarts: "0".into()
            }
        );
        let p = pod(
            json!({"phase": "Running", "containerStatuses": [running("a", true, 0), running("b", false, 0)]}),
        );
        assert_eq!(pod_summary(&p, now()).ready, "1/2");
    }

    #[test]
    fn pending_and_container_creating() {
        assert_eq!(
            pod_summary(&pod(json!({"phase": "Pending"})), now()).status,
            "Pending"
        );
        assert_eq!(pod_summary(&pod(json!({})), now()).ready, "0/2");
        let p = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
        ]}));
        assert_eq!(pod_summary(&p, now()).status, "ContainerCreating");
    }

    #[test]
    fn crash_loop_with_restart_age() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            running("a", true, 0),
            {"name": "b", "ready": false, "restartCount": 4,
             "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T11:55:00Z"}}},
        ]}));
        let s = pod_summary(&p, now());
        assert_eq!(s.status, "CrashLoopBackOff");
        assert_eq!(s.restarts, "4 (5m ago)");
        assert_eq!(s.ready, "1/2");
    }

    #[test]
    fn terminated_reasons() {
        let p = pod(json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        ]}));
        assert_eq!(pod_summary(&p, now()).status, "Completed");
        let p = pod(json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "ready": false, "state": {"terminated": {"exitCode": 137, "signal": 9}}},
        ]}));
        assert_eq!(pod_summary(&p, now()).status, "Signal:9");
        let p = pod(json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "ready": false, "state": {"terminated": {"exitCode": 2}}},
        ]}));
        assert_eq!(pod_summary(&p, now()).status, "ExitCode:2");
        // One container completed while another still runs and the pod is ready.
        let p = pod(
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
                running("a", true, 0),
                {"name": "b", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ]}),
        );
        assert_eq!(pod_summary(&p, now()).status, "Running");
    }

    #[test]
    fn init_containers() {
        let mut p = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "init", "ready": false, "restartCount": 0, "state": {"running": {}}},
        ]}));
        p["spec"]["initContainers"] = json!([{"name": "init"}, {"name": "init2"}]);
        assert_eq!(pod_summary(&p, now()).status, "Init:0/2");
        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(pod_summary(&p, now()).status, "Init:ImagePullBackOff");
        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(pod_summary(&p, now()).status, "Init:Error");
        p["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(pod_summary(&p, now()).status, "Init:ExitCode:3");
        // Sidecars (restartPolicy Always) count toward READY once started.
        let mut s = pod(json!({"phase": "Running", "initContainerStatuses": [
            {"name": "proxy", "ready": true, "started": true, "state": {"running": {}}},
        ], "containerStatuses": [running("a", true, 0), running("b", true, 0)]}));
        s["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        assert_eq!(
            pod_summary(&s, now()),
            PodSummary {
                ready: "3/3".into(),
                status: "Running".into(),
                restarts: "0".into()
            }
        );
    }

    #[test]
    fn terminating_and_special_reasons() {
        let mut p = pod(
            json!({"phase": "Running", "containerStatuses": [running("a", true, 0), running("b", true, 0)]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2025-01-01T11:59:00Z");
        assert_eq!(pod_summary(&p, now()).status, "Terminating");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(pod_summary(&p, now()).status, "Unknown");
        let evicted = pod(json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(pod_summary(&evicted, now()).status, "Evicted");
        let gated = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(pod_summary(&gated, now()).status, "SchedulingGated");
    }
}
