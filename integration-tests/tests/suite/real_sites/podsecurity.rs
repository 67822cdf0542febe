//! The site's own admission is the second wall behind the gateway's Pod
//! Security check: the agent labels every physical namespace with the site's
//! level (`pod-security.kubernetes.io/enforce`), so a pod made on the site
//! without the gateway (by hand, or by a controller from an object that slipped
//! past) is refused by kube-apiserver's PodSecurity admission, and an
//! operator's change of the level reaches the namespaces already there.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::Api;
use kube::api::PostParams;
use manifold_integration_tests::authed;
use manifold_proto::sites::v1 as spb;

use super::{PHYSICAL_NS, Plane, RealEnv};
use crate::reference::deployment;

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

async fn enforced(env: &RealEnv) -> Option<String> {
    let api: Api<Namespace> = Api::all(env.site_client("pa2-par").await);
    let ns = api.get_opt(PHYSICAL_NS).await.ok().flatten()?;
    ns.metadata.labels?.get(ENFORCE).cloned()
}

fn privileged_pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root-on-the-node"},
        "spec": {
            "hostPID": true,
            "containers": [{
                "name": "sh",
                "image": "busybox:1.36",
                "securityContext": {"privileged": true}
            }]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn physical_namespaces_enforce_the_sites_pod_security_level() {
    let env = RealEnv::start(&["pa2-par"], Plane::AllInOne).await;
    let kc = &env.kube;
    kc.apply(&deployment(1, "nginx:1.27")).await;
    kc.wait_pods(&["pa2-par"], 1, |_| true).await;
    assert_eq!(enforced(&env).await.as_deref(), Some("baseline"));

    // Around the gateway, on the site itself: the site's admission refuses it.
    let pods: Api<Pod> = Api::namespaced(env.site_client("pa2-par").await, PHYSICAL_NS);
    let err = pods
        .create(&PostParams::default(), &privileged_pod())
        .await
        .expect_err("a privileged pod in a baseline namespace");
    let kube::Error::Api(status) = err else {
        panic!("{err:?}");
    };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status
            .message
            .contains("violates PodSecurity \"baseline:latest\""),
        "{}",
        status.message
    );

    // The operator makes the site restricted: the namespace follows, and the
    // running pods keep running (as when a namespace is relabelled by hand).
    spb::site_service_client::SiteServiceClient::new(env.ch.clone())
        .update_site(authed(
            &env.app.admin_token,
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
    env.wait_for("the namespace enforces restricted", || async {
        enforced(&env).await.as_deref() == Some("restricted")
    })
    .await;
    assert_eq!(env.physical("pa2-par").await.running().len(), 1);

    // A restarted agent keeps the level (the stream sends it first).
    env.stop_agent("pa2-par").await;
    let kubeconfig = env.cluster("pa2-par").kubeconfig();
    env.start_agent("pa2-par", &kubeconfig).await;
    kc.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-restart\ndata:\n  a: b\n")
        .await;
    let maps: Api<ConfigMap> = Api::namespaced(env.site_client("pa2-par").await, PHYSICAL_NS);
    env.wait_for("the ConfigMap lands after the restart", || async {
        maps.get_opt("after-restart").await.ok().flatten().is_some()
    })
    .await;
    assert_eq!(enforced(&env).await.as_deref(), Some("restricted"));
}
