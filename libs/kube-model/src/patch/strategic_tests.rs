//! Strategic merge patch tests using the patches kubectl actually sends.

use serde_json::{Value, json};

use super::{PatchError, strategic_merge_patch as smp};

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop",
            "labels": {"app": "web", "tier": "fe"},
            "finalizers": ["example.com/a"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o1", "uid": "u1"}],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx", "image": "nginx:1.25",
                            "args": ["-a", "-b"],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        },
                        {"name": "sidecar", "image": "envoy:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "k1", "operator": "Exists"}],
                },
            },
        },
    })
}

fn containers(v: &Value) -> &Vec<Value> {
    v["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i[key].to_string().trim_matches('"').to_string())
        .collect()
}

#[test]
fn kubectl_apply_image_change() {
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}\n"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.26", "name": "nginx"}],
        }}},
    });
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    let c = containers(&out);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["image"], "nginx:1.26");
    // Untouched fields of the merged container survive.
    assert_eq!(
        c[0]["env"],
        deployment()["spec"]["template"]["spec"]["containers"][0]["env"]
    );
    assert_eq!(c[1]["name"], "sidecar");
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "tier": "fe"})
    );
    assert!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
}

#[test]
fn kubectl_apply_removes_container() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}],
        "containers": [{"$patch": "delete", "name": "sidecar"}],
    }}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"], "name"),
        ["nginx"]
    );
}

#[test]
fn env_reorder_with_set_element_order() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
        "containers": [{"$setElementOrder/env": [{"name": "B"}, {"name": "A"}], "name": "nginx"}],
    }}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(
        containers(&out)[0]["env"],
        json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}])
    );
}

#[test]
fn env_added_in_the_middle() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
            "env": [{"name": "C", "value": "3"}],
            "name": "nginx",
        }],
    }}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(names(&containers(&out)[0]["env"], "name"), ["A", "C", "B"]);
}

#[test]
fn new_items_without_order_directive_go_first_like_kubernetes() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"], "name"),
        ["debug", "nginx", "sidecar"]
    );
    // Patched existing items keep their place.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy:2"}]}}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"], "name"),
        ["nginx", "sidecar"]
    );
    assert_eq!(containers(&out)[1]["image"], "envoy:2");
}

#[test]
fn keyed_lists_inside_containers() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "nginx",
        "ports": [{"containerPort": 443, "protocol": "TCP"}],
        "volumeMounts": [{"mountPath": "/data", "readOnly": true}],
        "env": [{"name": "A", "value": "changed"}],
    }]}}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    let c = &containers(&out)[0];
    assert_eq!(names(&c["ports"], "containerPort"), ["443", "80"]);
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "data", "mountPath": "/data", "readOnly": true}])
    );
    assert_eq!(
        c["env"],
        json!([{"name": "A", "value": "changed"}, {"name": "B", "value": "2"}])
    );
}

#[test]
fn atomic_lists_are_replaced() {
    let patch = json!({"spec": {"template": {"spec": {
        "tolerations": [{"key": "k2", "operator": "Exists"}],
        "containers": [{"name": "nginx", "args": ["-c"]}],
    }}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "k2", "operator": "Exists"}])
    );
    assert_eq!(containers(&out)[0]["args"], json!(["-c"]));
    // Lists the schema does not know are atomic too.
    let cm = json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "x": {"items": [1, 2]}});
    let out = smp("ConfigMap", &cm, &json!({"x": {"items": [3]}})).unwrap();
    assert_eq!(out["x"]["items"], json!([3]));
}

#[test]
fn maps_merge_and_null_deletes() {
    let patch = json!({"metadata": {"labels": {"tier": null, "env": "prod"}}, "spec": {"replicas": 5, "paused": null}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "env": "prod"})
    );
    assert_eq!(out["spec"]["replicas"], 5);
    assert!(out["spec"].get("paused").is_none());
    let cm = json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
    let out = smp("ConfigMap", &cm, &json!({"data": {"a": null, "c": "3"}})).unwrap();
    assert_eq!(out["data"], json!({"b": "2", "c": "3"}));
}

#[test]
fn patch_replace_and_delete_on_maps() {
    let out = smp(
        "Deployment",
        &deployment(),
        &json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
    let out = smp(
        "Deployment",
        &deployment(),
        &json!({"spec": {"strategy": {"$patch": "delete"}}}),
    )
    .unwrap();
    assert_eq!(out["spec"]["strategy"], json!({}));
    let out = smp(
        "Deployment",
        &deployment(),
        &json!({"metadata": {"labels": {"$patch": "merge", "x": "y"}}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"]["x"], "y");
    assert_eq!(out["metadata"]["labels"]["app"], "web");
    let bad = smp(
        "Deployment",
        &deployment(),
        &json!({"metadata": {"labels": {"$patch": "explode"}}}),
    );
    assert!(matches!(bad, Err(PatchError::Malformed(_))));
}

#[test]
fn patch_replace_on_lists() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "x", "ports": null},
        {"$patch": "replace"},
    ]}}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "x"}])
    );
}

