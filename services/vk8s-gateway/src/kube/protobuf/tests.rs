//! Bodies encoded with prost types generated from the Kubernetes protos
//! (k8s-pb), decoded here: the field tables must agree with them.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

use super::decode;

fn frame<M: Message>(api_version: &str, kind: &str, object: &M) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// Metadata the way Go writes it: every non-pointer field present.
fn meta(name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time {
            seconds: Some(0),
            nanos: Some(0),
        }),
        labels: [("app".to_owned(), name.to_owned())].into(),
        ..Default::default()
    }
}

#[test]
fn config_maps_and_secrets() {
    let cm = core::ConfigMap {
        metadata: Some(meta("settings")),
        data: [("color".to_owned(), "blue".to_owned())].into(),
        ..Default::default()
    };
    assert_eq!(
        decode(&frame("v1", "ConfigMap", &cm)).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "labels": {"app": "settings"}}, "data": {"color": "blue"}})
    );
    let secret = core::Secret {
        metadata: Some(meta("s")),
        data: [("a".to_owned(), b"b".to_vec())].into(),
        r#type: Some("Opaque".into()),
        immutable: Some(false),
        ..Default::default()
    };
    let v = decode(&frame("v1", "Secret", &secret)).unwrap();
    assert_eq!(v["data"]["a"], "Yg==");
    assert_eq!(v["type"], "Opaque");
    assert_eq!(v["immutable"], false, "pointer fields keep zero values");
}

#[test]
fn deployments_keep_pointer_zeros_and_drop_empty_fields() {
    let d = apps::Deployment {
        metadata: Some(meta("web")),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_owned(), "web".to_owned())].into(),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta("")),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("nginx".into()),
                        image: Some("nginx".into()),
                        ports: vec![core::ContainerPort {
                            container_port: Some(80),
                            ..Default::default()
                        }],
                        resources: Some(core::ResourceRequirements {
                            limits: [(
                                "cpu".to_owned(),
                                Quantity {
                                    string: Some("500m".into()),
                                },
                            )]
                            .into(),
                            ..Default::default()
                        }),
                        termination_message_path: Some(String::new()),
                        ..Default::default()
                    }],
                    restart_policy: Some(String::new()),
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy::default()),
            min_ready_seconds: Some(0),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    let v = decode(&frame("apps/v1", "Deployment", &d)).unwrap();
    assert_eq!(v["spec"]["replicas"], 0);
    assert!(v["spec"].get("strategy").is_none() && v["spec"].get("minReadySeconds").is_none());
    assert!(v.get("status").is_none());
    let c = &v["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c,
        &json!({"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}],
        "resources": {"limits": {"cpu": "500m"}}})
    );
    assert_eq!(
        v["spec"]["template"]["metadata"],
        json!({"labels": {"app": ""}})
    );
}

#[test]
fn services_and_access_reviews() {
    let svc = core::Service {
        metadata: Some(meta("web")),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: Some("80-8080".into()),
                protocol: Some("TCP".into()),
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(0),
                    int_val: Some(8080),
                    str_val: Some(String::new()),
                }),
                ..Default::default()
            }],
            selector: [("app".to_owned(), "web".to_owned())].into(),
            r#type: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus::default()),
    };
    let v = decode(&frame("v1", "Service", &svc)).unwrap();
    assert_eq!(
        v["spec"]["ports"][0],
        json!({"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080})
    );
    let review = authz::SelfSubjectAccessReview {
        metadata: Some(meta::ObjectMeta::default()),
        spec: Some(authz::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authz::ResourceAttributes {
                namespace: Some("shop".into()),
                verb: Some("create".into()),
                group: Some("apps".into()),
                resource: Some("deployments".into()),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: None,
    };
    let v = decode(&frame(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &review,
    ))
    .unwrap();
    assert_eq!(v["spec"]["resourceAttributes"]["verb"], "create");
}

#[test]
fn unknown_fields_with_values_are_refused() {
    let cm = core::Pod {
        metadata: Some(meta("p")),
        spec: Some(core::PodSpec {
            hostname: Some("h".into()),
            ..Default::default()
        }),
        status: None,
    };
    assert!(decode(&frame("v1", "Pod", &cm)).is_err());
    let odd = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: Some("m".into()),
                ..Default::default()
            }],
            ..meta("x")
        }),
        ..Default::default()
    };
    let err = decode(&frame("v1", "ConfigMap", &odd)).unwrap_err();
    assert!(err.to_string().contains("field 17 of metadata"), "{err}");
    assert!(decode(b"not protobuf").is_err());
}

#[test]
fn namespaces_keep_their_metadata() {
    let ns = core::Namespace {
        metadata: Some(meta("shop")),
        spec: Some(core::NamespaceSpec {
            finalizers: vec!["kubernetes".into()],
        }),
        status: Some(core::NamespaceStatus {
            phase: Some(String::new()),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&frame("v1", "Namespace", &ns)).unwrap(),
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"app": "shop"}}})
    );
}
