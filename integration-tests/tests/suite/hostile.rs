//! Hostile input (issue 11): a tenant's viewer or editor sends a body built to
//! cost the control plane memory or time. Each is answered with a clear 4xx
//! naming the limit, and the server keeps serving everyone else.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use manifold_proto::tenancy::v1 as tpb;
use serde_json::json;
use std::time::Duration;

use crate::vk8s_grpc::{DEMO, Scenario, get_kubeconfig, scenario, user_with_role};

async fn client_for(s: &Scenario, token: &str) -> kube::Client {
    manifold_pki::install_default_crypto_provider();
    let yaml = get_kubeconfig(&s.channel, token, DEMO).await.kubeconfig;
    let mut config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&yaml).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    // kube-rs retries a 429 or 503 with backoff by default; these tests
    // look at the server's first answer.
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

fn yaml_post(path: &str, body: String) -> http::Request<Vec<u8>> {
    http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/yaml")
        .body(body.into_bytes())
        .unwrap()
}

/// A viewer's ~100 KB self-subject access review whose one anchor is named
/// 20,000 times (100M nodes once expanded) is a 413 naming the limit; the
/// same review without the bomb still answers, and writes go on.
#[tokio::test]
async fn yaml_alias_bomb_is_refused_and_the_gateway_keeps_serving() {
    let s = scenario().await;
    let viewer = user_with_role(
        &s.channel,
        &s.admin,
        "acme",
        "vic",
        tpb::Role::NamespaceViewer,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let vic = client_for(&s, &viewer).await;

    let review = "apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nspec:\n  resourceAttributes: {namespace: shop, verb: get, resource: configmaps}\n";
    let items = vec!["x"; 5_000].join(",");
    let refs = vec!["*a"; 20_000].join(",");
    let bomb = format!(
        "{review}metadata:\n  annotations: {{}}\n  labels: {{}}\nbomb: &a [{items}]\nlaughs: [{refs}]\n"
    );
    assert!(bomb.len() < 120_000, "{}", bomb.len());

    let err = vic
        .request_text(yaml_post(SSAR, bomb))
        .await
        .expect_err("the bomb must be refused");
    let (code, reason, message) = api_error(err);
    assert_eq!(code, 413, "{message}");
    assert_eq!(reason, "RequestEntityTooLarge");
    assert!(
        message.contains("aliases expanded") && message.contains("limit"),
        "{message}"
    );

    // The same viewer's honest review still works...
    let answer = vic
        .request_text(yaml_post(SSAR, review.to_owned()))
        .await
        .expect("an honest review answers");
    assert!(answer.contains("\"allowed\":true"), "{answer}");
    // ...and the editor's writes are unaffected.
    let ann = client_for(&s, &s.editor).await;
    let cms: Api<ConfigMap> = Api::namespaced(ann, "shop");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "after"}, "data": {"a": "1"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
}

/// JSON patches that double the object with `copy`, or carry more than
/// 10,000 operations, are 413s and the object is untouched. (Merge and
/// strategic merge results share the same bound; the unit tests in
/// kube-model cover them, since validation keeps stored objects far below it.)
#[tokio::test]
async fn patch_amplification_is_refused_and_the_object_is_untouched() {
    let s = scenario().await;
    let ann = client_for(&s, &s.editor).await;
    let cms: Api<ConfigMap> = Api::namespaced(ann, "shop");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "seed"}, "data": {"a": "1"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();

    // Each round doubles an annotation list; 40 rounds would be 2^40 copies.
    let mut ops = vec![json!({"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}})];
    ops.push(json!({"op": "add", "path": "/data/list", "value": "x".repeat(2000)}));
    for i in 0..40 {
        ops.push(
            json!({"op": "copy", "from": "/data", "path": format!("/metadata/annotations/d{i}")}),
        );
        ops.push(
            json!({"op": "copy", "from": "/metadata/annotations", "path": format!("/data/c{i}")}),
        );
    }
    let patch: json_patch::Patch = serde_json::from_value(json!(ops)).unwrap();
    let err = cms
        .patch("seed", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .expect_err("the doubling patch must be refused");
    let (code, reason, message) = api_error(err);
    assert_eq!(
        (code, reason.as_str()),
        (413, "RequestEntityTooLarge"),
        "{message}"
    );
    assert!(message.contains("3145728 bytes"), "{message}");

    let many: json_patch::Patch = serde_json::from_value(json!(vec![
        json!({"op": "test", "path": "/data/a", "value": "1"});
        10_001
    ]))
    .unwrap();
    let err = cms
        .patch("seed", &PatchParams::default(), &Patch::<()>::Json(many))
        .await
        .expect_err("10,001 operations must be refused");
    let (code, _, message) = api_error(err);
    assert_eq!(code, 413, "{message}");
    assert!(
        message.contains("maximum operations in a JSON patch is 10000"),
        "{message}"
    );

    let after = cms.get("seed").await.unwrap();
    let data = after.data.unwrap_or_default();
    assert_eq!(data.get("a").map(String::as_str), Some("1"));
    assert!(!data.contains_key("list"));
    assert_eq!(
        after.metadata.resource_version,
        created.metadata.resource_version
    );
}

async fn scrape(app: &manifold_integration_tests::TestApp) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.admin_addr)
        .await
        .expect("admin endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut body))
        .await
        .expect("scrape in time")
        .expect("response");
    body
}

/// The value of the sample line starting with `prefix` (name and labels).
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A protoset describing services the server does not have: `random.SvcN`
/// and made-up methods of a real service, for grpcurl.
fn made_up_protoset(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    use prost::Message;
    use prost_types::{
        DescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
        ServiceDescriptorProto,
    };
    let method = |name: String, ty: &str| MethodDescriptorProto {
        name: Some(name),
        input_type: Some(ty.to_owned()),
        output_type: Some(ty.to_owned()),
        ..Default::default()
    };
    let file =
        |name: &str, package: &str, services: Vec<ServiceDescriptorProto>| FileDescriptorProto {
            name: Some(name.to_owned()),
            package: Some(package.to_owned()),
            message_type: vec![DescriptorProto {
                name: Some("Nothing".into()),
                ..Default::default()
            }],
            service: services,
            syntax: Some("proto3".into()),
            ..Default::default()
        };
    let random = (0..n)
        .map(|i| ServiceDescriptorProto {
            name: Some(format!("Svc{i}")),
            method: vec![method(format!("Probe{i}"), ".random.Nothing")],
            ..Default::default()
        })
        .collect();
    let bogus = vec![ServiceDescriptorProto {
        name: Some("TenantService".into()),
        method: (0..n)
            .map(|i| method(format!("Bogus{i}"), ".hostile.fake.Nothing"))
            .collect(),
        ..Default::default()
    }];
    let set = FileDescriptorSet {
        file: vec![
            file("random.proto", "random", random),
            file("fake_tenancy.proto", "hostile.fake", vec![]),
            FileDescriptorProto {
                name: Some("bogus.proto".into()),
                package: Some("manifold.tenancy.v1".into()),
                dependency: vec!["fake_tenancy.proto".into()],
                service: bogus,
                syntax: Some("proto3".into()),
                ..Default::default()
            },
        ],
    };
    let path = dir.join("made-up.protoset");
    std::fs::write(&path, set.encode_to_vec()).unwrap();
    path
}

/// grpcurl calls to paths the server does not serve (anonymous ones to
/// made-up services, authenticated ones to made-up methods of a real
/// service) all land in one `unknown`/`unknown` metric series; real methods
/// keep their own.
#[tokio::test]
async fn random_grpc_paths_do_not_mint_metric_series() {
    let s = scenario().await;
    const N: usize = 12;
    let protoset = made_up_protoset(s.dir.path(), N);
    let protoset_flag = format!("-protoset={}", protoset.display());
    for i in 0..N {
        let out = s
            .app
            .grpcurl(
                None,
                &[
                    &protoset_flag,
                    "-d",
                    "{}",
                    &format!("random.Svc{i}/Probe{i}"),
                ],
            )
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Unauthenticated"), "{err}");
    }
    for i in 0..4 {
        let method = format!("manifold.tenancy.v1.TenantService/Bogus{i}");
        let out = s
            .app
            .grpcurl(
                Some(&s.admin),
                &[protoset_flag.as_str(), "-d", "{}", method.as_str()],
            )
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Unimplemented"), "{err}");
    }
    let metrics = scrape(&s.app).await;
    for made_up in ["Svc", "Probe", "Bogus", "random"] {
        assert!(
            !metrics
                .lines()
                .any(|l| l.starts_with("rpc_") && l.contains(made_up)),
            "{made_up} minted a series:\n{metrics}"
        );
    }
    let unknown = r#"rpc_requests_total{service="unknown",method="unknown",code="#;
    assert!(
        sample(&metrics, &format!("{unknown}\"UNAUTHENTICATED\"}}")) >= N as f64,
        "{metrics}"
    );
    assert!(sample(&metrics, &format!("{unknown}\"UNIMPLEMENTED\"}}")) >= 4.0);
    // Real methods keep their names.
    assert!(
        metrics.contains(
            r#"service="manifold.tenancy.v1.RoleBindingService",method="CreateRoleBinding""#
        ),
        "{metrics}"
    );
}

/// A random, well-formed `mft_` token (the shape tenancy looks up).
fn made_up_token(i: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!(
        "mft_{:016x}_{:032x}",
        nanos ^ (i << 20),
        u128::from(i) * 7919 + 1
    )
}

/// Thousands of calls with made-up tokens: a bounded number reach the
/// database (the rest are answered RESOURCE_EXHAUSTED from memory), while
/// an operator's gRPC calls and a tenant user's kubectl keep working; a
/// token never seen before meets a 429 naming the throttle.
#[tokio::test]
async fn a_flood_of_bad_tokens_is_throttled_and_real_users_keep_working() {
    use manifold_integration_tests::authed;
    let s = scenario().await;
    let k = crate::kubectl::Kubectl::new(&s.kubeconfig, s.dir.path());
    // Ann's kubeconfig token authenticates once before the flood.
    k.ok(&["get", "configmaps"]).await;

    const FLOOD: Duration = Duration::from_secs(4);
    let started = std::time::Instant::now();
    let mut flooders = Vec::new();
    for t in 0..6u64 {
        let ch = s.channel.clone();
        flooders.push(tokio::spawn(async move {
            let (mut unauthenticated, mut exhausted, mut other) = (0u32, 0u32, 0u32);
            let mut i = 0u64;
            while started.elapsed() < FLOOD && i < 200_000 {
                i += 1;
                let token = made_up_token(t * 1_000_000 + i);
                let r = tpb::tenant_service_client::TenantServiceClient::new(ch.clone())
                    .list_tenants(authed(&token, tpb::ListTenantsRequest::default()))
                    .await;
                match r.map_err(|e| e.code()) {
                    Err(tonic::Code::Unauthenticated) => unauthenticated += 1,
                    Err(tonic::Code::ResourceExhausted) => exhausted += 1,
                    _ => other += 1,
                }
            }
            (unauthenticated, exhausted, other)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // During the flood: the operator, ann's kubectl, and a fresh token's 429.
    let mut fresh_refused = None;
    let mut rounds = 0u32;
    while started.elapsed() < FLOOD - Duration::from_millis(500) && rounds < 20 {
        rounds += 1;
        tpb::tenant_service_client::TenantServiceClient::new(s.channel.clone())
            .list_tenants(authed(&s.admin, tpb::ListTenantsRequest::default()))
            .await
            .expect("the operator keeps working during the flood");
        k.ok(&["get", "configmaps"]).await;
        if fresh_refused.is_none() {
            let out = k
                .run(&[
                    "get",
                    "configmaps",
                    &format!("--token={}", made_up_token(99)),
                ])
                .await;
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if err.contains("TooManyRequests") {
                fresh_refused = Some(err);
            }
        }
    }
    let (mut unauthenticated, mut exhausted, mut other) = (0, 0, 0);
    for f in flooders {
        let (u, e, o) = f.await.unwrap();
        unauthenticated += u;
        exhausted += e;
        other += o;
    }
    assert_eq!(other, 0);
    let fresh = fresh_refused.expect("a fresh token meets the throttle during the flood");
    assert!(fresh.contains("too many failed authentications"), "{fresh}");
    // Lookups: the burst (100) plus 50 per second, plus those in flight.
    let bound = 100 + 50 * (FLOOD.as_secs() as u32 + 2) + 6;
    assert!(
        unauthenticated <= bound,
        "{unauthenticated} lookups reached the database (bound {bound})"
    );
    assert!(
        exhausted > unauthenticated,
        "{exhausted} throttled, {unauthenticated} looked up"
    );
}

/// A principal may hold 100 watches; the 101st (from kube-rs or kubectl,
/// whatever the token) is a 429 naming the limit, other users still watch,
/// and a closed watch frees its slot.
#[tokio::test]
async fn watches_per_principal_are_limited_with_a_429_naming_the_limit() {
    use futures::StreamExt;
    use kube::api::{PostParams, WatchEvent, WatchParams};
    let s = scenario().await;
    let ann = client_for(&s, &s.editor).await;
    let cms: Api<ConfigMap> = Api::namespaced(ann, "shop");
    // One object, so an accepted watch from "0" starts with its ADDED event.
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "seen-by-every-watch"}, "data": {"k": "v"}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let limit = manifold_auth::DEFAULT_MAX_STREAMS_PER_PRINCIPAL;
    let wp = WatchParams::default().timeout(120);
    // kube-rs reads a refusal's Status as the stream's first item: Ok(stream)
    // once the ADDED event arrives, Err(refusal).
    type Watch =
        std::pin::Pin<Box<dyn futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Send>>;
    async fn open(cms: &Api<ConfigMap>, wp: &WatchParams) -> Result<Watch, kube::Error> {
        let mut stream: Watch = Box::pin(
            tokio::time::timeout(Duration::from_secs(20), cms.watch(wp, "0"))
                .await
                .expect("watch answered in time")?,
        );
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(WatchEvent::Added(_)))) => Ok(stream),
            Ok(Some(Err(e))) => Err(e),
            other => panic!("a watch from 0 starts with ADDED or a refusal, got {other:?}"),
        }
    }
    let mut open_watches = Vec::new();
    for i in 0..limit {
        let w = open(&cms, &wp)
            .await
            .unwrap_or_else(|e| panic!("watch {i}: {e}"));
        open_watches.push(w);
    }
    let err = open(&cms, &wp)
        .await
        .err()
        .expect("watch past the limit refused");
    let (code, reason, message) = api_error(err);
    assert_eq!(
        (code, reason.as_str()),
        (429, "TooManyRequests"),
        "{message}"
    );
    // Refused by the per-principal stream limit or the gateway's watch
    // quota (both 100); either names the principal and the limit.
    let names_the_limit = |m: &str| {
        m.contains(&format!("the limit is {limit}")) || m.contains(&format!("(limit {limit}"))
    };
    assert!(
        message.contains("tenants/acme/users/ann") && names_the_limit(&message),
        "{message}"
    );
    // kubectl, with ann's kubeconfig (another token, the same user).
    let k = crate::kubectl::Kubectl::new(&s.kubeconfig, s.dir.path());
    let refused = k
        .fails(&["get", "configmaps", "--watch", "--request-timeout=10s"])
        .await;
    assert!(names_the_limit(&refused), "{refused}");
    // Someone else is not affected.
    let viewer = user_with_role(
        &s.channel,
        &s.admin,
        "acme",
        "vic",
        tpb::Role::NamespaceViewer,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let vic: Api<ConfigMap> = Api::namespaced(client_for(&s, &viewer).await, "shop");
    let _vic_watch = open(&vic, &wp).await.expect("another user watches");
    // Closing watches frees their slots (the server notices the closed connection).
    open_watches.truncate(limit - 5);
    let mut reopened = None;
    for _ in 0..40 {
        match open(&cms, &wp).await {
            Ok(w) => {
                reopened = Some(w);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    assert!(reopened.is_some(), "a slot was freed within 10 s");
}
