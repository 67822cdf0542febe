//! Renewing an agent certificate supersedes it: the old certificate lives
//! on for a short grace (`sites.renewal_grace_secs`, for the stream it
//! carries), is then revoked, and cannot be renewed a second time, so a
//! stolen copy cannot be renewed beside the real agent. The same holds for
//! a renewal over the SiteSync stream, whose old stream ends after the
//! grace.

use std::time::Duration;

use manifold_integration_tests::{TestApp, authed};
use manifold_proto::sites::v1 as spb;
use spb::registration_service_client::RegistrationServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::replication::{harness_with_registry, settle};

type RegClient = RegistrationServiceClient<Channel>;

/// A RegistrationService client presenting `cert`/`key`, as an agent.
async fn as_agent(app: &TestApp, cert: &str, key: &str) -> RegClient {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(app.ca_pem()))
        .domain_name("localhost")
        .identity(Identity::from_pem(cert, key));
    let ch = Endpoint::from_shared(format!("https://{}", app.grpc_addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("mTLS channel");
    RegistrationServiceClient::new(ch)
}

async fn renew(agent: &mut RegClient, csr: &str) -> Result<String, tonic::Status> {
    Ok(agent
        .renew_certificate(spb::RenewCertificateRequest {
            csr_pem: csr.into(),
        })
        .await?
        .into_inner()
        .certificate_pem)
}

async fn check(ch: &Channel, pem: &str) -> spb::CheckCertificateResponse {
    RegistrationServiceClient::new(ch.clone())
        .check_certificate(spb::CheckCertificateRequest {
            certificate_pem: pem.into(),
        })
        .await
        .expect("check certificate")
        .into_inner()
}

/// Site `id` in the registry and a registered agent identity (cert, key).
async fn registered_site(ch: &Channel, admin: &str, id: &str) -> (String, String) {
    let mut sites = spb::site_service_client::SiteServiceClient::new(ch.clone());
    sites
        .create_site(authed(
            admin,
            spb::CreateSiteRequest {
                site_id: id.into(),
                site: None,
            },
        ))
        .await
        .expect("site");
    let token = sites
        .create_registration_token(authed(
            admin,
            spb::CreateRegistrationTokenRequest {
                site: format!("sites/{id}"),
                ttl_seconds: 0,
            },
        ))
        .await
        .expect("registration token")
        .into_inner()
        .token;
    let (key, csr) = manifold_pki::generate_csr(id).unwrap();
    let reply = RegistrationServiceClient::new(ch.clone())
        .register(spb::RegisterRequest {
            site: format!("sites/{id}"),
            registration_token: token,
            csr_pem: csr,
            agent_version: "test-agent/1".into(),
        })
        .await
        .expect("register")
        .into_inner();
    (reply.certificate_pem, key)
}

#[tokio::test]
async fn a_renewed_certificate_is_revoked_after_the_grace_and_renews_only_once() {
    let app = TestApp::spawn_with(&[("sites.renewal_grace_secs", "2".into())])
        .await
        .expect("control plane");
    let ch = app.channel().await.unwrap();
    let (cert_a, key_a) = registered_site(&ch, &app.admin_token, "pa2-par").await;
    // The real agent and a thief holding a copy of its certificate.
    let mut real = as_agent(&app, &cert_a, &key_a).await;
    let mut thief = as_agent(&app, &cert_a, &key_a).await;

    let (key_b, csr_b) = manifold_pki::generate_csr("pa2-par").unwrap();
    let cert_b = renew(&mut real, &csr_b).await.expect("the first renewal");
    // The copy can no longer be renewed beside it.
    let (_, csr_thief) = manifold_pki::generate_csr("pa2-par").unwrap();
    let refused = renew(&mut thief, &csr_thief).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("already renewed"),
        "{}",
        refused.message()
    );
    // The real agent asking again with its new key (its answer was lost)
    // gets the same certificate, not a second one.
    assert_eq!(
        renew(&mut real, &csr_b).await.expect("repeated renewal"),
        cert_b
    );

    // Within the grace the old certificate still works (its stream).
    let verdict = check(&ch, &cert_a).await;
    assert!(verdict.valid, "{}", verdict.reason);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let verdict = check(&ch, &cert_a).await;
    assert!(
        !verdict.valid && verdict.reason.contains("revoked"),
        "{verdict:?}"
    );
    let (_, csr) = manifold_pki::generate_csr("pa2-par").unwrap();
    assert_eq!(
        renew(&mut thief, &csr).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let status = spb::ReportSiteStatusRequest {
        site: "sites/pa2-par".into(),
        state: spb::site::State::Online as i32,
        ..Default::default()
    };
    assert_eq!(
        thief
            .report_site_status(status.clone())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    // The renewed certificate is the site now.
    let mut renewed = as_agent(&app, &cert_b, &key_b).await;
    renewed
        .report_site_status(status)
        .await
        .expect("the renewed certificate reports");
    let (_, csr_c) = manifold_pki::generate_csr("pa2-par").unwrap();
    renew(&mut renewed, &csr_c)
        .await
        .expect("renewed again, once");
}

#[tokio::test]
async fn renewal_over_the_stream_ends_the_old_stream_after_the_grace() {
    let h = harness_with_registry(
        &[],
        1,
        |o| o.renewal_grace = Duration::from_secs(2),
        |c| c.certificate_recheck = Duration::from_secs(1),
    )
    .await;
    let a = h.site("pa2-par", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    settle().await;
    let mut agent = h.connect(Some(&a), "pa2-par", 0).await.expect("connect");
    agent.snapshot().await;

    let (key_b, csr) = manifold_pki::generate_csr("pa2-par").unwrap();
    agent
        .send(manifold_proto::replication::v1::agent_message::Msg::Renew(
            manifold_proto::replication::v1::RenewRequest { csr_pem: csr },
        ))
        .await;
    let renewed_at = tokio::time::Instant::now();
    let seen = agent
        .until(|m| {
            matches!(
                m,
                manifold_proto::replication::v1::control_message::Msg::Renew(_)
            )
        })
        .await;
    let Some(manifold_proto::replication::v1::control_message::Msg::Renew(renewed)) = seen.last()
    else {
        unreachable!()
    };
    assert!(renewed.error.is_empty(), "{}", renewed.error);
    let cert_b = renewed.certificate_pem.clone();

    // The stream on the old certificate ends once the grace is over.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Err(status) = agent.next().await {
                break status;
            }
        }
    })
    .await
    .expect("the old certificate's stream ends after the grace");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(
        renewed_at.elapsed() >= Duration::from_millis(1500),
        "ended within the grace"
    );
    // The old certificate connects no more; the renewed one does.
    let refused = h.connect(Some(&a), "pa2-par", 0).await;
    assert_eq!(refused.err().map(|s| s.code()), Some(Code::Unauthenticated));
    let mut agent = h
        .connect(Some(&(cert_b, key_b)), "pa2-par", 0)
        .await
        .expect("the renewed certificate connects");
    agent.snapshot().await;
}

