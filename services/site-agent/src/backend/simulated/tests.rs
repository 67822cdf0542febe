//! Tests of the simulated cluster, on Tokio's paused clock (timers fire in order
//! without real waiting).

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::{SimulatedBackend, SimulatedOptions};
use crate::backend::Backend;
use crate::error::BackendError;
use crate::model::{DesiredObject, LogParams, ObjectKey, ObservedPod, VirtualCluster, well_known};

static REVISION: AtomicI64 = AtomicI64::new(100);

fn vc() -> VirtualCluster {
    VirtualCluster::new("acme", "shop", "demo").unwrap()
}

fn key(api_version: &str, kind: &str, name: &str) -> ObjectKey {
    ObjectKey {
        virtual_cluster: vc(),
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: "shop".into(),
        name: name.into(),
    }
}

fn desired(api_version: &str, kind: &str, object: Value) -> DesiredObject {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    DesiredObject::new(
        key(api_version, kind, &name),
        REVISION.fetch_add(1, Ordering::SeqCst),
        object,
    )
    .unwrap()
}

fn workload(kind: &str, name: &str, generation: i64, spec: Value, image: &str) -> DesiredObject {
    let api = if kind == "Job" { "batch/v1" } else { "apps/v1" };
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": name}});
    spec["template"] = json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": image}],
                 "restartPolicy": if kind == "Job" { "Never" } else { "Always" }}
    });
    desired(
        api,
        kind,
        json!({"apiVersion": api, "kind": kind,
               "metadata": {"name": name, "namespace": "shop", "generation": generation},
               "spec": spec}),
    )
}

fn deployment(name: &str, replicas: i64, generation: i64, image: &str) -> DesiredObject {
    workload(
        "Deployment",
        name,
        generation,
        json!({"replicas": replicas}),
        image,
    )
}

fn backend(nodes: usize) -> SimulatedBackend {
    SimulatedBackend::new("pa2-par", nodes, SimulatedOptions::default())
}

