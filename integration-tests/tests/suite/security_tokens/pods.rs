//! A site names the pods it reports, so a malicious agent may report a pod
//! under another site's pod name. It must never answer for that pod: get,
//! logs and delete by the name never reach the malicious site's pod (a name
//! reported by several sites answers for none of them), a pod's name,
//! namespace and site are the ones replication stored, not what the object
//! claims, and a site reports only pods of vK8s placed on it.

use std::time::Duration;

use manifold_proto::replication::v1 as rpb;
use prost_types::{Struct, Value as PValue, value::Kind};
use rpb::{agent_message::Msg as Out, control_message::Msg};
use serde_json::Value;

use crate::replication::{Agent, Harness, VK, harness, settle};

fn text(s: &str) -> PValue {
    PValue {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn object(pairs: Vec<(&str, PValue)>) -> PValue {
    PValue {
        kind: Some(Kind::StructValue(Struct {
            fields: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })),
    }
}

/// A pod report: stored under `name`; the object claims `claimed_name` and
/// the site label `claimed_site`.
fn pod(name: &str, node: &str, claimed_name: &str, claimed_site: &str) -> rpb::Pod {
    let metadata = object(vec![
        ("name", text(claimed_name)),
        ("namespace", text("shop")),
        (
            "labels",
            object(vec![
                ("app", text("web")),
                ("manifold.dev/site", text(claimed_site)),
            ]),
        ),
    ]);
    rpb::Pod {
        virtual_cluster: VK.into(),
        namespace: "shop".into(),
        name: name.into(),
        node: node.into(),
        phase: "Running".into(),
        owner_kind: "ReplicaSet".into(),
        owner_name: "web-5d9".into(),
        object: Some(Struct {
            fields: [("metadata".to_owned(), metadata)].into_iter().collect(),
        }),
        ..Default::default()
    }
}

fn full(pods: Vec<rpb::Pod>) -> Out {
    Out::Status(rpb::StatusReport {
        full: true,
        pods,
        ..Default::default()
    })
}

/// `kubectl -n shop ARGS`: Ok(stdout) or Err(stderr).
async fn kubectl(h: &Harness, args: &[&str]) -> Result<String, String> {
    let kubeconfig = h.dir.path().join("demo.kubeconfig");
    if !kubeconfig.exists() {
        // Harness::kubectl writes it on first use.
        h.kubectl(&["version"], None).await;
    }
    let mut full = vec!["-n", "shop"];
    full.extend_from_slice(args);
    let o = crate::kubectl::Kubectl::new(&kubeconfig, h.dir.path())
        .run(&full)
        .await;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// Waits until `kubectl get pods` lists `n` pods.
async fn wait_pods(h: &Harness, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let out = kubectl(h, &["get", "pods", "-o", "json"])
            .await
            .expect("get pods");
        let list: Value = serde_json::from_str(&out).unwrap();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if items.len() == n {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected {n} pods");
}

/// Nothing but what `ok` allows reaches `agent` for a while.
async fn nothing_reaches(agent: &mut Agent, what: &str) {
    while let Some(m) = agent.next_within(Duration::from_millis(1500)).await {
        assert!(
            !matches!(m, Msg::DeletePod(_) | Msg::LogRequest(_)),
            "{what}: {} got {m:?}",
            agent.site
        );
        agent.ack_msg(&m).await;
    }
}

#[tokio::test]
async fn a_site_cannot_make_its_pod_answer_for_another_sites_pod() {
    let h = harness(&[], |_| {}).await;
    let par = h.site("pa2-par", &[("env", "edge")]).await;
    let nyc = h.site("ny8-nyc", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    settle().await;
    let mut p = h.connect(Some(&par), "pa2-par", 0).await.unwrap();
    let mut n = h.connect(Some(&nyc), "ny8-nyc", 0).await.unwrap();
    p.snapshot().await;
    n.snapshot().await;

    // pa2-par runs web-abc. ny8-nyc (malicious) reports a pod of the same
    // name claiming pa2-par's label, a pod whose object claims that name,
    // a pod in another namespace and one of a vK8s not placed on it.
    p.send(full(vec![pod(
        "web-abc",
        "par-node-1",
        "web-abc",
        "pa2-par",
    )]))
    .await;
    let mut elsewhere = pod("stray", "x", "stray", "ny8-nyc");
    elsewhere.namespace = "kube-system".into();
    let mut foreign = pod("intruder", "x", "intruder", "ny8-nyc");
    foreign.virtual_cluster = "tenants/other/namespaces/x/virtualClusters/y".into();
    n.send(full(vec![
        pod("web-abc", "evil-node", "web-abc", "pa2-par"),
        pod("decoy", "evil-node", "web-abc", "pa2-par"),
        elsewhere,
        foreign,
    ]))
    .await;
    let pods = wait_pods(&h, 3).await;
    // Every pod shows the name it was stored under and the site that
    // reported it, whatever its object claimed.
    let mut seen: Vec<(String, String)> = pods
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p["metadata"]["labels"]["manifold.dev/site"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("decoy".to_owned(), "ny8-nyc".to_owned()),
            ("web-abc".to_owned(), "ny8-nyc".to_owned()),
            ("web-abc".to_owned(), "pa2-par".to_owned()),
        ]
    );

    // The name both sites report answers for neither: no get, no logs, no
    // delete, and nothing reaches either agent.
    let got = kubectl(&h, &["get", "pod", "web-abc", "-o", "json"]).await;
    let err = got.expect_err("an ambiguous name must not answer");
    assert!(
        err.contains("Conflict") || err.contains("each report a pod"),
        "{err}"
    );
    assert!(!err.contains("evil-node"), "{err}");
    let err = kubectl(&h, &["logs", "web-abc"])
        .await
        .expect_err("no logs");
    assert!(err.contains("each report a pod"), "{err}");
    let err = kubectl(&h, &["delete", "pod", "web-abc", "--wait=false"])
        .await
        .expect_err("no delete");
    assert!(err.contains("each report a pod"), "{err}");
    nothing_reaches(&mut n, "ambiguous name").await;
    nothing_reaches(&mut p, "ambiguous name").await;
    // The decoy is only itself.
    let decoy: Value = serde_json::from_str(
        &kubectl(&h, &["get", "pod", "decoy", "-o", "json"])
            .await
            .expect("decoy"),
    )
    .unwrap();
    assert_eq!(decoy["metadata"]["labels"]["manifold.dev/site"], "ny8-nyc");
    assert_eq!(decoy["spec"]["nodeName"], "evil-node");

    // Once only pa2-par reports web-abc, the name is pa2-par's pod again:
    // get shows it, delete reaches pa2-par and only pa2-par.
    n.send(full(vec![pod("decoy", "evil-node", "decoy", "ny8-nyc")]))
        .await;
    wait_pods(&h, 2).await;
    let got: Value = serde_json::from_str(
        &kubectl(&h, &["get", "pod", "web-abc", "-o", "json"])
            .await
            .expect("the one web-abc"),
    )
    .unwrap();
    assert_eq!(got["metadata"]["labels"]["manifold.dev/site"], "pa2-par");
    assert_eq!(got["spec"]["nodeName"], "par-node-1");
    kubectl(&h, &["delete", "pod", "web-abc", "--wait=false"])
        .await
        .expect("delete");
    let seen = p.until(|m| matches!(m, Msg::DeletePod(_))).await;
    let Some(Msg::DeletePod(cmd)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(cmd.pod, "web-abc");
    nothing_reaches(&mut n, "delete of pa2-par's pod").await;
}
