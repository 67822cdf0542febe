//! Server-side apply and managedFields tests, following what kubectl does.

use serde_json::{Value, json};

use super::{
    ApplyError, FieldSet, Operation, apply, managed_fields, record_update,
    record_update_subresource,
};

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-01T00:01:00Z";

fn config(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]},
            },
        },
    })
}

/// What the gateway stores: the object plus system metadata.
fn stored(mut v: Value) -> Value {
    let meta = v["metadata"].as_object_mut().unwrap();
    meta.insert("uid".into(), json!("u-1"));
    meta.insert("resourceVersion".into(), json!("7"));
    meta.insert("creationTimestamp".into(), json!(T0));
    v
}

#[test]
fn create_by_apply_records_exact_managed_fields() {
    let out = apply(None, &config(2, "nginx:1.25"), "kubectl", false, T0).unwrap();
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(
        out["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {"f:matchLabels": {"f:app": {}}},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}},
                    },
                },
            },
        }])
    );
}

#[test]
fn reapply_is_idempotent_and_changes_owned_fields() {
    let live = stored(apply(None, &config(2, "nginx:1.25"), "kubectl", false, T0).unwrap());
    let again = apply(Some(&live), &config(2, "nginx:1.25"), "kubectl", false, T1).unwrap();
    let mut expected = live.clone();
    expected["metadata"]["managedFields"][0]["time"] = json!(T1);
    assert_eq!(again, expected);
    let updated = apply(Some(&live), &config(3, "nginx:1.26"), "kubectl", false, T1).unwrap();
    assert_eq!(updated["spec"]["replicas"], 3);
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    // System metadata is kept from the live object.
    assert_eq!(updated["metadata"]["uid"], "u-1");
    assert_eq!(updated["metadata"]["creationTimestamp"], T0);
}

#[test]
fn fields_no_longer_applied_are_pruned() {
    let mut c = config(2, "nginx:1.25");
    c["metadata"]["labels"]["tier"] = json!("fe");
    c["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "envoy"}));
    let live = stored(apply(None, &c, "kubectl", false, T0).unwrap());
    let out = apply(Some(&live), &config(2, "nginx:1.25"), "kubectl", false, T1).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:1.25"}])
    );
    let set = &managed_fields(&out)[0].fields;
    assert_eq!(
        *set,
        managed_fields(&apply(None, &config(2, "nginx:1.25"), "kubectl", false, T0).unwrap())[0]
            .fields
    );
}

#[test]
fn scale_then_server_side_apply_conflicts_on_replicas() {
    let live = stored(apply(None, &config(2, "nginx:1.25"), "kubectl", false, T0).unwrap());
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scaled = record_update_subresource(Some(&live), &scaled, "kubectl", Some("scale"), T1);
    let entries = managed_fields(&scaled);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].subresource.as_deref(), Some("scale"));
    assert_eq!(
        scaled["metadata"]["managedFields"][1]["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    // The applier lost spec.replicas to the scale.
    assert!(
        !entries[0]
            .fields
            .iter()
            .any(|p| super::path_string(p) == ".spec.replicas")
    );

    let err = apply(
        Some(&scaled),
        &config(2, "nginx:1.25"),
        "kubectl",
        false,
        T1,
    )
    .unwrap_err();
    let ApplyError::Conflicts(conflicts) = &err else {
        panic!("{err}")
    };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#
    );
    assert_eq!(
        err.causes()[0],
        json!({
            "type": "FieldManagerConflict",
            "message": r#"conflict with "kubectl" with subresource "scale" using apps/v1"#,
            "field": ".spec.replicas",
        })
    );

    // Applying the value the scale set is no conflict: ownership is shared.
    let shared = apply(
        Some(&scaled),
        &config(5, "nginx:1.25"),
        "kubectl",
        false,
        T1,
    )
    .unwrap();
    let entries = managed_fields(&shared);
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| {
        e.fields
            .iter()
            .any(|p| super::path_string(p) == ".spec.replicas")
    }));

    // --force-conflicts takes the field over; the scale manager's entry empties and goes.
    let forced = apply(Some(&scaled), &config(2, "nginx:1.25"), "kubectl", true, T1).unwrap();
    assert_eq!(forced["spec"]["replicas"], 2);
    let entries = managed_fields(&forced);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].operation, Operation::Apply);
}

#[test]
fn client_side_apply_then_server_side_apply() {
    let mut created = stored(config(2, "nginx:1.25"));
    created["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
    let created = record_update(None, &created, "kubectl-client-side-apply", T0);
    let entries = managed_fields(&created);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].operation, Operation::Update);
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        "kubectl-client-side-apply"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:annotations"],
        json!({"f:kubectl.kubernetes.io/last-applied-configuration": {}})
    );

    let err = apply(
        Some(&created),
        &config(3, "nginx:1.25"),
        "kubectl",
        false,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
    let err = apply(
        Some(&created),
        &config(3, "nginx:1.26"),
        "kubectl",
        false,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
    assert_eq!(err.causes().len(), 2);
}

#[test]
fn two_appliers_share_and_prune_independently() {
    let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1", "shared": "x"}}, "data": {"k1": "v1"}});
    let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"b": "2", "shared": "x"}}, "data": {"k2": "v2"}});
    let live = apply(None, &a, "mgr-a", false, T0).unwrap();
    let live = apply(Some(&live), &b, "mgr-b", false, T0).unwrap();
    assert_eq!(
        live["metadata"]["labels"],
        json!({"a": "1", "b": "2", "shared": "x"})
    );
    assert_eq!(live["data"], json!({"k1": "v1", "k2": "v2"}));
    // A stops applying its label and the shared one: only A's own goes.
    let a2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k1": "v1"}});
    let out = apply(Some(&live), &a2, "mgr-a", false, T1).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"b": "2", "shared": "x"}));
    // B changing a value A owns conflicts with A (an Apply manager: no "using").
    let b2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k1": "other"}});
    let err = apply(Some(&live), &b2, "mgr-b", false, T1).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "mgr-a": .data.k1"#
    );
}

