//! The agent stream: snapshot, live changes, acks and resume; who may
//! connect; placement by virtual site and annotation; sites leaving;
//! compaction; certificate renewal.

use std::time::Duration;

use manifold_integration_tests::authed;
use manifold_proto::{replication::v1 as rpb, vk8s::v1 as vpb};
use rpb::control_message::Msg;
use tonic::Code;

use super::*;

#[tokio::test]
async fn snapshot_then_live_changes_and_resume_from_the_acked_revision() {
    let h = harness(&[], |_| {}).await;
    let pa2 = h.site("pa2-par", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    h.apply(&config_map("before", None)).await;
    settle().await;

    let mut agent = h.connect(Some(&pa2), "pa2-par", 0).await.expect("connect");
    let snap = agent.snapshot().await;
    assert_eq!(snap.applies, ["ConfigMap/before"], "{snap:?}");
    assert!(snap.deletes.is_empty());

    // Live: a Deployment created through the Kubernetes API arrives.
    h.apply(DEPLOYMENT).await;
    let seen = agent
        .until(|m| matches!(m, Msg::Apply(a) if named(&a.r#ref) == "Deployment/web"))
        .await;
    let Some(Msg::Apply(apply)) = seen.last() else {
        unreachable!()
    };
    assert!(apply.revision > snap.revision);
    let r = apply.r#ref.as_ref().unwrap();
    assert_eq!(r.virtual_cluster, VK);
    assert_eq!(r.api_version, "apps/v1");
    assert_eq!(r.namespace, "shop");
    let object = apply.object.as_ref().expect("the full object");
    assert!(object.fields.contains_key("spec"));
    let acked = apply.revision;

    // The cursor is kept in Postgres and listed as a session.
    let mut api = h.replication().await;
    let mut listed = 0;
    for _ in 0..50 {
        let sessions = api
            .list_sessions(authed(&h.admin, rpb::ListSessionsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .sessions;
        if let Some(s) = sessions.iter().find(|s| s.site == "sites/pa2-par") {
            assert_eq!(s.replica, "test-replica");
            listed = s.last_acked_revision;
            if listed >= acked {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(listed >= acked, "cursor {listed} < {acked}");

    // Away: one object changes, one goes. Back: a replay, not a snapshot.
    drop(agent);
    h.apply(&config_map("while-away", None)).await;
    h.kubectl(&["delete", "-n", "shop", "configmap", "before"], None)
        .await;
    let mut agent = h
        .connect(Some(&pa2), "pa2-par", acked)
        .await
        .expect("reconnect");
    let mut applied = Vec::new();
    let mut deleted = Vec::new();
    while applied.is_empty() || deleted.is_empty() {
        let m = agent.next().await.expect("replay");
        agent.ack_msg(&m).await;
        match &m {
            Msg::Apply(a) => {
                assert!(a.revision > acked);
                applied.push(named(&a.r#ref));
            }
            Msg::Delete(d) => {
                assert!(d.revision > acked);
                deleted.push(named(&d.r#ref));
            }
            Msg::Progress(_) => {}
            other => panic!("expected a replay, got {other:?}"),
        }
    }
    assert_eq!(applied, ["ConfigMap/while-away"]);
    assert_eq!(deleted, ["ConfigMap/before"]);
}

#[tokio::test]
async fn agents_must_prove_the_site_they_speak_for() {
    let h = harness(&[], |_| {}).await;
    let a = h.site("site-a", &[("env", "edge")]).await;
    h.site("site-b", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;

    let none = h.connect(None, "site-a", 0).await;
    assert_eq!(none.err().map(|s| s.code()), Some(Code::Unauthenticated));
    let other = h.connect(Some(&a), "site-b", 0).await;
    let status = other.err().expect("refused");
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status.message()
    );
    // A certificate for site-a from another CA: refused (TLS or the call).
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign_ca = manifold_pki::Ca::load_or_create(foreign_dir.path()).unwrap();
    let (key, csr) = manifold_pki::generate_csr("site-a").unwrap();
    let forged = foreign_ca
        .sign_site_csr(&csr, "site-a", Duration::from_secs(3600))
        .unwrap();
    let refused = h.connect(Some(&(forged.cert_pem, key)), "site-a", 0).await;
    assert!(
        refused.is_err(),
        "a certificate of another CA must not connect"
    );

    // The right certificate for the right site connects, and renewal over
    // the stream returns a certificate for the same site.
    let mut agent = h
        .connect(Some(&a), "sites/site-a", 0)
        .await
        .expect("connect");
    agent.snapshot().await;
    let (_key, csr) = manifold_pki::generate_csr("site-b").unwrap();
    agent
        .send(rpb::agent_message::Msg::Renew(rpb::RenewRequest {
            csr_pem: csr,
        }))
        .await;
    let seen = agent.until(|m| matches!(m, Msg::Renew(_))).await;
    let Some(Msg::Renew(renewed)) = seen.last() else {
        unreachable!()
    };
    assert!(renewed.error.is_empty(), "{}", renewed.error);
    let der = manifold_pki::certs_from_pem(&renewed.certificate_pem).unwrap()[0]
        .as_ref()
        .to_vec();
    assert_eq!(
        manifold_pki::site_from_cert_der(&der).as_deref(),
        Some("site-a")
    );
    assert!(renewed.expire_time.is_some());
    agent
        .send(rpb::agent_message::Msg::Renew(rpb::RenewRequest {
            csr_pem: "not a csr".into(),
        }))
        .await;
    let seen = agent.until(|m| matches!(m, Msg::Renew(_))).await;
    let Some(Msg::Renew(refused)) = seen.last() else {
        unreachable!()
    };
    assert!(!refused.error.is_empty());
    assert!(refused.certificate_pem.is_empty());
}

#[tokio::test]
async fn annotation_narrows_placement_and_a_leaving_site_gets_deletes() {
    let h = harness(&[], |_| {}).await;
    let par = h.site("pa2-par", &[("region", "eu")]).await;
    let nyc = h.site("ny8-nyc", &[("region", "us")]).await;
    h.site("lab1-ams", &[("region", "lab")]).await;
    h.scenario(&[("eu", "region=eu"), ("us", "region=us")], &["eu", "us"])
        .await;
    settle().await;
    let mut p = h.connect(Some(&par), "pa2-par", 0).await.unwrap();
    let mut n = h.connect(Some(&nyc), "ny8-nyc", 0).await.unwrap();
    assert!(p.snapshot().await.applies.is_empty());
    assert!(n.snapshot().await.applies.is_empty());

    h.apply(&config_map("eu-only", Some("eu"))).await;
    h.apply(&config_map("everywhere", None)).await;
    let seen_p = p
        .until(|m| matches!(m, Msg::Apply(a) if named(&a.r#ref) == "ConfigMap/everywhere"))
        .await;
    let applied_p: Vec<String> = seen_p
        .iter()
        .filter_map(|m| match m {
            Msg::Apply(a) => Some(named(&a.r#ref)),
            _ => None,
        })
        .collect();
    assert_eq!(applied_p, ["ConfigMap/eu-only", "ConfigMap/everywhere"]);
    let seen_n = n
        .until(|m| matches!(m, Msg::Apply(a) if named(&a.r#ref) == "ConfigMap/everywhere"))
        .await;
    assert!(
        !seen_n
            .iter()
            .any(|m| matches!(m, Msg::Apply(a) if named(&a.r#ref) == "ConfigMap/eu-only")),
        "the us site must not get an object narrowed to eu: {seen_n:?}"
    );

    // Moving the annotation moves the object.
    h.apply(&config_map("eu-only", Some("us"))).await;
    n.applied("ConfigMap/eu-only").await;
    let seen_p = p
        .until(|m| matches!(m, Msg::Delete(d) if named(&d.r#ref) == "ConfigMap/eu-only"))
        .await;
    assert!(matches!(seen_p.last(), Some(Msg::Delete(_))));

    // pa2-par leaves region eu: it gets Deletes for everything it had.
    h.relabel_site("pa2-par", &[("region", "lab")]).await;
    let snap = p.snapshot().await;
    assert!(snap.applies.is_empty(), "{snap:?}");
    assert_eq!(snap.deletes, ["ConfigMap/everywhere"], "{snap:?}");
    // ny8-nyc is untouched by that and still gets live changes.
    h.apply(&config_map("later", None)).await;
    n.applied("ConfigMap/later").await;
    assert!(
        p.next_within(Duration::from_secs(2))
            .await
            .is_none_or(|m| !matches!(m, Msg::Apply(_))),
        "a site outside every virtual site gets no applies"
    );

    // The vK8s drops virtual site `us`: ny8-nyc loses everything it had.
    vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(h.ch.clone())
        .update_virtual_cluster(authed(
            &h.admin,
            vpb::UpdateVirtualClusterRequest {
                virtual_cluster: Some(vpb::VirtualCluster {
                    name: VK.into(),
                    virtual_sites: vec!["eu".into()],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["virtual_sites".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let seen = n.until(|m| matches!(m, Msg::SnapshotBegin(_))).await;
    let Some(Msg::SnapshotBegin(begin)) = seen.last() else {
        unreachable!()
    };
    let mut deletes = Vec::new();
    loop {
        match n.next().await.unwrap() {
            Msg::Delete(d) => deletes.push(named(&d.r#ref)),
            Msg::SnapshotEnd(e) => {
                n.ack(e.revision).await;
                break;
            }
            other => panic!("unexpected in the snapshot: {other:?}"),
        }
    }
    assert!(begin.revision > 0);
    deletes.sort();
    assert_eq!(
        deletes,
        [
            "ConfigMap/eu-only",
            "ConfigMap/everywhere",
            "ConfigMap/later"
        ]
    );
}

#[tokio::test]
async fn a_slow_site_holds_at_most_the_window_and_stalls_nobody() {
    let h = harness(&[], |c| c.window = 3).await;
    let slow = h.site("pa2-par", &[("env", "edge")]).await;
    let fast = h.site("ny8-nyc", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    settle().await;
    let mut s = h.connect(Some(&slow), "pa2-par", 0).await.unwrap();
    let mut f = h.connect(Some(&fast), "ny8-nyc", 0).await.unwrap();
    s.snapshot().await;
    f.snapshot().await;

    let many: Vec<String> = (0..8)
        .map(|i| config_map(&format!("cm-{i}"), None))
        .collect();
    h.apply(&many.join("---\n")).await;
    // The fast site gets all eight while the slow one acknowledges nothing.
    f.applied("ConfigMap/cm-7").await;
    let mut unacked = Vec::new();
    while let Some(m) = s.next_within(Duration::from_secs(2)).await {
        match m {
            Msg::Apply(a) => unacked.push(a.revision),
            Msg::Progress(p) => unacked.push(p.revision),
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(unacked.len(), 3, "the window is 3: {unacked:?}");
    // One ack opens the window again; the rest follows in order.
    s.ack(unacked[2]).await;
    s.applied("ConfigMap/cm-7").await;
}

/// Waits until the site's cursor in Postgres reaches `revision`.
async fn cursor_reaches(h: &Harness, site: &str, revision: i64) {
    let mut api = h.replication().await;
    for _ in 0..100 {
        let sessions = api
            .list_sessions(authed(&h.admin, rpb::ListSessionsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .sessions;
        if sessions
            .iter()
            .any(|s| s.site == format!("sites/{site}") && s.last_acked_revision >= revision)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the cursor of {site} never reached {revision}");
}

#[tokio::test]
async fn a_site_behind_the_compacted_log_gets_a_snapshot_that_prunes() {
    // The gateway keeps one revision; replication's own ring keeps 16.
    let h = harness(
        &[
            ("vk8s.log_retention_revisions", "1".into()),
            ("vk8s.compaction_interval_secs", "1".into()),
        ],
        |c| c.feed_buffer = 16,
    )
    .await;
    let par = h.site("pa2-par", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    h.apply(&config_map("old", None)).await;
    settle().await;
    let mut agent = h.connect(Some(&par), "pa2-par", 0).await.unwrap();
    let first = agent.snapshot().await;
    assert_eq!(first.applies, ["ConfigMap/old"]);
    cursor_reaches(&h, "pa2-par", first.revision).await;
    drop(agent);

    h.kubectl(&["delete", "-n", "shop", "configmap", "old"], None)
        .await;
    let many: Vec<String> = (0..20)
        .map(|i| config_map(&format!("new-{i:02}"), None))
        .collect();
    h.apply(&many.join("---\n")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut agent = h
        .connect(Some(&par), "pa2-par", first.revision)
        .await
        .unwrap();
    let snap = agent.snapshot().await;
    assert!(snap.revision > first.revision);
    let expected: Vec<String> = (0..20).map(|i| format!("ConfigMap/new-{i:02}")).collect();
    assert_eq!(
        snap.applies, expected,
        "the snapshot names what exists; the agent prunes `old`"
    );
    // Live again after the snapshot.
    h.apply(&config_map("after", None)).await;
    agent.applied("ConfigMap/after").await;
}
