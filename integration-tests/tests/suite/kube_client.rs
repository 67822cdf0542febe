//! The `kube` crate as a client of a virtual cluster, as the site agent and
//! many users use it: typed `Api<Deployment>`, all four patch types, the
//! scale and status subresources, optimistic concurrency, pagination, and
//! the runtime watcher.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;

use crate::vk8s_grpc::scenario;

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    manifold_pki::install_default_crypto_provider();
    let yaml = std::fs::read_to_string(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&yaml).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
            },
        },
    }))
    .unwrap()
}

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn typed_api_with_every_patch_type_and_subresource() {
    let s = scenario().await;
    let client = client(&s.kubeconfig).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "shop");

    let created = deploys
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.generation, Some(1));
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(
        api_code(
            deploys
                .create(&PostParams::default(), &deployment("web", 2))
                .await
                .unwrap_err()
        ),
        409
    );

    // A stale resourceVersion conflicts; a fresh one replaces.
    let mut stale = created.clone();
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
        )
        .await
        .unwrap();
    stale.spec.replicas = Some(9);
    assert_eq!(
        api_code(
            deploys
                .replace("web", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );
    let mut fresh = deploys.get("web").await.unwrap();
    fresh.spec.replicas = Some(3);
    let replaced = deploys
        .replace("web", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));

    // JSON patch, merge patch, strategic merge patch, server-side apply.
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]))
            .unwrap();
    let p = deploys
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(p.spec.replicas, Some(4));
    let p = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.replicas, Some(5));
    let sidecar = json!({"spec": {"template": {"spec": {"containers": [{"name": "log", "image": "busybox"}]}}}});
    let p = deploys
        .patch("web", &PatchParams::default(), &Patch::Strategic(sidecar))
        .await
        .unwrap();
    let names: Vec<String> = p
        .spec
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(
        names.contains(&"web".to_owned()) && names.contains(&"log".to_owned()),
        "{names:?}"
    );

    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "api" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "api" } },
            "template": { "metadata": { "labels": { "app": "api" } },
                "spec": { "containers": [{ "name": "api", "image": "nginx" }] } },
        },
    });
    let ssa = PatchParams::apply("manifold-test");
    let a = deploys
        .patch("api", &ssa, &Patch::Apply(&applied))
        .await
        .unwrap();
    let managers: Vec<String> = a
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["manifold-test"]);
    let mut other = applied.clone();
    other["spec"]["replicas"] = json!(3);
    let conflict = deploys
        .patch(
            "api",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&other),
        )
        .await;
    assert_eq!(api_code(conflict.unwrap_err()), 409);
    let forced = deploys
        .patch(
            "api",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.replicas, Some(3));

    // Scale and status subresources.
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(5));
    let scaled = deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(7));
    let status = json!({"status": {"replicas": 7, "readyReplicas": 7}});
    let with_status = deploys
        .patch_status("web", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    assert_eq!(with_status.status.unwrap().ready_replicas, Some(7));
    assert_eq!(deploys.get("web").await.unwrap().spec.replicas, Some(7));

    // Dry run stores nothing; 404s come back typed.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    deploys.create(&dry, &deployment("dry", 1)).await.unwrap();
    assert_eq!(api_code(deploys.get("dry").await.unwrap_err()), 404);
    deploys
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_code(
            deploys
                .delete("api", &DeleteParams::default())
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test]
async fn requests_without_a_token_get_401_status() {
    let s = scenario().await;
    manifold_pki::install_default_crypto_provider();
    let yaml = std::fs::read_to_string(&s.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&yaml).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.auth_info = kube::config::AuthInfo::default();
    let anonymous = kube::Client::try_from(config).unwrap();
    let deploys: Api<Deployment> = Api::namespaced(anonymous, "shop");
    match deploys.list(&ListParams::default()).await.unwrap_err() {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));
        }
        other => panic!("expected a 401 Status, got {other:?}"),
    }
}

#[tokio::test]
async fn lists_page_and_select_and_finalizers_hold_deletion() {
    let s = scenario().await;
    let client = client(&s.kubeconfig).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "shop");
    for i in 0..7 {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": format!("cm-{i}"), "labels": { "parity": if i % 2 == 0 { "even" } else { "odd" } } },
            "data": { "i": i.to_string() },
        }))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    // Pages at one revision: a write between pages does not show up.
    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().expect("continue token");
    cms.delete("cm-6", &DeleteParams::default()).await.unwrap();
    let mut names: Vec<String> = first
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    let mut next = Some(token);
    while let Some(t) = next {
        let page = cms
            .list(&ListParams::default().limit(3).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version,
            first.metadata.resource_version
        );
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        next = page.metadata.continue_.filter(|c| !c.is_empty());
    }
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    let even = cms
        .list(&ListParams::default().labels("parity=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 3);
    let one = cms
        .list(&ListParams::default().fields("metadata.name=cm-1"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);

    // Finalizers: delete marks, removing the finalizer completes it.
    cms.patch(
        "cm-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    cms.delete("cm-0", &DeleteParams::default()).await.unwrap();
    let held = cms.get("cm-0").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "cm-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_code(cms.get("cm-0").await.unwrap_err()), 404);

    // deletecollection with a selector.
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("parity=odd"),
    )
    .await
    .unwrap();
    let left = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        left.items.len(),
        2,
        "{:?}",
        left.items
            .iter()
            .map(|c| &c.metadata.name)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn runtime_watcher_sees_applies_and_deletes() {
    let s = scenario().await;
    let client = client(&s.kubeconfig).await;
    let deploys: Api<Deployment> = Api::namespaced(client, "shop");
    deploys
        .create(&PostParams::default(), &deployment("before", 1))
        .await
        .unwrap();

    let mut events = watcher(deploys.clone(), watcher::Config::default()).boxed();
    let mut seen_init = false;
    let writer = {
        let deploys = deploys.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            deploys
                .create(&PostParams::default(), &deployment("after", 1))
                .await
                .unwrap();
            deploys
                .patch(
                    "after",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": 2}})),
                )
                .await
                .unwrap();
            deploys
                .delete("after", &DeleteParams::default())
                .await
                .unwrap();
        }
    };
    let reader = async {
        let mut applied = Vec::new();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(15), events.try_next())
                .await
                .expect("watch event in time")
                .expect("watch ok")
                .expect("stream open");
            match event {
                watcher::Event::InitApply(d) => {
                    assert_eq!(d.metadata.name.as_deref(), Some("before"));
                    seen_init = true;
                }
                watcher::Event::Apply(d) => {
                    applied.push(d.spec.replicas.unwrap());
                }
                watcher::Event::Delete(d) => {
                    assert_eq!(d.metadata.name.as_deref(), Some("after"));
                    return applied;
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    };
    let ((), applied) = tokio::join!(writer, reader);
    assert!(seen_init);
    assert_eq!(applied, [1, 2]);
}
