//! Observed state: status reports stored and served by ReplicationService
//! (pods, watches, per-site object status), pod deletion and logs through
//! the agent, tenant isolation, and liveness (ONLINE / OFFLINE).

use std::time::Duration;

use manifold_integration_tests::authed;
use manifold_proto::{replication::v1 as rpb, sites::v1 as spb, tenancy::v1 as tpb};
use prost_types::{Struct, Value, value::Kind};
use rpb::{agent_message::Msg as Out, control_message::Msg};
use tonic::Code;

use super::*;

fn structure(pairs: &[(&str, Kind)]) -> Struct {
    Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    Value {
                        kind: Some(v.clone()),
                    },
                )
            })
            .collect(),
    }
}

fn pod(name: &str, node: &str) -> rpb::Pod {
    rpb::Pod {
        virtual_cluster: VK.into(),
        namespace: "shop".into(),
        name: name.into(),
        site: String::new(),
        node: node.into(),
        phase: "Running".into(),
        pod_ip: "10.0.0.7".into(),
        restarts: 0,
        owner_kind: "ReplicaSet".into(),
        owner_name: "web-5d9".into(),
        object: Some(structure(&[(
            "metadata",
            Kind::StructValue(structure(&[("name", Kind::StringValue(name.into()))])),
        )])),
        site_offline: false,
    }
}

fn report(full: bool, pods: Vec<rpb::Pod>) -> Out {
    Out::Status(rpb::StatusReport {
        full,
        pods,
        ..Default::default()
    })
}