async fn advance(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn pods(b: &SimulatedBackend, owner: &str) -> Vec<ObservedPod> {
    b.status_feed()
        .pods()
        .into_iter()
        .filter(|p| {
            p.object["metadata"]["ownerReferences"][0]["name"]
                .as_str()
                .is_some_and(|o| o == owner || o.starts_with(&format!("{owner}-")))
        })
        .collect()
}

fn ready(p: &ObservedPod) -> bool {
    p.object["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn status(b: &SimulatedBackend, k: &ObjectKey) -> Value {
    b.status_feed()
        .object(k)
        .map(|o| o.status)
        .unwrap_or(Value::Null)
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

#[tokio::test(start_paused = true)]
async fn deployment_scales_up_and_down_with_kubernetes_status() {
    let b = backend(2);
    let d = deployment("web", 2, 1, "nginx:1");
    b.apply(&d).await.unwrap();
    // Just created: Pending, no node yet.
    let fresh = pods(&b, "web");
    assert_eq!(fresh.len(), 2);
    assert!(
        fresh
            .iter()
            .all(|p| p.phase == "Pending" && p.node.is_empty())
    );

    advance(1000).await;
    let running = pods(&b, "web");
    assert_eq!(running.len(), 2);
    assert!(
        running
            .iter()
            .all(|p| p.phase == "Running" && ready(p) && !p.pod_ip.is_empty())
    );
    let nodes: HashSet<&str> = running.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes.len(), 2, "spread over both nodes: {nodes:?}");
    for p in &running {
        // web-<pod-template-hash>-<5 chars>, owned by ReplicaSet web-<hash>.
        let hash = p.object["metadata"]["labels"]["pod-template-hash"]
            .as_str()
            .unwrap();
        assert!(p.id.name.starts_with(&format!("web-{hash}-")));
        assert_eq!(p.id.name.len(), format!("web-{hash}-").len() + 5);
        assert_eq!(p.owner_kind, "ReplicaSet");
        assert_eq!(p.owner_name, format!("web-{hash}"));
        assert_eq!(
            p.object["metadata"]["labels"][well_known::SITE_LABEL],
            "pa2-par"
        );
        assert_eq!(p.object["metadata"]["namespace"], "shop");
        assert_eq!(p.object["spec"]["nodeName"], p.node.as_str());
        assert_eq!(p.object["status"]["containerStatuses"][0]["ready"], true);
        assert!(p.node.starts_with("pa2-par-node-"));
    }
    let s = status(&b, &d.key);
    assert_eq!(s["observedGeneration"], 1);
    assert_eq!(s["replicas"], 2);
    assert_eq!(s["readyReplicas"], 2);
    assert_eq!(s["availableReplicas"], 2);
    assert_eq!(s["updatedReplicas"], 2);
    assert_eq!(condition(&s, "Available")["status"], "True");
    assert_eq!(
        condition(&s, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );
    assert_eq!(
        b.status_feed().object(&d.key).unwrap().observed_revision,
        d.revision
    );

    b.apply(&deployment("web", 3, 2, "nginx:1")).await.unwrap();
    advance(1000).await;
    assert_eq!(pods(&b, "web").iter().filter(|p| ready(p)).count(), 3);
    assert_eq!(status(&b, &d.key)["observedGeneration"], 2);

    b.apply(&deployment("web", 1, 3, "nginx:1")).await.unwrap();
    advance(100).await;
    assert_eq!(pods(&b, "web").len(), 1);
    let s = status(&b, &d.key);
    assert_eq!(s["replicas"], 1);
    assert_eq!(s["readyReplicas"], 1);
}

#[tokio::test(start_paused = true)]
async fn rolling_update_respects_surge_and_unavailability() {
    let b = backend(2);
    let d = deployment("web", 2, 1, "nginx:1");
    b.apply(&d).await.unwrap();
    advance(1000).await;
    let old: HashSet<String> = pods(&b, "web").into_iter().map(|p| p.id.name).collect();

    b.apply(&deployment("web", 2, 2, "nginx:2")).await.unwrap();
    let mut saw_surge = false;
    for _ in 0..60 {
        let now = pods(&b, "web");
        // replicas 2: maxSurge 25% → 1, maxUnavailable 25% → 0.
        assert!(now.len() <= 3, "{} pods", now.len());
        assert!(now.iter().filter(|p| ready(p)).count() >= 2);
        saw_surge |= now.len() == 3;
        advance(50).await;
    }
    assert!(saw_surge);
    let new = pods(&b, "web");
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|p| !old.contains(&p.id.name) && ready(p)));
    assert!(
        new.iter()
            .all(|p| p.object["spec"]["containers"][0]["image"] == "nginx:2")
    );
    let s = status(&b, &d.key);
    assert_eq!(s["observedGeneration"], 2);
    assert_eq!(s["updatedReplicas"], 2);
    assert_eq!(s["replicas"], 2);
    assert_eq!(
        condition(&s, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );
}

#[tokio::test(start_paused = true)]
async fn recreate_strategy_replaces_all_pods() {
    let b = backend(2);
    let spec = |image: &str, generation| {
        workload(
            "Deployment",
            "db",
            generation,
            json!({"replicas": 2, "strategy": {"type": "Recreate"}}),
            image,
        )
    };
    b.apply(&spec("pg:1", 1)).await.unwrap();
    advance(1000).await;
    b.apply(&spec("pg:2", 2)).await.unwrap();
    advance(10).await;
    let now = pods(&b, "db");
    assert!(
        now.iter()
            .all(|p| p.object["spec"]["containers"][0]["image"] == "pg:2")
    );
    advance(1000).await;
    assert_eq!(pods(&b, "db").iter().filter(|p| ready(p)).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn statefulset_creates_ordinals_in_order_and_rolls_from_the_top() {
    let b = backend(2);
    let sts = workload(
        "StatefulSet",
        "db",
        1,
        json!({"replicas": 3, "serviceName": "db"}),
        "pg:1",
    );
    b.apply(&sts).await.unwrap();
    let first: Vec<String> = pods(&b, "db").into_iter().map(|p| p.id.name).collect();
    assert_eq!(first, vec!["db-0"], "OrderedReady starts with one pod");
    advance(3000).await;
    let all = pods(&b, "db");
    let names: Vec<&str> = all.iter().map(|p| p.id.name.as_str()).collect();
    assert_eq!(names, vec!["db-0", "db-1", "db-2"]);
    assert!(all.iter().all(ready));
    assert_eq!(all[1].object["spec"]["hostname"], "db-1");
    assert_eq!(all[1].object["spec"]["subdomain"], "db");
    let s = status(&b, &sts.key);
    assert_eq!(s["readyReplicas"], 3);
    assert_eq!(s["currentRevision"], s["updateRevision"]);

    let updated = workload(
        "StatefulSet",
        "db",
        2,
        json!({"replicas": 3, "serviceName": "db"}),
        "pg:2",
    );
    b.apply(&updated).await.unwrap();
    advance(10).await;
    let s = status(&b, &sts.key);
    assert_ne!(s["currentRevision"], s["updateRevision"]);
    advance(5000).await;
    let all = pods(&b, "db");
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .all(|p| ready(p) && p.object["spec"]["containers"][0]["image"] == "pg:2")
    );
    let s = status(&b, &sts.key);
    assert_eq!(s["currentRevision"], s["updateRevision"]);
    assert_eq!(s["updatedReplicas"], 3);
    assert_eq!(s["observedGeneration"], 2);

    b.apply(&workload(
        "StatefulSet",
        "db",
        3,
        json!({"replicas": 1, "serviceName": "db"}),
        "pg:2",
    ))
    .await
    .unwrap();
    advance(100).await;
    let names: Vec<String> = pods(&b, "db").into_iter().map(|p| p.id.name).collect();
    assert_eq!(names, vec!["db-0"]);
}

#[tokio::test(start_paused = true)]
async fn daemonset_runs_one_pod_per_ready_node() {
    let b = backend(3);
    let ds = workload("DaemonSet", "agent", 1, json!({}), "fluentd:1");
    b.apply(&ds).await.unwrap();
    advance(1000).await;
    let all = pods(&b, "agent");
    let nodes: HashSet<&str> = all.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(nodes.len(), 3);
    let s = status(&b, &ds.key);
    assert_eq!(s["desiredNumberScheduled"], 3);
    assert_eq!(s["currentNumberScheduled"], 3);
    assert_eq!(s["numberReady"], 3);
    assert_eq!(s["updatedNumberScheduled"], 3);
    assert_eq!(s["numberMisscheduled"], 0);

    b.set_node_ready("pa2-par-node-3", false).unwrap();
    advance(10_000).await;
    let all = pods(&b, "agent");
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|p| p.node != "pa2-par-node-3"));
    assert_eq!(status(&b, &ds.key)["desiredNumberScheduled"], 2);

    b.set_node_ready("pa2-par-node-3", true).unwrap();
    advance(1000).await;
    assert_eq!(pods(&b, "agent").iter().filter(|p| ready(p)).count(), 3);

    // A template change rolls node by node.
    b.apply(&workload("DaemonSet", "agent", 2, json!({}), "fluentd:2"))
        .await
        .unwrap();
    advance(5000).await;
    let all = pods(&b, "agent");
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .all(|p| ready(p) && p.object["spec"]["containers"][0]["image"] == "fluentd:2")
    );
    assert_eq!(status(&b, &ds.key)["updatedNumberScheduled"], 3);
}

