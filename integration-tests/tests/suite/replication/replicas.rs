//! Two replication replicas on one database: the agent streams to one, the
//! status API of the other serves its pods and watches (LISTEN/NOTIFY),
//! deletes its pods (a command relayed through Postgres) and streams its
//! logs (the call forwarded to the replica holding the stream).

use std::time::Duration;

use manifold_integration_tests::authed;
use manifold_proto::replication::v1 as rpb;
use rpb::{agent_message::Msg as Out, control_message::Msg};

use super::*;

fn pod(name: &str) -> rpb::Pod {
    rpb::Pod {
        virtual_cluster: VK.into(),
        namespace: "shop".into(),
        name: name.into(),
        node: "par-node-1".into(),
        phase: "Running".into(),
        ..Default::default()
    }
}

async fn next_event(stream: &mut tonic::Streaming<rpb::PodEvent>) -> rpb::PodEvent {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a pod event in time")
        .expect("watch open")
        .expect("watch not ended")
}

#[tokio::test]
async fn the_status_api_of_any_replica_serves_a_site_streaming_to_another() {
    let h = harness_with_replicas(&[], 2, |_| {}).await;
    let par = h.site("pa2-par", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    settle().await;
    let mut agent = h.connect_at(1, Some(&par), "pa2-par", 0).await.unwrap();
    agent.snapshot().await;
    agent
        .send(Out::Status(rpb::StatusReport {
            full: true,
            pods: vec![pod("web-a")],
            ..Default::default()
        }))
        .await;

    let mut api = h.replication_at(0).await;
    let mut listed = None;
    for _ in 0..50 {
        let r = api
            .list_pods(authed(
                &h.admin,
                rpb::ListPodsRequest {
                    virtual_cluster: VK.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if !r.pods.is_empty() {
            listed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = listed.expect("pods listed on the other replica");
    assert_eq!(listed.pods[0].name, "web-a");
    let sessions = api
        .list_sessions(authed(&h.admin, rpb::ListSessionsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].replica, "test-replica-1");

    // A watch on replica 0 sees what replica 1 stores.
    let mut watch = api
        .watch_pods(authed(
            &h.admin,
            rpb::WatchPodsRequest {
                virtual_cluster: VK.into(),
                from_revision: listed.revision,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    agent
        .send(Out::Status(rpb::StatusReport {
            pods: vec![pod("web-b")],
            ..Default::default()
        }))
        .await;
    let e = next_event(&mut watch).await;
    assert_eq!(e.r#type, rpb::pod_event::Type::Upsert as i32);
    assert_eq!(e.pod.unwrap().name, "web-b");
    assert!(e.revision > listed.revision);

    // DeletePod on replica 0 reaches the agent on replica 1.
    api.delete_pod(authed(
        &h.admin,
        rpb::DeletePodRequest {
            virtual_cluster: VK.into(),
            namespace: "shop".into(),
            name: "web-a".into(),
            site: "pa2-par".into(),
        },
    ))
    .await
    .unwrap();
    let seen = agent.until(|m| matches!(m, Msg::DeletePod(_))).await;
    let Some(Msg::DeletePod(cmd)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(cmd.pod, "web-a");

    // Logs asked of replica 0 are forwarded to replica 1.
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
                    follow: true,
                    ..Default::default()
                },
            ))
            .await
            .expect("logs")
            .into_inner();
        let first = stream.message().await.expect("chunk").expect("open");
        String::from_utf8(first.data).unwrap()
    });
    let seen = agent.until(|m| matches!(m, Msg::LogRequest(_))).await;
    let Some(Msg::LogRequest(req)) = seen.last() else {
        unreachable!()
    };
    assert!(req.follow);
    agent
        .send(Out::Log(rpb::LogChunk {
            request_id: req.request_id.clone(),
            data: b"hello from pa2-par\n".to_vec(),
            eof: false,
            error: String::new(),
        }))
        .await;
    let text = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("logs in time")
        .unwrap();
    assert_eq!(text, "hello from pa2-par\n");
    // The reader left: the followed log is cancelled on the site.
    let seen = agent
        .until(|m| matches!(m, Msg::LogRequest(r) if r.cancel))
        .await;
    let Some(Msg::LogRequest(cancel)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(cancel.request_id, req.request_id);
}
