//! A token's scope bounds everything it can do, an operator's included: the
//! kubeconfig an operator gets for one vK8s (the demo kubeconfig) reads no
//! other tenant, lists no other tenant, and cannot open the object feed,
//! which carries every tenant's objects, Secrets included.

use serde_json::Value;

use super::{grpc_code, token_of};
use crate::vk8s_grpc::{DEMO, create_namespace, create_tenant, get_kubeconfig, scenario};

#[tokio::test]
async fn a_scoped_operator_token_reads_no_other_tenant_and_no_feed() {
    let s = scenario().await;
    create_tenant(&s.channel, &s.admin, "globex").await;
    create_namespace(&s.channel, &s.admin, "globex", "web").await;
    // What `manifold serve --reference-scenario` writes to demo.kubeconfig:
    // a system-admin's token scoped to one namespace.
    let scoped = token_of(&get_kubeconfig(&s.channel, &s.admin, DEMO).await.kubeconfig);
    let app = &s.app;
    let call = |token: String, data: &'static str, method: &'static str| async move {
        app.grpcurl(Some(&token), &["-d", data, method])
            .await
            .expect("grpcurl ran")
    };

    // The object feed: every tenant's objects. Refused to the scoped token,
    // both ways in.
    for (data, method) in [
        ("{}", "manifold.vk8s.v1.ObjectFeed/Snapshot"),
        (
            r#"{"from_revision": 0}"#,
            "manifold.vk8s.v1.ObjectFeed/Watch",
        ),
    ] {
        let out = call(scoped.clone(), data, method).await;
        assert!(!out.status.success(), "{method} must be refused");
        assert_eq!(grpc_code(&out.stderr), "PermissionDenied", "{method}");
    }

    // Tenants: only the one its scope lies in.
    let out = call(
        scoped.clone(),
        "{}",
        "manifold.tenancy.v1.TenantService/ListTenants",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = listed["tenants"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["tenants/acme"], "{listed}");
    let out = call(
        scoped.clone(),
        r#"{"name": "tenants/globex"}"#,
        "manifold.tenancy.v1.TenantService/GetTenant",
    )
    .await;
    assert_eq!(grpc_code(&out.stderr), "NotFound");
    // Nor may it suspend the tenant its scope lies in (the scope is a
    // namespace, not the tenant).
    let out = call(
        scoped.clone(),
        r#"{"tenant": {"name": "tenants/acme", "state": "SUSPENDED"}, "update_mask": {"paths": ["state"]}}"#,
        "manifold.tenancy.v1.TenantService/UpdateTenant",
    )
    .await;
    assert_eq!(grpc_code(&out.stderr), "PermissionDenied");

    // System-wide views stay closed: the whole audit trail, every session,
    // every placement.
    for (data, method) in [
        (
            r#"{"parent": ""}"#,
            "manifold.audit.v1.AuditService/ListAuditEvents",
        ),
        (
            "{}",
            "manifold.replication.v1.ReplicationService/ListSessions",
        ),
        (
            r#"{"parent": ""}"#,
            "manifold.sites.v1.VirtualSiteService/WatchPlacement",
        ),
    ] {
        let out = call(scoped.clone(), data, method).await;
        assert_eq!(grpc_code(&out.stderr), "PermissionDenied", "{method}");
    }
    // Its own namespace still works.
    let out = call(
        scoped.clone(),
        r#"{"name": "tenants/acme/namespaces/shop"}"#,
        "manifold.tenancy.v1.NamespaceService/GetNamespace",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An unscoped operator token (replication's service token is one) still
    // reads the feed and every tenant.
    let out = call(
        s.admin.clone(),
        "{}",
        "manifold.vk8s.v1.ObjectFeed/Snapshot",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = call(
        s.admin.clone(),
        "{}",
        "manifold.tenancy.v1.TenantService/ListTenants",
    )
    .await;
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        listed["tenants"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
}