#[tokio::test(start_paused = true)]
async fn job_runs_to_completion_within_its_parallelism() {
    let b = backend(2);
    let job = workload(
        "Job",
        "batch",
        1,
        json!({"completions": 3, "parallelism": 2}),
        "busybox",
    );
    b.apply(&job).await.unwrap();
    let mut max_active = 0;
    for _ in 0..100 {
        let active = pods(&b, "batch")
            .iter()
            .filter(|p| p.phase != "Succeeded")
            .count();
        max_active = max_active.max(active);
        advance(50).await;
    }
    assert_eq!(max_active, 2);
    let all = pods(&b, "batch");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|p| p.phase == "Succeeded"));
    assert_eq!(
        all[0].object["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(all[0].object["metadata"]["labels"]["job-name"], "batch");
    let s = status(&b, &job.key);
    assert_eq!(s["succeeded"], 3);
    assert!(s.get("active").is_none());
    assert!(s["completionTime"].is_string());
    assert_eq!(condition(&s, "Complete")["status"], "True");
}

#[tokio::test(start_paused = true)]
async fn deleted_pods_are_recreated_by_their_controller() {
    let b = backend(2);
    b.apply(&deployment("web", 2, 1, "nginx:1")).await.unwrap();
    advance(1000).await;
    let victim = pods(&b, "web")[0].id.name.clone();
    b.delete_pod(Some(&vc()), "shop", &victim).await.unwrap();
    let now = pods(&b, "web");
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|p| p.id.name != victim));
    advance(1000).await;
    assert_eq!(pods(&b, "web").iter().filter(|p| ready(p)).count(), 2);
    assert!(matches!(
        b.delete_pod(None, "shop", "nope").await,
        Err(BackendError::NotFound(_))
    ));
    // A feed consumer sees the deletion.
    let batch = b.status_feed().take_changes(100);
    assert!(batch.deleted_pods.iter().any(|id| id.name == victim));
}

