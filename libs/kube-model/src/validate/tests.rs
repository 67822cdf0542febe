//! End-to-end tests of `validate_object` and the per-kind semantic checks.

use serde_json::{Value, json};

use super::*;
use crate::kinds::by_kind;

fn req(kind: &str, fv: FieldValidation) -> ValidationRequest<'static> {
    let k = by_kind(kind).unwrap();
    ValidationRequest {
        kind: k,
        namespace: if k.namespaced { Some("shop") } else { None },
        name: None,
        operation: Operation::Create,
        field_validation: fv,
    }
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "productpage", "labels": {"app": "productpage"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "productpage"}},
            "template": {
                "metadata": {"labels": {"app": "productpage", "version": "v1"}},
                "spec": {"containers": [{"name": "productpage", "image": "docker.io/istio/examples-bookinfo-productpage-v1:1.20.2",
                    "ports": [{"containerPort": 9080}]}]},
            },
        },
    })
}

fn causes(err: &ValidationError) -> Vec<String> {
    err.causes().iter().map(ToString::to_string).collect()
}

fn invalid(kind: &str, obj: Value) -> Vec<String> {
    let err = validate_object(&req(kind, FieldValidation::Strict), &obj).unwrap_err();
    assert_eq!(err.code(), 422, "{err}");
    causes(&err)
}

#[test]
fn valid_deployment_gets_namespace_defaulted() {
    let v = validate_object(&req("Deployment", FieldValidation::Strict), &deployment()).unwrap();
    assert_eq!(v.object["metadata"]["namespace"], "shop");
    assert!(v.warnings.is_empty());
}

#[test]
fn missing_api_version_and_kind_come_from_the_url() {
    let mut d = deployment();
    d.as_object_mut().unwrap().remove("apiVersion");
    d["kind"] = json!("");
    let v = validate_object(&req("Deployment", FieldValidation::Strict), &d).unwrap();
    assert_eq!(v.object["apiVersion"], "apps/v1");
    assert_eq!(v.object["kind"], "Deployment");
}

#[test]
fn envelope_mismatches_are_bad_requests() {
    let mut d = deployment();
    d["apiVersion"] = json!("apps/v1beta1");
    let e = validate_object(&req("Deployment", FieldValidation::Strict), &d).unwrap_err();
    assert_eq!(e.code(), 400);
    assert_eq!(
        e.to_string(),
        "the API version in the data (apps/v1beta1) does not match the expected API version (apps/v1)"
    );
    let mut d = deployment();
    d["kind"] = json!("StatefulSet");
    assert_eq!(
        validate_object(&req("Deployment", FieldValidation::Strict), &d)
            .unwrap_err()
            .reason(),
        "BadRequest"
    );
    let mut d = deployment();
    d["metadata"]["namespace"] = json!("other");
    assert_eq!(
        validate_object(&req("Deployment", FieldValidation::Strict), &d)
            .unwrap_err()
            .to_string(),
        "the namespace of the provided object does not match the namespace sent on the request"
    );
    let mut r = req("Deployment", FieldValidation::Strict);
    r.name = Some("other");
    r.operation = Operation::Update;
    assert_eq!(
        validate_object(&r, &deployment()).unwrap_err().to_string(),
        "the name of the object (productpage) does not match the name on the URL (other)"
    );
    assert!(validate_object(&req("Deployment", FieldValidation::Strict), &json!([1])).is_err());
}

#[test]
fn url_name_fills_an_empty_body_name() {
    let mut d = deployment();
    d["metadata"].as_object_mut().unwrap().remove("name");
    let mut r = req("Deployment", FieldValidation::Strict);
    r.name = Some("productpage");
    r.operation = Operation::Update;
    assert_eq!(
        validate_object(&r, &d).unwrap().object["metadata"]["name"],
        "productpage"
    );
}

#[test]
fn type_errors_name_the_field() {
    let mut d = deployment();
    d["spec"]["replicas"] = json!("two");
    let e = validate_object(&req("Deployment", FieldValidation::Strict), &d).unwrap_err();
    assert_eq!(e.code(), 400);
    let msg = e.to_string();
    assert!(msg.starts_with("Deployment in version \"v1\" cannot be handled as a Deployment: spec.replicas: invalid type"), "{msg}");
}

