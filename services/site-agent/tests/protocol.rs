//! The agent against a scripted control plane speaking the real protocol over TLS:
//! registration, mTLS, snapshot and replay, acknowledgements, status reports, logs,
//! pod deletion, reconnects and certificate renewal.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use manifold_proto::replication::v1 as pb;
use manifold_site_agent::convert::json_to_struct;
use manifold_site_agent::{AgentConfig, AgentError, SimulatedBackend, SimulatedOptions};
use pb::agent_message::Msg as Up;
use pb::control_message::Msg as Down;
use serde_json::json;
use support::Conn;
use tokio_util::sync::CancellationToken;

const VC: &str = "tenants/acme/namespaces/shop/virtualClusters/demo";
const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

fn config(cp: &support::TestControlPlane, dir: &Path, token: Option<&str>) -> AgentConfig {
    let mut c = AgentConfig::new("pa2-par", cp.endpoint(), cp.ca_pem.clone());
    c.data_dir = Some(dir.to_path_buf());
    c.registration_token = token.map(|t| t.to_owned().into());
    c.heartbeat_interval = Duration::from_millis(200);
    c.status_debounce = Duration::from_millis(50);
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(500);
    c
}

fn deployment_ref(name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        virtual_cluster: VC.into(),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: "shop".into(),
        name: name.into(),
    }
}

fn apply(revision: i64, name: &str, replicas: i64, generation: i64) -> Down {
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "generation": generation},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": "nginx:1"}]}}}
    });
    Down::Apply(pb::Apply {
        revision,
        r#ref: Some(deployment_ref(name)),
        object: Some(json_to_struct(&object)),
    })
}

/// What the control plane would have stored from the agent's status reports.
#[derive(Default)]
struct Observed {
    pods: BTreeMap<String, pb::Pod>,
    objects: BTreeMap<String, pb::ObjectStatus>,
    removed: Vec<String>,
    fulls: usize,
}

impl Observed {
    fn apply(&mut self, r: &pb::StatusReport) {
        if r.full {
            self.pods.clear();
            self.objects.clear();
            self.fulls += 1;
        }
        for p in &r.pods {
            self.pods.insert(p.name.clone(), p.clone());
        }
        for o in &r.objects {
            let name = o.r#ref.as_ref().unwrap().name.clone();
            self.objects.insert(name, o.clone());
        }
        for d in &r.deleted_objects {
            self.objects.remove(&d.name);
        }
        for p in &r.removed_pods {
            self.pods.remove(&p.name);
            self.removed.push(p.name.clone());
        }
    }

    fn running(&self, prefix: &str) -> usize {
        self.pods
            .values()
            .filter(|p| p.name.starts_with(prefix) && p.phase == "Running")
            .count()
    }
}

/// Reads status reports into `observed` until `done` holds (other messages are
/// skipped).
async fn observe_until(
    conn: &mut Conn,
    observed: &mut Observed,
    mut done: impl FnMut(&Observed) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(observed) {
        let msg = tokio::time::timeout_at(deadline, conn.from_agent.recv()).await;
        let Ok(Some(msg)) = msg else {
            panic!(
                "condition not reached; fulls {}, pods {:?}, objects {:?}",
                observed.fulls,
                observed
                    .pods
                    .values()
                    .map(|p| (&p.name, &p.phase))
                    .collect::<Vec<_>>(),
                observed.objects.keys().collect::<Vec<_>>()
            );
        };
        if let Some(Up::Status(report)) = &msg.msg {
            observed.apply(report);
        }
    }
}

/// Waits for a message `pick` accepts, recording the status reports on the way.
async fn wait_for<T>(
    conn: &mut Conn,
    observed: &mut Observed,
    mut pick: impl FnMut(&Up) -> Option<T>,
) -> T {
    conn.recv_until(|m| {
        if let Up::Status(r) = m {
            observed.apply(r);
        }
        pick(m)
    })
    .await
}

