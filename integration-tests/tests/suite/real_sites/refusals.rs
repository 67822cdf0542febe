//! What a real site refuses becomes visible in the vK8s, naming the site and the
//! site's error, while every other object keeps flowing to that site:
//! - an immutable field is refused by the vK8s itself, with the 422 a site
//!   would answer (nothing is sent that no site can take);
//! - a Deployment with duplicate env names (server-side apply answers 500 on a
//!   real API server): `rollout status` ends with an error instead of hanging,
//!   the status has a `Synced=False` condition naming both sites, `describe`
//!   shows the sites' Events; fixing it clears them;
//! - a ResourceQuota created on one site refuses a ConfigMap there (403): the
//!   other site takes it, later objects flow to both, and raising the quota lets
//!   the refused one in.

use k8s_openapi::api::core::v1::{ConfigMap, ResourceQuota};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{PHYSICAL_NS, Plane, RealEnv, deployment_yaml};
use crate::reference::kubectl;

const SITES: [&str; 2] = ["pa2-par", "ny8-nyc"];

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n")
}

async fn config_map_on(env: &RealEnv, site: &str, name: &str) -> bool {
    let api: Api<ConfigMap> = Api::namespaced(env.site_client(site).await, PHYSICAL_NS);
    api.get_opt(name).await.ok().flatten().is_some()
}

fn condition<'a>(deploy: &'a Value, type_: &str) -> Option<&'a Value> {
    deploy["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[tokio::test]
async fn refusals_are_visible_and_nothing_else_waits() {
    let env = RealEnv::start(&SITES, Plane::AllInOne).await;
    let kc = &env.kube;
    kc.apply(&deployment_yaml("web", 1, "nginx:1.27", "")).await;
    kc.ok(&["rollout", "status", "deployment/web", "--timeout=90s"])
        .await;

    // An immutable field: the vK8s answers as a site would, at once.
    let moved = deployment_yaml("web", 1, "nginx:1.27", "")
        .replace(
            "matchLabels: {app: web}",
            "matchLabels: {app: web, tier: x}",
        )
        .replace("labels: {app: web}", "labels: {app: web, tier: x}");
    let err = kubectl(&kc.home, &kc.config, &["apply", "-f", "-"], Some(&moved))
        .await
        .expect_err("a selector change is refused");
    assert!(
        err.contains("spec.selector") && err.contains("field is immutable"),
        "{err}"
    );

    // Duplicate env names: the sites' API servers refuse the apply (500).
    let dup = deployment_yaml(
        "dup",
        1,
        "nginx:1.27",
        "        env:\n        - {name: MODE, value: a}\n        - {name: MODE, value: b}\n",
    );
    kc.apply(&dup).await;
    let out = kubectl(
        &kc.home,
        &kc.config,
        &["rollout", "status", "deployment/dup", "--timeout=90s"],
        None,
    )
    .await;
    let err = out.expect_err("rollout status fails instead of waiting");
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    let d: Value =
        serde_json::from_str(&kc.ok(&["get", "deploy", "dup", "-o", "json"]).await).unwrap();
    let synced = condition(&d, "Synced").expect("a Synced condition");
    assert_eq!(synced["status"], "False");
    let message = synced["message"].as_str().unwrap();
    for site in SITES {
        assert!(
            message.contains(&format!("site {site} refused revision")),
            "{message}"
        );
    }
    assert!(
        message.contains("duplicate entries"),
        "the site's own error: {message}"
    );
    env.wait_for("the sites' Events in describe", || async {
        let describe = kc.ok(&["describe", "deploy", "dup"]).await;
        describe.contains("SiteRefused") && describe.contains("site pa2-par refused")
    })
    .await;
    let events = kc.ok(&["get", "events"]).await;
    assert!(events.contains("SiteRefused"), "{events}");
    // Fixed: it rolls out and the condition is gone.
    kc.apply(&deployment_yaml(
        "dup",
        1,
        "nginx:1.27",
        "        env:\n        - {name: MODE, value: a}\n",
    ))
    .await;
    kc.ok(&["rollout", "status", "deployment/dup", "--timeout=90s"])
        .await;
    let d: Value =
        serde_json::from_str(&kc.ok(&["get", "deploy", "dup", "-o", "json"]).await).unwrap();
    assert!(condition(&d, "Synced").is_none(), "{d}");

    // A quota on pa2-par: one more ConfigMap than it allows.
    let quotas: Api<ResourceQuota> = Api::namespaced(env.site_client("pa2-par").await, PHYSICAL_NS);
    let used = {
        let api: Api<ConfigMap> = Api::namespaced(env.site_client("pa2-par").await, PHYSICAL_NS);
        api.list(&Default::default()).await.unwrap().items.len()
    };
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "cap"},
        "spec": {"hard": {"count/configmaps": used.to_string()}},
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    // The quota controller needs a moment to record what is used.
    env.wait_for("the quota's usage recorded", || async {
        quotas
            .get("cap")
            .await
            .ok()
            .and_then(|q| q.status)
            .and_then(|s| s.used)
            .is_some_and(|u| u.contains_key("count/configmaps"))
    })
    .await;
    kc.apply(&config_map("over")).await;
    kc.apply(&deployment_yaml("after", 1, "nginx:1.27", ""))
        .await;
    env.wait_for(
        "ny8-nyc takes the ConfigMap, both run what came after",
        || async {
            config_map_on(&env, "ny8-nyc", "over").await
                && env.physical("pa2-par").await.running().iter().any(|p| {
                    p.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("after-"))
                })
        },
    )
    .await;
    assert!(!config_map_on(&env, "pa2-par", "over").await);
    env.wait_for("the refusal shown on the ConfigMap", || async {
        let describe = kc.ok(&["describe", "configmap", "over"]).await;
        describe.contains("SiteRefused")
            && describe.contains("site pa2-par refused")
            && describe.contains("exceeded quota")
    })
    .await;
    // More room: the agent's retry gets it in.
    quotas
        .patch(
            "cap",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hard": {"count/configmaps": "20"}}})),
        )
        .await
        .unwrap();
    env.wait_for(
        "pa2-par takes the ConfigMap once the quota allows",
        || async { config_map_on(&env, "pa2-par", "over").await },
    )
    .await;
}
