//! Deleting a tenant or a namespace cascades into every service's schema
//! (`tenancy.deletions`, migration 0006): the gateway deletes the virtual
//! clusters through its change log, so replication sends Deletes and the
//! sites end up empty of the tenant's workloads; the registry deletes the
//! virtual sites and decommissions the tenant's own sites; a tenant
//! re-created under the same name starts empty, without the old audit trail.

use std::time::Duration;

use manifold_integration_tests::{TestApp, authed};
use manifold_proto::{audit::v1 as apb, sites::v1 as spb, tenancy::v1 as tpb, vk8s::v1 as vpb};
use manifold_site_agent::{AgentConfig, Fleet, SimulatedOptions, SimulatedSite};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::reference::{Kube, scenario};
use crate::vk8s_grpc::{create_namespace, create_tenant, create_vk8s, user_with_role};

const PROVIDER_SITES: [&str; 3] = ["pa2-par", "ny8-nyc", "ams9-ams"];
/// Tenant acme's own site (labelled env=edge: `all-edges` selects it too).
const PRIVATE_SITE: &str = "acme-edge";
const ALL_SITES: [&str; 4] = ["pa2-par", "ny8-nyc", "ams9-ams", PRIVATE_SITE];
const WAIT: Duration = Duration::from_secs(60);

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: {name}
        image: {name}:v1
"
    )
}

/// Waits until `done` holds, at most [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Objects site `site` holds of tenant `tenant` (in `namespace`, if given).
fn held(fleet: &Fleet, site: &str, tenant: &str, namespace: Option<&str>) -> usize {
    fleet.backends[site]
        .object_keys()
        .iter()
        .filter(|k| {
            k.virtual_cluster.tenant() == tenant
                && namespace.is_none_or(|n| k.virtual_cluster.namespace() == n)
        })
        .count()
}