/// The next Ack.
async fn ack(conn: &mut Conn, observed: &mut Observed) -> i64 {
    wait_for(conn, observed, |m| match m {
        Up::Ack(a) => Some(a.revision),
        _ => None,
    })
    .await
}

/// Log chunks of `request_id` until its last one: (data, error).
async fn read_log(conn: &mut Conn, observed: &mut Observed, request_id: &str) -> (String, String) {
    let mut data = Vec::new();
    loop {
        let chunk = wait_for(conn, observed, |m| match m {
            Up::Log(c) if c.request_id == request_id => Some(c.clone()),
            _ => None,
        })
        .await;
        data.extend_from_slice(&chunk.data);
        if chunk.eof {
            return (String::from_utf8(data).unwrap(), chunk.error);
        }
    }
}

fn log_request(id: &str, pod: &str, follow: bool, cancel: bool) -> Down {
    Down::LogRequest(pb::LogRequest {
        request_id: id.into(),
        namespace: "shop".into(),
        pod: pod.into(),
        follow,
        tail_lines: 2,
        virtual_cluster: VC.into(),
        cancel,
        ..Default::default()
    })
}

#[tokio::test]
async fn registers_connects_replicates_and_reports() {
    let mut cp = support::start("tok-1", MONTH).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    let backend = Arc::new(SimulatedBackend::new(
        "pa2-par",
        2,
        SimulatedOptions::default(),
    ));
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(manifold_site_agent::run(
        config(&cp, &data, Some("tok-1")),
        backend.clone(),
        shutdown.clone(),
    ));

    let mut conn = cp.accept().await;
    assert_eq!(conn.site, "pa2-par");
    match conn.recv().await {
        Up::Hello(h) => {
            assert_eq!(h.site, "pa2-par");
            assert_eq!(h.last_acked_revision, 0);
            assert!(!h.agent_version.is_empty());
        }
        other => panic!("expected Hello, got {other:?}"),
    }
    let mut observed = Observed::default();
    observe_until(&mut conn, &mut observed, |o| o.fulls == 1).await;

    // A snapshot: its Apply revisions are object revisions, acked only at the end.
    conn.send(Down::SnapshotBegin(pb::SnapshotBegin { revision: 10 }))
        .await;
    conn.send(apply(5, "web", 2, 1)).await;
    conn.send(Down::SnapshotEnd(pb::SnapshotEnd { revision: 10 }))
        .await;
    assert_eq!(ack(&mut conn, &mut observed).await, 10);
    observe_until(&mut conn, &mut observed, |o| {
        o.fulls == 2
            && o.running("web-") == 2
            && o.objects.get("web").is_some_and(|s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.fields.get("readyReplicas"))
                    .is_some()
            })
    })
    .await;
    let status = &observed.objects["web"];
    assert_eq!(status.observed_revision, 5);
    assert_eq!(status.site, "pa2-par");
    for p in observed.pods.values() {
        assert_eq!(p.virtual_cluster, VC);
        assert_eq!(p.namespace, "shop");
        assert_eq!(p.site, "pa2-par");
        assert!(p.node.starts_with("pa2-par-node-"), "{}", p.node);
        assert!(!p.pod_ip.is_empty());
        assert_eq!(p.owner_kind, "ReplicaSet");
        let labels = &p.object.as_ref().unwrap().fields["metadata"];
        assert!(format!("{labels:?}").contains("manifold.dev/site"));
    }
    let nodes = wait_for(&mut conn, &mut observed, |m| match m {
        Up::Heartbeat(h) => Some(h.nodes.clone()),
        _ => None,
    })
    .await;
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n.ready));

    // Live changes and Progress move the cursor.
    conn.send(apply(11, "web", 3, 2)).await;
    assert_eq!(ack(&mut conn, &mut observed).await, 11);
    conn.send(Down::Progress(pb::Progress { revision: 15 }))
        .await;
    assert_eq!(ack(&mut conn, &mut observed).await, 15);
    observe_until(&mut conn, &mut observed, |o| o.running("web-") == 3).await;

    // Logs: tail, unknown pod, follow + cancel.
    let pod = observed.pods.keys().next().unwrap().clone();
    conn.send(log_request("l1", &pod, false, false)).await;
    let (text, error) = read_log(&mut conn, &mut observed, "l1").await;
    assert!(error.is_empty(), "{error}");
    assert!(text.contains(&format!("pod={pod}")), "{text}");
    conn.send(log_request("l2", "nope", false, false)).await;
    let (_, error) = read_log(&mut conn, &mut observed, "l2").await;
    assert!(error.contains("not found"), "{error}");
    conn.send(log_request("l3", &pod, true, false)).await;
    wait_for(&mut conn, &mut observed, |m| {
        matches!(m, Up::Log(c) if c.request_id == "l3").then_some(())
    })
    .await;
    conn.send(log_request("l3", &pod, false, true)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(m) = conn.from_agent.try_recv() {
        if let Some(Up::Status(r)) = &m.msg {
            observed.apply(r);
        }
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut late = 0;
    while let Ok(m) = conn.from_agent.try_recv() {
        if matches!(m.msg, Some(Up::Log(ref c)) if c.request_id == "l3") {
            late += 1;
        }
        if let Some(Up::Status(r)) = &m.msg {
            observed.apply(r);
        }
    }
    assert_eq!(late, 0, "a cancelled follow keeps streaming");

    // Deleting a pod: it goes, its controller replaces it.
    conn.send(Down::DeletePod(pb::DeletePodCommand {
        namespace: "shop".into(),
        pod: pod.clone(),
        virtual_cluster: VC.into(),
    }))
    .await;
    observe_until(&mut conn, &mut observed, |o| {
        o.removed.contains(&pod) && o.running("web-") == 3 && !o.pods.contains_key(&pod)
    })
    .await;

    // The stream breaks: the agent reconnects and resumes from its cursor.
    drop(conn);
    let mut conn = cp.accept().await;
    match conn.recv().await {
        Up::Hello(h) => assert_eq!(h.last_acked_revision, 15),
        other => panic!("expected Hello, got {other:?}"),
    }
    let mut observed = Observed::default();
    observe_until(&mut conn, &mut observed, |o| o.fulls == 1).await;
    assert_eq!(
        observed.running("web-"),
        3,
        "the full report after Hello holds every pod"
    );

    // A snapshot that no longer names the Deployment prunes it.
    conn.send(Down::SnapshotBegin(pb::SnapshotBegin { revision: 20 }))
        .await;
    conn.send(Down::SnapshotEnd(pb::SnapshotEnd { revision: 20 }))
        .await;
    assert_eq!(ack(&mut conn, &mut observed).await, 20);
    observe_until(&mut conn, &mut observed, |o| o.fulls == 2).await;
    assert!(observed.pods.is_empty());
    assert!(observed.objects.is_empty());
    assert!(backend.object_keys().is_empty());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), agent)
        .await
        .expect("agent stops on shutdown")
        .unwrap()
        .unwrap();

    // The credentials are kept; the key is private.
    let identity = data.join("identity.pem");
    assert!(data.join("ca.crt").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&identity).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A restarted agent reuses them (no token needed) and starts from revision 0.
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(manifold_site_agent::run(
        config(&cp, &data, None),
        Arc::new(SimulatedBackend::new(
            "pa2-par",
            2,
            SimulatedOptions::default(),
        )),
        shutdown.clone(),
    ));
    let mut conn = cp.accept().await;
    match conn.recv().await {
        Up::Hello(h) => assert_eq!(h.last_acked_revision, 0),
        other => panic!("expected Hello, got {other:?}"),
    }
    assert_eq!(cp.registrations.load(Ordering::SeqCst), 1);
    shutdown.cancel();
    agent.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_registration_token_is_an_error() {
    let cp = support::start("tok-1", MONTH).await;
    let dir = tempfile::tempdir().unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        manifold_site_agent::run(
            config(&cp, dir.path(), Some("wrong")),
            Arc::new(SimulatedBackend::new(
                "pa2-par",
                1,
                SimulatedOptions::default(),
            )),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("returns at once");
    assert!(
        matches!(result, Err(AgentError::RegistrationRefused(_))),
        "{result:?}"
    );

    let no_token = manifold_site_agent::run(
        config(&cp, dir.path(), None),
        Arc::new(SimulatedBackend::new(
            "pa2-par",
            1,
            SimulatedOptions::default(),
        )),
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(no_token, Err(AgentError::NotRegistered { .. })),
        "{no_token:?}"
    );
}

async fn wait_for_new_identity(path: &Path, old: &str) -> String {
    for _ in 0..100 {
        let now = std::fs::read_to_string(path).unwrap();
        if now != old {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("identity was not renewed");
}

#[tokio::test]
async fn renews_its_certificate_over_the_stream_or_directly() {
    for fail_on_stream in [false, true] {
        let mut cp = support::start("tok-1", MONTH).await;
        if fail_on_stream {
            *cp.renew_error.lock().await = Some("issuer unavailable".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(&cp, dir.path(), Some("tok-1"));
        // A 30-day certificate is due when renewing 60 days ahead; the renewed one
        // (400 days) is not.
        c.renew_before = 2 * MONTH;
        let registered = manifold_site_agent::register(&c).await.unwrap();
        let before = std::fs::read_to_string(dir.path().join("identity.pem")).unwrap();
        let shutdown = CancellationToken::new();
        let agent = tokio::spawn(manifold_site_agent::run(
            c,
            Arc::new(SimulatedBackend::new(
                "pa2-par",
                1,
                SimulatedOptions::default(),
            )),
            shutdown.clone(),
        ));
        let mut conn = cp.accept().await;
        conn.recv_until(|m| matches!(m, Up::Renew(_)).then_some(()))
            .await;
        let after = wait_for_new_identity(&dir.path().join("identity.pem"), &before).await;
        // A fresh key, not only a new certificate.
        let key_of = |pem: &str| {
            pem.split("-----BEGIN CERTIFICATE-----")
                .next()
                .unwrap()
                .to_owned()
        };
        assert_ne!(key_of(&after), key_of(&before));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            cp.renewals.load(Ordering::SeqCst),
            1,
            "renewed once (stream failing: {fail_on_stream})"
        );
        let renewed = manifold_site_agent::Identity::load("pa2-par", dir.path())
            .unwrap()
            .unwrap();
        assert!(renewed.not_after() > registered.not_after());

        // The next connection presents the renewed certificate.
        drop(conn);
        let mut conn = cp.accept().await;
        assert!(matches!(conn.recv().await, Up::Hello(_)));
        shutdown.cancel();
        agent.await.unwrap().unwrap();
    }
}

fn config_map(revision: i64, name: &str, annotations: serde_json::Value) -> Down {
    let object = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "annotations": annotations},
        "data": {"k": "v"}
    });
    Down::Apply(pb::Apply {
        revision,
        r#ref: Some(pb::ObjectRef {
            virtual_cluster: VC.into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "shop".into(),
            name: name.into(),
        }),
        object: Some(json_to_struct(&object)),
    })
}

