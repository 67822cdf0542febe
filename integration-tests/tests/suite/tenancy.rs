//! The tenancy API over TLS gRPC: every RPC's success path, the errors users
//! meet, tenant isolation, suspension, and restarts.

use std::time::Duration;

use manifold_integration_tests::{TestApp, authed};
use manifold_proto::tenancy::v1::{self as pb, *};
use tonic::{Code, transport::Channel};

mod isolation;

struct Clients {
    tenants: tenant_service_client::TenantServiceClient<Channel>,
    namespaces: namespace_service_client::NamespaceServiceClient<Channel>,
    users: user_service_client::UserServiceClient<Channel>,
    bindings: role_binding_service_client::RoleBindingServiceClient<Channel>,
    tokens: api_token_service_client::ApiTokenServiceClient<Channel>,
    authz: authorization_service_client::AuthorizationServiceClient<Channel>,
}

async fn clients(app: &TestApp) -> Clients {
    let ch = app.channel().await.expect("channel");
    Clients {
        tenants: tenant_service_client::TenantServiceClient::new(ch.clone()),
        namespaces: namespace_service_client::NamespaceServiceClient::new(ch.clone()),
        users: user_service_client::UserServiceClient::new(ch.clone()),
        bindings: role_binding_service_client::RoleBindingServiceClient::new(ch.clone()),
        tokens: api_token_service_client::ApiTokenServiceClient::new(ch.clone()),
        authz: authorization_service_client::AuthorizationServiceClient::new(ch),
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}

async fn create_tenant(c: &mut Clients, token: &str, id: &str) -> Tenant {
    c.tenants
        .create_tenant(authed(
            token,
            CreateTenantRequest {
                tenant_id: id.into(),
                tenant: Some(Tenant {
                    display_name: format!("{id} corp"),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("create tenant")
        .into_inner()
}

async fn create_namespace(c: &mut Clients, token: &str, tenant: &str, ns: &str) -> Namespace {
    c.namespaces
        .create_namespace(authed(
            token,
            CreateNamespaceRequest {
                parent: format!("tenants/{tenant}"),
                namespace_id: ns.into(),
                namespace: None,
            },
        ))
        .await
        .expect("create namespace")
        .into_inner()
}

/// A user of `tenant` holding `role` at `scope`, and a token for it.
async fn user_with_role(
    c: &mut Clients,
    admin: &str,
    tenant: &str,
    user: &str,
    role: Role,
    scope: &str,
) -> String {
    c.users
        .create_user(authed(
            admin,
            CreateUserRequest {
                parent: format!("tenants/{tenant}"),
                user_id: user.into(),
                user: Some(User {
                    email: format!("{user}@example.com"),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("create user");
    let user_name = format!("tenants/{tenant}/users/{user}");
    c.bindings
        .create_role_binding(authed(
            admin,
            CreateRoleBindingRequest {
                parent: scope.into(),
                role_binding_id: String::new(),
                role_binding: Some(RoleBinding {
                    role: role as i32,
                    user: user_name.clone(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("bind role");
    c.tokens
        .create_api_token(authed(
            admin,
            CreateApiTokenRequest {
                parent: user_name,
                token: None,
                ttl: None,
            },
        ))
        .await
        .expect("token")
        .into_inner()
        .secret
}

#[tokio::test]
async fn tenants_crud_and_errors() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;

    let t = create_tenant(&mut c, &admin, "acme").await;
    assert_eq!(t.name, "tenants/acme");
    assert_eq!(t.state, pb::tenant::State::Active as i32);
    assert!(!t.etag.is_empty());

    // Duplicate.
    let dup = c
        .tenants
        .create_tenant(authed(
            &admin,
            CreateTenantRequest {
                tenant_id: "acme".into(),
                tenant: None,
            },
        ))
        .await;
    assert_eq!(code(dup), Code::AlreadyExists);

    // Invalid id names the field and carries a BadRequest field violation.
    let bad = c
        .tenants
        .create_tenant(authed(
            &admin,
            CreateTenantRequest {
                tenant_id: "Bad_Name".into(),
                tenant: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("tenant_id"), "{}", bad.message());
    use tonic_types::StatusExt;
    let details = bad.get_error_details();
    let violation = &details
        .bad_request()
        .expect("BadRequest detail")
        .field_violations[0];
    assert_eq!(violation.field, "tenant_id");

    // Unknown.
    let missing = c
        .tenants
        .get_tenant(authed(
            &admin,
            GetTenantRequest {
                name: "tenants/nope".into(),
            },
        ))
        .await;
    assert_eq!(code(missing), Code::NotFound);

    // Update with the current etag, then with a stale one.
    let updated = c
        .tenants
        .update_tenant(authed(
            &admin,
            UpdateTenantRequest {
                tenant: Some(Tenant {
                    name: "tenants/acme".into(),
                    display_name: "ACME Inc".into(),
                    etag: t.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.display_name, "ACME Inc");
    assert_ne!(updated.etag, t.etag);
    let stale = c
        .tenants
        .update_tenant(authed(
            &admin,
            UpdateTenantRequest {
                tenant: Some(Tenant {
                    name: "tenants/acme".into(),
                    display_name: "again".into(),
                    etag: t.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await;
    assert_eq!(code(stale), Code::Aborted);
    let bad_mask = c
        .tenants
        .update_tenant(authed(
            &admin,
            UpdateTenantRequest {
                tenant: Some(Tenant {
                    name: "tenants/acme".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["uid".into()],
                }),
            },
        ))
        .await;
    assert_eq!(code(bad_mask), Code::InvalidArgument);

    // Pagination walks every tenant exactly once.
    for i in 0..5 {
        create_tenant(&mut c, &admin, &format!("page-{i}")).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = c
            .tenants
            .list_tenants(authed(
                &admin,
                ListTenantsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.tenants.len() <= 2);
        seen.extend(page.tenants.into_iter().map(|t| t.name));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    let bad_page = c
        .tenants
        .list_tenants(authed(
            &admin,
            ListTenantsRequest {
                page_size: 2,
                page_token: "%%%".into(),
            },
        ))
        .await;
    assert_eq!(code(bad_page), Code::InvalidArgument);

    // Delete is refused while namespaces exist, unless forced.
    create_namespace(&mut c, &admin, "acme", "shop").await;
    let refused = c
        .tenants
        .delete_tenant(authed(
            &admin,
            DeleteTenantRequest {
                name: "tenants/acme".into(),
                force: false,
                etag: String::new(),
            },
        ))
        .await;
    assert_eq!(code(refused), Code::FailedPrecondition);
    c.tenants
        .delete_tenant(authed(
            &admin,
            DeleteTenantRequest {
                name: "tenants/acme".into(),
                force: true,
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let gone = c
        .namespaces
        .get_namespace(authed(
            &admin,
            GetNamespaceRequest {
                name: "tenants/acme/namespaces/shop".into(),
            },
        ))
        .await;
    assert_eq!(code(gone), Code::NotFound);
}

#[tokio::test]
async fn namespaces_users_bindings_tokens() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    create_tenant(&mut c, &admin, "acme").await;
    let ns = create_namespace(&mut c, &admin, "acme", "shop").await;
    assert_eq!(ns.name, "tenants/acme/namespaces/shop");
    let dup = c
        .namespaces
        .create_namespace(authed(
            &admin,
            CreateNamespaceRequest {
                parent: "tenants/acme".into(),
                namespace_id: "shop".into(),
                namespace: None,
            },
        ))
        .await;
    assert_eq!(code(dup), Code::AlreadyExists);
    let listed = c
        .namespaces
        .list_namespaces(authed(
            &admin,
            ListNamespacesRequest {
                parent: "tenants/acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.namespaces.len(), 1);

    // An editor of the namespace.
    let editor = user_with_role(
        &mut c,
        &admin,
        "acme",
        "ed",
        Role::NamespaceEditor,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let me = c
        .authz
        .who_am_i(authed(&editor, WhoAmIRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user, "tenants/acme/users/ed");
    assert_eq!(me.tenant, "tenants/acme");
    assert_eq!(me.role_bindings.len(), 1);

    // Authorize answers per permission.
    let ok = c
        .authz
        .authorize(tonic::Request::new(AuthorizeRequest {
            token: editor.clone(),
            permission: Permission::Write as i32,
            resource: "tenants/acme/namespaces/shop/virtualClusters/demo".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.granted, Permission::Write as i32);
    let denied = c
        .authz
        .authorize(tonic::Request::new(AuthorizeRequest {
            token: editor.clone(),
            permission: Permission::Admin as i32,
            resource: "tenants/acme/namespaces/shop".into(),
        }))
        .await;
    assert_eq!(code(denied), Code::PermissionDenied);

    // Wrong role: an editor cannot create namespaces or bind roles.
    let no = c
        .namespaces
        .create_namespace(authed(
            &editor,
            CreateNamespaceRequest {
                parent: "tenants/acme".into(),
                namespace_id: "other".into(),
                namespace: None,
            },
        ))
        .await;
    assert_eq!(code(no), Code::PermissionDenied);
    let no = c
        .tenants
        .create_tenant(authed(
            &editor,
            CreateTenantRequest {
                tenant_id: "mine".into(),
                tenant: None,
            },
        ))
        .await;
    assert_eq!(code(no), Code::PermissionDenied);

    // Role must fit the scope.
    let misfit = c
        .bindings
        .create_role_binding(authed(
            &admin,
            CreateRoleBindingRequest {
                parent: "tenants/acme".into(),
                role_binding_id: String::new(),
                role_binding: Some(RoleBinding {
                    role: Role::NamespaceViewer as i32,
                    user: "tenants/acme/users/ed".into(),
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_eq!(code(misfit), Code::InvalidArgument);

    // An operator (a system user) can be bound inside a tenant too.
    let operator = c
        .bindings
        .create_role_binding(authed(
            &admin,
            CreateRoleBindingRequest {
                parent: "tenants/acme".into(),
                role_binding_id: "operator".into(),
                role_binding: Some(RoleBinding {
                    role: Role::TenantAdmin as i32,
                    user: "users/admin".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("a system user bound in a tenant")
        .into_inner();
    assert_eq!(operator.name, "tenants/acme/roleBindings/operator");
    assert_eq!(operator.user, "users/admin");

    // Tokens: list shows metadata only; the user can mint its own.
    let own = c
        .tokens
        .create_api_token(authed(
            &editor,
            CreateApiTokenRequest {
                parent: "tenants/acme/users/ed".into(),
                token: Some(ApiToken {
                    display_name: "laptop".into(),
                    ..Default::default()
                }),
                ttl: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(own.secret.starts_with("mft_"));
    let tokens = c
        .tokens
        .list_api_tokens(authed(
            &editor,
            ListApiTokensRequest {
                parent: "tenants/acme/users/ed".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tokens.tokens.len(), 2);
    let listed_text = format!("{tokens:?}");
    assert!(
        !listed_text.contains(&own.secret[20..]),
        "secrets never listed"
    );

    // Revocation takes effect (cache TTL is 1 s in tests; this process also
    // invalidates at once).
    let name = own.token.unwrap().name;
    let revoked = c
        .tokens
        .revoke_api_token(authed(
            &editor,
            RevokeApiTokenRequest { name: name.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.state, pb::api_token::State::Revoked as i32);
    let after = c
        .authz
        .who_am_i(authed(&own.secret, WhoAmIRequest {}))
        .await;
    assert_eq!(code(after), Code::Unauthenticated);

    // Expired token.
    let short = c
        .tokens
        .create_api_token(authed(
            &admin,
            CreateApiTokenRequest {
                parent: "tenants/acme/users/ed".into(),
                token: None,
                ttl: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = c
        .authz
        .who_am_i(authed(&short, WhoAmIRequest {}))
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert!(
        expired.message().contains("expired"),
        "{}",
        expired.message()
    );

    // Missing and malformed credentials.
    let none = c
        .authz
        .who_am_i(tonic::Request::new(WhoAmIRequest {}))
        .await;
    assert_eq!(code(none), Code::Unauthenticated);
    let junk = c
        .authz
        .who_am_i(authed("mft_0000000000000000_nope", WhoAmIRequest {}))
        .await;
    assert_eq!(code(junk), Code::Unauthenticated);

    // Bindings list/get/delete, users get/list/delete.
    let bindings = c
        .bindings
        .list_role_bindings(authed(
            &admin,
            ListRoleBindingsRequest {
                parent: "tenants/acme/namespaces/shop".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bindings.role_bindings.len(), 1);
    let b = c
        .bindings
        .get_role_binding(authed(
            &admin,
            GetRoleBindingRequest {
                name: bindings.role_bindings[0].name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.user, "tenants/acme/users/ed");
    c.bindings
        .delete_role_binding(authed(&admin, DeleteRoleBindingRequest { name: b.name }))
        .await
        .unwrap();
    let users = c
        .users
        .list_users(authed(
            &admin,
            ListUsersRequest {
                parent: "tenants/acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(users.users.len(), 1);
    c.users
        .get_user(authed(
            &admin,
            GetUserRequest {
                name: "tenants/acme/users/ed".into(),
            },
        ))
        .await
        .unwrap();
    c.users
        .delete_user(authed(
            &admin,
            DeleteUserRequest {
                name: "tenants/acme/users/ed".into(),
            },
        ))
        .await
        .unwrap();
    let gone = c.authz.who_am_i(authed(&editor, WhoAmIRequest {})).await;
    assert_eq!(code(gone), Code::Unauthenticated);

    // Namespace delete with a stale etag, then for real.
    let stale = c
        .namespaces
        .delete_namespace(authed(
            &admin,
            DeleteNamespaceRequest {
                name: "tenants/acme/namespaces/shop".into(),
                etag: "\"99\"".into(),
            },
        ))
        .await;
    assert_eq!(code(stale), Code::Aborted);
    c.namespaces
        .delete_namespace(authed(
            &admin,
            DeleteNamespaceRequest {
                name: "tenants/acme/namespaces/shop".into(),
                etag: ns.etag,
            },
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn suspended_tenants_tokens_stop_working() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    create_tenant(&mut c, &admin, "acme").await;
    let boss = user_with_role(
        &mut c,
        &admin,
        "acme",
        "boss",
        Role::TenantAdmin,
        "tenants/acme",
    )
    .await;
    c.authz
        .who_am_i(authed(&boss, WhoAmIRequest {}))
        .await
        .unwrap();

    // A tenant admin may not change its own tenant's state.
    let self_resume = c
        .tenants
        .update_tenant(authed(
            &boss,
            UpdateTenantRequest {
                tenant: Some(Tenant {
                    name: "tenants/acme".into(),
                    state: pb::tenant::State::Suspended as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["state".into()],
                }),
            },
        ))
        .await;
    assert_eq!(code(self_resume), Code::PermissionDenied);

    let suspend = |state: pb::tenant::State| UpdateTenantRequest {
        tenant: Some(Tenant {
            name: "tenants/acme".into(),
            state: state as i32,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["state".into()],
        }),
    };
    c.tenants
        .update_tenant(authed(&admin, suspend(pb::tenant::State::Suspended)))
        .await
        .unwrap();
    let refused = c
        .authz
        .who_am_i(authed(&boss, WhoAmIRequest {}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("suspended"),
        "{}",
        refused.message()
    );
    c.tenants
        .update_tenant(authed(&admin, suspend(pb::tenant::State::Active)))
        .await
        .unwrap();
    c.authz
        .who_am_i(authed(&boss, WhoAmIRequest {}))
        .await
        .unwrap();
}

#[tokio::test]
async fn data_and_ca_survive_a_restart() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let ca_before = app.ca_pem();
    {
        let mut c = clients(&app).await;
        create_tenant(&mut c, &admin, "keep").await;
    }
    // The bootstrap token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(app.data_dir.path().join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let app = app.restart().await.unwrap();
    assert_eq!(app.ca_pem(), ca_before, "same CA after restart");
    assert_eq!(app.admin_token, admin, "no second bootstrap token");
    let mut c = clients(&app).await;
    let t = c
        .tenants
        .get_tenant(authed(
            &admin,
            GetTenantRequest {
                name: "tenants/keep".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.display_name, "keep corp");
}

/// A bootstrap token provisioned ahead of time (a Kubernetes Secret mounted
/// read-only as the token file) becomes the operator's token; a malformed
/// file is replaced by a minted token instead of being trusted.
#[tokio::test]
async fn a_provisioned_bootstrap_token_is_adopted() {
    use std::os::unix::fs::PermissionsExt;
    let provisioned = format!("mft_{}_{}", "0123456789abcdef", "ab".repeat(32));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.token");
    std::fs::write(&file, format!("{provisioned}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    let url = manifold_integration_tests::fresh_database().await.unwrap();
    let app = TestApp::start(url, dir).await.unwrap();
    assert_eq!(app.admin_token, provisioned);
    let mut c = clients(&app).await;
    let me = c
        .authz
        .who_am_i(authed(&provisioned, WhoAmIRequest {}))
        .await
        .expect("the provisioned token works")
        .into_inner();
    assert_eq!(me.user, "users/admin", "{me:?}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "not-a-token\n").unwrap();
    let url = manifold_integration_tests::fresh_database().await.unwrap();
    let app = TestApp::start(url, dir).await.unwrap();
    assert!(app.admin_token.starts_with("mft_"), "minted instead");
    assert_ne!(app.admin_token, "not-a-token");
}

/// Namespaces are relabelled in place (replacing one would delete every
/// vK8s in it), with the etag guarding concurrent writers.
#[tokio::test]
async fn namespaces_update_in_place_with_etags() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    create_tenant(&mut c, &admin, "acme").await;
    let ns = create_namespace(&mut c, &admin, "acme", "shop").await;
    let mut labels = std::collections::HashMap::new();
    labels.insert("team".to_owned(), "web".to_owned());
    let updated = c
        .namespaces
        .update_namespace(authed(
            &admin,
            UpdateNamespaceRequest {
                namespace: Some(Namespace {
                    name: ns.name.clone(),
                    labels: labels.clone(),
                    etag: ns.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels".into()],
                }),
            },
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.uid, ns.uid, "the same namespace, not a new one");
    assert_eq!(updated.labels, labels);
    assert_eq!(updated.display_name, ns.display_name);
    assert_ne!(updated.etag, ns.etag);

    // The old etag is stale now; an unknown path names the field.
    let stale = c
        .namespaces
        .update_namespace(authed(
            &admin,
            UpdateNamespaceRequest {
                namespace: Some(Namespace {
                    name: ns.name.clone(),
                    display_name: "Shop".into(),
                    etag: ns.etag.clone(),
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let bad = c
        .namespaces
        .update_namespace(authed(
            &admin,
            UpdateNamespaceRequest {
                namespace: Some(Namespace {
                    name: ns.name.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["uid".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("update_mask"), "{bad:?}");
    let missing = c
        .namespaces
        .update_namespace(authed(
            &admin,
            UpdateNamespaceRequest {
                namespace: Some(Namespace {
                    name: "tenants/acme/namespaces/nope".into(),
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}
