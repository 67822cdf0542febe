//! A site that leaves the virtual site loses the vK8s's objects and its
//! namespace; coming back brings them back; a namespace someone deletes by hand on
//! a site is made again, with everything in it.

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use manifold_integration_tests::authed;
use manifold_proto::sites::v1 as spb;

use super::{PHYSICAL_NS, Plane, RealEnv};
use crate::reference::deployment;

const SITES: [&str; 2] = ["pa2-par", "ny8-nyc"];

async fn relabel(env: &RealEnv, site: &str, env_label: &str) {
    spb::site_service_client::SiteServiceClient::new(env.ch.clone())
        .update_site(authed(
            &env.app.admin_token,
            spb::UpdateSiteRequest {
                site: Some(spb::Site {
                    name: format!("sites/{site}"),
                    labels: [("env".to_owned(), env_label.to_owned())].into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels".into()],
                }),
            },
        ))
        .await
        .expect("relabel site");
}

async fn namespace(env: &RealEnv, site: &str) -> Option<Namespace> {
    let api: Api<Namespace> = Api::all(env.site_client(site).await);
    api.get_opt(PHYSICAL_NS).await.ok().flatten()
}

#[tokio::test]
async fn leaving_sites_are_cleaned_and_deleted_namespaces_come_back() {
    let env = RealEnv::start(&SITES, Plane::AllInOne).await;
    let kc = &env.kube;
    kc.apply(&deployment(2, "nginx:1.27")).await;
    kc.wait_pods(&SITES, 2, |_| true).await;
    let ns = namespace(&env, "ny8-nyc")
        .await
        .expect("namespace on ny8-nyc");
    let labels = ns.metadata.labels.unwrap_or_default();
    assert_eq!(labels["manifold.dev/managed-by"], "manifold");

    // ny8-nyc leaves the virtual site: objects and namespace go there only.
    relabel(&env, "ny8-nyc", "lab").await;
    env.wait_for("ny8-nyc emptied, its namespace gone", || async {
        namespace(&env, "ny8-nyc").await.is_none()
    })
    .await;
    kc.wait_pods(&SITES[..1], 2, |_| true).await;
    assert_eq!(env.physical("pa2-par").await.running().len(), 2);

    // It comes back: everything is applied there again.
    relabel(&env, "ny8-nyc", "edge").await;
    kc.wait_pods(&SITES, 2, |_| true).await;
    env.wait_for("ny8-nyc running the Deployment again", || async {
        env.physical("ny8-nyc").await.running().len() == 2
    })
    .await;

    // Someone deletes the namespace by hand on pa2-par: the agent notices and the
    // namespace, the Deployment and its pods come back without any change in the
    // vK8s.
    let api: Api<Namespace> = Api::all(env.site_client("pa2-par").await);
    let old_uid = namespace(&env, "pa2-par").await.unwrap().metadata.uid;
    api.delete(PHYSICAL_NS, &Default::default())
        .await
        .expect("delete the namespace by hand");
    env.wait_for("the namespace made again on pa2-par", || async {
        let ns = namespace(&env, "pa2-par").await;
        ns.is_some_and(|n| n.metadata.uid != old_uid && n.metadata.deletion_timestamp.is_none())
            && env.physical("pa2-par").await.running().len() == 2
    })
    .await;
    kc.wait_pods(&SITES, 2, |_| true).await;
    kc.wait_ready("4/4").await;
}