/// An object the site refuses is acknowledged (so nothing behind it waits),
/// reported with the site's error and an Event, retried, and cleared once a newer
/// version applies; an unreachable cluster holds everything back unacknowledged,
/// keeps the stream alive and is reported in heartbeats until it returns.
#[tokio::test]
async fn refusals_are_reported_and_outages_hold_changes() {
    let mut cp = support::start("tok-r", MONTH).await;
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SimulatedBackend::new(
        "pa2-par",
        2,
        SimulatedOptions::default(),
    ));
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(manifold_site_agent::run(
        config(&cp, &dir.path().join("agent"), Some("tok-r")),
        backend.clone(),
        shutdown.clone(),
    ));
    let mut conn = cp.accept().await;
    assert!(matches!(conn.recv().await, Up::Hello(_)));
    let mut observed = Observed::default();
    conn.send(Down::SnapshotBegin(pb::SnapshotBegin { revision: 1 }))
        .await;
    conn.send(Down::SnapshotEnd(pb::SnapshotEnd { revision: 1 }))
        .await;
    assert_eq!(ack(&mut conn, &mut observed).await, 1);

    // Refused, yet acknowledged, and the next object flows.
    conn.send(config_map(
        2,
        "bad",
        json!({"sim.manifold.dev/refuse": "no thanks"}),
    ))
    .await;
    conn.send(apply(3, "web", 1, 1)).await;
    let mut events = Vec::new();
    let acked = loop {
        let a = wait_for(&mut conn, &mut observed, |m| match m {
            Up::Ack(a) => Some(a.revision),
            Up::Status(r) => {
                events.extend(r.events.iter().cloned());
                None
            }
            _ => None,
        })
        .await;
        if a >= 3 {
            break a;
        }
    };
    assert_eq!(acked, 3);
    observe_until(&mut conn, &mut observed, |o| {
        o.running("web-") == 1 && o.objects.get("bad").is_some_and(|s| s.failure.is_some())
    })
    .await;
    let failure = observed.objects["bad"].failure.clone().unwrap();
    assert_eq!((failure.revision, failure.code), (2, 422));
    assert_eq!(failure.reason, "Invalid");
    assert!(failure.message.contains("no thanks"), "{}", failure.message);
    let event = loop {
        if let Some(e) = events.iter().find(|e| {
            e.object
                .as_ref()
                .is_some_and(|o| format!("{o:?}").contains("SiteRefused"))
        }) {
            break e.clone();
        }
        let r = wait_for(&mut conn, &mut observed, |m| match m {
            Up::Status(r) => Some(r.events.clone()),
            _ => None,
        })
        .await;
        events.extend(r);
    };
    let text = format!("{:?}", event.object.unwrap());
    assert!(text.contains("site pa2-par refused revision 2"), "{text}");
    assert!(
        text.contains("uid-bad"),
        "the event names the vK8s object: {text}"
    );

    // A newer version without the problem applies and clears the refusal.
    conn.send(config_map(4, "bad", json!({}))).await;
    assert_eq!(ack(&mut conn, &mut observed).await, 4);
    observe_until(&mut conn, &mut observed, |o| {
        o.objects.get("bad").is_none_or(|s| s.failure.is_none())
    })
    .await;

    // The cluster goes away: nothing is acknowledged, heartbeats say why.
    backend.set_unreachable(true);
    conn.send(apply(5, "web", 2, 2)).await;
    let why = wait_for(&mut conn, &mut observed, |m| match m {
        Up::Heartbeat(h) if !h.cluster_error.is_empty() => Some(h.clone()),
        Up::Ack(a) if a.revision >= 5 => panic!("acknowledged while the cluster is down"),
        _ => None,
    })
    .await;
    assert!(why.cluster_error.contains("connection refused"), "{why:?}");
    assert!(why.nodes_unknown, "node list kept while unknown");
    // It comes back: the held change applies and is acknowledged.
    backend.set_unreachable(false);
    assert_eq!(ack(&mut conn, &mut observed).await, 5);
    wait_for(&mut conn, &mut observed, |m| match m {
        Up::Heartbeat(h) if h.cluster_error.is_empty() => Some(()),
        _ => None,
    })
    .await;
    observe_until(&mut conn, &mut observed, |o| o.running("web-") == 2).await;
    shutdown.cancel();
    agent.await.unwrap().unwrap();
}
