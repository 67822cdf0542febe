//! Table tests: ages, columns per kind, cells like kubectl prints them, includeObject.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::*;
use crate::kinds::KINDS;

fn now() -> DateTime<Utc> {
    parse_time("2025-03-10T12:00:00Z").unwrap()
}

fn opts(include_object: IncludeObject) -> TableOptions<'static> {
    TableOptions::new(include_object, now())
}

fn ago(d: TimeDelta) -> String {
    (now() - d).to_rfc3339()
}

fn names(kind: &str) -> Vec<(&'static str, i32)> {
    columns(kind).iter().map(|c| (c.name, c.priority)).collect()
}

#[test]
fn human_durations_like_kubectl() {
    let cases = [
        (TimeDelta::seconds(-5), "<invalid>"),
        (TimeDelta::seconds(-1), "0s"),
        (TimeDelta::seconds(5), "5s"),
        (TimeDelta::seconds(119), "119s"),
        (TimeDelta::seconds(182), "3m2s"),
        (TimeDelta::minutes(4), "4m"),
        (TimeDelta::minutes(10), "10m"),
        (TimeDelta::minutes(179), "179m"),
        (TimeDelta::hours(5), "5h"),
        (TimeDelta::minutes(5 * 60 + 30), "5h30m"),
        (TimeDelta::hours(30), "30h"),
        (TimeDelta::hours(51), "2d3h"),
        (TimeDelta::days(3), "3d"),
        (TimeDelta::days(15), "15d"),
        (TimeDelta::days(800), "2y70d"),
        (TimeDelta::days(365 * 9), "9y"),
    ];
    for (d, want) in cases {
        assert_eq!(human_duration(d), want, "{d:?}");
    }
    assert_eq!(age(Some(&ago(TimeDelta::seconds(42))), now()), "42s");
    assert_eq!(age(None, now()), "<unknown>");
    assert_eq!(age(Some("yesterday"), now()), "<unknown>");
}

#[test]
fn column_sets_match_kubectl() {
    assert_eq!(
        names("Deployment"),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
            ("Sites", 1)
        ]
    );
    assert_eq!(
        names("StatefulSet"),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Sites", 1)
        ]
    );
    assert_eq!(names("DaemonSet").len(), 12);
    assert_eq!(names("DaemonSet")[6], ("Node Selector", 0));
    assert_eq!(
        names("ReplicaSet")[..5],
        [
            ("Name", 0),
            ("Desired", 0),
            ("Current", 0),
            ("Ready", 0),
            ("Age", 0)
        ]
    );
    assert_eq!(
        names("Job")[..5],
        [
            ("Name", 0),
            ("Status", 0),
            ("Completions", 0),
            ("Duration", 0),
            ("Age", 0)
        ]
    );
    assert_eq!(
        names("CronJob")[..7],
        [
            ("Name", 0),
            ("Schedule", 0),
            ("Timezone", 0),
            ("Suspend", 0),
            ("Active", 0),
            ("Last Schedule", 0),
            ("Age", 0)
        ]
    );
    assert_eq!(
        names("Service"),
        [
            ("Name", 0),
            ("Type", 0),
            ("Cluster-IP", 0),
            ("External-IP", 0),
            ("Port(s)", 0),
            ("Age", 0),
            ("Selector", 1)
        ]
    );
    assert_eq!(names("ConfigMap"), [("Name", 0), ("Data", 0), ("Age", 0)]);
    assert_eq!(
        names("Secret"),
        [("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)]
    );
    assert_eq!(
        names("PersistentVolumeClaim")[..8],
        [
            ("Name", 0),
            ("Status", 0),
            ("Volume", 0),
            ("Capacity", 0),
            ("Access Modes", 0),
            ("StorageClass", 0),
            ("VolumeAttributesClass", 0),
            ("Age", 0)
        ]
    );
    assert_eq!(
        names("ServiceAccount"),
        [("Name", 0), ("Secrets", 0), ("Age", 0)]
    );
    let ev: Vec<&str> = names("Event")
        .into_iter()
        .filter(|c| c.1 == 0)
        .map(|c| c.0)
        .collect();
    assert_eq!(ev, ["Last Seen", "Type", "Reason", "Object", "Message"]);
    assert_eq!(
        names("Pod"),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1),
            ("Site", 1)
        ]
    );
    assert_eq!(names("Namespace"), [("Name", 0), ("Status", 0), ("Age", 0)]);
    assert_eq!(names("Widget"), [("Name", 0), ("Age", 0)]);
    assert_eq!(columns("Pod")[0].format, "name");
    assert_eq!(columns("Pod")[0].to_json()["type"], "string");
}

