//! Virtual sites, resolution within a tenant's reach, placement watches, and
//! row-level security of the `sites` schema.

use std::time::Duration;

use manifold_integration_tests::{TestApp, authed};
use manifold_proto::sites::v1::*;
use manifold_proto::tenancy::v1 as tpb;
use tonic::Code;

use super::*;

async fn create_vs(
    c: &mut Clients,
    token: &str,
    tenant: &str,
    id: &str,
    selector: &str,
) -> Result<VirtualSite, tonic::Status> {
    c.vs.create_virtual_site(authed(
        token,
        CreateVirtualSiteRequest {
            parent: format!("tenants/{tenant}/namespaces/shop"),
            virtual_site_id: id.into(),
            virtual_site: Some(VirtualSite {
                site_selector: selector.into(),
                ..Default::default()
            }),
        },
    ))
    .await
    .map(|r| r.into_inner())
}

async fn resolve(c: &mut Clients, token: &str, name: &str) -> Result<Vec<String>, tonic::Status> {
    Ok(c.vs
        .resolve_virtual_site(authed(
            token,
            ResolveVirtualSiteRequest { name: name.into() },
        ))
        .await?
        .into_inner()
        .sites)
}

#[tokio::test]
async fn virtual_sites_resolve_only_sites_the_tenant_may_use() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    let acme = tenant(&app, &c.ch, "acme").await;
    let globex = tenant(&app, &c.ch, "globex").await;
    for (id, env, region) in [
        ("pa2-par", "edge", "eu"),
        ("ny8-nyc", "edge", "us"),
        ("sg1-sin", "edge", "ap"),
        ("core-eu", "core", "eu"),
    ] {
        create_site(&mut c, &admin, id, "", &[("env", env), ("region", region)])
            .await
            .unwrap();
    }
    // Private sites: one created by the operator for acme, one by globex's admin.
    let own = create_site(
        &mut c,
        &admin,
        "acme-edge",
        "tenants/acme",
        &[("env", "edge"), ("region", "eu")],
    )
    .await
    .unwrap();
    assert_eq!(own.owner, "tenants/acme");
    create_site(
        &mut c,
        &globex.admin,
        "globex-edge",
        "tenants/globex",
        &[("env", "edge"), ("region", "us")],
    )
    .await
    .unwrap();
    let other = create_site(&mut c, &acme.admin, "x-edge", "tenants/globex", &[]).await;
    assert_eq!(code(other), Code::NotFound);

    let selector = "env=edge,region in (eu,us)";
    let vs = create_vs(&mut c, &acme.admin, "acme", "edges", selector)
        .await
        .unwrap();
    assert_eq!(vs.name, "tenants/acme/namespaces/shop/virtualSites/edges");
    assert_eq!(vs.site_selector, selector);
    create_vs(&mut c, &globex.admin, "globex", "edges", selector)
        .await
        .unwrap();

    assert_eq!(
        resolve(&mut c, &acme.admin, &vs.name).await.unwrap(),
        ["sites/acme-edge", "sites/ny8-nyc", "sites/pa2-par"]
    );
    let globex_vs = "tenants/globex/namespaces/shop/virtualSites/edges";
    assert_eq!(
        resolve(&mut c, &globex.admin, globex_vs).await.unwrap(),
        ["sites/globex-edge", "sites/ny8-nyc", "sites/pa2-par"]
    );
    // Also when the operator asks: placement follows the virtual site's tenant.
    assert_eq!(
        resolve(&mut c, &admin, globex_vs).await.unwrap(),
        ["sites/globex-edge", "sites/ny8-nyc", "sites/pa2-par"]
    );
    // acme can neither see globex's site nor its virtual sites.
    assert_eq!(
        code(resolve(&mut c, &acme.admin, globex_vs).await),
        Code::NotFound
    );
    let hidden = c
        .sites
        .get_site(authed(
            &acme.admin,
            GetSiteRequest {
                name: "sites/globex-edge".into(),
            },
        ))
        .await;
    assert_eq!(code(hidden), Code::NotFound);
    let listed: Vec<String> = c
        .sites
        .list_sites(authed(&acme.admin, ListSitesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .sites
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        listed,
        [
            "sites/acme-edge",
            "sites/core-eu",
            "sites/ny8-nyc",
            "sites/pa2-par",
            "sites/sg1-sin"
        ]
    );

    // Errors.
    let bad = create_vs(&mut c, &acme.admin, "acme", "broken", "region in (").await;
    assert_eq!(violation(bad), "virtual_site.site_selector");
    let empty = create_vs(&mut c, &acme.admin, "acme", "broken", "").await;
    assert_eq!(violation(empty), "virtual_site.site_selector");
    let bad = create_vs(&mut c, &acme.admin, "acme", "Bad", "env=edge").await;
    assert_eq!(violation(bad), "virtual_site_id");
    let dup = create_vs(&mut c, &acme.admin, "acme", "edges", "env=edge").await;
    assert_eq!(code(dup), Code::AlreadyExists);
    let foreign = create_vs(&mut c, &acme.admin, "globex", "mine", "env=edge").await;
    assert_eq!(code(foreign), Code::NotFound);
    let no_ns =
        c.vs.create_virtual_site(authed(
            &acme.admin,
            CreateVirtualSiteRequest {
                parent: "tenants/acme/namespaces/nope".into(),
                virtual_site_id: "x".into(),
                virtual_site: Some(VirtualSite {
                    site_selector: "env=edge".into(),
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert_eq!(code(no_ns), Code::NotFound);
    let update = |selector: &str, etag: &str| UpdateVirtualSiteRequest {
        virtual_site: Some(VirtualSite {
            name: vs.name.clone(),
            site_selector: selector.into(),
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["site_selector".into()],
        }),
    };
    let bad =
        c.vs.update_virtual_site(authed(&acme.admin, update("a in (", "")))
            .await;
    assert_eq!(violation(bad), "virtual_site.site_selector");

    // A namespace editor tunes the selector but cannot create or delete.
    let editor = user_token(
        &app,
        &c.ch,
        "acme",
        "ed",
        tpb::Role::NamespaceEditor,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let updated =
        c.vs.update_virtual_site(authed(&editor, update("region=eu", &vs.etag)))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        resolve(&mut c, &editor, &vs.name).await.unwrap(),
        ["sites/acme-edge", "sites/core-eu", "sites/pa2-par"]
    );
    let stale =
        c.vs.update_virtual_site(authed(&editor, update("env=edge", &vs.etag)))
            .await;
    assert_eq!(code(stale), Code::Aborted);
    let denied = create_vs(&mut c, &editor, "acme", "more", "env=edge").await;
    assert_eq!(code(denied), Code::PermissionDenied);
    let delete = |etag: &str| DeleteVirtualSiteRequest {
        name: vs.name.clone(),
        etag: etag.into(),
    };
    assert_eq!(
        code(c.vs.delete_virtual_site(authed(&editor, delete(""))).await),
        Code::PermissionDenied
    );
    c.vs.delete_virtual_site(authed(&acme.admin, delete(&updated.etag)))
        .await
        .unwrap();
    assert_eq!(
        code(resolve(&mut c, &acme.admin, &vs.name).await),
        Code::NotFound
    );
}

async fn next_event(s: &mut tonic::Streaming<PlacementEvent>) -> PlacementEvent {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("a placement event within 10 s")
        .expect("stream ok")
        .expect("stream open")
}

#[tokio::test]
async fn watch_placement_follows_label_changes() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    let acme = tenant(&app, &c.ch, "acme").await;
    create_site(&mut c, &admin, "pa2-par", "", &[("env", "edge")])
        .await
        .unwrap();
    let ny = create_site(&mut c, &admin, "ny8-nyc", "", &[("env", "core")])
        .await
        .unwrap();
    let vs = create_vs(&mut c, &acme.admin, "acme", "edges", "env=edge")
        .await
        .unwrap();

    let watch = |parent: &str| WatchPlacementRequest {
        parent: parent.into(),
    };
    // Everything: operators only.
    assert_eq!(
        code(c.vs.watch_placement(authed(&acme.admin, watch(""))).await),
        Code::PermissionDenied
    );
    let mut stream =
        c.vs.watch_placement(authed(&acme.admin, watch("tenants/acme/namespaces/shop")))
            .await
            .unwrap()
            .into_inner();
    let mut all =
        c.vs.watch_placement(authed(&admin, watch("")))
            .await
            .unwrap()
            .into_inner();
    let first = next_event(&mut stream).await;
    assert_eq!(first.virtual_site, vs.name);
    assert_eq!(first.sites, ["sites/pa2-par"]);
    assert_eq!(next_event(&mut all).await.sites, ["sites/pa2-par"]);

    // A site gains the label: it enters.
    c.sites
        .update_site(authed(
            &admin,
            UpdateSiteRequest {
                site: Some(Site {
                    name: ny.name.clone(),
                    labels: labels(&[("env", "edge")]),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels".into()],
                }),
            },
        ))
        .await
        .unwrap();
    let entered = next_event(&mut stream).await;
    assert_eq!(entered.sites, ["sites/ny8-nyc", "sites/pa2-par"]);
    assert!(entered.revision > first.revision);
    assert_eq!(
        next_event(&mut all).await.sites,
        ["sites/ny8-nyc", "sites/pa2-par"]
    );

    // Decommissioned: it leaves.
    c.sites
        .delete_site(authed(
            &admin,
            DeleteSiteRequest {
                name: "sites/pa2-par".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(next_event(&mut stream).await.sites, ["sites/ny8-nyc"]);

    // Another tenant's private site never shows up in acme's placement.
    let globex = tenant(&app, &c.ch, "globex").await;
    create_site(
        &mut c,
        &globex.admin,
        "globex-edge",
        "tenants/globex",
        &[("env", "edge")],
    )
    .await
    .unwrap();
    // The virtual site is deleted: a last event says so.
    c.vs.delete_virtual_site(authed(
        &acme.admin,
        DeleteVirtualSiteRequest {
            name: vs.name.clone(),
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
    let deleted = next_event(&mut stream).await;
    assert!(deleted.deleted, "{deleted:?}");
    assert_eq!(deleted.virtual_site, vs.name);
    assert!(deleted.sites.is_empty());

    // Open watches end on shutdown, so a graceful stop does not hang.
    let restarted = tokio::time::timeout(Duration::from_secs(20), app.restart())
        .await
        .expect("the server stops while placement watches are open")
        .unwrap();
    // Events already sent are delivered, then the stream ends.
    let mut ended = false;
    for _ in 0..10 {
        let msg = tokio::time::timeout(Duration::from_secs(10), all.message())
            .await
            .expect("the watch ends");
        if !matches!(msg, Ok(Some(_))) {
            ended = true;
            break;
        }
    }
    assert!(ended, "the watch stream must end on shutdown");
    drop(restarted);
}

/// Two control planes on one database (replicas): a change written through
/// one reaches a watcher on the other through Postgres NOTIFY, well before
/// the periodic re-check would.
#[tokio::test]
async fn placement_changes_reach_watchers_on_other_replicas() {
    let app = TestApp::spawn().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.crt", "ca.key", "admin.token"] {
        std::fs::copy(app.data_dir.path().join(f), dir.path().join(f)).unwrap();
    }
    let replica = TestApp::start(app.database_url.clone(), dir).await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    let mut r = clients(&replica).await;
    tenant(&app, &c.ch, "acme").await;
    create_vs(&mut c, &admin, "acme", "edges", "env=edge")
        .await
        .unwrap();
    let mut stream =
        r.vs.watch_placement(authed(
            &admin,
            WatchPlacementRequest {
                parent: "tenants/acme/namespaces/shop".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(next_event(&mut stream).await.sites.is_empty());
    create_site(&mut c, &admin, "pa2-par", "", &[("env", "edge")])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(next_event(&mut stream).await.sites, ["sites/pa2-par"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(r);
}

/// Even SQL that forgot its tenant filter cannot cross tenants: in a tenant's
/// scope the `sites` schema shows provider sites and that tenant's own, and
/// refuses writes to provider sites.
#[tokio::test]
async fn row_level_security_confines_sites_to_their_tenant() {
    use manifold_db::sqlx::{self, Connection, Executor, PgConnection};
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    tenant(&app, &c.ch, "red").await;
    tenant(&app, &c.ch, "blue").await;
    create_site(&mut c, &admin, "shared", "", &[])
        .await
        .unwrap();
    let red = create_site(&mut c, &admin, "red-edge", "tenants/red", &[])
        .await
        .unwrap();
    create_site(&mut c, &admin, "blue-edge", "tenants/blue", &[])
        .await
        .unwrap();
    for t in ["red", "blue"] {
        create_vs(&mut c, &admin, t, "all", "env").await.unwrap();
    }
    let red_uid: String = {
        let t = tpb::tenant_service_client::TenantServiceClient::new(c.ch.clone())
            .get_tenant(authed(
                &admin,
                tpb::GetTenantRequest {
                    name: "tenants/red".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        t.uid
    };

    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    conn.execute("SET ROLE manifold_app").await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('manifold.tenant', $1, true)")
        .bind(&red_uid)
        .execute(&mut *tx)
        .await
        .unwrap();
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sites.sites ORDER BY name")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(names, ["red-edge", "shared"]);
    let vss: i64 = sqlx::query_scalar("SELECT count(*) FROM sites.virtual_sites")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(vss, 1);
    let touched = sqlx::query("UPDATE sites.sites SET location = 'x' WHERE name <> 'red-edge'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(touched, 0, "provider and foreign sites are read-only here");
    let forged = sqlx::query(
        "INSERT INTO sites.sites (id, tenant_id, owner_tenant, name) VALUES ($1, NULL, NULL, 'fake')",
    )
    .bind(uuid::Uuid::new_v4())
    .execute(&mut *tx)
    .await;
    assert!(
        forged.is_err(),
        "a tenant scope cannot create provider sites"
    );
    tx.rollback().await.unwrap();
    assert_eq!(red.owner, "tenants/red");

    // No scope at all: nothing, not even provider sites.
    let mut tx = conn.begin().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sites.sites")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 0);
    tx.rollback().await.unwrap();
}