#[test]
fn unknown_fields_per_field_validation_mode() {
    let mut d = deployment();
    d["spec"]["foo"] = json!(1);
    d["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = json!("x");
    let e = validate_object(&req("Deployment", FieldValidation::Strict), &d).unwrap_err();
    assert_eq!(e.code(), 400);
    assert_eq!(
        e.to_string(),
        r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo", unknown field "spec.template.spec.containers[0].imagePolicy""#
    );
    let w = validate_object(&req("Deployment", FieldValidation::Warn), &d).unwrap();
    assert_eq!(
        w.warnings,
        [
            r#"unknown field "spec.foo""#,
            r#"unknown field "spec.template.spec.containers[0].imagePolicy""#
        ]
    );
    let i = validate_object(&req("Deployment", FieldValidation::Ignore), &d).unwrap();
    assert!(i.warnings.is_empty());
    // Status, nulls and free-form maps are never "unknown".
    let mut d = deployment();
    d["status"] = json!({"replicas": 3, "made": "up"});
    d["metadata"]["creationTimestamp"] = Value::Null;
    d["metadata"]["annotations"] = json!({"anything.example.com/x": "y"});
    assert!(validate_object(&req("Deployment", FieldValidation::Strict), &d).is_ok());
    assert_eq!(
        FieldValidation::parse("Strict"),
        Some(FieldValidation::Strict)
    );
    assert_eq!(FieldValidation::parse("strict"), None);
    assert_eq!(FieldValidation::default(), FieldValidation::Warn);
}

#[test]
fn invalid_name_is_reported_like_kubernetes() {
    let mut d = deployment();
    d["metadata"]["name"] = json!("Foo");
    let e = validate_object(&req("Deployment", FieldValidation::Strict), &d).unwrap_err();
    assert_eq!(e.reason(), "Invalid");
    let msg = e.to_string();
    assert!(msg.starts_with(r#"Deployment.apps "Foo" is invalid: metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of"#), "{msg}");
    let status = e.to_status();
    assert_eq!(status["code"], 422);
    assert_eq!(status["details"]["kind"], "Deployment");
    assert_eq!(status["details"]["group"], "apps");
    assert_eq!(status["details"]["name"], "Foo");
    assert_eq!(status["details"]["causes"][0]["type"], "FieldValueInvalid");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
}

#[test]
fn deployment_selector_rules() {
    let mut d = deployment();
    d["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
    assert_eq!(
        invalid("Deployment", d),
        [
            r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"productpage", "version":"v1"}: `selector` does not match template `labels`"#,
        ]
    );
    let mut d = deployment();
    d["spec"].as_object_mut().unwrap().remove("selector");
    assert_eq!(invalid("Deployment", d), ["spec.selector: Required value"]);
    let mut d = deployment();
    d["spec"]["selector"] = json!({});
    assert_eq!(
        invalid("Deployment", d),
        ["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]
    );
    let mut d = deployment();
    d["spec"]["replicas"] = json!(-1);
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    assert_eq!(
        invalid("Deployment", d),
        [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.containers[0].image: Required value",
        ]
    );
    let mut d = deployment();
    d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
    assert_eq!(
        invalid("Deployment", d),
        [
            "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
        ]
    );
    let mut d = deployment();
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
    assert_eq!(invalid("Deployment", d).len(), 1);
    let mut d = deployment();
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(
        invalid("Deployment", d),
        [
            r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#,
        ]
    );
}

#[test]
fn several_errors_aggregate_in_brackets() {
    let mut d = deployment();
    d["spec"].as_object_mut().unwrap().remove("selector");
    d["spec"]["replicas"] = json!(-2);
    let e = validate_object(&req("Deployment", FieldValidation::Strict), &d).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"Deployment.apps "productpage" is invalid: [spec.replicas: Invalid value: -2: must be greater than or equal to 0, spec.selector: Required value]"#
    );
}

#[test]
fn other_workloads() {
    let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let sts = json!({"metadata": {"name": "db"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template, "serviceName": "db"}});
    assert!(validate_object(&req("StatefulSet", FieldValidation::Strict), &sts).is_ok());
    let mut bad = sts.clone();
    bad["spec"]["podManagementPolicy"] = json!("Random");
    assert_eq!(
        invalid("StatefulSet", bad),
        [
            r#"spec.podManagementPolicy: Unsupported value: "Random": supported values: "OrderedReady", "Parallel""#,
        ]
    );
    let ds = json!({"metadata": {"name": "agent"}, "spec": {"template": template}});
    assert_eq!(invalid("DaemonSet", ds), ["spec.selector: Required value"]);

    let mut job_tpl = template.clone();
    job_tpl["spec"]["restartPolicy"] = json!("Never");
    let job = json!({"metadata": {"name": "pi"}, "spec": {"template": job_tpl, "backoffLimit": 4}});
    assert!(validate_object(&req("Job", FieldValidation::Strict), &job).is_ok());
    let no_policy = json!({"metadata": {"name": "pi"}, "spec": {"template": template}});
    assert_eq!(
        invalid("Job", no_policy),
        [
            r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#,
        ]
    );

    let cj = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": job_tpl}}}});
    assert!(validate_object(&req("CronJob", FieldValidation::Strict), &cj).is_ok());
    let mut bad = cj.clone();
    bad["spec"]["schedule"] = json!("every minute");
    assert_eq!(
        invalid("CronJob", bad),
        [
            r#"spec.schedule: Invalid value: "every minute": expected exactly 5 fields, found 2: every minute"#
        ]
    );
    let mut bad = cj.clone();
    bad["spec"]["schedule"] = json!("@hourly");
    assert!(validate_object(&req("CronJob", FieldValidation::Strict), &bad).is_ok());
    let mut bad = cj;
    bad["spec"].as_object_mut().unwrap().remove("schedule");
    bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"] = json!("");
    assert_eq!(
        invalid("CronJob", bad),
        [
            "spec.schedule: Required value",
            "spec.jobTemplate.spec.template.spec.containers[0].name: Required value",
        ]
    );
}

#[test]
fn services() {
    let svc = json!({"metadata": {"name": "productpage"}, "spec": {"selector": {"app": "productpage"},
        "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}});
    assert!(validate_object(&req("Service", FieldValidation::Strict), &svc).is_ok());
    let mut bad = svc.clone();
    bad["metadata"]["name"] = json!("9svc");
    assert!(
        invalid("Service", bad)[0]
            .starts_with(r#"metadata.name: Invalid value: "9svc": a DNS-1035 label"#)
    );
    let bad = json!({"metadata": {"name": "s"}, "spec": {"type": "Magic", "ports": [
        {"port": 0}, {"port": 80, "targetPort": "web_port", "nodePort": 30001}, {"name": "x", "port": 80},
    ]}});
    assert_eq!(
        invalid("Service", bad),
        [
            r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
            "spec.ports[0].name: Required value",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].name: Required value",
            r#"spec.ports[1].targetPort: Invalid value: "web_port": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
            "spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'Magic'",
            r#"spec.ports[2]: Duplicate value: {"port":80,"protocol":"TCP"}"#,
        ]
    );
    assert_eq!(
        invalid("Service", json!({"metadata": {"name": "s"}, "spec": {}})),
        ["spec.ports: Required value"]
    );
    assert!(
        validate_object(
            &req("Service", FieldValidation::Strict),
            &json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "None"}})
        )
        .is_ok()
    );
    assert_eq!(
        invalid(
            "Service",
            json!({"metadata": {"name": "s"}, "spec": {"type": "ExternalName"}})
        ),
        ["spec.externalName: Required value"]
    );
}

#[test]
fn config_maps_and_secrets() {
    let cm = json!({"metadata": {"name": "cfg"}, "data": {"app.properties": "a=b", "bad key": "x"}, "binaryData": {"app.properties": "AA=="}});
    assert_eq!(invalid("ConfigMap", cm).len(), 2);
    let big = json!({"metadata": {"name": "cfg"}, "data": {"k": "x".repeat(MAX_DATA_SIZE)}});
    assert_eq!(
        invalid("ConfigMap", big),
        ["data: Too long: may not be more than 1048576 bytes"]
    );
    let tls = json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "AA=="}});
    assert_eq!(invalid("Secret", tls), ["data[tls.key]: Required value"]);
    let ok = json!({"metadata": {"name": "t"}, "type": "Opaque", "stringData": {"password": "x"}});
    assert!(validate_object(&req("Secret", FieldValidation::Strict), &ok).is_ok());
}

#[test]
fn pvcs_and_cluster_scoped_kinds() {
    let pvc = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    assert!(validate_object(&req("PersistentVolumeClaim", FieldValidation::Strict), &pvc).is_ok());
    let bad = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "0Gi"}}}});
    assert_eq!(
        invalid("PersistentVolumeClaim", bad),
        [
            r#"spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod""#,
            r#"spec.resources[storage]: Invalid value: "0Gi": must be greater than zero"#,
        ]
    );
    assert_eq!(
        invalid(
            "PersistentVolumeClaim",
            json!({"metadata": {"name": "d"}, "spec": {}})
        ),
        [
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
        ]
    );
    // A namespace in the body of a cluster-scoped object is dropped.
    let ns = json!({"metadata": {"name": "shop", "namespace": "x"}});
    let v = validate_object(&req("Namespace", FieldValidation::Strict), &ns).unwrap();
    assert!(v.object["metadata"].get("namespace").is_none());
    assert!(
        invalid("Namespace", json!({"metadata": {"name": "a.b"}}))[0].contains("RFC 1123 label")
    );
}
