//! Replication end to end: a fake site agent (a real tonic client on an
//! mTLS stream, with a certificate from RegistrationService.Register)
//! against the replication service, with objects created through the
//! gateway's Kubernetes API by the real kubectl.
//!
//! The all-in-one mounts replication too; these tests run their own
//! replication servers beside it (more replicas of one deployment: same
//! database, CA and server certificate; the gateway, site registry and
//! tenancy reached over gRPC), so each test can tune the configuration
//! (window, heartbeat timeout, ring size) and run several replicas.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use manifold_integration_tests::{TestApp, authed, tool};
use manifold_proto::{
    replication::v1 as rpb, sites::v1 as spb, tenancy::v1 as tpb, vk8s::v1 as vpb,
};
use manifold_replication::{Replication, ReplicationConfig};
use rpb::control_message::Msg;
use tokio::{io::AsyncWriteExt, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

mod flows;
mod replicas;
mod state;

pub(crate) const VK: &str = "tenants/acme/namespaces/shop/virtualClusters/demo";
const WAIT: Duration = Duration::from_secs(30);

/// The all-in-one plus replication servers beside it.
pub(crate) struct Harness {
    pub app: TestApp,
    pub ch: Channel,
    pub admin: String,
    /// The first replication server.
    pub repl_addr: SocketAddr,
    /// Every replication server (replicas of one deployment).
    pub repl_addrs: Vec<SocketAddr>,
    pub dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(crate) async fn harness(
    overrides: &[(&str, String)],
    tweak: impl Fn(&mut ReplicationConfig),
) -> Harness {
    harness_with_replicas(overrides, 1, tweak).await
}

/// `replicas` replication servers on one database, each advertising its
/// URL to the others (log streams are forwarded between them).
pub(crate) async fn harness_with_replicas(
    overrides: &[(&str, String)],
    replicas: usize,
    tweak: impl Fn(&mut ReplicationConfig),
) -> Harness {
    harness_with_registry(overrides, replicas, |_| {}, tweak).await
}

/// [`harness_with_replicas`] with the replication servers' own site
/// registry (which verifies and renews agent certificates) tuned too.
pub(crate) async fn harness_with_registry(
    overrides: &[(&str, String)],
    replicas: usize,
    registry_tweak: impl Fn(&mut manifold_site_registry::SiteRegistryOptions),
    tweak: impl Fn(&mut ReplicationConfig),
) -> Harness {
    let app = TestApp::spawn_with(overrides).await.expect("control plane");
    let ch = app.channel().await.expect("channel");
    let dir = app.data_dir.path();
    let ca = manifold_pki::Ca::load_or_create(dir).expect("CA");
    let identity = manifold_pki::load_or_create_server_identity(
        dir,
        &ca,
        &["localhost".into()],
        &[Ipv4Addr::LOCALHOST.into()],
    )
    .expect("server identity");
    let ca_pem = ca.cert_pem().to_owned();
    let ca = Arc::new(ca);
    let tls = manifold_server::TlsMaterial {
        ca_pem: ca_pem.clone(),
        ca: Some(ca.clone()),
        identity,
    };
    let pool = manifold_db::connect(&manifold_db::ConnectOptions {
        url: app.database_url.clone(),
        max_connections: 10,
        wait: Duration::from_secs(10),
    })
    .await
    .expect("database");
    let db = manifold_db::Db::new(pool, manifold_db::DbMetrics::new());
    let stop = CancellationToken::new();
    let mut registry_options = manifold_site_registry::SiteRegistryOptions {
        shutdown: stop.clone(),
        ..Default::default()
    };
    registry_tweak(&mut registry_options);
    let registry = manifold_site_registry::SiteRegistry::new(
        db.clone(),
        ch.clone(),
        Some(ca),
        ca_pem,
        registry_options,
    );
    let mut repl_addrs = Vec::new();
    for i in 0..replicas {
        let listener = manifold_server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("listener");
        let addr = listener.local_addr().unwrap();
        repl_addrs.push(addr);
        let mut config = ReplicationConfig::new(app.admin_token.clone());
        config.site_authority = Some(Arc::new(registry.clone()));
        config.cluster_poll_interval = Duration::from_millis(300);
        config.replica_id = if i == 0 {
            "test-replica".into()
        } else {
            format!("test-replica-{i}")
        };
        config.advertise_url = Some(format!("https://{addr}"));
        config.peer_ca_pem = Some(tls.ca_pem.clone());
        tweak(&mut config);
        let replication = Replication::new(db.clone(), ch.clone(), config);
        let mut grpc = manifold_server::GrpcServer::new();
        grpc.mount(
            |r| replication.add_to(r),
            manifold_replication::SERVICE_NAMES,
            manifold_replication::PUBLIC_PATHS,
        );
        let authenticator = Arc::new(manifold_auth::RemoteAuthenticator::new(ch.clone()));
        let token = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = grpc
                .serve(
                    listener,
                    &tls,
                    authenticator,
                    manifold_telemetry::Metrics::new(),
                    async move { token.cancelled().await },
                )
                .await;
            if let Err(e) = served {
                eprintln!("replication server: {e}");
            }
        });
        replication.spawn_background(stop.clone());
    }
    Harness {
        admin: app.admin_token.clone(),
        app,
        ch,
        repl_addr: repl_addrs[0],
        repl_addrs,
        dir: tempfile::tempdir().unwrap(),
        stop,
    }
}

