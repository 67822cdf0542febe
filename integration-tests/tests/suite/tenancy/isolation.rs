//! Tenant isolation across every tenancy RPC.

use super::*;

/// A principal of tenant A gets NOT_FOUND for every read and write on
/// tenant B, on every RPC.
#[tokio::test]
async fn tenants_are_isolated_on_every_rpc() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    create_tenant(&mut c, &admin, "alpha").await;
    create_tenant(&mut c, &admin, "beta").await;
    create_namespace(&mut c, &admin, "beta", "prod").await;
    let a = user_with_role(
        &mut c,
        &admin,
        "alpha",
        "boss",
        Role::TenantAdmin,
        "tenants/alpha",
    )
    .await;
    user_with_role(
        &mut c,
        &admin,
        "beta",
        "bob",
        Role::NamespaceAdmin,
        "tenants/beta/namespaces/prod",
    )
    .await;
    let beta_binding = c
        .bindings
        .list_role_bindings(authed(
            &admin,
            ListRoleBindingsRequest {
                parent: "tenants/beta/namespaces/prod".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .role_bindings[0]
        .name
        .clone();
    let beta_token = c
        .tokens
        .list_api_tokens(authed(
            &admin,
            ListApiTokensRequest {
                parent: "tenants/beta/users/bob".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .tokens[0]
        .name
        .clone();

    let nf = Code::NotFound;
    assert_eq!(
        code(
            c.tenants
                .get_tenant(authed(
                    &a,
                    GetTenantRequest {
                        name: "tenants/beta".into()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.tenants
                .update_tenant(authed(
                    &a,
                    UpdateTenantRequest {
                        tenant: Some(Tenant {
                            name: "tenants/beta".into(),
                            display_name: "x".into(),
                            ..Default::default()
                        }),
                        update_mask: None,
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.tenants
                .delete_tenant(authed(
                    &a,
                    DeleteTenantRequest {
                        name: "tenants/beta".into(),
                        force: true,
                        etag: String::new()
                    }
                ))
                .await
        ),
        nf
    );
    let listed = c
        .tenants
        .list_tenants(authed(&a, ListTenantsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .tenants
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["tenants/alpha"]
    );

    assert_eq!(
        code(
            c.namespaces
                .create_namespace(authed(
                    &a,
                    CreateNamespaceRequest {
                        parent: "tenants/beta".into(),
                        namespace_id: "x".into(),
                        namespace: None
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.namespaces
                .get_namespace(authed(
                    &a,
                    GetNamespaceRequest {
                        name: "tenants/beta/namespaces/prod".into()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.namespaces
                .list_namespaces(authed(
                    &a,
                    ListNamespacesRequest {
                        parent: "tenants/beta".into(),
                        ..Default::default()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.namespaces
                .delete_namespace(authed(
                    &a,
                    DeleteNamespaceRequest {
                        name: "tenants/beta/namespaces/prod".into(),
                        etag: String::new()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.users
                .create_user(authed(
                    &a,
                    CreateUserRequest {
                        parent: "tenants/beta".into(),
                        user_id: "evil".into(),
                        user: None
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.users
                .get_user(authed(
                    &a,
                    GetUserRequest {
                        name: "tenants/beta/users/bob".into()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.users
                .list_users(authed(
                    &a,
                    ListUsersRequest {
                        parent: "tenants/beta".into(),
                        ..Default::default()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.users
                .delete_user(authed(
                    &a,
                    DeleteUserRequest {
                        name: "tenants/beta/users/bob".into()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.bindings
                .create_role_binding(authed(
                    &a,
                    CreateRoleBindingRequest {
                        parent: "tenants/beta".into(),
                        role_binding_id: String::new(),
                        role_binding: Some(RoleBinding {
                            role: Role::TenantAdmin as i32,
                            user: "tenants/beta/users/bob".into(),
                            ..Default::default()
                        }),
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.bindings
                .get_role_binding(authed(
                    &a,
                    GetRoleBindingRequest {
                        name: beta_binding.clone()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.bindings
                .list_role_bindings(authed(
                    &a,
                    ListRoleBindingsRequest {
                        parent: "tenants/beta/namespaces/prod".into(),
                        ..Default::default()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.bindings
                .delete_role_binding(authed(&a, DeleteRoleBindingRequest { name: beta_binding }))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.tokens
                .create_api_token(authed(
                    &a,
                    CreateApiTokenRequest {
                        parent: "tenants/beta/users/bob".into(),
                        token: None,
                        ttl: None
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.tokens
                .get_api_token(authed(
                    &a,
                    GetApiTokenRequest {
                        name: beta_token.clone()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.tokens
                .list_api_tokens(authed(
                    &a,
                    ListApiTokensRequest {
                        parent: "tenants/beta/users/bob".into(),
                        ..Default::default()
                    }
                ))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.tokens
                .revoke_api_token(authed(&a, RevokeApiTokenRequest { name: beta_token }))
                .await
        ),
        nf
    );
    assert_eq!(
        code(
            c.authz
                .authorize(tonic::Request::new(AuthorizeRequest {
                    token: a.clone(),
                    permission: Permission::Read as i32,
                    resource: "tenants/beta/namespaces/prod".into(),
                }))
                .await
        ),
        nf
    );
    // A tenant admin cannot bind another tenant's user into its own tenant.
    let cross = c
        .bindings
        .create_role_binding(authed(
            &a,
            CreateRoleBindingRequest {
                parent: "tenants/alpha".into(),
                role_binding_id: String::new(),
                role_binding: Some(RoleBinding {
                    role: Role::TenantAdmin as i32,
                    user: "tenants/beta/users/bob".into(),
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_eq!(code(cross), Code::InvalidArgument);
}
