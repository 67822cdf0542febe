//! The vK8s gateway's gRPC API (`manifold.vk8s.v1`): virtual clusters
//! (create, get, list, update with mask and etag, delete, kubeconfigs), the
//! errors users meet, tenant isolation, and the object feed (ordered,
//! resumable, compaction, snapshots). Also the scenario other vK8s tests
//! start from.

use std::path::PathBuf;
use std::time::Duration;

use manifold_integration_tests::{TestApp, authed};
use manifold_proto::tenancy::v1 as tpb;
use manifold_proto::vk8s::v1 as pb;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

pub(crate) const DEMO: &str = "tenants/acme/namespaces/shop/virtualClusters/demo";

/// Tenant `acme`, namespace `shop`, vK8s `demo`, and a tenant user `ann`
/// who is editor of the namespace, with a kubeconfig for her.
pub(crate) struct Scenario {
    pub app: TestApp,
    pub channel: Channel,
    pub admin: String,
    /// Ann's own token (tenant user, namespace editor).
    pub editor: String,
    pub dir: tempfile::TempDir,
    /// Ann's kubeconfig for `demo`.
    pub kubeconfig: PathBuf,
}

pub(crate) async fn scenario() -> Scenario {
    scenario_on(TestApp::spawn().await.expect("spawn the control plane")).await
}

