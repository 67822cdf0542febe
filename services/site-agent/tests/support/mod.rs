//! A small control plane for protocol tests: `RegistrationService` and `SiteSync`
//! over TLS with a throwaway CA, checking client certificates like the real one.
//! Each accepted stream is handed to the test, which scripts the control side.
// Shared by several test binaries, each using part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use manifold_pki::Ca;
use manifold_proto::replication::v1 as pb;
use manifold_proto::sites::v1 as sites;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

/// One accepted `SiteSync.Connect`, as the test sees it.
pub struct Conn {
    /// The site named by the client certificate.
    pub site: String,
    pub from_agent: mpsc::Receiver<pb::AgentMessage>,
    pub to_agent: mpsc::Sender<Result<pb::ControlMessage, Status>>,
}

impl Conn {
    /// The next agent message, within 10 s.
    pub async fn recv(&mut self) -> pb::agent_message::Msg {
        let msg = tokio::time::timeout(Duration::from_secs(10), self.from_agent.recv())
            .await
            .expect("agent message within 10 s")
            .expect("agent stream open");
        msg.msg.expect("message set")
    }

    /// Skips messages until `pick` returns something (within 10 s).
    pub async fn recv_until<T>(
        &mut self,
        mut pick: impl FnMut(&pb::agent_message::Msg) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.from_agent.recv())
                .await
                .expect("expected agent message within 10 s")
                .expect("agent stream open");
            if let Some(t) = msg.msg.as_ref().and_then(&mut pick) {
                return t;
            }
        }
    }

    pub async fn send(&self, msg: pb::control_message::Msg) {
        self.to_agent
            .send(Ok(pb::ControlMessage { msg: Some(msg) }))
            .await
            .expect("agent stream open");
    }
}

pub struct TestControlPlane {
    pub addr: SocketAddr,
    pub ca: Arc<Ca>,
    pub ca_pem: String,
    pub registrations: Arc<AtomicUsize>,
    pub renewals: Arc<AtomicUsize>,
    pub conns: mpsc::UnboundedReceiver<Conn>,
    /// What the next RenewRequest is answered with: `None` signs, `Some(e)` fails.
    pub renew_error: Arc<Mutex<Option<String>>>,
    shutdown: CancellationToken,
}

impl Drop for TestControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestControlPlane {
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// An agent identity for `site`, signed by this control plane's CA (without
    /// going through registration).
    pub fn issue(&self, site: &str) -> manifold_site_agent::Identity {
        let (key, csr) = manifold_pki::generate_csr(site).unwrap();
        let signed = self
            .ca
            .sign_site_csr(&csr, site, Duration::from_secs(3600 * 24 * 30))
            .unwrap();
        manifold_site_agent::Identity::new(site, key, signed.cert_pem, self.ca_pem.clone()).unwrap()
    }

    /// The next accepted stream, within 15 s.
    pub async fn accept(&mut self) -> Conn {
        tokio::time::timeout(Duration::from_secs(15), self.conns.recv())
            .await
            .expect("agent connects within 15 s")
            .expect("server running")
    }
}

#[derive(Clone)]
struct Shared {
    ca: Arc<Ca>,
    token: String,
    validity: Duration,
    registrations: Arc<AtomicUsize>,
    renewals: Arc<AtomicUsize>,
    conns: mpsc::UnboundedSender<Conn>,
    renew_error: Arc<Mutex<Option<String>>>,
}

fn peer_site<T>(request: &Request<T>) -> Result<String, Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("client certificate required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("client certificate required"))?;
    manifold_pki::site_from_cert_der(leaf.as_ref())
        .ok_or_else(|| Status::unauthenticated("not a site certificate"))
}