#[tokio::test(start_paused = true)]
async fn crash_knob_makes_pods_crash_loop_with_growing_restarts() {
    let b = backend(2);
    let d = deployment("web", 1, 1, "nginx:1");
    b.apply(&d).await.unwrap();
    advance(1000).await;
    b.set_crash_loop("shop", "web", true);
    advance(600).await;
    let p = &pods(&b, "web")[0];
    assert!(b.is_crash_looping("shop", &p.id.name));
    assert_eq!(p.phase, "Running");
    assert_eq!(p.restarts, 1);
    let cs = &p.object["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    assert!(!ready(p));
    assert!(status(&b, &d.key).get("readyReplicas").is_none());
    advance(20_000).await;
    let later = pods(&b, "web")[0].restarts;
    assert!(later >= 3, "restarts {later}");

    b.set_crash_loop("shop", "web", false);
    advance(20_000).await;
    let p = &pods(&b, "web")[0];
    assert!(ready(p));
    assert!(p.restarts >= later);

    // The annotation works as well.
    let mut annotated = deployment("api", 1, 1, "api:1");
    annotated.object["metadata"]["annotations"] = json!({well_known::SIM_CRASH_ANNOTATION: "true"});
    b.apply(&annotated).await.unwrap();
    advance(3000).await;
    assert!(pods(&b, "api")[0].restarts >= 1);
}

#[tokio::test(start_paused = true)]
async fn not_ready_node_loses_its_pods_after_the_grace() {
    let b = backend(2);
    let d = deployment("web", 2, 1, "nginx:1");
    b.apply(&d).await.unwrap();
    advance(1000).await;
    let on_node_1 = pods(&b, "web")
        .into_iter()
        .find(|p| p.node == "pa2-par-node-1")
        .unwrap();
    b.set_node_ready("pa2-par-node-1", false).unwrap();
    advance(10).await;
    let p = b.status_feed().pod(&on_node_1.id).unwrap();
    assert_eq!(p.phase, "Running");
    assert!(!ready(&p));
    assert_eq!(status(&b, &d.key)["readyReplicas"], 1);
    let nodes = b.nodes().await.unwrap();
    assert!(nodes.iter().any(|n| n.name == "pa2-par-node-1" && !n.ready));

    advance(6000).await;
    let now = pods(&b, "web");
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|p| p.node == "pa2-par-node-2" && ready(p)));
    assert!(b.status_feed().pod(&on_node_1.id).is_none());
    assert!(b.set_node_ready("nope", true).is_err());
}