pub(crate) async fn scenario_on(app: TestApp) -> Scenario {
    let channel = app.channel().await.expect("channel");
    let admin = app.admin_token.clone();
    create_tenant(&channel, &admin, "acme").await;
    create_namespace(&channel, &admin, "acme", "shop").await;
    create_vk8s(&channel, &admin, "tenants/acme/namespaces/shop", "demo")
        .await
        .expect("create vk8s demo");
    let editor = user_with_role(
        &channel,
        &admin,
        "acme",
        "ann",
        tpb::Role::NamespaceEditor,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("demo.kubeconfig");
    let yaml = get_kubeconfig(&channel, &editor, DEMO).await.kubeconfig;
    std::fs::write(&kubeconfig, yaml).expect("write kubeconfig");
    Scenario {
        app,
        channel,
        admin,
        editor,
        dir,
        kubeconfig,
    }
}

pub(crate) async fn create_tenant(ch: &Channel, admin: &str, id: &str) {
    tpb::tenant_service_client::TenantServiceClient::new(ch.clone())
        .create_tenant(authed(
            admin,
            tpb::CreateTenantRequest {
                tenant_id: id.into(),
                tenant: None,
            },
        ))
        .await
        .expect("create tenant");
}

pub(crate) async fn create_namespace(ch: &Channel, admin: &str, tenant: &str, ns: &str) {
    tpb::namespace_service_client::NamespaceServiceClient::new(ch.clone())
        .create_namespace(authed(
            admin,
            tpb::CreateNamespaceRequest {
                parent: format!("tenants/{tenant}"),
                namespace_id: ns.into(),
                namespace: None,
            },
        ))
        .await
        .expect("create namespace");
}

/// A tenant user holding `role` at `scope`, and a token for it.
pub(crate) async fn user_with_role(
    ch: &Channel,
    admin: &str,
    tenant: &str,
    user: &str,
    role: tpb::Role,
    scope: &str,
) -> String {
    let user_name = format!("tenants/{tenant}/users/{user}");
    tpb::user_service_client::UserServiceClient::new(ch.clone())
        .create_user(authed(
            admin,
            tpb::CreateUserRequest {
                parent: format!("tenants/{tenant}"),
                user_id: user.into(),
                user: None,
            },
        ))
        .await
        .expect("create user");
    tpb::role_binding_service_client::RoleBindingServiceClient::new(ch.clone())
        .create_role_binding(authed(
            admin,
            tpb::CreateRoleBindingRequest {
                parent: scope.into(),
                role_binding_id: String::new(),
                role_binding: Some(tpb::RoleBinding {
                    role: role as i32,
                    user: user_name.clone(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("bind role");
    tpb::api_token_service_client::ApiTokenServiceClient::new(ch.clone())
        .create_api_token(authed(
            admin,
            tpb::CreateApiTokenRequest {
                parent: user_name,
                token: None,
                ttl: None,
            },
        ))
        .await
        .expect("create token")
        .into_inner()
        .secret
}

fn clusters(
    ch: &Channel,
) -> pb::virtual_cluster_service_client::VirtualClusterServiceClient<Channel> {
    pb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch.clone())
}

pub(crate) async fn create_vk8s(
    ch: &Channel,
    token: &str,
    parent: &str,
    id: &str,
) -> Result<pb::VirtualCluster, tonic::Status> {
    clusters(ch)
        .create_virtual_cluster(authed(
            token,
            pb::CreateVirtualClusterRequest {
                parent: parent.into(),
                virtual_cluster_id: id.into(),
                virtual_cluster: Some(pb::VirtualCluster {
                    display_name: format!("{id} cluster"),
                    virtual_sites: vec!["all-edges".into()],
                    ..Default::default()
                }),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

pub(crate) async fn get_kubeconfig(ch: &Channel, token: &str, name: &str) -> pb::Kubeconfig {
    clusters(ch)
        .get_kubeconfig(authed(
            token,
            pb::GetKubeconfigRequest {
                name: name.into(),
                ttl_seconds: 0,
            },
        ))
        .await
        .expect("get kubeconfig")
        .into_inner()
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn virtual_clusters_crud_with_masks_etags_and_errors() {
    let s = scenario().await;
    let (ch, admin) = (&s.channel, s.admin.as_str());
    let mut c = clusters(ch);

    let vc = c
        .get_virtual_cluster(authed(
            admin,
            pb::GetVirtualClusterRequest { name: DEMO.into() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vc.name, DEMO);
    assert_eq!(vc.display_name, "demo cluster");
    assert_eq!(
        vc.virtual_sites,
        vec!["tenants/acme/namespaces/shop/virtualSites/all-edges"]
    );
    assert!(
        vc.server_url.ends_with("/vk8s/acme/shop/demo"),
        "{}",
        vc.server_url
    );
    assert!(!vc.uid.is_empty() && !vc.etag.is_empty());

    // Errors: bad ids with field violations, a missing namespace, a duplicate.
    let bad = create_vk8s(ch, admin, "tenants/acme/namespaces/shop", "Bad_Name")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let violations = bad
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations;
    assert_eq!(violations[0].field, "virtual_cluster_id");
    assert_eq!(
        code(create_vk8s(ch, admin, "tenants/acme/namespaces/nope", "x").await),
        Code::NotFound
    );
    assert_eq!(
        code(create_vk8s(ch, admin, "tenants/acme/namespaces/shop", "demo").await),
        Code::AlreadyExists
    );
    // An editor may not create virtual clusters (admin on the namespace is needed).
    assert_eq!(
        code(create_vk8s(ch, &s.editor, "tenants/acme/namespaces/shop", "mine").await),
        Code::PermissionDenied
    );

    // List with paging.
    for id in ["b1", "b2", "b3"] {
        create_vk8s(ch, admin, "tenants/acme/namespaces/shop", id)
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_virtual_clusters(authed(
                admin,
                pb::ListVirtualClustersRequest {
                    parent: "tenants/acme/namespaces/shop".into(),
                    page_size: 2,
                    page_token: token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        names.extend(page.virtual_clusters.into_iter().map(|v| v.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let short: Vec<&str> = names
        .iter()
        .map(|n| n.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(short, ["b1", "b2", "b3", "demo"]);

    // Update through a mask; a stale etag is ABORTED.
    let updated = c
        .update_virtual_cluster(authed(
            admin,
            pb::UpdateVirtualClusterRequest {
                virtual_cluster: Some(pb::VirtualCluster {
                    name: DEMO.into(),
                    display_name: "ignored".into(),
                    labels: [("env".to_owned(), "prod".to_owned())].into(),
                    etag: vc.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.labels["env"], "prod");
    assert_eq!(updated.display_name, "demo cluster");
    assert_ne!(updated.etag, vc.etag);
    let stale = c
        .update_virtual_cluster(authed(
            admin,
            pb::UpdateVirtualClusterRequest {
                virtual_cluster: Some(pb::VirtualCluster {
                    name: DEMO.into(),
                    display_name: "x".into(),
                    etag: vc.etag.clone(),
                    ..Default::default()
                }),
                update_mask: None,
            },
        ))
        .await;
    assert_eq!(code(stale), Code::Aborted);

    // Another tenant sees nothing.
    create_tenant(ch, admin, "globex").await;
    let bob = user_with_role(
        ch,
        admin,
        "globex",
        "bob",
        tpb::Role::TenantAdmin,
        "tenants/globex",
    )
    .await;
    let other = c
        .get_virtual_cluster(authed(
            &bob,
            pb::GetVirtualClusterRequest { name: DEMO.into() },
        ))
        .await;
    assert_eq!(code(other), Code::NotFound);
    let other = c
        .get_kubeconfig(authed(
            &bob,
            pb::GetKubeconfigRequest {
                name: DEMO.into(),
                ttl_seconds: 0,
            },
        ))
        .await;
    assert_eq!(code(other), Code::NotFound);

    // Delete.
    c.delete_virtual_cluster(authed(
        admin,
        pb::DeleteVirtualClusterRequest {
            name: "tenants/acme/namespaces/shop/virtualClusters/b1".into(),
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
    let gone = c
        .get_virtual_cluster(authed(
            admin,
            pb::GetVirtualClusterRequest {
                name: "tenants/acme/namespaces/shop/virtualClusters/b1".into(),
            },
        ))
        .await;
    assert_eq!(code(gone), Code::NotFound);
}

#[tokio::test]
async fn kubeconfigs_carry_url_ca_token_and_namespace() {
    let s = scenario().await;
    let k = get_kubeconfig(&s.channel, &s.editor, DEMO).await;
    let config: serde_json::Value =
        serde_yaml_ng::from_str(&k.kubeconfig).expect("kubeconfig is YAML");
    let server = config["clusters"][0]["cluster"]["server"].as_str().unwrap();
    assert!(
        server.starts_with("https://") && server.ends_with("/vk8s/acme/shop/demo"),
        "{server}"
    );
    assert!(config["clusters"][0]["cluster"]["certificate-authority-data"].is_string());
    assert!(
        config["users"][0]["user"]["token"]
            .as_str()
            .unwrap()
            .starts_with("mft_")
    );
    assert_eq!(config["contexts"][0]["context"]["namespace"], "shop");
    let expire = k.expire_time.expect("expire time");
    let days = (expire.seconds - chrono_now()) / 86_400;
    assert!(
        (29..=30).contains(&days),
        "default lifetime is 30 days, got {days}"
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn feed(ch: &Channel) -> pb::object_feed_client::ObjectFeedClient<Channel> {
    pb::object_feed_client::ObjectFeedClient::new(ch.clone())
}

/// Applies ConfigMaps through kubectl: the feed sees what users write.
async fn apply_configmaps(s: &Scenario, names: &[&str]) {
    let kubectl = crate::kubectl::Kubectl::new(&s.kubeconfig, s.dir.path());
    for name in names {
        kubectl
            .ok_stdin(
                &["apply", "-f", "-"],
                &format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"
                ),
            )
            .await;
    }
}

#[tokio::test]
async fn object_feed_is_ordered_resumable_and_admin_only() {
    let s = scenario().await;
    let admin = s.admin.as_str();
    assert_eq!(
        code(
            feed(&s.channel)
                .watch(authed(&s.editor, pb::WatchRequest { from_revision: 0 }))
                .await
        ),
        Code::PermissionDenied
    );
    let mut stream = feed(&s.channel)
        .watch(authed(admin, pb::WatchRequest { from_revision: 0 }))
        .await
        .unwrap()
        .into_inner();
    apply_configmaps(&s, &["a", "b", "c"]).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("feed event in time")
            .unwrap()
            .expect("stream open");
        if event.r#type == pb::object_event::Type::Progress as i32 {
            continue;
        }
        assert_eq!(event.r#type, pb::object_event::Type::Upsert as i32);
        assert_eq!(event.virtual_cluster, DEMO);
        assert_eq!(
            (event.api_version.as_str(), event.kind.as_str()),
            ("v1", "ConfigMap")
        );
        assert!(event.object.is_some());
        seen.push((event.revision, event.object_name));
    }
    let revisions: Vec<i64> = seen.iter().map(|(r, _)| *r).collect();
    assert!(
        revisions.windows(2).all(|w| w[1] == w[0] + 1),
        "gap-free: {revisions:?}"
    );
    assert_eq!(
        seen.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );

    // Resuming after the first revision replays the rest, in order.
    let mut resumed = feed(&s.channel)
        .watch(authed(
            admin,
            pb::WatchRequest {
                from_revision: revisions[0],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let next = resumed.message().await.unwrap().unwrap();
    assert_eq!(
        (next.revision, next.object_name.as_str()),
        (revisions[1], "b")
    );

    // Deletes carry no object.
    crate::kubectl::Kubectl::new(&s.kubeconfig, s.dir.path())
        .ok(&["delete", "configmap", "a"])
        .await;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if event.r#type == pb::object_event::Type::Delete as i32 {
            assert_eq!(event.object_name, "a");
            assert!(event.object.is_none());
            break;
        }
    }

    // A snapshot holds the current objects at one revision.
    let mut chunks = feed(&s.channel)
        .snapshot(authed(admin, pb::SnapshotRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mut names = Vec::new();
    let mut at = None;
    while let Some(chunk) = chunks.message().await.unwrap() {
        at.get_or_insert(chunk.revision);
        names.extend(chunk.objects.into_iter().map(|o| o.object_name));
    }
    assert_eq!(names, ["b", "c"]);
    assert!(at.unwrap() > revisions[2]);
}

#[tokio::test]
async fn compacted_revisions_are_out_of_range() {
    let app = TestApp::spawn_with(&[
        ("vk8s.log_retention_revisions", "2".into()),
        ("vk8s.compaction_interval_secs", "1".into()),
    ])
    .await
    .unwrap();
    let s = scenario_on(app).await;
    apply_configmaps(&s, &["a", "b", "c", "d", "e"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = feed(&s.channel)
            .watch(authed(&s.admin, pb::WatchRequest { from_revision: 1 }))
            .await;
        match r {
            Err(status) => {
                assert_eq!(status.code(), Code::OutOfRange);
                assert!(
                    status.message().contains("Snapshot"),
                    "{}",
                    status.message()
                );
                break;
            }
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(_) => panic!("revision 1 was never compacted"),
        }
    }
    // The kube API answers an old resourceVersion with 410 Gone.
    let kubectl = crate::kubectl::Kubectl::new(&s.kubeconfig, s.dir.path());
    let out = kubectl
        .fails(&[
            "get",
            "--raw",
            "/api/v1/namespaces/shop/configmaps?resourceVersion=1&resourceVersionMatch=Exact",
        ])
        .await;
    assert!(
        out.contains("Expired") || out.contains("410") || out.contains("too old"),
        "{out}"
    );
}

#[tokio::test]
async fn concurrent_writers_commit_in_revision_order() {
    let s = scenario().await;
    let kubectl = crate::kubectl::Kubectl::new(&s.kubeconfig, s.dir.path());
    let manifest: String = (0..24)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  k: v\n---\n"
            )
        })
        .collect();
    // Four kubectl processes writing at once, each several objects.
    let chunks: Vec<String> = manifest
        .split("---\n")
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .chunks(6)
        .map(|c| c.join("---\n"))
        .collect();
    let mut writers = Vec::new();
    for chunk in chunks {
        let k = crate::kubectl::Kubectl::new(&s.kubeconfig, s.dir.path());
        writers.push(tokio::spawn(async move {
            k.ok_stdin(&["apply", "-f", "-"], &chunk).await
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut stream = feed(&s.channel)
        .watch(authed(&s.admin, pb::WatchRequest { from_revision: 0 }))
        .await
        .unwrap()
        .into_inner();
    let mut revisions = Vec::new();
    while revisions.len() < 24 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("feed event in time")
            .unwrap()
            .unwrap();
        if event.r#type != pb::object_event::Type::Progress as i32 {
            revisions.push(event.revision);
        }
    }
    assert_eq!(revisions, (1..=24).collect::<Vec<i64>>());
    let listed = kubectl.ok(&["get", "configmaps", "-o", "name"]).await;
    assert_eq!(listed.lines().count(), 24);
}
