//! Long-lived streams re-check their credential (every
//! `auth.stream_recheck_secs`, one second here): `kubectl get -w`,
//! `kubectl logs -f`, WatchPods, StreamLogs, WatchObjectStatus,
//! WatchPlacement and the object feed end soon after their token is revoked
//! or expires, and the next request is refused (401 / UNAUTHENTICATED).

use std::time::Duration;

use manifold_integration_tests::{TestApp, authed};
use manifold_proto::{tenancy::v1 as tpb, vk8s::v1 as vpb};
use manifold_site_agent::{AgentConfig, SimulatedOptions, SimulatedSite};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::{Running, mint, revoke, spawn_grpcurl, spawn_kubectl, token_name};
use crate::kubectl::Kubectl;
use crate::vk8s_grpc::{get_kubeconfig, user_with_role};

const VK: &str = "tenants/acme/namespaces/shop/virtualClusters/demo";
/// Re-check interval (1 s) + auth cache (1 s) + the clients' own latency.
const ENDS_WITHIN: Duration = Duration::from_secs(15);

/// A system user `id` holding system-admin, and an unscoped token for it.
async fn operator(ch: &Channel, admin: &str, id: &str) -> String {
    tpb::user_service_client::UserServiceClient::new(ch.clone())
        .create_user(authed(
            admin,
            tpb::CreateUserRequest {
                parent: String::new(),
                user_id: id.into(),
                user: None,
            },
        ))
        .await
        .expect("create operator");
    tpb::role_binding_service_client::RoleBindingServiceClient::new(ch.clone())
        .create_role_binding(authed(
            admin,
            tpb::CreateRoleBindingRequest {
                parent: String::new(),
                role_binding_id: String::new(),
                role_binding: Some(tpb::RoleBinding {
                    role: tpb::Role::SystemAdmin as i32,
                    user: format!("users/{id}"),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("bind system-admin");
    mint(ch, admin, &format!("users/{id}"), 3600, "")
        .await
        .expect("operator token")
        .secret
}

/// The name of a Running pod of the vK8s, waited for (bounded).
/// A Running pod: its vK8s name and its name on its site (what
/// replication's gRPC API takes).
async fn running_pod(kubectl: &Kubectl) -> (String, String) {
    for _ in 0..120 {
        let text = kubectl.ok(&["get", "pods", "-o", "json"]).await;
        let list: Value = serde_json::from_str(&text).expect("pod list");
        if let Some(name) = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["status"]["phase"] == "Running")
            .and_then(|p| {
                let site_pod = p["metadata"]["annotations"]["manifold.dev/site-pod-name"].as_str();
                Some((p["metadata"]["name"].as_str()?, site_pod?))
            })
        {
            return (name.0.to_owned(), name.1.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no pod became Running");
}

fn assert_alive(streams: &mut [Running]) {
    for s in streams {
        assert!(
            s.alive(),
            "{} ended while its token was valid:\n{}\n{}",
            s.what,
            s.stdout(),
            s.stderr()
        );
    }
}

/// A control plane re-checking stream credentials every second, one
/// simulated site and the reference scenario.
struct Plane {
    app: TestApp,
    ch: Channel,
    admin: String,
    dir: tempfile::TempDir,
    admin_kubeconfig: std::path::PathBuf,
    _fleet: manifold_site_agent::Fleet,
    _stop: tokio_util::sync::DropGuard,
}

async fn plane() -> Plane {
    let app = TestApp::spawn_with(&[("auth.stream_recheck_secs", "1".into())])
        .await
        .expect("control plane");
    let ch = app.channel().await.expect("channel");
    let admin = app.admin_token.clone();
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let mut base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    base.heartbeat_interval = Duration::from_secs(1);
    base.status_debounce = Duration::from_millis(100);
    let fleet = manifold_site_agent::start_simulated_sites(
        ch.clone(),
        &admin,
        &base,
        vec![SimulatedSite::edge("pa2-par")],
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await
    .expect("a simulated site");
    let admin_kubeconfig = crate::reference::scenario(&ch, &admin, dir.path()).await;
    Plane {
        app,
        ch,
        admin,
        dir,
        admin_kubeconfig,
        _fleet: fleet,
        _stop: stop.drop_guard(),
    }
}

#[tokio::test]
async fn streams_end_once_their_token_is_revoked_or_expires() {
    let plane = plane().await;
    let (app, ch, admin, dir) = (&plane.app, &plane.ch, &plane.admin, &plane.dir);
    let admin_kubeconfig = &plane.admin_kubeconfig;
    Kubectl::new(admin_kubeconfig, dir.path())
        .ok_stdin(
            &["apply", "-f", "-"],
            &crate::reference::deployment(1, "productpage:v1"),
        )
        .await;

    // Ann (namespace editor) with her own token and a kubeconfig minted
    // from it; an operator with an unscoped token for the object feed.
    let ann = user_with_role(
        ch,
        admin,
        "acme",
        "ann",
        tpb::Role::NamespaceEditor,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let ann_kubeconfig = dir.path().join("ann.kubeconfig");
    std::fs::write(
        &ann_kubeconfig,
        get_kubeconfig(ch, &ann, VK).await.kubeconfig,
    )
    .unwrap();
    let ops = operator(ch, admin, "ops").await;
    let kubectl = Kubectl::new(&ann_kubeconfig, dir.path());
    let (pod, site_pod) = running_pod(&kubectl).await;

    let vk = format!(r#"{{"virtual_cluster": "{VK}"}}"#);
    let logs = format!(
        r#"{{"virtual_cluster": "{VK}", "namespace": "shop", "pod": "{site_pod}", "follow": true}}"#
    );
    let mut streams = vec![
        spawn_kubectl(&ann_kubeconfig, dir.path(), &["get", "configmaps", "-w"]),
        spawn_kubectl(&ann_kubeconfig, dir.path(), &["get", "pods", "-w"]),
        spawn_kubectl(&ann_kubeconfig, dir.path(), &["logs", "-f", &pod]),
        spawn_grpcurl(
            app,
            dir.path(),
            &ann,
            &vk,
            "manifold.replication.v1.ReplicationService/WatchPods",
        ),
        spawn_grpcurl(
            app,
            dir.path(),
            &ann,
            &logs,
            "manifold.replication.v1.ReplicationService/StreamLogs",
        ),
        spawn_grpcurl(
            app,
            dir.path(),
            &ann,
            &vk,
            "manifold.replication.v1.ReplicationService/WatchObjectStatus",
        ),
        spawn_grpcurl(
            app,
            dir.path(),
            &ann,
            r#"{"parent": "tenants/acme/namespaces/shop"}"#,
            "manifold.sites.v1.VirtualSiteService/WatchPlacement",
        ),
        spawn_grpcurl(
            app,
            dir.path(),
            &ops,
            r#"{"from_revision": 0}"#,
            "manifold.vk8s.v1.ObjectFeed/Watch",
        ),
    ];
    // Several re-checks pass while the tokens are valid.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_alive(&mut streams);

    // Revoking Ann's token (her kubeconfig's token with it) and the
    // operator's ends every stream.
    revoke(ch, admin, &token_name(ch, &ann).await).await;
    revoke(ch, admin, &token_name(ch, &ops).await).await;
    for s in &mut streams {
        assert!(
            s.ends_within(ENDS_WITHIN).await.is_some(),
            "{} still running {ENDS_WITHIN:?} after its token was revoked:\n{}",
            s.what,
            s.stderr()
        );
        if s.what.starts_with("grpcurl") {
            assert!(
                s.stderr().contains("Unauthenticated"),
                "{}: {}",
                s.what,
                s.stderr()
            );
        }
    }
    // The next request meets the 401.
    let refused = kubectl.fails(&["get", "configmaps"]).await;
    assert!(refused.contains("Unauthorized"), "{refused}");
    let out = app
        .grpcurl(
            Some(&ann),
            &[
                "-d",
                &vk,
                "manifold.replication.v1.ReplicationService/ListPods",
            ],
        )
        .await
        .unwrap();
    // (grpcurl's reflection call is the first to be refused.)
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");

    // Expiry ends a stream too, on time: a five-second kubeconfig's watch
    // and a five-second token's WatchPods.
    let short = vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch.clone())
        .get_kubeconfig(authed(
            admin,
            vpb::GetKubeconfigRequest {
                name: VK.into(),
                ttl_seconds: 5,
            },
        ))
        .await
        .expect("short kubeconfig")
        .into_inner();
    let short_kubeconfig = dir.path().join("short.kubeconfig");
    std::fs::write(&short_kubeconfig, short.kubeconfig).unwrap();
    let short_ops = mint(ch, admin, "users/ops", 5, "")
        .await
        .expect("short token")
        .secret;
    let started = tokio::time::Instant::now();
    let mut expiring = vec![
        spawn_kubectl(&short_kubeconfig, dir.path(), &["get", "configmaps", "-w"]),
        spawn_grpcurl(
            app,
            dir.path(),
            &short_ops,
            r#"{"from_revision": 0}"#,
            "manifold.vk8s.v1.ObjectFeed/Watch",
        ),
    ];
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_alive(&mut expiring);
    for s in &mut expiring {
        assert!(
            s.ends_within(ENDS_WITHIN).await.is_some(),
            "{} outlived its token's expiry:\n{}",
            s.what,
            s.stderr()
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "ended before the expiry"
    );
}

/// The role binding `user` holds at `scope`.
async fn binding_of(ch: &Channel, admin: &str, scope: &str, user: &str) -> String {
    tpb::role_binding_service_client::RoleBindingServiceClient::new(ch.clone())
        .list_role_bindings(authed(
            admin,
            tpb::ListRoleBindingsRequest {
                parent: scope.into(),
                page_size: 0,
                page_token: String::new(),
            },
        ))
        .await
        .expect("list role bindings")
        .into_inner()
        .role_bindings
        .into_iter()
        .find(|b| b.user == user)
        .unwrap_or_else(|| panic!("{user} holds no binding at {scope}"))
        .name
}

/// A valid token is not enough to keep a stream: once the role binding it
/// was opened under is deleted, a viewer's watch and placement stream end
/// (PERMISSION_DENIED for gRPC) and the next request is refused, while
/// another user's streams go on.
#[tokio::test]
async fn streams_end_once_the_role_binding_they_rely_on_is_removed() {
    let plane = plane().await;
    let (app, ch, admin, dir) = (&plane.app, &plane.ch, &plane.admin, &plane.dir);
    const SHOP: &str = "tenants/acme/namespaces/shop";
    let mut kubeconfigs = Vec::new();
    let mut tokens = Vec::new();
    for (user, role) in [
        ("bob", tpb::Role::NamespaceViewer),
        ("ann", tpb::Role::NamespaceEditor),
    ] {
        let token = user_with_role(ch, admin, "acme", user, role, SHOP).await;
        let path = dir.path().join(format!("{user}.kubeconfig"));
        std::fs::write(&path, get_kubeconfig(ch, &token, VK).await.kubeconfig).unwrap();
        kubeconfigs.push(path);
        tokens.push(token);
    }
    let placement = format!(r#"{{"parent": "{SHOP}"}}"#);
    let method = "manifold.sites.v1.VirtualSiteService/WatchPlacement";
    let mut bobs = vec![
        spawn_kubectl(&kubeconfigs[0], dir.path(), &["get", "configmaps", "-w"]),
        spawn_grpcurl(app, dir.path(), &tokens[0], &placement, method),
    ];
    let mut anns = vec![
        spawn_kubectl(&kubeconfigs[1], dir.path(), &["get", "configmaps", "-w"]),
        spawn_grpcurl(app, dir.path(), &tokens[1], &placement, method),
    ];
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_alive(&mut bobs);
    assert_alive(&mut anns);

    let bob = binding_of(ch, admin, SHOP, "tenants/acme/users/bob").await;
    tpb::role_binding_service_client::RoleBindingServiceClient::new(ch.clone())
        .delete_role_binding(authed(admin, tpb::DeleteRoleBindingRequest { name: bob }))
        .await
        .expect("delete bob's binding");
    for s in &mut bobs {
        assert!(
            s.ends_within(ENDS_WITHIN).await.is_some(),
            "{} still running {ENDS_WITHIN:?} after its role binding was deleted:\n{}",
            s.what,
            s.stderr()
        );
        if s.what.starts_with("grpcurl") {
            assert!(
                s.stderr().contains("PermissionDenied") && s.stderr().contains("viewer"),
                "{}: {}",
                s.what,
                s.stderr()
            );
        }
    }
    // Bob's token still authenticates, and now reaches nothing.
    let refused = Kubectl::new(&kubeconfigs[0], dir.path())
        .fails(&["get", "configmaps"])
        .await;
    assert!(
        refused.contains("Forbidden")
            || refused.contains("forbidden")
            || refused.contains("NotFound"),
        "{refused}"
    );
    // Ann's streams never noticed.
    assert_alive(&mut anns);
}
