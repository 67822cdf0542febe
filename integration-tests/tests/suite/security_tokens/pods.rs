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
    // Every pod shows the name it was stored under, joined to the site that
    // reported it, whatever its object claimed: the two web-abc are two pods.
    let mut seen: Vec<(String, String, String)> = pods
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p["metadata"]["annotations"]["manifold.dev/site-pod-name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                p["metadata"]["labels"]["manifold.dev/site"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    seen.sort();
    let row = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        seen,
        [
            row("decoy.ny8-nyc", "decoy", "ny8-nyc"),
            row("web-abc.ny8-nyc", "web-abc", "ny8-nyc"),
            row("web-abc.pa2-par", "web-abc", "pa2-par"),
        ]
    );

    // The site's bare name answers for no pod: no get, no logs, no delete,
    // and nothing reaches either agent.
    let err = kubectl(&h, &["get", "pod", "web-abc", "-o", "json"])
        .await
        .expect_err("a bare site pod name is not a vK8s pod name");
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    let err = kubectl(&h, &["logs", "web-abc"])
        .await
        .expect_err("no logs");
    assert!(err.contains("not found"), "{err}");
    let err = kubectl(&h, &["delete", "pod", "web-abc", "--wait=false"])
        .await
        .expect_err("no delete");
    assert!(err.contains("not found"), "{err}");
    nothing_reaches(&mut n, "bare name").await;
    nothing_reaches(&mut p, "bare name").await;
    // Each name is its own site's pod, whatever the other site claims.
    let get = |name: &'static str| {
        let h = &h;
        async move {
            let out = kubectl(h, &["get", "pod", name, "-o", "json"])
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            serde_json::from_str::<Value>(&out).unwrap()
        }
    };
    let par_pod = get("web-abc.pa2-par").await;
    assert_eq!(
        par_pod["metadata"]["labels"]["manifold.dev/site"],
        "pa2-par"
    );
    assert_eq!(par_pod["spec"]["nodeName"], "par-node-1");
    let nyc_pod = get("web-abc.ny8-nyc").await;
    assert_eq!(
        nyc_pod["metadata"]["labels"]["manifold.dev/site"],
        "ny8-nyc"
    );
    assert_eq!(nyc_pod["spec"]["nodeName"], "evil-node");
    let decoy = get("decoy.ny8-nyc").await;
    assert_eq!(decoy["metadata"]["labels"]["manifold.dev/site"], "ny8-nyc");
    assert_eq!(decoy["spec"]["nodeName"], "evil-node");
    // A name joining a pod to a site that does not report it is no pod.
    let err = kubectl(&h, &["get", "pod", "decoy.pa2-par"])
        .await
        .expect_err("pa2-par runs no decoy");
    assert!(err.contains("not found"), "{err}");

    // Delete of pa2-par's web-abc reaches pa2-par and only pa2-par, with
    // the site's own pod name.
    kubectl(&h, &["delete", "pod", "web-abc.pa2-par", "--wait=false"])
        .await
        .expect("delete");
    let seen = p.until(|m| matches!(m, Msg::DeletePod(_))).await;
    let Some(Msg::DeletePod(cmd)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(cmd.pod, "web-abc");
    nothing_reaches(&mut n, "delete of pa2-par's pod").await;
}
