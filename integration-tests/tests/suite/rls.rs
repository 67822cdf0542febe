//! Row-level security: even SQL that forgets its tenant filter cannot read or
//! write another tenant's rows, because Postgres enforces the tenant scope.

use manifold_db::sqlx::{self, Connection, Executor, PgConnection};
use manifold_integration_tests::{TestApp, authed};
use manifold_proto::tenancy::v1::*;

#[tokio::test]
async fn row_level_security_confines_a_transaction_to_its_tenant() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let ch = app.channel().await.unwrap();
    let mut tenants = tenant_service_client::TenantServiceClient::new(ch.clone());
    let mut namespaces = namespace_service_client::NamespaceServiceClient::new(ch);
    let mut ids = Vec::new();
    for t in ["red", "blue"] {
        let tenant = tenants
            .create_tenant(authed(
                &admin,
                CreateTenantRequest {
                    tenant_id: t.into(),
                    tenant: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(tenant.uid);
        namespaces
            .create_namespace(authed(
                &admin,
                CreateNamespaceRequest {
                    parent: format!("tenants/{t}"),
                    namespace_id: "ns".into(),
                    namespace: None,
                },
            ))
            .await
            .unwrap();
    }
    let (red, blue) = (&ids[0], &ids[1]);

    // The login here is a superuser (it created the database); the services
    // run as manifold_app, and so does this connection.
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    conn.execute("SET ROLE manifold_app").await.unwrap();

    let count = async |conn: &mut PgConnection, scope: Option<&str>| -> i64 {
        let mut tx = conn.begin().await.unwrap();
        if let Some(s) = scope {
            sqlx::query("SELECT set_config('manifold.tenant', $1, true)")
                .bind(s)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenancy.namespaces")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        n
    };
    assert_eq!(
        count(&mut conn, Some("*")).await,
        2,
        "system scope sees all"
    );
    assert_eq!(
        count(&mut conn, Some(red)).await,
        1,
        "a tenant scope sees its own rows"
    );
    assert_eq!(count(&mut conn, None).await, 0, "no scope sees nothing");

    // Writes into another tenant are refused or touch nothing.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('manifold.tenant', $1, true)")
        .bind(red)
        .execute(&mut *tx)
        .await
        .unwrap();
    let updated = sqlx::query(
        "UPDATE tenancy.namespaces SET display_name = 'pwned' WHERE tenant_id = $1::uuid",
    )
    .bind(blue)
    .execute(&mut *tx)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(updated, 0);
    let deleted = sqlx::query("DELETE FROM tenancy.tenants WHERE id = $1::uuid")
        .bind(blue)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 0);
    let insert = sqlx::query(
        "INSERT INTO tenancy.namespaces (id, tenant_id, name) VALUES (gen_random_uuid(), $1::uuid, 'sneaky')",
    )
    .bind(blue)
    .execute(&mut *tx)
    .await;
    let err = insert.expect_err("insert into another tenant must fail");
    assert!(err.to_string().contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();

    // The role cannot switch the policies off.
    let disable = conn
        .execute("ALTER TABLE tenancy.namespaces DISABLE ROW LEVEL SECURITY")
        .await;
    assert!(disable.is_err());
}
