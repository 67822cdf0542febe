//! The reference scenario through the public API: a tenant's manifest is validated,
//! server-side applied, scaled, patched by kubectl, summed over three sites and printed.

use manifold_kube_model::kinds::{self, Verb};
use manifold_kube_model::patch::{self, PatchType};
use manifold_kube_model::selectors::{FieldSelector, LabelSelector};
use manifold_kube_model::table::{self, IncludeObject, TableOptions};
use manifold_kube_model::validate::{
    FieldValidation, Operation, ValidationRequest, validate_object,
};
use manifold_kube_model::{ApplyError, sum_workload_status};
use serde_json::{Value, json};

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: productpage
  labels:
    app: productpage
spec:
  replicas: 2
  selector:
    matchLabels:
      app: productpage
  template:
    metadata:
      labels:
        app: productpage
        version: v1
    spec:
      containers:
      - name: productpage
        image: docker.io/istio/examples-bookinfo-productpage-v1:1.20.2
        ports:
        - containerPort: 9080
        resources:
          requests:
            cpu: 100m
            memory: 64Mi
---
apiVersion: v1
kind: Service
metadata:
  name: productpage
spec:
  selector:
    app: productpage
  ports:
  - name: http
    port: 9080
"#;

const T0: &str = "2025-03-10T12:00:00Z";

fn docs() -> Vec<Value> {
    MANIFEST
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str::<Value>(d).expect("yaml"))
        .collect()
}

fn validate(obj: &Value) -> Value {
    let kind = kinds::by_api_version_kind(
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
    )
    .unwrap();
    let req = ValidationRequest {
        kind,
        namespace: Some("shop"),
        name: None,
        operation: Operation::Create,
        field_validation: FieldValidation::Strict,
    };
    validate_object(&req, obj).expect("valid").object
}

#[test]
fn manifest_validates_applies_and_prints() {
    let docs = docs();
    let deploy_kind = kinds::by_resource("apps", "v1", "deployments").unwrap();
    assert!(deploy_kind.supports(Verb::Patch) && deploy_kind.tenant_writable);

    // kubectl apply --server-side
    let deploy = validate(&docs[0]);
    let mut live = patch::apply(None, &deploy, "kubectl", false, T0).unwrap();
    live["metadata"]["creationTimestamp"] = json!("2025-03-10T11:55:00Z");
    live["metadata"]["resourceVersion"] = json!("10");
    let svc = validate(&docs[1]);
    assert_eq!(svc["metadata"]["namespace"], "shop");

    // Each of three sites reports 2 ready replicas.
    let site = json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
        "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]});
    live["status"] = sum_workload_status("Deployment", vec![site.clone(), site.clone(), site]);
    assert_eq!(live["status"]["readyReplicas"], 6);

    // kubectl get deploy productpage → READY 6/6
    let three_sites = |_: &Value| 3;
    let opts = TableOptions::new(
        IncludeObject::Object,
        "2025-03-10T12:00:00Z".parse().unwrap(),
    )
    .with_replica_multiplier(&three_sites);
    let t = table::list_table("Deployment", std::slice::from_ref(&live), "10", None, &opts);
    assert_eq!(
        t["rows"][0]["cells"].as_array().unwrap()[..5],
        [
            json!("productpage"),
            json!("6/6"),
            json!(6),
            json!(6),
            json!("5m")
        ]
    );

    // kubectl scale --replicas=3 (merge patch on /scale, recorded as an update of the scale subresource).
    let scaled = patch::apply_patch(
        PatchType::Merge,
        "Deployment",
        &live,
        &json!({"spec": {"replicas": 3}}),
    )
    .unwrap();
    let scaled =
        patch::record_update_subresource(Some(&live), &scaled, "kubectl", Some("scale"), T0);
    // Re-applying the manifest now conflicts on spec.replicas.
    let err = patch::apply(Some(&scaled), &deploy, "kubectl", false, T0).unwrap_err();
    assert!(matches!(err, ApplyError::Conflicts(_)));
    assert!(err.to_string().ends_with(": .spec.replicas"), "{err}");

    // kubectl set image style strategic merge patch.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "productpage", "image": "productpage:v2"}]}}}});
    let patched =
        patch::apply_patch(PatchType::StrategicMerge, "Deployment", &scaled, &smp).unwrap();
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        9080
    );
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"][0]["image"],
        "productpage:v2"
    );

    // The service selects the deployment's pods.
    let pod = json!({"metadata": {"name": "productpage-abc", "namespace": "shop",
        "labels": {"app": "productpage", "version": "v1", "manifold.dev/site": "ny8-nyc"}},
        "spec": {"nodeName": "ny8-node-2", "containers": [{"name": "productpage"}]},
        "status": {"phase": "Running", "podIP": "10.8.0.4",
            "containerStatuses": [{"name": "productpage", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
    let from_service = LabelSelector::parse(
        table::row_cells("Service", &svc, opts.now)[6]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(from_service.matches_object(&pod));
    let from_deploy = LabelSelector::from_label_selector(&live["spec"]["selector"]).unwrap();
    assert!(from_deploy.matches_object(&pod));
    assert!(
        FieldSelector::parse("spec.nodeName=ny8-node-2,status.phase=Running")
            .unwrap()
            .matches(&pod)
    );
    let cells = table::row_cells("Pod", &pod, opts.now);
    assert_eq!(cells[6], "ny8-node-2");
    assert_eq!(cells[9], "ny8-nyc");
}

#[test]
fn strict_validation_rejects_a_typo_in_yaml() {
    let mut d = docs().remove(0);
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let req = ValidationRequest {
        kind: kinds::by_kind("Deployment").unwrap(),
        namespace: Some("shop"),
        name: None,
        operation: Operation::Create,
        field_validation: FieldValidation::Strict,
    };
    let err = validate_object(&req, &d).unwrap_err();
    assert_eq!(err.code(), 400);
    assert!(
        err.to_string()
            .contains(r#"unknown field "spec.template.spec.containers[0].imagePullPolicyy""#)
    );
}

#[test]
fn discovery_lists_every_kind_once() {
    let mut seen = Vec::new();
    for (g, v) in kinds::group_versions() {
        let list = kinds::api_resource_list(g, v).unwrap();
        for r in list["resources"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            if !name.contains('/') {
                seen.push(kinds::by_resource(g, v, name).unwrap().kind);
            }
        }
    }
    assert_eq!(seen.len(), kinds::all().len());
}
