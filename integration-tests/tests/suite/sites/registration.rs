//! Registration tokens, certificate identity, renewal, status reports and
//! revocation.

use std::time::Duration;

use manifold_integration_tests::{TestApp, authed};
use manifold_proto::sites::v1::*;
use tonic::Code;

use super::*;

#[tokio::test]
async fn registration_token_works_once_expires_and_names_the_site() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    create_site(&mut c, &admin, "pa2-par", "", &[("env", "edge")])
        .await
        .unwrap();
    create_site(&mut c, &admin, "ny8-nyc", "", &[("env", "edge")])
        .await
        .unwrap();

    // A CSR that asks for another site's identity gets this site's.
    let token = registration_token(&mut c, &admin, "pa2-par", 0).await;
    assert!(token.starts_with("mfr_"));
    let bad_csr = c
        .reg
        .register(RegisterRequest {
            site: "sites/pa2-par".into(),
            registration_token: token.clone(),
            csr_pem: "not a csr".into(),
            agent_version: String::new(),
        })
        .await;
    assert_eq!(violation(bad_csr), "csr_pem");
    // The failed attempt did not consume the token.
    let wrong_site = register(&mut c, "ny8-nyc", &token, "ny8-nyc").await;
    assert_eq!(code(wrong_site), Code::Unauthenticated);
    let (cert, _key) = register(&mut c, "pa2-par", &token, "ny8-nyc")
        .await
        .unwrap();
    assert_eq!(cert_site(&cert), "pa2-par");
    let der = cert_der(&cert);
    assert!(
        !der.windows(b"ny8-nyc".len()).any(|w| w == b"ny8-nyc"),
        "the certificate must not carry names the CSR asked for"
    );
    let site = c
        .sites
        .get_site(authed(
            &admin,
            GetSiteRequest {
                name: "sites/pa2-par".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(site.register_time.is_some());
    assert_eq!(site.agent_version, "test-agent/1");

    // Twice: refused.
    let again = register(&mut c, "pa2-par", &token, "pa2-par").await;
    assert_eq!(code(again), Code::Unauthenticated);
    // Unknown and malformed tokens.
    let forged = format!("{}0", &token[..token.len() - 1]);
    for t in [forged.as_str(), "mfr_nope", ""] {
        let r = register(&mut c, "pa2-par", t, "pa2-par").await;
        assert!(
            matches!(
                r.as_ref().map_err(|s| s.code()),
                Err(Code::Unauthenticated | Code::InvalidArgument)
            ),
            "{t}: {r:?}"
        );
    }
    // Expired.
    let short = registration_token(&mut c, &admin, "ny8-nyc", 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = register(&mut c, "ny8-nyc", &short, "ny8-nyc").await;
    let expired = expired.unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert!(
        expired.message().contains("expired"),
        "{}",
        expired.message()
    );
    // Minting tokens is an operator's job for provider sites.
    let acme = tenant(&app, &c.ch, "acme").await;
    let denied = c
        .sites
        .create_registration_token(authed(
            &acme.admin,
            CreateRegistrationTokenRequest {
                site: "sites/pa2-par".into(),
                ttl_seconds: 0,
            },
        ))
        .await;
    assert_eq!(code(denied), Code::PermissionDenied);
}

#[tokio::test]
async fn certificates_renew_as_their_own_site_and_decommission_revokes() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;
    for id in ["site-a", "site-b"] {
        create_site(&mut c, &admin, id, "", &[]).await.unwrap();
    }
    let ta = registration_token(&mut c, &admin, "site-a", 0).await;
    let (cert_a, key_a) = register(&mut c, "site-a", &ta, "site-a").await.unwrap();
    let tb = registration_token(&mut c, &admin, "site-b", 0).await;
    let (cert_b, key_b) = register(&mut c, "site-b", &tb, "site-b").await.unwrap();

    // No client certificate: refused.
    assert_eq!(
        code(renew(&mut c.reg, "site-a").await),
        Code::Unauthenticated
    );
    // A's certificate asking to become B is renewed as A.
    let mut agent_a = agent_channel(&app, &cert_a, &key_a).await;
    let renewed = renew(&mut agent_a, "site-b").await.unwrap();
    assert_eq!(cert_site(&renewed), "site-a");

    // Status: a site reports for itself only; operators for any site.
    let report = |site: &str| ReportSiteStatusRequest {
        site: format!("sites/{site}"),
        state: site::State::Online as i32,
        agent_version: "agent/2".into(),
        nodes: vec![Node {
            name: "node-1".into(),
            ready: true,
            cpu_capacity: "4".into(),
            memory_capacity: "8Gi".into(),
            pod_capacity: 110,
            labels: labels(&[("zone", "a")]),
        }],
        heartbeat_time: None,
        state_message: String::new(),
    };
    let online = agent_a
        .report_site_status(report("site-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(online.state, site::State::Online as i32);
    assert_eq!(online.nodes.len(), 1);
    assert!(online.last_heartbeat_time.is_some());
    assert_eq!(
        code(agent_a.report_site_status(report("site-b")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(c.reg.report_site_status(report("site-a")).await),
        Code::Unauthenticated
    );
    let by_operator = c
        .reg
        .report_site_status(authed(&admin, report("site-b")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_operator.agent_version, "agent/2");
    let acme = tenant(&app, &c.ch, "acme").await;
    assert_eq!(
        code(
            c.reg
                .report_site_status(authed(&acme.admin, report("site-b")))
                .await
        ),
        Code::PermissionDenied
    );

    // Public certificate status.
    let check = |pem: &str| CheckCertificateRequest {
        certificate_pem: pem.into(),
    };
    let ok = c
        .reg
        .check_certificate(check(&cert_a))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.valid, "{}", ok.reason);
    assert_eq!(ok.site, "sites/site-a");

    // Re-registration revokes the site's earlier certificates.
    let tb2 = registration_token(&mut c, &admin, "site-b", 0).await;
    register(&mut c, "site-b", &tb2, "site-b").await.unwrap();
    let mut agent_b = agent_channel(&app, &cert_b, &key_b).await;
    assert_eq!(
        code(renew(&mut agent_b, "site-b").await),
        Code::Unauthenticated
    );

    // Decommissioning revokes every certificate of the site.
    c.sites
        .delete_site(authed(
            &admin,
            DeleteSiteRequest {
                name: "sites/site-a".into(),
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let refused = renew(&mut agent_a, "site-a").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("decommissioned"),
        "{}",
        refused.message()
    );
    for pem in [&cert_a, &renewed] {
        let verdict = c
            .reg
            .check_certificate(check(pem))
            .await
            .unwrap()
            .into_inner();
        assert!(!verdict.valid);
    }
    assert_eq!(
        code(agent_a.report_site_status(report("site-a")).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            c.reg
                .report_site_status(authed(&admin, report("site-a")))
                .await
        ),
        Code::FailedPrecondition
    );
    let no_token = c
        .sites
        .create_registration_token(authed(
            &admin,
            CreateRegistrationTokenRequest {
                site: "sites/site-a".into(),
                ttl_seconds: 0,
            },
        ))
        .await;
    assert_eq!(code(no_token), Code::FailedPrecondition);
}