#[tokio::test(start_paused = true)]
async fn snapshot_prunes_what_it_did_not_name() {
    let b = backend(1);
    let keep = deployment("keep", 1, 1, "a");
    let gone = deployment("gone", 1, 1, "b");
    let cm = desired(
        "v1",
        "ConfigMap",
        json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}}),
    );
    for d in [&keep, &gone, &cm] {
        b.apply(d).await.unwrap();
    }
    advance(1000).await;
    b.begin_snapshot(500).await.unwrap();
    let names = HashSet::from([keep.key.clone()]);
    let pruned = b.end_snapshot(500, &names).await.unwrap();
    assert_eq!(pruned, 2);
    assert_eq!(b.object_keys(), vec![keep.key.clone()]);
    assert!(pods(&b, "gone").is_empty());
    assert!(b.status_feed().object(&gone.key).is_none());
    assert_eq!(pods(&b, "keep").len(), 1);
    // Deleting twice is fine.
    b.delete(&gone.key, 501).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn services_get_a_cluster_ip_and_claims_go_bound() {
    let b = backend(1);
    let svc = desired(
        "v1",
        "Service",
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
    );
    b.apply(&svc).await.unwrap();
    let ip = b.object(&svc.key).unwrap()["spec"]["clusterIP"].clone();
    assert!(ip.as_str().unwrap().starts_with("10."));
    b.apply(&desired(
        "v1",
        "Service",
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 81}]}}),
    ))
    .await
    .unwrap();
    assert_eq!(
        b.object(&svc.key).unwrap()["spec"]["clusterIP"],
        ip,
        "stable across updates"
    );
    assert_eq!(status(&b, &svc.key), json!({"loadBalancer": {}}));

    let pvc = desired(
        "v1",
        "PersistentVolumeClaim",
        json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
               "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    b.apply(&pvc).await.unwrap();
    let s = status(&b, &pvc.key);
    assert_eq!(s["phase"], "Bound");
    assert_eq!(s["capacity"]["storage"], "1Gi");
    let cron = desired(
        "batch/v1",
        "CronJob",
        json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * * * *"}}),
    );
    b.apply(&cron).await.unwrap();
    assert_eq!(status(&b, &cron.key), json!({}));
}

#[tokio::test(start_paused = true)]
async fn logs_tail_and_errors() {
    let b = backend(1);
    b.apply(&deployment("web", 1, 1, "nginx:1")).await.unwrap();
    let pending = pods(&b, "web")[0].id.name.clone();
    let params = |pod: &str, container: Option<&str>| LogParams {
        virtual_cluster: Some(vc()),
        namespace: "shop".into(),
        pod: pod.into(),
        container: container.map(str::to_owned),
        follow: false,
        tail_lines: Some(5),
        timestamps: false,
    };
    assert!(matches!(
        b.logs(&params(&pending, None)).await,
        Err(BackendError::Invalid(_))
    ));
    advance(1000).await;
    let chunks: Vec<Vec<u8>> = b
        .logs(&params(&pending, None))
        .await
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    let text = String::from_utf8(chunks.concat()).unwrap();
    assert!(text.contains(&format!("pod={pending}")), "{text}");
    assert!(text.contains("container=main"));
    assert!(matches!(
        b.logs(&params(&pending, Some("other"))).await,
        Err(BackendError::Invalid(_))
    ));
    assert!(matches!(
        b.logs(&params("nope", None)).await,
        Err(BackendError::NotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn deleting_a_workload_removes_its_pods_and_status() {
    let b = backend(2);
    let d = deployment("web", 2, 1, "nginx:1");
    b.apply(&d).await.unwrap();
    advance(1000).await;
    let feed = b.status_feed();
    feed.take_changes(1000);
    b.delete(&d.key, 200).await.unwrap();
    assert!(pods(&b, "web").is_empty());
    let batch = feed.take_changes(1000);
    assert_eq!(batch.deleted_pods.len(), 2);
    assert_eq!(batch.deleted_objects, vec![d.key.clone()]);
}

#[tokio::test(start_paused = true)]
async fn many_idle_sites_share_one_runtime() {
    let sites: Vec<SimulatedBackend> = (0..500)
        .map(|i| SimulatedBackend::new(&format!("s{i}"), 2, SimulatedOptions::default()))
        .collect();
    for s in &sites {
        s.apply(&deployment("web", 2, 1, "nginx:1")).await.unwrap();
    }
    advance(1000).await;
    for s in &sites {
        assert_eq!(pods(s, "web").iter().filter(|p| ready(p)).count(), 2);
    }
    drop(sites);
    advance(10).await;
}