#[test]
fn every_kind_has_one_cell_per_column() {
    let empty = json!({"metadata": {"name": "x"}});
    for k in KINDS {
        assert_eq!(
            row_cells(k.kind, &empty, now()).len(),
            columns(k.kind).len(),
            "{}",
            k.kind
        );
    }
    assert_eq!(
        row_cells("Widget", &empty, now()),
        [json!("x"), json!("<unknown>")]
    );
}

#[test]
fn deployment_row() {
    let d = json!({
        "metadata": {"name": "productpage", "creationTimestamp": ago(TimeDelta::minutes(5))},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "productpage"}},
            "template": {"spec": {"containers": [{"name": "pp", "image": "pp:1"}, {"name": "side", "image": "envoy"}]}}},
        "status": {"readyReplicas": 6, "updatedReplicas": 6, "availableReplicas": 6},
    });
    assert_eq!(
        row_cells("Deployment", &d, now()),
        [
            json!("productpage"),
            json!("6/2"),
            json!(6),
            json!(6),
            json!("5m"),
            json!("pp,side"),
            json!("pp:1,envoy"),
            json!("app=productpage"),
            json!("<none>"),
        ]
    );
    let bare = json!({"metadata": {"name": "d"}, "spec": {}});
    assert_eq!(row_cells("Deployment", &bare, now())[1], "0/1");
    assert_eq!(row_cells("Deployment", &bare, now())[7], "<none>");
    let placed = json!({"metadata": {"name": "d", "annotations": {
        SITE_READY_ANNOTATION: "ny8-nyc=2/2,pa2-par=1/2"}}, "spec": {}});
    assert_eq!(
        row_cells("Deployment", &placed, now())[8],
        "ny8-nyc=2/2,pa2-par=1/2"
    );
}

#[test]
fn workload_rows() {
    let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 2}});
    assert_eq!(row_cells("StatefulSet", &sts, now())[1], "2/3");
    let ds = json!({"metadata": {"name": "agent"}, "spec": {"template": {"spec": {"nodeSelector": {"zone": "a", "disk": "ssd"}}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}});
    assert_eq!(
        row_cells("DaemonSet", &ds, now())[1..7],
        [
            json!(3),
            json!(3),
            json!(2),
            json!(3),
            json!(2),
            json!("disk=ssd,zone=a")
        ]
    );
    let rs = json!({"metadata": {"name": "rs"}, "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 1}});
    assert_eq!(
        row_cells("ReplicaSet", &rs, now())[1..4],
        [json!(2), json!(2), json!(1)]
    );
}

#[test]
fn job_and_cronjob_rows() {
    let job = json!({"metadata": {"name": "pi"}, "spec": {"completions": 3},
        "status": {"succeeded": 3, "startTime": ago(TimeDelta::minutes(10)), "completionTime": ago(TimeDelta::minutes(8)),
            "conditions": [{"type": "Complete", "status": "True"}]}});
    assert_eq!(
        row_cells("Job", &job, now())[1..4],
        [json!("Complete"), json!("3/3"), json!("2m")]
    );
    let running = json!({"metadata": {"name": "pi"}, "spec": {"parallelism": 2}, "status": {"startTime": ago(TimeDelta::seconds(30))}});
    assert_eq!(
        row_cells("Job", &running, now())[1..4],
        [json!("Running"), json!("0/1 of 2"), json!("30s")]
    );
    let failed = json!({"metadata": {"name": "pi"}, "spec": {}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
    assert_eq!(
        row_cells("Job", &failed, now())[1..4],
        [json!("Failed"), json!("0/1"), json!("")]
    );

    let cj = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/1 * * * *", "suspend": true,
        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(TimeDelta::seconds(20))}});
    assert_eq!(
        row_cells("CronJob", &cj, now())[1..8],
        [
            json!("*/1 * * * *"),
            json!("<none>"),
            json!("True"),
            json!(1),
            json!("20s"),
            json!("<unknown>"),
            json!("hello")
        ]
    );
    let never =
        json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
    assert_eq!(
        row_cells("CronJob", &never, now())[2..6],
        [json!("Etc/UTC"), json!("False"), json!(0), json!("<none>")]
    );
}

#[test]
fn service_rows() {
    let svc = json!({"metadata": {"name": "productpage"}, "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.10",
        "clusterIPs": ["10.0.0.10"], "selector": {"app": "productpage"}, "ports": [{"port": 9080, "protocol": "TCP"}]}});
    assert_eq!(
        row_cells("Service", &svc, now()),
        [
            json!("productpage"),
            json!("ClusterIP"),
            json!("10.0.0.10"),
            json!("<none>"),
            json!("9080/TCP"),
            json!("<unknown>"),
            json!("app=productpage")
        ]
    );
    let np = json!({"metadata": {"name": "n"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}});
    assert_eq!(
        row_cells("Service", &np, now())[2..5],
        [
            json!("<none>"),
            json!("<none>"),
            json!("80:30080/TCP,53/UDP")
        ]
    );
    let lb = json!({"metadata": {"name": "l"}, "spec": {"type": "LoadBalancer", "ports": []}});
    assert_eq!(
        row_cells("Service", &lb, now())[3..5],
        [json!("<pending>"), json!("<none>")]
    );
    let lb = json!({"metadata": {"name": "l"}, "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb.example.com"}]}}});
    assert_eq!(
        row_cells("Service", &lb, now())[3],
        "1.2.3.4,lb.example.com"
    );
    let ext = json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
    assert_eq!(row_cells("Service", &ext, now())[3], "db.example.com");
}