#[test]
fn retain_keys_on_strategy() {
    // What kubectl apply sends when switching RollingUpdate → Recreate.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    assert_eq!(
        smp("Deployment", &deployment(), &patch).unwrap()["spec"]["strategy"],
        json!({"type": "Recreate"})
    );
    let bad =
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
    assert!(matches!(
        smp("Deployment", &deployment(), &bad),
        Err(PatchError::Unprocessable(_))
    ));
    // Volumes carry retainKeys when their source type changes.
    let patch = json!({"spec": {"template": {"spec": {"volumes": [
        {"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}, "name": "data"},
    ]}}}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}])
    );
}

#[test]
fn finalizers_as_a_set() {
    let out = smp(
        "Deployment",
        &deployment(),
        &json!({"metadata": {"finalizers": ["example.com/b", "example.com/a"]}}),
    )
    .unwrap();
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["example.com/b", "example.com/a"])
    );
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!([]));
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["example.com/c", "example.com/a"],
        "finalizers": ["example.com/c"],
    }});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["example.com/c", "example.com/a"])
    );
}

#[test]
fn owner_references_by_uid() {
    let patch = json!({"metadata": {"ownerReferences": [
        {"uid": "u1", "controller": true},
        {"apiVersion": "v1", "kind": "Y", "name": "o2", "uid": "u2"},
    ]}});
    let out = smp("Deployment", &deployment(), &patch).unwrap();
    let refs = out["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0]["name"], "o1");
    assert_eq!(refs[0]["controller"], true);
}

#[test]
fn service_ports_by_port() {
    let svc = json!({"kind": "Service", "metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443, "targetPort": 8443}],
    }});
    let patch = json!({"spec": {
        "$setElementOrder/ports": [{"port": 443}, {"port": 80}],
        "ports": [{"port": 443, "targetPort": 9443}],
    }});
    let out = smp("Service", &svc, &patch).unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([
            {"name": "https", "port": 443, "targetPort": 9443},
            {"name": "http", "port": 80, "targetPort": 8080},
        ])
    );
    let out = smp(
        "Service",
        &svc,
        &json!({"spec": {"ports": [{"$patch": "delete", "port": 80}]}}),
    )
    .unwrap();
    assert_eq!(names(&out["spec"]["ports"], "name"), ["https"]);
}

#[test]
fn other_pod_template_locations() {
    let cj = json!({"kind": "CronJob", "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
        "restartPolicy": "Never",
    }}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "z"}]}}}}}});
    let out = smp("CronJob", &cj, &patch).unwrap();
    let c = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        c,
        &json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}])
    );

    let pod = json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]}]}});
    let patch =
        json!({"spec": {"containers": [{"name": "a", "env": [{"name": "F", "value": "2"}]}]}});
    let out = smp("Pod", &pod, &patch).unwrap();
    assert_eq!(
        names(&out["spec"]["containers"][0]["env"], "name"),
        ["F", "E"]
    );

    let job = json!({"kind": "Job", "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "y"}]}}}});
    assert_eq!(
        smp("Job", &job, &patch).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "y"
    );
}

#[test]
fn status_conditions_merge_by_type() {
    let d = json!({"kind": "Deployment", "status": {"conditions": [
        {"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"},
    ]}});
    let out = smp(
        "Deployment",
        &d,
        &json!({"status": {"conditions": [{"type": "Available", "status": "False"}]}}),
    )
    .unwrap();
    assert_eq!(
        out["status"]["conditions"],
        json!([
            {"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"},
        ])
    );
}

#[test]
fn errors() {
    let no_key = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    let e = smp("Deployment", &deployment(), &no_key).unwrap_err();
    assert!(
        matches!(&e, PatchError::Unprocessable(m) if m.contains("does not contain declared merge key: name")),
        "{e}"
    );
    let del_no_key =
        json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}});
    assert!(smp("Deployment", &deployment(), &del_no_key).is_err());
    assert!(matches!(
        smp("Deployment", &deployment(), &json!([1])),
        Err(PatchError::Malformed(_))
    ));
    assert!(matches!(
        smp("Deployment", &deployment(), &json!({"$bogus": 1})),
        Err(PatchError::Malformed(_))
    ));
    assert!(
        smp(
            "Deployment",
            &deployment(),
            &json!({"spec": {"template": {"spec": {"containers": ["x"]}}}})
        )
        .is_err()
    );
    assert!(smp("Deployment", &json!("str"), &json!({})).is_err());
}

#[test]
fn new_fields_have_directives_resolved() {
    let d = json!({"kind": "Deployment", "spec": {}});
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": null}]}],
        "volumes": [{"name": "v", "emptyDir": {"medium": null}}],
    }}}});
    let out = smp("Deployment", &d, &patch).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"],
        json!({
            "containers": [{"name": "a", "image": "x", "env": [{"name": "E"}]}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        })
    );
    // Empty patch leaves the object as is.
    assert_eq!(
        smp("Deployment", &deployment(), &json!({})).unwrap(),
        deployment()
    );
}