/// A registration token is a way in for a new agent; one minted with a
/// short-lived operator token never outlives that token, whatever TTL it
/// asks for.
#[tokio::test]
async fn registration_tokens_never_outlive_the_token_that_created_them() {
    let app = TestApp::spawn().await.expect("control plane");
    let ch = app.channel().await.unwrap();
    let own = super::token_name(&ch, &app.admin_token).await;
    let operator = own.split("/tokens/").next().unwrap().to_owned();
    let short = super::mint(&ch, &app.admin_token, &operator, 120, "")
        .await
        .expect("a two-minute operator token");
    let short_expiry = short
        .token
        .as_ref()
        .and_then(|t| t.expire_time.as_ref())
        .expect("expiry")
        .seconds;
    let mut sites = spb::site_service_client::SiteServiceClient::new(ch.clone());
    sites
        .create_site(authed(
            &short.secret,
            spb::CreateSiteRequest {
                site_id: "pa2-par".into(),
                site: None,
            },
        ))
        .await
        .expect("site");
    for ttl_seconds in [0, 86_400] {
        let issued = sites
            .create_registration_token(authed(
                &short.secret,
                spb::CreateRegistrationTokenRequest {
                    site: "sites/pa2-par".into(),
                    ttl_seconds,
                },
            ))
            .await
            .expect("registration token")
            .into_inner();
        let expiry = issued.expire_time.expect("expiry").seconds;
        assert!(
            expiry <= short_expiry,
            "ttl {ttl_seconds}: the registration token ({expiry}) outlives its creator ({short_expiry})"
        );
    }
    // The operator's own long-lived token still gets the TTL it asks for.
    let long = sites
        .create_registration_token(authed(
            &app.admin_token,
            spb::CreateRegistrationTokenRequest {
                site: "sites/pa2-par".into(),
                ttl_seconds: 86_400,
            },
        ))
        .await
        .expect("registration token")
        .into_inner();
    assert!(long.expire_time.expect("expiry").seconds > short_expiry + 3600);
}
