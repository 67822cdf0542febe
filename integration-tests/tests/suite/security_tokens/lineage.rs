//! A token never mints one that outlives it or reaches beyond its scope,
//! and revoking a leaked token revokes everything minted from it
//! (CreateApiToken and GetKubeconfig alike), transitively.

use manifold_integration_tests::authed;
use manifold_proto::tenancy::v1 as tpb;
use tonic::Code;

use super::{mint, revoke, token_name, token_of, until_refused, who_am_i};
use crate::kubectl::Kubectl;
use crate::vk8s_grpc::{DEMO, get_kubeconfig, scenario, user_with_role};

const ALICE: &str = "tenants/acme/users/alice";

fn seconds(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().expect("a timestamp").seconds
}

#[tokio::test]
async fn tokens_never_outlive_or_outreach_their_parent_and_die_with_it() {
    let s = scenario().await;
    let ch = &s.channel;
    let admin = s.admin.as_str();
    let alice_own = user_with_role(
        ch,
        admin,
        "acme",
        "alice",
        tpb::Role::TenantAdmin,
        "tenants/acme",
    )
    .await;
    // The token that leaks: Alice's, valid for an hour.
    let leaked = mint(ch, admin, ALICE, 3600, "")
        .await
        .expect("one-hour token");
    let leaked_expiry = seconds(&leaked.token.as_ref().unwrap().expire_time);
    let leaked_name = leaked.token.as_ref().unwrap().name.clone();

    // It asks for a year: it gets no more than its own hour.
    let year = mint(ch, &leaked.secret, ALICE, 365 * 86_400, "")
        .await
        .expect("child token");
    let child_expiry = seconds(&year.token.as_ref().unwrap().expire_time);
    assert!(
        child_expiry <= leaked_expiry,
        "a child token ({child_expiry}) outlives its parent ({leaked_expiry})"
    );
    // A kubeconfig (30 days by default) minted by the child: capped as well.
    let kubeconfig = get_kubeconfig(ch, &year.secret, DEMO).await;
    assert!(
        seconds(&kubeconfig.expire_time) <= leaked_expiry,
        "a kubeconfig outlives the token that minted it"
    );
    let path = s.dir.path().join("alice.kubeconfig");
    std::fs::write(&path, &kubeconfig.kubeconfig).unwrap();
    let kubectl = Kubectl::new(&path, s.dir.path());
    kubectl.ok(&["get", "configmaps"]).await;

    // A scoped token cannot widen its scope, and what it mints stays in it.
    let scoped = mint(
        ch,
        &leaked.secret,
        ALICE,
        600,
        "tenants/acme/namespaces/shop",
    )
    .await
    .expect("scoped token");
    let wider = mint(ch, &scoped.secret, ALICE, 600, "tenants/acme").await;
    assert_eq!(wider.unwrap_err().code(), Code::InvalidArgument);
    let narrow = mint(ch, &scoped.secret, ALICE, 600, "")
        .await
        .expect("token within the scope");
    assert_eq!(
        narrow.token.as_ref().unwrap().scope,
        "tenants/acme/namespaces/shop"
    );

    // Alice (a tenant-admin) mints for Bob with the leaked token.
    user_with_role(
        ch,
        admin,
        "acme",
        "bob",
        tpb::Role::NamespaceViewer,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let for_bob = mint(ch, &leaked.secret, "tenants/acme/users/bob", 600, "")
        .await
        .expect("token for bob");

    // Revoking the leaked token revokes every token minted from it,
    // kubeconfigs included, and whatever those minted.
    revoke(ch, admin, &leaked_name).await;
    let kube_token = token_of(&kubeconfig.kubeconfig);
    for (what, token) in [
        ("the leaked token", leaked.secret.as_str()),
        ("its year-long child", year.secret.as_str()),
        ("the kubeconfig's token", kube_token.as_str()),
        ("the scoped child", scoped.secret.as_str()),
        ("the scoped grandchild", narrow.secret.as_str()),
        ("Bob's token it minted", for_bob.secret.as_str()),
    ] {
        assert_eq!(
            until_refused(ch, token).await,
            Code::Unauthenticated,
            "{what}"
        );
    }
    let refused = kubectl.fails(&["get", "configmaps"]).await;
    assert!(refused.contains("Unauthorized"), "{refused}");
    let listed = tpb::api_token_service_client::ApiTokenServiceClient::new(ch.clone())
        .list_api_tokens(authed(
            admin,
            tpb::ListApiTokensRequest {
                parent: ALICE.into(),
                page_size: 0,
                page_token: String::new(),
            },
        ))
        .await
        .expect("list tokens")
        .into_inner()
        .tokens;
    let year_name = year.token.as_ref().unwrap().name.clone();
    let year_row = listed
        .iter()
        .find(|t| t.name == year_name)
        .expect("child listed");
    assert_eq!(year_row.state, tpb::api_token::State::Revoked as i32);
    // Nothing else is lost: Alice's other token and Ann's still work.
    assert_eq!(who_am_i(ch, &alice_own).await, Code::Ok);
    assert_eq!(who_am_i(ch, &s.editor).await, Code::Ok);

    // Deleting a user revokes what that user's tokens minted for others.
    let carol = user_with_role(
        ch,
        admin,
        "acme",
        "carol",
        tpb::Role::TenantAdmin,
        "tenants/acme",
    )
    .await;
    let dave_own = user_with_role(
        ch,
        admin,
        "acme",
        "dave",
        tpb::Role::NamespaceViewer,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let from_carol = mint(ch, &carol, "tenants/acme/users/dave", 600, "")
        .await
        .expect("carol mints for dave");
    assert!(
        token_name(ch, &from_carol.secret)
            .await
            .starts_with("tenants/acme/users/dave/")
    );
    tpb::user_service_client::UserServiceClient::new(ch.clone())
        .delete_user(authed(
            admin,
            tpb::DeleteUserRequest {
                name: "tenants/acme/users/carol".into(),
            },
        ))
        .await
        .expect("delete carol");
    assert_eq!(
        until_refused(ch, &from_carol.secret).await,
        Code::Unauthenticated
    );
    assert_eq!(who_am_i(ch, &dave_own).await, Code::Ok);
}