#[tonic::async_trait]
impl sites::registration_service_server::RegistrationService for Shared {
    async fn register(
        &self,
        request: Request<sites::RegisterRequest>,
    ) -> Result<Response<sites::RegisterResponse>, Status> {
        let req = request.into_inner();
        let site = req
            .site
            .strip_prefix("sites/")
            .ok_or_else(|| Status::invalid_argument("site must be sites/{site}"))?;
        if req.registration_token != self.token
            || self.registrations.fetch_add(1, Ordering::SeqCst) > 0
        {
            return Err(Status::unauthenticated(
                "registration token unknown or used",
            ));
        }
        let signed = self
            .ca
            .sign_site_csr(&req.csr_pem, site, self.validity)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(sites::RegisterResponse {
            certificate_pem: signed.cert_pem,
            ca_bundle_pem: self.ca.cert_pem().to_owned(),
            expire_time: None,
        }))
    }

    async fn renew_certificate(
        &self,
        request: Request<sites::RenewCertificateRequest>,
    ) -> Result<Response<sites::RenewCertificateResponse>, Status> {
        let site = peer_site(&request)?;
        self.renewals.fetch_add(1, Ordering::SeqCst);
        let signed = self
            .ca
            .sign_site_csr(
                &request.get_ref().csr_pem,
                &site,
                Duration::from_secs(400 * 24 * 3600),
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(sites::RenewCertificateResponse {
            certificate_pem: signed.cert_pem,
            ca_bundle_pem: self.ca.cert_pem().to_owned(),
            expire_time: None,
        }))
    }

    async fn report_site_status(
        &self,
        _request: Request<sites::ReportSiteStatusRequest>,
    ) -> Result<Response<sites::Site>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn report_site_heartbeats(
        &self,
        _request: Request<sites::ReportSiteHeartbeatsRequest>,
    ) -> Result<Response<sites::ReportSiteHeartbeatsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn check_certificate(
        &self,
        _request: Request<sites::CheckCertificateRequest>,
    ) -> Result<Response<sites::CheckCertificateResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

#[tonic::async_trait]
impl pb::site_sync_server::SiteSync for Shared {
    type ConnectStream = ReceiverStream<Result<pb::ControlMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let site = peer_site(&request)?;
        let mut inbound = request.into_inner();
        let (from_tx, from_rx) = mpsc::channel(1024);
        let (to_tx, to_rx) = mpsc::channel(1024);
        let renew_to = to_tx.clone();
        let shared = self.clone();
        let cert_site = site.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                // Renewals are answered here, as the real control plane does.
                if let Some(pb::agent_message::Msg::Renew(r)) = &msg.msg {
                    let error = shared.renew_error.lock().await.clone();
                    let response = match error {
                        Some(error) => pb::RenewResponse {
                            error,
                            ..Default::default()
                        },
                        None => {
                            shared.renewals.fetch_add(1, Ordering::SeqCst);
                            let signed = shared
                                .ca
                                .sign_site_csr(
                                    &r.csr_pem,
                                    &cert_site,
                                    Duration::from_secs(400 * 24 * 3600),
                                )
                                .expect("valid CSR");
                            pb::RenewResponse {
                                certificate_pem: signed.cert_pem,
                                ca_bundle_pem: shared.ca.cert_pem().to_owned(),
                                ..Default::default()
                            }
                        }
                    };
                    let _ = renew_to
                        .send(Ok(pb::ControlMessage {
                            msg: Some(pb::control_message::Msg::Renew(response)),
                        }))
                        .await;
                }
                if from_tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let _ = self.conns.send(Conn {
            site,
            from_agent: from_rx,
            to_agent: to_tx,
        });
        Ok(Response::new(ReceiverStream::new(to_rx)))
    }
}

/// Starts the server on 127.0.0.1:0. Registration accepts `token` once and issues
/// certificates valid for `validity`.
pub async fn start(token: &str, validity: Duration) -> TestControlPlane {
    manifold_pki::install_default_crypto_provider();
    let ca = Ca::generate().expect("CA");
    let server = ca
        .issue_server_cert(&["localhost".into()], &["127.0.0.1".parse().unwrap()])
        .expect("server cert");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (conns_tx, conns_rx) = mpsc::unbounded_channel();
    let shared = Shared {
        ca: Arc::new(ca),
        token: token.into(),
        validity,
        registrations: Arc::new(AtomicUsize::new(0)),
        renewals: Arc::new(AtomicUsize::new(0)),
        conns: conns_tx,
        renew_error: Arc::new(Mutex::new(None)),
    };
    let ca_pem = shared.ca.cert_pem().to_owned();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&server.cert_pem, &server.key_pem))
        .client_ca_root(Certificate::from_pem(&ca_pem))
        .client_auth_optional(true);
    let shutdown = CancellationToken::new();
    let router = Server::builder()
        .tls_config(tls)
        .expect("tls")
        .add_service(pb::site_sync_server::SiteSyncServer::new(shared.clone()))
        .add_service(
            sites::registration_service_server::RegistrationServiceServer::new(shared.clone()),
        );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
            .await;
    });
    TestControlPlane {
        addr,
        ca: shared.ca.clone(),
        ca_pem,
        registrations: shared.registrations.clone(),
        renewals: shared.renewals.clone(),
        conns: conns_rx,
        renew_error: shared.renew_error.clone(),
        shutdown,
    }
}