impl Harness {
    /// A client of the (first) replication server's ReplicationService.
    pub async fn replication(
        &self,
    ) -> rpb::replication_service_client::ReplicationServiceClient<Channel> {
        self.replication_at(0).await
    }

    /// A client of replica `i`'s ReplicationService.
    pub async fn replication_at(
        &self,
        i: usize,
    ) -> rpb::replication_service_client::ReplicationServiceClient<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.app.ca_pem()))
            .domain_name("localhost");
        let ch = Endpoint::from_shared(format!("https://{}", self.repl_addrs[i]))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .expect("replication channel");
        rpb::replication_service_client::ReplicationServiceClient::new(ch)
    }

    /// Tenant `acme` with namespace `shop`, the given virtual sites
    /// (id, selector) and vK8s `demo` spanning `spans`.
    pub async fn scenario(&self, virtual_sites: &[(&str, &str)], spans: &[&str]) {
        let a = &self.admin;
        tpb::tenant_service_client::TenantServiceClient::new(self.ch.clone())
            .create_tenant(authed(
                a,
                tpb::CreateTenantRequest {
                    tenant_id: "acme".into(),
                    tenant: None,
                },
            ))
            .await
            .expect("tenant");
        tpb::namespace_service_client::NamespaceServiceClient::new(self.ch.clone())
            .create_namespace(authed(
                a,
                tpb::CreateNamespaceRequest {
                    parent: "tenants/acme".into(),
                    namespace_id: "shop".into(),
                    namespace: None,
                },
            ))
            .await
            .expect("namespace");
        for (id, selector) in virtual_sites {
            spb::virtual_site_service_client::VirtualSiteServiceClient::new(self.ch.clone())
                .create_virtual_site(authed(
                    a,
                    spb::CreateVirtualSiteRequest {
                        parent: "tenants/acme/namespaces/shop".into(),
                        virtual_site_id: (*id).into(),
                        virtual_site: Some(spb::VirtualSite {
                            site_selector: (*selector).into(),
                            ..Default::default()
                        }),
                    },
                ))
                .await
                .expect("virtual site");
        }
        vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(self.ch.clone())
            .create_virtual_cluster(authed(
                a,
                vpb::CreateVirtualClusterRequest {
                    parent: "tenants/acme/namespaces/shop".into(),
                    virtual_cluster_id: "demo".into(),
                    virtual_cluster: Some(vpb::VirtualCluster {
                        virtual_sites: spans.iter().map(|s| (*s).to_owned()).collect(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .expect("virtual cluster");
    }

    pub async fn create_site(&self, id: &str, labels: &[(&str, &str)]) {
        spb::site_service_client::SiteServiceClient::new(self.ch.clone())
            .create_site(authed(
                &self.admin,
                spb::CreateSiteRequest {
                    site_id: id.into(),
                    site: Some(spb::Site {
                        labels: labels
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .expect("site");
    }

    pub async fn relabel_site(&self, id: &str, labels: &[(&str, &str)]) {
        spb::site_service_client::SiteServiceClient::new(self.ch.clone())
            .update_site(authed(
                &self.admin,
                spb::UpdateSiteRequest {
                    site: Some(spb::Site {
                        name: format!("sites/{id}"),
                        labels: labels
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["labels".into()],
                    }),
                },
            ))
            .await
            .expect("update site");
    }

    pub async fn get_site(&self, id: &str) -> spb::Site {
        spb::site_service_client::SiteServiceClient::new(self.ch.clone())
            .get_site(authed(
                &self.admin,
                spb::GetSiteRequest {
                    name: format!("sites/{id}"),
                },
            ))
            .await
            .expect("get site")
            .into_inner()
    }

    /// Registers an agent for `site`: (certificate, key).
    pub async fn register(&self, site: &str) -> (String, String) {
        let token = spb::site_service_client::SiteServiceClient::new(self.ch.clone())
            .create_registration_token(authed(
                &self.admin,
                spb::CreateRegistrationTokenRequest {
                    site: format!("sites/{site}"),
                    ttl_seconds: 0,
                },
            ))
            .await
            .expect("registration token")
            .into_inner()
            .token;
        let (key, csr) = manifold_pki::generate_csr(site).unwrap();
        let reply =
            spb::registration_service_client::RegistrationServiceClient::new(self.ch.clone())
                .register(spb::RegisterRequest {
                    site: format!("sites/{site}"),
                    registration_token: token,
                    csr_pem: csr,
                    agent_version: "fake-agent/1".into(),
                })
                .await
                .expect("register")
                .into_inner();
        (reply.certificate_pem, key)
    }

    /// A site in the registry with a registered agent identity.
    pub async fn site(&self, id: &str, labels: &[(&str, &str)]) -> (String, String) {
        self.create_site(id, labels).await;
        self.register(id).await
    }

    /// kubectl against vK8s `demo` with a kubeconfig from GetKubeconfig.
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let kubeconfig = self.kubeconfig().await;
        let mut cmd = tokio::process::Command::new(tool("kubectl").expect("kubectl"));
        cmd.args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", self.dir.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl in time")
            .expect("kubectl ran");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn apply(&self, yaml: &str) {
        self.kubectl(&["apply", "-n", "shop", "-f", "-"], Some(yaml))
            .await;
    }

    async fn kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("demo.kubeconfig");
        if !path.exists() {
            let k = vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(
                self.ch.clone(),
            )
            .get_kubeconfig(authed(
                &self.admin,
                vpb::GetKubeconfigRequest {
                    name: VK.into(),
                    ttl_seconds: 0,
                },
            ))
            .await
            .expect("kubeconfig")
            .into_inner();
            std::fs::write(&path, k.kubeconfig).unwrap();
        }
        path
    }

    /// Connects an agent: `identity` (certificate, key) or none; Hello says
    /// `site` with `last_acked`.
    pub async fn connect(
        &self,
        identity: Option<&(String, String)>,
        site: &str,
        last_acked: i64,
    ) -> Result<Agent, tonic::Status> {
        self.connect_at(0, identity, site, last_acked).await
    }

    /// Connects an agent to replica `i`.
    pub async fn connect_at(
        &self,
        i: usize,
        identity: Option<&(String, String)>,
        site: &str,
        last_acked: i64,
    ) -> Result<Agent, tonic::Status> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.app.ca_pem()))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let ch = Endpoint::from_shared(format!("https://{}", self.repl_addrs[i]))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .expect("agent channel");
        let (tx, rx) = mpsc::channel(64);
        tx.send(hello(site, last_acked)).await.unwrap();
        let stream = rpb::site_sync_client::SiteSyncClient::new(ch)
            .connect(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Agent {
            site: site.to_owned(),
            tx,
            rx: stream,
            settings: Vec::new(),
        })
    }
}

fn hello(site: &str, last_acked: i64) -> rpb::AgentMessage {
    rpb::AgentMessage {
        msg: Some(rpb::agent_message::Msg::Hello(rpb::Hello {
            site: site.into(),
            agent_version: "fake-agent/1".into(),
            last_acked_revision: last_acked,
        })),
    }
}

/// What a snapshot carried.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub revision: i64,
    pub applies: Vec<String>,
    pub deletes: Vec<String>,
}

/// "Kind/name" of an object reference.
pub(crate) fn named(r: &Option<rpb::ObjectRef>) -> String {
    r.as_ref()
        .map(|r| format!("{}/{}", r.kind, r.name))
        .unwrap_or_default()
}

/// A fake site agent: it records what it is told and acks.
pub(crate) struct Agent {
    pub site: String,
    tx: mpsc::Sender<rpb::AgentMessage>,
    rx: tonic::Streaming<rpb::ControlMessage>,
    /// Every SiteSettings received, in order (`next` and `next_within` set
    /// them aside: they may arrive between any two messages).
    pub settings: Vec<rpb::SiteSettings>,
}

impl Agent {
    pub async fn send(&self, msg: rpb::agent_message::Msg) {
        self.tx
            .send(rpb::AgentMessage { msg: Some(msg) })
            .await
            .expect("agent stream open");
    }

    pub async fn ack(&self, revision: i64) {
        self.send(rpb::agent_message::Msg::Ack(rpb::Ack { revision }))
            .await;
    }

    /// The next message but SiteSettings, or the status the stream ended with.
    pub async fn next(&mut self) -> Result<Msg, tonic::Status> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.message()).await {
                Err(_) => panic!("{}: nothing received in {WAIT:?}", self.site),
                Ok(Ok(Some(m))) => match m.msg.expect("a message") {
                    Msg::Settings(c) => self.settings.push(c),
                    other => return Ok(other),
                },
                Ok(Ok(None)) => return Err(tonic::Status::cancelled("stream ended")),
                Ok(Err(s)) => return Err(s),
            }
        }
    }

    /// Like `next`, None when nothing arrives within `d`.
    pub async fn next_within(&mut self, d: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.message()).await {
                Err(_) => return None,
                Ok(Ok(Some(m))) => match m.msg {
                    Some(Msg::Settings(c)) => self.settings.push(c),
                    other => return other,
                },
                Ok(other) => panic!("{}: stream ended: {other:?}", self.site),
            }
        }
    }

    /// Acks a counted message (Apply/Delete/Progress outside snapshots).
    pub async fn ack_msg(&self, m: &Msg) {
        match m {
            Msg::Apply(a) => self.ack(a.revision).await,
            Msg::Delete(d) => self.ack(d.revision).await,
            Msg::Progress(p) => self.ack(p.revision).await,
            _ => {}
        }
    }

    /// Reads one whole snapshot (it must come next) and acks its end.
    pub async fn snapshot(&mut self) -> Snapshot {
        let first = self.next().await.expect("snapshot");
        let Msg::SnapshotBegin(b) = first else {
            panic!("{}: expected SnapshotBegin, got {first:?}", self.site);
        };
        let mut s = Snapshot {
            revision: b.revision,
            ..Default::default()
        };
        loop {
            match self.next().await.expect("snapshot body") {
                Msg::Apply(a) => s.applies.push(named(&a.r#ref)),
                Msg::Delete(d) => s.deletes.push(named(&d.r#ref)),
                Msg::SnapshotEnd(e) => {
                    assert_eq!(e.revision, b.revision);
                    break;
                }
                other => panic!("{}: unexpected inside a snapshot: {other:?}", self.site),
            }
        }
        s.applies.sort();
        s.deletes.sort();
        self.ack(s.revision).await;
        s
    }

    /// Reads (and acks) messages until `pred` matches one; returns all of
    /// them, the match last. Snapshots on the way are read whole.
    pub async fn until(&mut self, pred: impl Fn(&Msg) -> bool) -> Vec<Msg> {
        let mut seen = Vec::new();
        loop {
            let m = self.next().await.expect("message");
            self.ack_msg(&m).await;
            if let Msg::SnapshotEnd(e) = &m {
                self.ack(e.revision).await;
            }
            let hit = pred(&m);
            seen.push(m);
            if hit {
                return seen;
            }
        }
    }

    /// Waits for the Apply of `kind/name` and returns its revision.
    pub async fn applied(&mut self, what: &str) -> i64 {
        let seen = self
            .until(|m| matches!(m, Msg::Apply(a) if named(&a.r#ref) == what))
            .await;
        match seen.last() {
            Some(Msg::Apply(a)) => a.revision,
            _ => unreachable!(),
        }
    }
}

/// A ConfigMap manifest, optionally narrowed to virtual sites.
pub(crate) fn config_map(name: &str, virtual_sites: Option<&str>) -> String {
    let annotations = virtual_sites
        .map(|v| format!("  annotations:\n    manifold.dev/virtual-sites: \"{v}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{annotations}data:\n  key: value\n"
    )
}

pub(crate) const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
";

/// Lets placement changes reach the replication server (virtual clusters
/// are polled every 300 ms in these tests).
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}