/// A token of a tenant-admin of a fresh tenant `id`.
async fn outsider(h: &Harness, id: &str) -> String {
    let a = &h.admin;
    tpb::tenant_service_client::TenantServiceClient::new(h.ch.clone())
        .create_tenant(authed(
            a,
            tpb::CreateTenantRequest {
                tenant_id: id.into(),
                tenant: None,
            },
        ))
        .await
        .unwrap();
    let user = format!("tenants/{id}/users/eve");
    tpb::user_service_client::UserServiceClient::new(h.ch.clone())
        .create_user(authed(
            a,
            tpb::CreateUserRequest {
                parent: format!("tenants/{id}"),
                user_id: "eve".into(),
                user: None,
            },
        ))
        .await
        .unwrap();
    tpb::role_binding_service_client::RoleBindingServiceClient::new(h.ch.clone())
        .create_role_binding(authed(
            a,
            tpb::CreateRoleBindingRequest {
                parent: format!("tenants/{id}"),
                role_binding_id: String::new(),
                role_binding: Some(tpb::RoleBinding {
                    role: tpb::Role::TenantAdmin as i32,
                    user: user.clone(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap();
    tpb::api_token_service_client::ApiTokenServiceClient::new(h.ch.clone())
        .create_api_token(authed(
            a,
            tpb::CreateApiTokenRequest {
                parent: user,
                token: None,
                ttl: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret
}

async fn pods_of(
    api: &mut rpb::replication_service_client::ReplicationServiceClient<tonic::transport::Channel>,
    token: &str,
    want: usize,
) -> rpb::ListPodsResponse {
    let mut last = None;
    for _ in 0..50 {
        let r = api
            .list_pods(authed(
                token,
                rpb::ListPodsRequest {
                    virtual_cluster: VK.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if r.pods.len() == want {
            return r;
        }
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected {want} pods, got {last:?}");
}

async fn watch_next(stream: &mut tonic::Streaming<rpb::PodEvent>) -> rpb::PodEvent {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a pod event in time")
        .expect("watch open")
        .expect("watch not ended")
}

/// A WatchObjectStatus stream of the scenario's vK8s, once live.
async fn status_watch(
    api: &mut rpb::replication_service_client::ReplicationServiceClient<tonic::transport::Channel>,
    token: &str,
) -> Result<tonic::Streaming<rpb::ObjectStatusEvent>, tonic::Status> {
    let mut stream = api
        .watch_object_status(authed(
            token,
            rpb::WatchObjectStatusRequest {
                virtual_cluster: VK.into(),
            },
        ))
        .await?
        .into_inner();
    let live = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("live in time")?
        .expect("not ended");
    assert!(
        live.r#ref.is_none(),
        "the first event only says live: {live:?}"
    );
    Ok(stream)
}

async fn status_next(
    stream: &mut tonic::Streaming<rpb::ObjectStatusEvent>,
) -> rpb::ObjectStatusEvent {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a status change in time")
        .expect("watch open")
        .expect("watch not ended")
}

/// The scenario's Deployment `web`.
fn web_ref() -> rpb::ObjectRef {
    rpb::ObjectRef {
        virtual_cluster: VK.into(),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: "shop".into(),
        name: "web".into(),
    }
}

fn web_status(ready: f64, revision: i64) -> Out {
    Out::Status(rpb::StatusReport {
        objects: vec![rpb::ObjectStatus {
            r#ref: Some(web_ref()),
            status: Some(structure(&[("readyReplicas", Kind::NumberValue(ready))])),
            observed_revision: revision,
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn ready_of(e: &rpb::ObjectStatusEvent) -> Vec<(String, Option<Kind>)> {
    e.statuses
        .iter()
        .map(|s| {
            (
                s.site.clone(),
                s.status.as_ref().unwrap().fields["readyReplicas"]
                    .kind
                    .clone(),
            )
        })
        .collect()
}

/// Status changes are pushed: every watcher of the vK8s gets each change
/// once, with every site's status of the object; an unchanged re-report is
/// no change; another tenant cannot watch.
#[tokio::test]
async fn status_changes_are_pushed_to_every_watcher_once() {
    let h = harness(&[], |_| {}).await;
    let par = h.site("pa2-par", &[("env", "edge")]).await;
    let nyc = h.site("ny8-nyc", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    settle().await;
    let mut p = h.connect(Some(&par), "pa2-par", 0).await.unwrap();
    let mut n = h.connect(Some(&nyc), "ny8-nyc", 0).await.unwrap();
    p.snapshot().await;
    n.snapshot().await;
    let mut api = h.replication().await;
    let mut first = status_watch(&mut api, &h.admin).await.expect("watch");
    let mut second = status_watch(&mut api, &h.admin).await.expect("watch");

    p.send(web_status(1.0, 3)).await;
    for w in [&mut first, &mut second] {
        let e = status_next(w).await;
        assert_eq!(e.r#ref.as_ref().unwrap().kind, "Deployment");
        assert_eq!(
            ready_of(&e),
            [("pa2-par".into(), Some(Kind::NumberValue(1.0)))]
        );
    }
    // The same status again is no change; the other site's is, and the
    // event carries both sites.
    p.send(web_status(1.0, 3)).await;
    n.send(web_status(2.0, 3)).await;
    for w in [&mut first, &mut second] {
        let e = status_next(w).await;
        assert_eq!(
            ready_of(&e),
            [
                ("ny8-nyc".into(), Some(Kind::NumberValue(2.0))),
                ("pa2-par".into(), Some(Kind::NumberValue(1.0))),
            ]
        );
    }
    let quiet = tokio::time::timeout(Duration::from_secs(2), first.message()).await;
    assert!(quiet.is_err(), "nothing changed, nothing pushed: {quiet:?}");
    // A site dropping the object changes the merged status too: the event
    // carries the sites left.
    n.send(Out::Status(rpb::StatusReport {
        deleted_objects: vec![web_ref()],
        ..Default::default()
    }))
    .await;
    for w in [&mut first, &mut second] {
        let e = status_next(w).await;
        assert_eq!(
            ready_of(&e),
            [("pa2-par".into(), Some(Kind::NumberValue(1.0)))]
        );
    }

    let eve = outsider(&h, "globex").await;
    let refused = status_watch(&mut api, &eve).await.expect_err("refused");
    assert!(
        matches!(refused.code(), Code::NotFound | Code::PermissionDenied),
        "{refused:?}"
    );
}

fn describe(e: &rpb::PodEvent) -> String {
    let kind = rpb::pod_event::Type::try_from(e.r#type).unwrap();
    match &e.pod {
        Some(p) => format!("{kind:?} {}@{}", p.name, p.site),
        None => format!("{kind:?}"),
    }
}

#[tokio::test]
async fn status_reports_become_pods_watches_statuses_deletes_and_logs() {
    let h = harness(&[], |_| {}).await;
    let par = h.site("pa2-par", &[("env", "edge")]).await;
    let nyc = h.site("ny8-nyc", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    settle().await;
    let mut p = h.connect(Some(&par), "pa2-par", 0).await.unwrap();
    let mut n = h.connect(Some(&nyc), "ny8-nyc", 0).await.unwrap();
    p.snapshot().await;
    n.snapshot().await;

    p.send(Out::Status(rpb::StatusReport {
        full: true,
        pods: vec![pod("web-a", "par-node-1"), pod("web-b", "par-node-2")],
        objects: vec![rpb::ObjectStatus {
            r#ref: Some(web_ref()),
            site: String::new(),
            failure: None,
            status: Some(structure(&[("readyReplicas", Kind::NumberValue(2.0))])),
            observed_revision: 7,
            update_time: None,
            site_offline: false,
        }],
        events: vec![rpb::SiteEvent {
            virtual_cluster: VK.into(),
            object: Some(structure(&[
                (
                    "metadata",
                    Kind::StructValue(structure(&[
                        ("name", Kind::StringValue("web-a.1".into())),
                        ("namespace", Kind::StringValue("shop".into())),
                    ])),
                ),
                ("reason", Kind::StringValue("Scheduled".into())),
            ])),
            site: String::new(),
        }],
        ..Default::default()
    }))
    .await;
    // A site cannot write into a vK8s that is not placed on it.
    let mut foreign = pod("intruder", "x");
    foreign.virtual_cluster = "tenants/other/namespaces/x/virtualClusters/y".into();
    n.send(report(true, vec![pod("web-c", "nyc-node-1"), foreign]))
        .await;

    let mut api = h.replication().await;
    let listed = pods_of(&mut api, &h.admin, 3).await;
    let mut names: Vec<(String, String, String)> = listed
        .pods
        .iter()
        .map(|p| (p.name.clone(), p.site.clone(), p.node.clone()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("web-a".into(), "pa2-par".into(), "par-node-1".into()),
            ("web-b".into(), "pa2-par".into(), "par-node-2".into()),
            ("web-c".into(), "ny8-nyc".into(), "nyc-node-1".into()),
        ]
    );
    assert!(listed.revision > 0);
    assert!(
        listed
            .pods
            .iter()
            .all(|p| p.object.is_some() && !p.site_offline)
    );

    // By name: the one pod of that name, read by key, with the revision.
    let named = |name: &str| rpb::ListPodsRequest {
        virtual_cluster: VK.into(),
        name: name.into(),
    };
    let one = api
        .list_pods(authed(&h.admin, named("web-c")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        one.pods
            .iter()
            .map(|p| (p.name.as_str(), p.site.as_str()))
            .collect::<Vec<_>>(),
        [("web-c", "ny8-nyc")]
    );
    assert!(one.revision >= listed.revision, "{one:?}");
    let none = api
        .list_pods(authed(&h.admin, named("web-z")))
        .await
        .unwrap()
        .into_inner();
    assert!(none.pods.is_empty(), "{none:?}");

    let statuses = api
        .get_object_status(authed(
            &h.admin,
            rpb::GetObjectStatusRequest {
                r#ref: Some(web_ref()),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .statuses;
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].site, "pa2-par");
    assert_eq!(statuses[0].observed_revision, 7);
    assert_eq!(
        statuses[0].status.as_ref().unwrap().fields["readyReplicas"].kind,
        Some(Kind::NumberValue(2.0))
    );

    let events = api
        .list_events(authed(
            &h.admin,
            rpb::ListEventsRequest {
                virtual_cluster: VK.into(),
                namespace: "shop".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].site, "pa2-par");
    assert_eq!(
        events[0].object.as_ref().unwrap().fields["reason"].kind,
        Some(Kind::StringValue("Scheduled".into()))
    );

    // Another tenant sees nothing of it.
    let eve = outsider(&h, "other").await;
    let denied = api
        .list_pods(authed(
            &eve,
            rpb::ListPodsRequest {
                virtual_cluster: VK.into(),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::NotFound);
    let denied = api
        .list_nodes(authed(
            &eve,
            rpb::ListNodesRequest {
                virtual_cluster: VK.into(),
            },
        ))
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::NotFound);
    let denied = api
        .list_sessions(authed(&eve, rpb::ListSessionsRequest {}))
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);

    // Watch: the list, a bookmark, then changes as sites report them.
    let mut watch = api
        .watch_pods(authed(
            &h.admin,
            rpb::WatchPodsRequest {
                virtual_cluster: VK.into(),
                from_revision: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut initial = Vec::new();
    loop {
        let e = watch_next(&mut watch).await;
        if e.r#type == rpb::pod_event::Type::Bookmark as i32 {
            assert_eq!(e.revision, listed.revision);
            break;
        }
        initial.push(describe(&e));
    }
    initial.sort();
    assert_eq!(
        initial,
        [
            "Upsert web-a@pa2-par",
            "Upsert web-b@pa2-par",
            "Upsert web-c@ny8-nyc"
        ]
    );
    p.send(Out::Status(rpb::StatusReport {
        removed_pods: vec![rpb::PodRef {
            virtual_cluster: VK.into(),
            namespace: "shop".into(),
            name: "web-a".into(),
        }],
        ..Default::default()
    }))
    .await;
    assert_eq!(
        describe(&watch_next(&mut watch).await),
        "Delete web-a@pa2-par"
    );
    // A full report replaces the site's pods: web-c goes, web-d comes.
    n.send(report(true, vec![pod("web-d", "nyc-node-2")])).await;
    let mut changes = vec![
        describe(&watch_next(&mut watch).await),
        describe(&watch_next(&mut watch).await),
    ];
    changes.sort();
    assert_eq!(changes, ["Delete web-c@ny8-nyc", "Upsert web-d@ny8-nyc"]);

    // Deleting a pod asks its site's agent.
    api.delete_pod(authed(
        &h.admin,
        rpb::DeletePodRequest {
            virtual_cluster: VK.into(),
            namespace: "shop".into(),
            name: "web-b".into(),
            site: String::new(),
        },
    ))
    .await
    .unwrap();
    let seen = p.until(|m| matches!(m, Msg::DeletePod(_))).await;
    let Some(Msg::DeletePod(cmd)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(
        (cmd.namespace.as_str(), cmd.pod.as_str()),
        ("shop", "web-b")
    );
    assert_eq!(cmd.virtual_cluster, VK);
    let missing = api
        .delete_pod(authed(
            &h.admin,
            rpb::DeletePodRequest {
                virtual_cluster: VK.into(),
                namespace: "shop".into(),
                name: "nope".into(),
                site: String::new(),
            },
        ))
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);

    // Logs: the request reaches the agent, its chunks come back.
    let mut logs_api = api.clone();
    let token = h.admin.clone();
    let reader = tokio::spawn(async move {
        let mut stream = logs_api
            .stream_logs(authed(
                &token,
                rpb::StreamLogsRequest {
                    virtual_cluster: VK.into(),
                    namespace: "shop".into(),
                    pod: "web-b".into(),
                    container: "web".into(),
                    follow: false,
                    tail_lines: 10,
                    timestamps: false,
                    site: String::new(),
                },
            ))
            .await
            .expect("logs")
            .into_inner();
        let mut text = Vec::new();
        while let Some(chunk) = stream.message().await.expect("log chunk") {
            text.extend_from_slice(&chunk.data);
        }
        String::from_utf8(text).unwrap()
    });
    let seen = p.until(|m| matches!(m, Msg::LogRequest(_))).await;
    let Some(Msg::LogRequest(req)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(
        (req.pod.as_str(), req.tail_lines, req.follow),
        ("web-b", 10, false)
    );
    assert_eq!(req.virtual_cluster, VK);
    for (data, eof) in [("line 1\n", false), ("line 2\n", true)] {
        p.send(Out::Log(rpb::LogChunk {
            request_id: req.request_id.clone(),
            data: data.as_bytes().to_vec(),
            eof,
            error: String::new(),
        }))
        .await;
    }
    let text = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("logs in time")
        .unwrap();
    assert_eq!(text, "line 1\nline 2\n");
}

async fn wait_state(h: &Harness, want: spb::site::State) -> spb::Site {
    for _ in 0..100 {
        let s = h.get_site("pa2-par").await;
        if s.state == want as i32 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pa2-par never became {want:?}");
}

#[tokio::test]
async fn a_site_whose_stream_is_gone_goes_offline_and_comes_back() {
    let h = harness(&[], |c| c.heartbeat_timeout = Duration::from_secs(2)).await;
    let par = h.site("pa2-par", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    settle().await;
    let mut agent = h.connect(Some(&par), "pa2-par", 0).await.unwrap();
    agent.snapshot().await;
    agent
        .send(Out::Heartbeat(rpb::Heartbeat {
            time: None,
            nodes: vec![rpb::NodeStatus {
                name: "par-node-1".into(),
                ready: true,
            }],
            ..Default::default()
        }))
        .await;
    agent
        .send(Out::Status(rpb::StatusReport {
            full: true,
            pods: vec![pod("web-a", "par-node-1")],
            objects: vec![rpb::ObjectStatus {
                r#ref: Some(web_ref()),
                status: Some(structure(&[("readyReplicas", Kind::NumberValue(1.0))])),
                observed_revision: 1,
                ..Default::default()
            }],
            ..Default::default()
        }))
        .await;
    let online = wait_state(&h, spb::site::State::Online).await;
    assert_eq!(online.agent_version, "fake-agent/1");
    for _ in 0..50 {
        if h.get_site("pa2-par").await.nodes.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h.get_site("pa2-par").await.nodes[0].name, "par-node-1");
    let mut api = h.replication().await;
    assert!(!pods_of(&mut api, &h.admin, 1).await.pods[0].site_offline);

    let mut pushed = status_watch(&mut api, &h.admin)
        .await
        .expect("status watch");
    drop(agent);
    wait_state(&h, spb::site::State::Offline).await;
    // Watchers of the status hear that the site went offline (after, at
    // most, a repeat of the report just before the watch started).
    let mut heard = Vec::new();
    for _ in 0..3 {
        let change = status_next(&mut pushed).await;
        assert_eq!(change.r#ref.as_ref().unwrap().name, "web");
        let offline = change.statuses[0].site_offline;
        heard.push(change);
        if offline {
            break;
        }
    }
    assert!(heard.last().unwrap().statuses[0].site_offline, "{heard:?}");
    // The registry hears first; the pods follow in the same sweep.
    let mut offline = false;
    for _ in 0..50 {
        offline = pods_of(&mut api, &h.admin, 1).await.pods[0].site_offline;
        if offline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(offline, "the pods of an offline site are flagged");
    // So is the site's status of each object.
    let web = rpb::GetObjectStatusRequest {
        r#ref: Some(web_ref()),
    };
    let statuses = api
        .get_object_status(authed(&h.admin, web.clone()))
        .await
        .unwrap()
        .into_inner()
        .statuses;
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert!(statuses[0].site_offline, "{statuses:?}");
    // kubectl shows what is known: the pod's last state, phase Unknown,
    // reason SiteOffline, under its vK8s name.
    let json = h
        .kubectl(
            &["-n", "shop", "get", "pod", "web-a.pa2-par", "-o", "json"],
            None,
        )
        .await;
    let shown: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(shown["status"]["phase"], "Unknown", "{shown}");
    assert_eq!(shown["status"]["reason"], "SiteOffline", "{shown}");
    assert_eq!(shown["spec"]["nodeName"], "par-node-1", "{shown}");
    let table = h.kubectl(&["-n", "shop", "get", "pods"], None).await;
    let row = table
        .lines()
        .find(|l| l.starts_with("web-a.pa2-par "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("SiteOffline"), "{table}");
    let sessions = api
        .list_sessions(authed(&h.admin, rpb::ListSessionsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert!(sessions.is_empty(), "{sessions:?}");

    let mut agent = h.connect(Some(&par), "pa2-par", 0).await.unwrap();
    agent.snapshot().await;
    wait_state(&h, spb::site::State::Online).await;
    // Cleared when the stream is back (before the agent reports anything).
    assert!(!pods_of(&mut api, &h.admin, 1).await.pods[0].site_offline);
    let statuses = api
        .get_object_status(authed(&h.admin, web))
        .await
        .unwrap()
        .into_inner()
        .statuses;
    assert!(!statuses[0].site_offline, "{statuses:?}");
}

fn beat(node: &str) -> Out {
    Out::Heartbeat(rpb::Heartbeat {
        time: None,
        nodes: vec![rpb::NodeStatus {
            name: node.into(),
            ready: true,
        }],
        ..Default::default()
    })
}

fn heartbeat_micros(s: &spb::Site) -> i64 {
    let t = s.last_heartbeat_time.as_ref().expect("a heartbeat time");
    t.seconds * 1_000_000 + i64::from(t.nanos / 1_000)
}

/// Plain heartbeats are batched: they move the registry's heartbeat time
/// forward (one `ReportSiteHeartbeats` per pass) without a status report
/// each; only an operator/service bearer may report for many sites.
#[tokio::test]
async fn plain_heartbeats_reach_the_registry_in_batches_and_only_services_may_send_them() {
    let h = harness(&[], |c| c.heartbeat_timeout = Duration::from_secs(3)).await;
    let par = h.site("pa2-par", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    settle().await;
    let mut agent = h.connect(Some(&par), "pa2-par", 0).await.unwrap();
    agent.snapshot().await;
    agent.send(beat("par-node-1")).await;
    let first = heartbeat_micros(&wait_state(&h, spb::site::State::Online).await);

    // The same nodes again: no report, but the batch carries the time.
    let mut moved = None;
    for _ in 0..60 {
        agent.send(beat("par-node-1")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = h.get_site("pa2-par").await;
        if heartbeat_micros(&s) > first {
            moved = Some(s);
            break;
        }
    }
    let moved = moved.expect("the registry's heartbeat time moves with plain heartbeats");
    assert_eq!(moved.state, spb::site::State::Online as i32);
    assert_eq!(moved.nodes.len(), 1);

    // A changed node list is still reported at once.
    agent.send(beat("par-node-2")).await;
    let mut renamed = false;
    for _ in 0..50 {
        if h.get_site("pa2-par").await.nodes[0].name == "par-node-2" {
            renamed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        renamed,
        "a node change is reported without waiting for a batch"
    );

    // Reporting many sites' heartbeats is for services: a tenant admin's
    // token is refused, no token is refused, and nothing moves.
    let eve = outsider(&h, "evil").await;
    let mut reg = spb::registration_service_client::RegistrationServiceClient::new(h.ch.clone());
    let far = prost_types::Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    };
    let forged = || spb::ReportSiteHeartbeatsRequest {
        heartbeats: vec![spb::SiteHeartbeat {
            site: "sites/pa2-par".into(),
            heartbeat_time: Some(far),
        }],
    };
    let denied = reg
        .report_site_heartbeats(authed(&eve, forged()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let anonymous = reg
        .report_site_heartbeats(tonic::Request::new(forged()))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    // A bad name is named; a time in the future is clamped to now.
    let bad = reg
        .report_site_heartbeats(authed(
            &h.admin,
            spb::ReportSiteHeartbeatsRequest {
                heartbeats: vec![spb::SiteHeartbeat {
                    site: "pa2-par".into(),
                    heartbeat_time: None,
                }],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("heartbeats[0].site"), "{bad:?}");
    let reply = reg
        .report_site_heartbeats(authed(&h.admin, forged()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.live, 1);
    assert!(reply.not_live.is_empty());
    let now = chrono::Utc::now().timestamp_micros();
    assert!(heartbeat_micros(&h.get_site("pa2-par").await) <= now + 1_000_000);
}

/// The site's Pod Security level reaches its agent first on every stream
/// (before any object, so namespaces are made with it), and again when the
/// operator changes it, within the certificate re-check period.
#[tokio::test]
async fn the_sites_pod_security_level_reaches_its_agent_and_follows_changes() {
    let h = harness(&[], |c| c.certificate_recheck = Duration::from_secs(1)).await;
    let id = h.site("pa2-par", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    h.apply(&config_map("app-config", None)).await;
    settle().await;
    let mut agent = h.connect(Some(&id), "pa2-par", 0).await.expect("connect");
    let first = agent
        .rx
        .message()
        .await
        .expect("stream")
        .expect("a message");
    assert_eq!(
        first.msg,
        Some(Msg::Settings(rpb::SiteSettings {
            pod_security: "baseline".into()
        })),
        "the settings come before the snapshot"
    );
    let snap = agent.snapshot().await;
    assert!(
        snap.applies.iter().any(|a| a.contains("app-config")),
        "{snap:?}"
    );

    spb::site_service_client::SiteServiceClient::new(h.ch.clone())
        .update_site(authed(
            &h.admin,
            spb::UpdateSiteRequest {
                site: Some(spb::Site {
                    name: "sites/pa2-par".into(),
                    pod_security: spb::PodSecurityLevel::Restricted as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["pod_security".into()],
                }),
            },
        ))
        .await
        .expect("raise the level");
    for _ in 0..20 {
        if !agent.settings.is_empty() {
            break;
        }
        let _ = agent.next_within(Duration::from_millis(500)).await;
    }
    assert_eq!(
        agent.settings,
        vec![rpb::SiteSettings {
            pod_security: "restricted".into()
        }],
        "the new level reaches the open stream"
    );
    // A new stream starts with the new level.
    drop(agent);
    let mut again = h.connect(Some(&id), "pa2-par", 0).await.expect("reconnect");
    let _ = again.snapshot().await;
    assert_eq!(again.settings.len(), 1);
    assert_eq!(again.settings[0].pod_security, "restricted");
}
