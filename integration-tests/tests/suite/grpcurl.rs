//! The real grpcurl binary against the gRPC listener: reflection lists every
//! service, a tenant is created and read, and errors show their codes.

use manifold_integration_tests::TestApp;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn grpcurl_lists_creates_gets_and_shows_errors() {
    let app = TestApp::spawn().await.unwrap();
    let token = app.admin_token.clone();

    let list = app.grpcurl(Some(&token), &["list"]).await.unwrap();
    assert!(list.status.success(), "{}", text(&list));
    let services = text(&list);
    for s in [
        "grpc.health.v1.Health",
        "manifold.tenancy.v1.TenantService",
        "manifold.tenancy.v1.NamespaceService",
        "manifold.tenancy.v1.UserService",
        "manifold.tenancy.v1.RoleBindingService",
        "manifold.tenancy.v1.ApiTokenService",
        "manifold.tenancy.v1.AuthorizationService",
    ] {
        assert!(services.contains(s), "{s} missing from:\n{services}");
    }

    let describe = app
        .grpcurl(Some(&token), &["describe", "manifold.tenancy.v1.Tenant"])
        .await
        .unwrap();
    assert!(
        text(&describe).contains("display_name"),
        "{}",
        text(&describe)
    );

    let created = app
        .grpcurl(
            Some(&token),
            &[
                "-d",
                r#"{"tenant_id":"acme","tenant":{"display_name":"Acme"}}"#,
                "manifold.tenancy.v1.TenantService/CreateTenant",
            ],
        )
        .await
        .unwrap();
    assert!(created.status.success(), "{}", text(&created));
    assert!(
        text(&created).contains("\"name\": \"tenants/acme\""),
        "{}",
        text(&created)
    );

    let got = app
        .grpcurl(
            Some(&token),
            &[
                "-d",
                r#"{"name":"tenants/acme"}"#,
                "manifold.tenancy.v1.TenantService/GetTenant",
            ],
        )
        .await
        .unwrap();
    assert!(got.status.success(), "{}", text(&got));
    assert!(
        text(&got).contains("\"displayName\": \"Acme\""),
        "{}",
        text(&got)
    );

    let missing = app
        .grpcurl(
            Some(&token),
            &[
                "-d",
                r#"{"name":"tenants/nope"}"#,
                "manifold.tenancy.v1.TenantService/GetTenant",
            ],
        )
        .await
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("Code: NotFound"),
        "{}",
        text(&missing)
    );

    let invalid = app
        .grpcurl(
            Some(&token),
            &[
                "-d",
                r#"{"tenant_id":"Bad!"}"#,
                "manifold.tenancy.v1.TenantService/CreateTenant",
            ],
        )
        .await
        .unwrap();
    let out = text(&invalid);
    assert!(out.contains("Code: InvalidArgument"), "{out}");
    assert!(out.contains("tenant_id"), "{out}");
    // The google.rpc.BadRequest detail is decoded through reflection.
    assert!(out.contains("fieldViolations"), "{out}");

    let malformed = app
        .grpcurl(
            Some(&token),
            &[
                "-d",
                r#"{"tenant_id": 5, "bogus": true}"#,
                "manifold.tenancy.v1.TenantService/CreateTenant",
            ],
        )
        .await
        .unwrap();
    assert!(!malformed.status.success(), "{}", text(&malformed));

    let anonymous = app.grpcurl(None, &["list"]).await.unwrap();
    assert!(!anonymous.status.success());
    assert!(
        text(&anonymous).contains("Unauthenticated"),
        "{}",
        text(&anonymous)
    );
}
