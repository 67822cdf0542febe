//! The site registry over TLS gRPC: site and virtual-site CRUD with the
//! errors users meet, one-time registration, certificate identity, renewal
//! and revocation, tenant isolation of private sites, and placement watches.

use manifold_integration_tests::{TestApp, authed};
use manifold_proto::sites::v1::*;
use manifold_proto::tenancy::v1 as tpb;
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_types::StatusExt;

mod placement;
mod registration;

type SiteClient = site_service_client::SiteServiceClient<Channel>;
type VsClient = virtual_site_service_client::VirtualSiteServiceClient<Channel>;
type RegClient = registration_service_client::RegistrationServiceClient<Channel>;

struct Clients {
    ch: Channel,
    sites: SiteClient,
    vs: VsClient,
    reg: RegClient,
}

async fn clients(app: &TestApp) -> Clients {
    let ch = app.channel().await.expect("channel");
    Clients {
        sites: SiteClient::new(ch.clone()),
        vs: VsClient::new(ch.clone()),
        reg: RegClient::new(ch.clone()),
        ch,
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}

/// The field of the (first) BadRequest violation of an INVALID_ARGUMENT.
fn violation<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> String {
    let s = r.expect_err("expected INVALID_ARGUMENT");
    assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
    s.get_error_details()
        .bad_request()
        .expect("BadRequest detail")
        .field_violations[0]
        .field
        .clone()
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn create_site(
    c: &mut Clients,
    token: &str,
    id: &str,
    owner: &str,
    l: &[(&str, &str)],
) -> Result<Site, tonic::Status> {
    c.sites
        .create_site(authed(
            token,
            CreateSiteRequest {
                site_id: id.into(),
                site: Some(Site {
                    display_name: format!("{id} site"),
                    location: "somewhere".into(),
                    provider_kind: site::ProviderKind::Edge as i32,
                    labels: labels(l),
                    owner: owner.into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

/// A tenant with namespace `shop`, and a token of a user holding `role` at
/// `scope` (`""` for the tenant itself).
struct Tenant {
    admin: String,
}

async fn tenant(app: &TestApp, ch: &Channel, id: &str) -> Tenant {
    let admin = &app.admin_token;
    tpb::tenant_service_client::TenantServiceClient::new(ch.clone())
        .create_tenant(authed(
            admin,
            tpb::CreateTenantRequest {
                tenant_id: id.into(),
                tenant: None,
            },
        ))
        .await
        .expect("tenant");
    tpb::namespace_service_client::NamespaceServiceClient::new(ch.clone())
        .create_namespace(authed(
            admin,
            tpb::CreateNamespaceRequest {
                parent: format!("tenants/{id}"),
                namespace_id: "shop".into(),
                namespace: None,
            },
        ))
        .await
        .expect("namespace");
    let token = user_token(
        app,
        ch,
        id,
        "boss",
        tpb::Role::TenantAdmin,
        &format!("tenants/{id}"),
    )
    .await;
    Tenant { admin: token }
}

async fn user_token(
    app: &TestApp,
    ch: &Channel,
    tenant: &str,
    user: &str,
    role: tpb::Role,
    scope: &str,
) -> String {
    let admin = &app.admin_token;
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
        .expect("user");
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
        .expect("binding");
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
        .expect("token")
        .into_inner()
        .secret
}

async fn registration_token(c: &mut Clients, token: &str, site: &str, ttl: i64) -> String {
    c.sites
        .create_registration_token(authed(
            token,
            CreateRegistrationTokenRequest {
                site: format!("sites/{site}"),
                ttl_seconds: ttl,
            },
        ))
        .await
        .expect("registration token")
        .into_inner()
        .token
}

/// Registers `site` with `token` and a CSR generated for `csr_site`; no
/// bearer token is sent. Returns (certificate, key).
async fn register(
    c: &mut Clients,
    site: &str,
    token: &str,
    csr_site: &str,
) -> Result<(String, String), tonic::Status> {
    let (key, csr) = manifold_pki::generate_csr(csr_site).unwrap();
    let reply = c
        .reg
        .register(RegisterRequest {
            site: format!("sites/{site}"),
            registration_token: token.into(),
            csr_pem: csr,
            agent_version: "test-agent/1".into(),
        })
        .await?
        .into_inner();
    assert!(reply.ca_bundle_pem.contains("BEGIN CERTIFICATE"));
    Ok((reply.certificate_pem, key))
}

fn cert_der(pem: &str) -> Vec<u8> {
    manifold_pki::certs_from_pem(pem).unwrap()[0]
        .as_ref()
        .to_vec()
}

fn cert_site(pem: &str) -> String {
    manifold_pki::site_from_cert_der(&cert_der(pem)).expect("site SAN")
}

/// A channel presenting a client certificate, as an agent connects.
async fn agent_channel(app: &TestApp, cert: &str, key: &str) -> RegClient {
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
    RegClient::new(ch)
}

async fn renew(agent: &mut RegClient, csr_site: &str) -> Result<String, tonic::Status> {
    let (_key, csr) = manifold_pki::generate_csr(csr_site).unwrap();
    Ok(agent
        .renew_certificate(RenewCertificateRequest { csr_pem: csr })
        .await?
        .into_inner()
        .certificate_pem)
}

#[tokio::test]
async fn sites_crud_and_errors() {
    let app = TestApp::spawn().await.unwrap();
    let admin = app.admin_token.clone();
    let mut c = clients(&app).await;

    let s = create_site(
        &mut c,
        &admin,
        "pa2-par",
        "",
        &[("env", "edge"), ("region", "eu")],
    )
    .await
    .unwrap();
    assert_eq!(s.name, "sites/pa2-par");
    assert_eq!(s.state, site::State::Registered as i32);
    assert_eq!(s.owner, "");
    for (id, l) in [("ny8-nyc", "us"), ("ams9-ams", "eu")] {
        create_site(&mut c, &admin, id, "", &[("env", "edge"), ("region", l)])
            .await
            .unwrap();
    }

    // Errors name the field.
    let bad = create_site(&mut c, &admin, "Bad_Site", "", &[]).await;
    assert_eq!(violation(bad), "site_id");
    let bad = create_site(&mut c, &admin, "x1", "", &[("bad key", "v")]).await;
    assert_eq!(violation(bad), "site.labels[bad key]");
    let bad = create_site(&mut c, &admin, "x1", "acme", &[]).await;
    assert_eq!(violation(bad), "site.owner");
    let dup = create_site(&mut c, &admin, "pa2-par", "", &[]).await;
    assert_eq!(code(dup), Code::AlreadyExists);
    let get = |name: &str| GetSiteRequest { name: name.into() };
    assert_eq!(
        code(c.sites.get_site(authed(&admin, get("sites/nope"))).await),
        Code::NotFound
    );
    assert_eq!(
        violation(c.sites.get_site(authed(&admin, get("pa2-par"))).await),
        "name"
    );

    // Pagination and label selectors.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .sites
            .list_sites(authed(
                &admin,
                ListSitesRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.sites.into_iter().map(|s| s.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, ["sites/ams9-ams", "sites/ny8-nyc", "sites/pa2-par"]);
    let list = |sel: &str, show: bool| ListSitesRequest {
        label_selector: sel.into(),
        show_decommissioned: show,
        ..Default::default()
    };
    let eu = c
        .sites
        .list_sites(authed(&admin, list("region in (eu)", false)))
        .await
        .unwrap()
        .into_inner();
    let eu: Vec<_> = eu.sites.into_iter().map(|s| s.name).collect();
    assert_eq!(eu, ["sites/ams9-ams", "sites/pa2-par"]);
    let bad = c
        .sites
        .list_sites(authed(&admin, list("region in (", false)))
        .await;
    assert_eq!(violation(bad), "label_selector");

    // Update: field mask, etag.
    let update = |site: Site, paths: &[&str]| UpdateSiteRequest {
        site: Some(site),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };
    let changed = c
        .sites
        .update_site(authed(
            &admin,
            update(
                Site {
                    name: s.name.clone(),
                    labels: labels(&[("env", "edge"), ("region", "eu"), ("tier", "gold")]),
                    display_name: "ignored".into(),
                    etag: s.etag.clone(),
                    ..Default::default()
                },
                &["labels"],
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.labels.get("tier").map(String::as_str), Some("gold"));
    assert_eq!(changed.display_name, "pa2-par site");
    assert_ne!(changed.etag, s.etag);
    let stale = c
        .sites
        .update_site(authed(
            &admin,
            update(
                Site {
                    name: s.name.clone(),
                    location: "moved".into(),
                    etag: s.etag.clone(),
                    ..Default::default()
                },
                &["location"],
            ),
        ))
        .await;
    assert_eq!(code(stale), Code::Aborted);
    let bad = c
        .sites
        .update_site(authed(
            &admin,
            update(
                Site {
                    name: s.name.clone(),
                    ..Default::default()
                },
                &["owner"],
            ),
        ))
        .await;
    assert_eq!(violation(bad), "update_mask");

    // Tenants read provider sites but do not manage them.
    let acme = tenant(&app, &c.ch, "acme").await;
    let read = c
        .sites
        .get_site(authed(&acme.admin, get("sites/pa2-par")))
        .await;
    assert_eq!(read.unwrap().into_inner().name, "sites/pa2-par");
    let denied = create_site(&mut c, &acme.admin, "acme-x", "", &[]).await;
    assert_eq!(code(denied), Code::PermissionDenied);
    let denied = c
        .sites
        .delete_site(authed(
            &acme.admin,
            DeleteSiteRequest {
                name: "sites/pa2-par".into(),
                etag: String::new(),
            },
        ))
        .await;
    assert_eq!(code(denied), Code::PermissionDenied);

    // Delete decommissions: still readable, hidden from lists by default.
    let del = |etag: &str| DeleteSiteRequest {
        name: "sites/ams9-ams".into(),
        etag: etag.into(),
    };
    assert_eq!(
        code(c.sites.delete_site(authed(&admin, del("\"99\""))).await),
        Code::Aborted
    );
    c.sites.delete_site(authed(&admin, del(""))).await.unwrap();
    let gone = c
        .sites
        .get_site(authed(&admin, get("sites/ams9-ams")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.state, site::State::Decommissioned as i32);
    assert!(gone.decommission_time.is_some());
    let names = |r: ListSitesResponse| r.sites.into_iter().map(|s| s.name).collect::<Vec<_>>();
    let live = c.sites.list_sites(authed(&admin, list("", false))).await;
    assert_eq!(
        names(live.unwrap().into_inner()),
        ["sites/ny8-nyc", "sites/pa2-par"]
    );
    let all = c.sites.list_sites(authed(&admin, list("", true))).await;
    assert_eq!(names(all.unwrap().into_inner()).len(), 3);
    assert_eq!(
        code(c.sites.delete_site(authed(&admin, del(""))).await),
        Code::NotFound
    );
    let frozen = c
        .sites
        .update_site(authed(
            &admin,
            update(
                Site {
                    name: "sites/ams9-ams".into(),
                    ..Default::default()
                },
                &["location"],
            ),
        ))
        .await;
    assert_eq!(code(frozen), Code::FailedPrecondition);
    let dup = create_site(&mut c, &admin, "ams9-ams", "", &[]).await;
    assert_eq!(code(dup), Code::AlreadyExists);
}

#[tokio::test]
async fn registration_is_reachable_without_a_bearer_token_with_grpcurl() {
    let app = TestApp::spawn().await.unwrap();
    let list = app
        .grpcurl(Some(&app.admin_token), &["list"])
        .await
        .unwrap();
    let services = String::from_utf8_lossy(&list.stdout);
    for s in [
        "manifold.sites.v1.SiteService",
        "manifold.sites.v1.VirtualSiteService",
        "manifold.sites.v1.RegistrationService",
    ] {
        assert!(services.contains(s), "{services}");
    }
    // No bearer token on the call (reflection still needs one): the handler,
    // not the auth layer, judges the registration token.
    let reflect = format!("-reflect-header=authorization: Bearer {}", app.admin_token);
    let out = app
        .grpcurl(
            None,
            &[
                &reflect,
                "-d",
                r#"{"site":"sites/pa2-par","registration_token":"mfr_0123456789abcdef_00","csr_pem":"x"}"#,
                "manifold.sites.v1.RegistrationService/Register",
            ],
        )
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unauthenticated"), "{err}");
    assert!(err.contains("invalid registration token"), "{err}");
    // The rest of the API still needs one.
    let out = app
        .grpcurl(None, &[&reflect, "manifold.sites.v1.SiteService/ListSites"])
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing credentials"), "{err}");
}
