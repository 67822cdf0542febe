//! The audit log end to end: mutating gRPC calls and kubectl writes are
//! recorded with actor and result (refused and failed ones too), reads are
//! not, tenants read only their own trail, and ListAuditEvents pages.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use manifold_integration_tests::{TestApp, authed};
use manifold_proto::audit::v1 as apb;
use manifold_proto::tenancy::v1 as tpb;
use tonic::Code;
use tonic::transport::Channel;

use crate::kubectl::Kubectl;
use crate::vk8s_grpc::{
    DEMO, create_namespace, create_tenant, get_kubeconfig, scenario, user_with_role,
};

fn audit(ch: &Channel) -> apb::audit_service_client::AuditServiceClient<Channel> {
    apb::audit_service_client::AuditServiceClient::new(ch.clone())
}

async fn list(
    ch: &Channel,
    token: &str,
    request: apb::ListAuditEventsRequest,
) -> Result<apb::ListAuditEventsResponse, tonic::Status> {
    audit(ch)
        .list_audit_events(authed(token, request))
        .await
        .map(|r| r.into_inner())
}

/// Every event of `parent` matching the filters in `request`, all pages.
async fn list_all(
    ch: &Channel,
    token: &str,
    mut request: apb::ListAuditEventsRequest,
) -> Vec<apb::AuditEvent> {
    let mut all = Vec::new();
    loop {
        let page = list(ch, token, request.clone()).await.expect("list audit");
        all.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

/// Waits (up to 1.5 s: the writer batches for 100 ms) until `found` holds
/// for the events of `parent`; returns them.
async fn eventually(
    ch: &Channel,
    token: &str,
    parent: &str,
    found: impl Fn(&[apb::AuditEvent]) -> bool,
) -> Vec<apb::AuditEvent> {
    let started = Instant::now();
    loop {
        let events = list_all(
            ch,
            token,
            apb::ListAuditEventsRequest {
                parent: parent.into(),
                ..Default::default()
            },
        )
        .await;
        if found(&events) {
            return events;
        }
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "audit events of {parent:?} never matched; have:\n{events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn find<'a>(
    events: &'a [apb::AuditEvent],
    method: &str,
    resource: &str,
) -> Option<&'a apb::AuditEvent> {
    events
        .iter()
        .find(|e| e.method.ends_with(method) && e.resource == resource)
}

#[tokio::test]
async fn audit_records_mutating_grpc_calls_with_actor_and_result_but_not_reads() {
    let app = TestApp::spawn().await.expect("spawn");
    let ch = app.channel().await.expect("channel");
    let admin = app.admin_token.clone();
    create_tenant(&ch, &admin, "acme").await;
    create_namespace(&ch, &admin, "acme", "shop").await;
    let tenants = tpb::tenant_service_client::TenantServiceClient::new(ch.clone());
    let namespaces = tpb::namespace_service_client::NamespaceServiceClient::new(ch.clone());
    // A read: never recorded.
    tenants
        .clone()
        .get_tenant(authed(
            &admin,
            tpb::GetTenantRequest {
                name: "tenants/acme".into(),
            },
        ))
        .await
        .expect("get tenant");
    // A failed write: recorded with its code and message.
    let bad = namespaces
        .clone()
        .create_namespace(authed(
            &admin,
            tpb::CreateNamespaceRequest {
                parent: "tenants/acme".into(),
                namespace_id: "Not_A_Label".into(),
                namespace: None,
            },
        ))
        .await
        .expect_err("invalid id");
    assert_eq!(bad.code(), Code::InvalidArgument);
    // A refused write by a namespace viewer: PERMISSION_DENIED, its actor.
    let viewer = user_with_role(
        &ch,
        &admin,
        "acme",
        "vic",
        tpb::Role::NamespaceViewer,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let denied = namespaces
        .clone()
        .delete_namespace(authed(
            &viewer,
            tpb::DeleteNamespaceRequest {
                name: "tenants/acme/namespaces/shop".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("viewer cannot delete");
    assert_eq!(denied.code(), Code::PermissionDenied);
    // No credential at all: UNAUTHENTICATED, anonymous, a system-level event.
    let unauthenticated = tenants
        .clone()
        .create_tenant(authed(
            "mft_0000000000000000_00",
            tpb::CreateTenantRequest {
                tenant_id: "intruder".into(),
                tenant: None,
            },
        ))
        .await
        .expect_err("bad token");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let events = eventually(&ch, &admin, "tenants/acme", |events| {
        find(events, "/DeleteNamespace", "tenants/acme/namespaces/shop").is_some()
    })
    .await;

    let created =
        find(&events, "TenantService/CreateTenant", "tenants/acme").expect("CreateTenant");
    assert_eq!(
        created.method,
        "manifold.tenancy.v1.TenantService/CreateTenant"
    );
    assert_eq!(created.actor, "users/admin");
    assert_eq!(created.actor_kind, apb::ActorKind::User as i32);
    assert_eq!(created.source, apb::Source::Grpc as i32);
    assert_eq!(created.tenant, "tenants/acme");
    assert_eq!(created.code, "OK");
    assert!(created.success);
    assert!(created.name.starts_with("tenants/acme/auditEvents/"));
    assert!(created.time.is_some());

    let ns =
        find(&events, "/CreateNamespace", "tenants/acme/namespaces/shop").expect("CreateNamespace");
    assert_eq!(ns.code, "OK");
    let invalid = find(
        &events,
        "/CreateNamespace",
        "tenants/acme/namespaces/Not_A_Label",
    )
    .expect("the invalid CreateNamespace");
    assert_eq!(invalid.code, "INVALID_ARGUMENT");
    assert!(!invalid.success);
    assert!(invalid.message.contains("namespace_id"), "{invalid:?}");

    let refused =
        find(&events, "/DeleteNamespace", "tenants/acme/namespaces/shop").expect("DeleteNamespace");
    assert_eq!(refused.actor, "tenants/acme/users/vic");
    assert_eq!(refused.code, "PERMISSION_DENIED");
    assert!(!refused.success);

    // The role binding and token minted for vic are there; reads are not.
    assert!(
        find(
            &events,
            "/CreateRoleBinding",
            "tenants/acme/namespaces/shop"
        )
        .is_some()
    );
    assert!(
        events.iter().any(
            |e| e.method.ends_with("/CreateApiToken") && e.resource == "tenants/acme/users/vic"
        )
    );
    for e in &events {
        let method = e.method.rsplit('/').next().unwrap_or_default();
        assert!(
            !method.starts_with("Get") && !method.starts_with("List") && method != "Authorize",
            "a read was recorded: {e:?}"
        );
        // Never a secret: no token material anywhere in an event.
        assert!(!format!("{e:?}").contains("mft_"), "{e:?}");
    }

    // The anonymous attempt is system-level: only the operator's view has it.
    assert!(!events.iter().any(|e| e.resource == "tenants/intruder"));
    let all = eventually(&ch, &admin, "tenants/-", |events| {
        events.iter().any(|e| e.code == "UNAUTHENTICATED")
    })
    .await;
    let anonymous = all
        .iter()
        .find(|e| e.code == "UNAUTHENTICATED")
        .expect("anonymous attempt");
    assert_eq!(anonymous.actor, "");
    assert_eq!(anonymous.actor_kind, apb::ActorKind::Anonymous as i32);
    assert_eq!(anonymous.tenant, "");
    assert!(anonymous.name.starts_with("auditEvents/"));
    assert_eq!(
        anonymous.method,
        "manifold.tenancy.v1.TenantService/CreateTenant"
    );
    assert!(all.len() > events.len());
}

#[tokio::test]
async fn audit_of_a_tenant_is_readable_by_its_admins_only() {
    let app = TestApp::spawn().await.expect("spawn");
    let ch = app.channel().await.expect("channel");
    let admin = app.admin_token.clone();
    create_tenant(&ch, &admin, "acme").await;
    create_tenant(&ch, &admin, "globex").await;
    create_namespace(&ch, &admin, "acme", "shop").await;
    create_namespace(&ch, &admin, "globex", "lab").await;
    let acme_admin = user_with_role(
        &ch,
        &admin,
        "acme",
        "boss",
        tpb::Role::TenantAdmin,
        "tenants/acme",
    )
    .await;
    let acme_editor = user_with_role(
        &ch,
        &admin,
        "acme",
        "ed",
        tpb::Role::NamespaceEditor,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let globex_admin = user_with_role(
        &ch,
        &admin,
        "globex",
        "boss",
        tpb::Role::TenantAdmin,
        "tenants/globex",
    )
    .await;

    // The tenant admin sees its tenant's events, none of the other's.
    let events = eventually(&ch, &acme_admin, "tenants/acme", |events| {
        find(events, "/CreateNamespace", "tenants/acme/namespaces/shop").is_some()
    })
    .await;
    assert!(
        events.iter().all(|e| e.tenant == "tenants/acme"),
        "{events:#?}"
    );
    assert!(!events.iter().any(|e| e.resource.contains("globex")));

    // Another tenant's trail: NOT_FOUND, as for any of its resources.
    let other = list(
        &ch,
        &acme_admin,
        apb::ListAuditEventsRequest {
            parent: "tenants/globex".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("another tenant");
    assert_eq!(other.code(), Code::NotFound);
    let other = list(
        &ch,
        &globex_admin,
        apb::ListAuditEventsRequest {
            parent: "tenants/acme".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("another tenant");
    assert_eq!(other.code(), Code::NotFound);
    // Everything at once is for operators.
    for parent in ["", "tenants/-"] {
        let all = list(
            &ch,
            &acme_admin,
            apb::ListAuditEventsRequest {
                parent: parent.into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("not an operator");
        assert_eq!(all.code(), Code::PermissionDenied);
    }
    // A namespace editor sees the tenant but may not read its audit.
    let editor = list(
        &ch,
        &acme_editor,
        apb::ListAuditEventsRequest {
            parent: "tenants/acme".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("editor");
    assert_eq!(editor.code(), Code::PermissionDenied);
    let bad = list(
        &ch,
        &admin,
        apb::ListAuditEventsRequest {
            parent: "tenants/acme/namespaces/shop".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("bad parent");
    assert_eq!(bad.code(), Code::InvalidArgument);

    // The globex admin's own view.
    let globex = eventually(&ch, &globex_admin, "tenants/globex", |events| {
        find(events, "/CreateNamespace", "tenants/globex/namespaces/lab").is_some()
    })
    .await;
    assert!(globex.iter().all(|e| e.tenant == "tenants/globex"));
}

#[tokio::test]
async fn audit_events_page_newest_first_and_filter() {
    let app = TestApp::spawn().await.expect("spawn");
    let ch = app.channel().await.expect("channel");
    let admin = app.admin_token.clone();
    create_tenant(&ch, &admin, "acme").await;
    let names: Vec<String> = (0..7).map(|i| format!("ns{i}")).collect();
    for n in &names {
        create_namespace(&ch, &admin, "acme", n).await;
    }
    eventually(&ch, &admin, "tenants/acme", |events| {
        find(events, "/CreateNamespace", "tenants/acme/namespaces/ns6").is_some()
    })
    .await;

    let filter = apb::ListAuditEventsRequest {
        parent: "tenants/acme".into(),
        method: "CreateNamespace".into(),
        page_size: 3,
        ..Default::default()
    };
    let mut pages = Vec::new();
    let mut request = filter.clone();
    loop {
        let page = list(&ch, &admin, request.clone()).await.expect("page");
        assert!(page.audit_events.len() <= 3);
        pages.push(page.audit_events.len());
        let done = page.next_page_token.is_empty();
        request.page_token = page.next_page_token;
        if done {
            break;
        }
    }
    assert_eq!(pages, vec![3, 3, 1]);
    let all = list_all(&ch, &admin, filter.clone()).await;
    assert_eq!(all.len(), 7);
    let unique: HashSet<_> = all.iter().map(|e| e.name.clone()).collect();
    assert_eq!(unique.len(), 7, "no event twice across pages");
    // Newest first: ns6 was created last.
    assert_eq!(all[0].resource, "tenants/acme/namespaces/ns6");
    assert_eq!(all[6].resource, "tenants/acme/namespaces/ns0");
    let times: Vec<_> = all
        .iter()
        .map(|e| {
            let t = e.time.unwrap();
            (t.seconds, t.nanos)
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // Filters: full method name, result, code, actor, time window, source.
    let full = list_all(
        &ch,
        &admin,
        apb::ListAuditEventsRequest {
            method: "manifold.tenancy.v1.NamespaceService/CreateNamespace".into(),
            ..filter.clone()
        },
    )
    .await;
    assert_eq!(full.len(), 7);
    let failures = list_all(
        &ch,
        &admin,
        apb::ListAuditEventsRequest {
            result: apb::Outcome::Failure as i32,
            ..filter.clone()
        },
    )
    .await;
    assert!(failures.is_empty());
    let by_code = list_all(
        &ch,
        &admin,
        apb::ListAuditEventsRequest {
            code: "OK".into(),
            actor: "users/admin".into(),
            source: apb::Source::Grpc as i32,
            ..filter.clone()
        },
    )
    .await;
    assert_eq!(by_code.len(), 7);
    let nobody = list_all(
        &ch,
        &admin,
        apb::ListAuditEventsRequest {
            actor: "tenants/acme/users/nobody".into(),
            ..filter.clone()
        },
    )
    .await;
    assert!(nobody.is_empty());
    let kube_only = list_all(
        &ch,
        &admin,
        apb::ListAuditEventsRequest {
            source: apb::Source::Kubernetes as i32,
            ..filter.clone()
        },
    )
    .await;
    assert!(kube_only.is_empty());
    // since/until: the window [time of ns3, time of ns5) holds ns3 and ns4.
    let at = |resource: &str| {
        all.iter()
            .find(|e| e.resource == resource)
            .and_then(|e| e.time)
            .unwrap()
    };
    let window = list_all(
        &ch,
        &admin,
        apb::ListAuditEventsRequest {
            since: Some(at("tenants/acme/namespaces/ns3")),
            until: Some(at("tenants/acme/namespaces/ns5")),
            ..filter.clone()
        },
    )
    .await;
    let got: Vec<_> = window.iter().map(|e| e.resource.as_str()).collect();
    assert_eq!(
        got,
        vec!["tenants/acme/namespaces/ns4", "tenants/acme/namespaces/ns3"]
    );

    let bad = list(
        &ch,
        &admin,
        apb::ListAuditEventsRequest {
            page_token: "garbage".into(),
            ..filter
        },
    )
    .await
    .expect_err("bad token");
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn kubectl_writes_are_audited_with_user_and_status() {
    let s = scenario().await;
    let kubectl = Kubectl::new(&s.kubeconfig, s.dir.path());
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: audited\ndata:\n  a: \"1\"\n";
    kubectl.ok_stdin(&["apply", "-f", "-"], manifest).await;
    kubectl.ok(&["get", "configmap", "audited"]).await;
    kubectl.ok(&["delete", "configmap", "audited"]).await;
    // A viewer's write is refused (403) and recorded as such.
    let viewer = user_with_role(
        &s.channel,
        &s.admin,
        "acme",
        "vera",
        tpb::Role::NamespaceViewer,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let viewer_dir = tempfile::tempdir().expect("tempdir");
    let viewer_config = viewer_dir.path().join("viewer.kubeconfig");
    std::fs::write(
        &viewer_config,
        get_kubeconfig(&s.channel, &viewer, DEMO).await.kubeconfig,
    )
    .expect("write kubeconfig");
    Kubectl::new(&viewer_config, viewer_dir.path())
        .fails(&["create", "configmap", "nope"])
        .await;

    let events = eventually(&s.channel, &s.admin, "tenants/acme", |events| {
        let kube: Vec<_> = events
            .iter()
            .filter(|e| e.source == apb::Source::Kubernetes as i32)
            .collect();
        kube.iter().any(|e| e.method == "delete") && kube.iter().any(|e| e.code == "403")
    })
    .await;
    let kube: Vec<_> = events
        .iter()
        .filter(|e| e.source == apb::Source::Kubernetes as i32)
        .collect();
    let create = kube
        .iter()
        .find(|e| e.method == "create" && e.path.ends_with("/configmaps") && e.success)
        .expect("apply's create");
    assert_eq!(create.actor, "tenants/acme/users/ann");
    assert_eq!(create.code, "201");
    assert_eq!(create.http_method, "POST");
    assert_eq!(create.resource, DEMO);
    assert_eq!(
        create.path,
        "/vk8s/acme/shop/demo/api/v1/namespaces/shop/configmaps"
    );
    let delete = kube.iter().find(|e| e.method == "delete").expect("delete");
    assert_eq!(delete.actor, "tenants/acme/users/ann");
    assert!(delete.path.ends_with("/configmaps/audited"), "{delete:?}");
    assert!(delete.success);
    let refused = kube
        .iter()
        .find(|e| e.code == "403")
        .expect("refused create");
    assert_eq!(refused.actor, "tenants/acme/users/vera");
    assert_eq!(refused.method, "create");
    assert!(!refused.success);
    assert!(!refused.message.is_empty());
    // Reads (kubectl get, discovery, apply's GET) are never recorded.
    assert!(kube.iter().all(|e| e.http_method != "GET"), "{kube:#?}");
    // GetKubeconfig mints a token: it is recorded.
    assert!(find(&events, "/GetKubeconfig", DEMO).is_some());
}