#[test]
fn config_rows() {
    let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(row_cells("ConfigMap", &cm, now())[1], 3);
    let s = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(
        row_cells("Secret", &s, now())[1..3],
        [json!("kubernetes.io/tls"), json!(2)]
    );
    assert_eq!(
        row_cells("Secret", &json!({"metadata": {"name": "s"}}), now())[1..3],
        [json!("Opaque"), json!(0)]
    );
    let sa = json!({"metadata": {"name": "default"}, "secrets": [{"name": "t"}]});
    assert_eq!(row_cells("ServiceAccount", &sa, now())[1], 1);
    let pvc = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1", "storageClassName": "standard", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"]}});
    assert_eq!(
        row_cells("PersistentVolumeClaim", &pvc, now()),
        [
            json!("data"),
            json!("Bound"),
            json!("pv-1"),
            json!("1Gi"),
            json!("RWO,RWX"),
            json!("standard"),
            json!("<unset>"),
            json!("<unknown>"),
            json!("Filesystem")
        ]
    );
    let pending = json!({"metadata": {"name": "data"}, "spec": {}, "status": {"phase": "Pending"}});
    assert_eq!(
        row_cells("PersistentVolumeClaim", &pending, now())[1..5],
        [json!("Pending"), json!(""), json!(""), json!("")]
    );
    let ns = json!({"metadata": {"name": "shop"}, "status": {"phase": "Active"}});
    assert_eq!(row_cells("Namespace", &ns, now())[1], "Active");
}

#[test]
fn event_rows() {
    let ev = json!({"metadata": {"name": "web-1.17f"}, "type": "Warning", "reason": "BackOff",
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
        "source": {"component": "kubelet", "host": "node-a"}, "message": " Back-off restarting \n",
        "firstTimestamp": ago(TimeDelta::minutes(20)), "lastTimestamp": ago(TimeDelta::minutes(1)), "count": 7});
    assert_eq!(
        row_cells("Event", &ev, now()),
        [
            json!("60s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web-1"),
            json!("spec.containers{web}"),
            json!("kubelet, node-a"),
            json!("Back-off restarting"),
            json!("20m"),
            json!(7),
            json!("web-1.17f")
        ]
    );
    let new_style = json!({"metadata": {"name": "e"}, "eventTime": ago(TimeDelta::seconds(3)), "reportingComponent": "manifold",
        "involvedObject": {"kind": "Deployment"}});
    let cells = row_cells("Event", &new_style, now());
    assert_eq!(
        (
            cells[0].clone(),
            cells[3].clone(),
            cells[5].clone(),
            cells[8].clone()
        ),
        (
            json!("3s"),
            json!("deployment"),
            json!("manifold"),
            json!(1)
        )
    );
}