#[test]
fn keyed_lists_merge_between_managers() {
    let live = stored(apply(None, &config(2, "nginx:1.25"), "kubectl", false, T0).unwrap());
    let sidecar = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy"}]}}},
    });
    let out = apply(Some(&live), &sidecar, "injector", false, T1).unwrap();
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nginx", "sidecar"]);
    // The first applier re-applying without the sidecar leaves it alone.
    let again = apply(Some(&out), &config(2, "nginx:1.25"), "kubectl", false, T1).unwrap();
    assert_eq!(
        again["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The injector dropping it removes it.
    let none = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let out = apply(Some(&again), &none, "injector", false, T1).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(managed_fields(&out).len(), 1);
}

#[test]
fn status_nulls_and_system_metadata_are_not_applied() {
    let mut c = config(2, "nginx:1.25");
    c["status"] = json!({"replicas": 99});
    c["spec"]["paused"] = Value::Null;
    c["metadata"]["resourceVersion"] = json!("1");
    c["metadata"]["managedFields"] =
        json!([{"manager": "evil", "operation": "Apply", "fieldsV1": {}}]);
    let mut live = stored(apply(None, &config(2, "nginx:1.25"), "kubectl", false, T0).unwrap());
    live["status"] = json!({"replicas": 6});
    let out = apply(Some(&live), &c, "kubectl", false, T1).unwrap();
    assert_eq!(out["status"]["replicas"], 6);
    assert!(out["spec"].get("paused").is_none());
    assert_eq!(out["metadata"]["resourceVersion"], "7");
    assert_eq!(managed_fields(&out).len(), 1);
}

#[test]
fn record_update_tracks_changes_and_removals() {
    let live = stored(apply(None, &config(2, "nginx:1.25"), "kubectl", false, T0).unwrap());
    // An edit (Update) of the image takes it from the applier.
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    edited["metadata"]["labels"]["edited"] = json!("yes");
    let edited = record_update(Some(&live), &edited, "kubectl-edit", T1);
    let entries = managed_fields(&edited);
    assert_eq!(entries.len(), 2);
    let edit_paths: Vec<String> = entries[1]
        .fields
        .iter()
        .map(|p| super::path_string(p))
        .collect();
    assert_eq!(
        edit_paths,
        [
            ".metadata.labels.edited",
            ".spec.template.spec.containers[name=\"nginx\"].image"
        ]
    );
    assert_eq!(entries[1].time.as_deref(), Some(T1));
    // Removing a field drops it from every manager.
    let mut removed = edited.clone();
    removed["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app");
    let removed = record_update(Some(&edited), &removed, "kubectl-edit", T1);
    assert!(managed_fields(&removed).iter().all(|e| {
        !e.fields
            .iter()
            .any(|p| super::path_string(p) == ".metadata.labels.app")
    }));
    // A write that changes nothing adds no entry.
    let same = record_update(Some(&removed), &removed, "someone", T1);
    assert_eq!(managed_fields(&same).len(), 2);
    // Status writes track only status.
    let mut st = removed.clone();
    st["status"] = json!({"replicas": 2});
    st["spec"]["replicas"] = json!(9);
    let st = record_update_subresource(Some(&removed), &st, "controller", Some("status"), T1);
    let e = managed_fields(&st)
        .into_iter()
        .find(|e| e.manager == "controller")
        .unwrap();
    assert_eq!(
        e.fields
            .iter()
            .map(|p| super::path_string(p))
            .collect::<Vec<_>>(),
        [".status.replicas"]
    );
    assert_eq!(st["metadata"]["managedFields"][2]["subresource"], "status");
}

#[test]
fn invalid_applies() {
    assert!(matches!(
        apply(None, &json!([1]), "m", false, T0),
        Err(ApplyError::Invalid(_))
    ));
    assert!(matches!(
        apply(None, &json!({"kind": "ConfigMap"}), "m", false, T0),
        Err(ApplyError::Invalid(_))
    ));
    let no_name = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    let err = apply(None, &no_name, "m", false, T0).unwrap_err();
    assert!(err.to_string().contains("omits the key field"), "{err}");
    let live = apply(None, &config(1, "x"), "m", false, T0).unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
    assert!(matches!(
        apply(Some(&live), &svc, "m", false, T0),
        Err(ApplyError::Invalid(_))
    ));
}

#[test]
fn unparsable_entries_are_ignored() {
    let mut live = stored(config(1, "x"));
    live["metadata"]["managedFields"] = json!([
        {"manager": "old", "operation": "Apply", "fieldsType": "FieldsV2", "fieldsV1": {}},
        {"manager": "bad", "operation": "Weird"},
    ]);
    assert!(managed_fields(&live).is_empty());
    let out = apply(Some(&live), &config(1, "x"), "kubectl", false, T0).unwrap();
    assert_eq!(managed_fields(&out).len(), 1);
    assert_ne!(managed_fields(&out)[0].fields, FieldSet::new());
}