/// The all-in-one with three provider sites and acme's private site, all
/// env=edge; tenant acme with namespace shop, virtual site `all-edges` and
/// vK8s `demo` (kubeconfig in `home`).
async fn setup(
    app: &TestApp,
    ch: &Channel,
    home: &std::path::Path,
    stop: &CancellationToken,
) -> (Fleet, Kube) {
    let admin = &app.admin_token;
    let mut base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    base.heartbeat_interval = Duration::from_secs(1);
    base.status_debounce = Duration::from_millis(100);
    // The tenant first: its private site needs an owner.
    let config = scenario(ch, admin, home).await;
    spb::site_service_client::SiteServiceClient::new(ch.clone())
        .create_site(authed(
            admin,
            spb::CreateSiteRequest {
                site_id: PRIVATE_SITE.into(),
                site: Some(spb::Site {
                    owner: "tenants/acme".into(),
                    labels: [("env".to_owned(), "edge".to_owned())].into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("private site");
    let fleet = manifold_site_agent::start_simulated_sites(
        ch.clone(),
        admin,
        &base,
        ALL_SITES.iter().map(|n| SimulatedSite::edge(*n)).collect(),
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await
    .expect("simulated sites");
    let kube = Kube {
        home: home.to_owned(),
        config,
    };
    (fleet, kube)
}

async fn get_vk8s(
    ch: &Channel,
    token: &str,
    name: &str,
) -> Result<vpb::VirtualCluster, tonic::Status> {
    vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch.clone())
        .get_virtual_cluster(authed(
            token,
            vpb::GetVirtualClusterRequest { name: name.into() },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn list_vk8s(ch: &Channel, token: &str, parent: &str) -> Vec<vpb::VirtualCluster> {
    vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch.clone())
        .list_virtual_clusters(authed(
            token,
            vpb::ListVirtualClustersRequest {
                parent: parent.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list virtual clusters")
        .into_inner()
        .virtual_clusters
}

async fn list_virtual_sites(ch: &Channel, token: &str, parent: &str) -> Vec<spb::VirtualSite> {
    spb::virtual_site_service_client::VirtualSiteServiceClient::new(ch.clone())
        .list_virtual_sites(authed(
            token,
            spb::ListVirtualSitesRequest {
                parent: parent.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list virtual sites")
        .into_inner()
        .virtual_sites
}

#[tokio::test]
async fn tenant_deletion_empties_sites_registry_and_a_recreated_tenant() {
    let app = TestApp::spawn().await.expect("control plane");
    let ch = app.channel().await.expect("channel");
    let admin = app.admin_token.clone();
    let home = tempfile::tempdir().expect("home");
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let (fleet, kube) = setup(&app, &ch, home.path(), &stop).await;

    kube.apply(&deployment("productpage")).await;
    kube.wait_pods(&ALL_SITES, 1, |_| true).await;
    for site in ALL_SITES {
        assert!(
            held(&fleet, site, "acme", None) > 0,
            "{site} holds acme's objects"
        );
    }

    tpb::tenant_service_client::TenantServiceClient::new(ch.clone())
        .delete_tenant(authed(
            &admin,
            tpb::DeleteTenantRequest {
                name: "tenants/acme".into(),
                force: true,
                ..Default::default()
            },
        ))
        .await
        .expect("force-delete acme");

    // Every site lets go of acme's workloads (Deletes through the change log).
    eventually("sites hold none of acme's objects", || async {
        ALL_SITES.iter().all(|s| held(&fleet, s, "acme", None) == 0)
    })
    .await;
    // The private site is decommissioned (its certificates revoked).
    let mut sites = spb::site_service_client::SiteServiceClient::new(ch.clone());
    eventually("the private site is decommissioned", || {
        let mut sites = sites.clone();
        let admin = admin.clone();
        async move {
            let site = sites
                .list_sites(authed(
                    &admin,
                    spb::ListSitesRequest {
                        show_decommissioned: true,
                        ..Default::default()
                    },
                ))
                .await
                .expect("list sites")
                .into_inner()
                .sites
                .into_iter()
                .find(|s| s.name == format!("sites/{PRIVATE_SITE}"))
                .expect("private site listed");
            site.state == spb::site::State::Decommissioned as i32
        }
    })
    .await;
    let provider = sites
        .get_site(authed(
            &admin,
            spb::GetSiteRequest {
                name: "sites/pa2-par".into(),
            },
        ))
        .await
        .expect("provider site")
        .into_inner();
    assert_ne!(provider.state, spb::site::State::Decommissioned as i32);

    // Re-created under the same name: an empty tenant.
    create_tenant(&ch, &admin, "acme").await;
    create_namespace(&ch, &admin, "acme", "shop").await;
    let boss = user_with_role(
        &ch,
        &admin,
        "acme",
        "boss",
        tpb::Role::TenantAdmin,
        "tenants/acme",
    )
    .await;
    let demo = "tenants/acme/namespaces/shop/virtualClusters/demo";
    assert_eq!(
        get_vk8s(&ch, &boss, demo)
            .await
            .expect_err("demo is gone")
            .code(),
        tonic::Code::NotFound
    );
    assert!(
        list_vk8s(&ch, &boss, "tenants/acme/namespaces/shop")
            .await
            .is_empty()
    );
    assert!(
        list_virtual_sites(&ch, &boss, "tenants/acme/namespaces/shop")
            .await
            .is_empty()
    );
    // A new vK8s of the same name starts empty and stays off every site.
    create_vk8s(&ch, &boss, "tenants/acme/namespaces/shop", "demo")
        .await
        .expect("new demo");
    let kubeconfig = crate::vk8s_grpc::get_kubeconfig(&ch, &boss, demo).await;
    let path = home.path().join("new.kubeconfig");
    std::fs::write(&path, kubeconfig.kubeconfig).unwrap();
    let fresh = Kube {
        home: home.path().to_owned(),
        config: path,
    };
    let deployments = fresh.ok(&["get", "deployments", "-o", "name"]).await;
    assert!(deployments.trim().is_empty(), "{deployments}");
    // The old audit trail stays for operators but is not the new tenant's.
    let events = apb::audit_service_client::AuditServiceClient::new(ch.clone())
        .list_audit_events(authed(
            &boss,
            apb::ListAuditEventsRequest {
                parent: "tenants/acme".into(),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .expect("audit of the new acme")
        .into_inner()
        .audit_events;
    assert!(
        !events
            .iter()
            .any(|e| e.resource.contains("virtualSites/all-edges")
                || e.method.ends_with("/DeleteTenant")
                || e.resource.contains(PRIVATE_SITE)),
        "the new acme sees the old one's events: {events:#?}"
    );
    let all = apb::audit_service_client::AuditServiceClient::new(ch.clone())
        .list_audit_events(authed(
            &admin,
            apb::ListAuditEventsRequest {
                parent: "tenants/-".into(),
                method: "DeleteTenant".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("operators' audit")
        .into_inner()
        .audit_events;
    assert!(!all.is_empty(), "operators keep the old events");
    for site in PROVIDER_SITES {
        assert_eq!(held(&fleet, site, "acme", None), 0);
    }
}

#[tokio::test]
async fn tenant_deletion_of_a_namespace_removes_only_its_vk8s() {
    let app = TestApp::spawn().await.expect("control plane");
    let ch = app.channel().await.expect("channel");
    let admin = app.admin_token.clone();
    let home = tempfile::tempdir().expect("home");
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let (fleet, kube) = setup(&app, &ch, home.path(), &stop).await;

    // A second namespace `lab` with its own virtual site and vK8s.
    create_namespace(&ch, &admin, "acme", "lab").await;
    spb::virtual_site_service_client::VirtualSiteServiceClient::new(ch.clone())
        .create_virtual_site(authed(
            &admin,
            spb::CreateVirtualSiteRequest {
                parent: "tenants/acme/namespaces/lab".into(),
                virtual_site_id: "edges".into(),
                virtual_site: Some(spb::VirtualSite {
                    site_selector: "env=edge".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("virtual site in lab");
    vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch.clone())
        .create_virtual_cluster(authed(
            &admin,
            vpb::CreateVirtualClusterRequest {
                parent: "tenants/acme/namespaces/lab".into(),
                virtual_cluster_id: "test".into(),
                virtual_cluster: Some(vpb::VirtualCluster {
                    virtual_sites: vec!["edges".into()],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("vK8s in lab");
    let lab_vk8s = "tenants/acme/namespaces/lab/virtualClusters/test";
    let kubeconfig = crate::vk8s_grpc::get_kubeconfig(&ch, &admin, lab_vk8s).await;
    let path = home.path().join("lab.kubeconfig");
    std::fs::write(&path, kubeconfig.kubeconfig).unwrap();
    let lab = Kube {
        home: home.path().to_owned(),
        config: path,
    };

    kube.apply(&deployment("productpage")).await;
    lab.ok(&["-n", "lab", "create", "deployment", "web", "--image=web:v1"])
        .await;
    eventually("both namespaces' workloads reach every site", || async {
        ALL_SITES.iter().all(|s| {
            held(&fleet, s, "acme", Some("shop")) > 0 && held(&fleet, s, "acme", Some("lab")) > 0
        })
    })
    .await;

    tpb::namespace_service_client::NamespaceServiceClient::new(ch.clone())
        .delete_namespace(authed(
            &admin,
            tpb::DeleteNamespaceRequest {
                name: "tenants/acme/namespaces/lab".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete namespace lab");

    eventually("sites hold none of lab's objects", || async {
        ALL_SITES
            .iter()
            .all(|s| held(&fleet, s, "acme", Some("lab")) == 0)
    })
    .await;
    eventually("lab's vK8s is gone", || async {
        get_vk8s(&ch, &admin, lab_vk8s)
            .await
            .is_err_and(|s| s.code() == tonic::Code::NotFound)
    })
    .await;
    // shop is untouched: its vK8s, virtual site and workloads stay.
    get_vk8s(
        &ch,
        &admin,
        "tenants/acme/namespaces/shop/virtualClusters/demo",
    )
    .await
    .expect("shop's vK8s stays");
    assert_eq!(
        list_virtual_sites(&ch, &admin, "tenants/acme/namespaces/shop")
            .await
            .len(),
        1
    );
    // Give replication a moment to (wrongly) send anything more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for site in ALL_SITES {
        assert!(
            held(&fleet, site, "acme", Some("shop")) > 0,
            "{site} keeps shop"
        );
    }
    let site = spb::site_service_client::SiteServiceClient::new(ch.clone())
        .get_site(authed(
            &admin,
            spb::GetSiteRequest {
                name: format!("sites/{PRIVATE_SITE}"),
            },
        ))
        .await
        .expect("the private site stays")
        .into_inner();
    assert_ne!(site.state, spb::site::State::Decommissioned as i32);
}