#[test]
fn pod_rows_with_site_column() {
    let pod = json!({"metadata": {"name": "productpage-7d9f-abc", "creationTimestamp": ago(TimeDelta::hours(51)),
            "labels": {"manifold.dev/site": "pa2-par"}},
        "spec": {"nodeName": "pa2-node-1", "containers": [{"name": "pp"}], "readinessGates": [{"conditionType": "x/ready"}]},
        "status": {"phase": "Running", "podIP": "10.1.0.5", "conditions": [{"type": "x/ready", "status": "True"}],
            "containerStatuses": [{"name": "pp", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
    assert_eq!(
        row_cells("Pod", &pod, now()),
        [
            json!("productpage-7d9f-abc"),
            json!("1/1"),
            json!("Running"),
            json!("0"),
            json!("2d3h"),
            json!("10.1.0.5"),
            json!("pa2-node-1"),
            json!("<none>"),
            json!("1/1"),
            json!("pa2-par")
        ]
    );
    let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
    let cells = row_cells("Pod", &pending, now());
    assert_eq!(
        cells[5..],
        [
            json!("<none>"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>")
        ]
    );
}

#[test]
fn list_table_and_include_object() {
    let items = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "5"}, "data": {"k": "v"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "resourceVersion": "6"}}),
    ];
    let t = list_table(
        "ConfigMap",
        &items,
        "42",
        Some("tok"),
        &opts(IncludeObject::Object),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "42", "continue": "tok"})
    );
    assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 3);
    assert_eq!(
        t["columnDefinitions"][0],
        json!({"name": "Name", "type": "string", "format": "name",
        "description": columns("ConfigMap")[0].description, "priority": 0})
    );
    assert_eq!(t["rows"][0]["cells"], json!(["a", 1, "<unknown>"]));
    assert_eq!(t["rows"][0]["object"], items[0]);

    let t = list_table(
        "ConfigMap",
        &items,
        "42",
        None,
        &opts(IncludeObject::Metadata),
    );
    assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
    assert_eq!(
        t["rows"][1]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": "b", "resourceVersion": "6"}})
    );

    let t = list_table(
        "ConfigMap",
        &items,
        "42",
        Some(""),
        &opts(IncludeObject::None),
    );
    assert!(t["rows"][0].get("object").is_none());
    assert!(t["metadata"].get("continue").is_none());
    let empty = list_table("Pod", &[], "7", None, &opts(IncludeObject::Object));
    assert_eq!(empty["rows"], json!([]));

    let one = object_table("ConfigMap", &items[1], &opts(IncludeObject::Object));
    assert_eq!(one["metadata"]["resourceVersion"], "6");
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);

    assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
    assert_eq!(IncludeObject::parse("object"), None);
    assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
}

#[test]
fn replica_multiplier_lines_desired_up_with_summed_status() {
    // The reference scenario: replicas 2 on three sites, all ready.
    let d = json!({"metadata": {"name": "productpage", "annotations": {"sites": "3"}}, "spec": {"replicas": 2},
        "status": {"replicas": 6, "readyReplicas": 6, "updatedReplicas": 6, "availableReplicas": 6}});
    let sites = |o: &serde_json::Value| {
        o["metadata"]["annotations"]["sites"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
    };
    let o = opts(IncludeObject::None).with_replica_multiplier(&sites);
    let t = list_table("Deployment", std::slice::from_ref(&d), "1", None, &o);
    assert_eq!(t["rows"][0]["cells"][1], "6/6");
    assert_eq!(row_cells_scaled("StatefulSet", &d, now(), 3)[1], "6/6");
    assert_eq!(row_cells_scaled("ReplicaSet", &d, now(), 3)[1], 6);
    let job =
        json!({"metadata": {"name": "j"}, "spec": {"completions": 1}, "status": {"succeeded": 3}});
    assert_eq!(row_cells_scaled("Job", &job, now(), 3)[2], "3/3");
    assert!(format!("{o:?}").contains("replica_multiplier: true"));
}
