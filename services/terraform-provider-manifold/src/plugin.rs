//! Being a Terraform plugin: the go-plugin handshake line on stdout, the
//! automatic mTLS Terraform asks for (`PLUGIN_CLIENT_CERT`), the gRPC server
//! on a Unix domain socket, and the controller call that stops it.
//!
//! Who can connect: the socket lives in a directory only this user can enter
//! (created 0700 with a fresh name, removed on exit), like go-plugin's own
//! servers. So other local users cannot reach the provider, which would
//! otherwise let them configure it with their own endpoint and collect the
//! token it falls back to ($MANIFOLD_TOKEN).
//!
//! TLS on top: we generate a throw-away self-signed certificate per run and
//! print it in the handshake; Terraform pins exactly that certificate.
//! Terraform's own client certificate is trusted as the only client CA, but
//! client authentication is optional: go-plugin's certificate uses P-521,
//! which the `ring` crypto provider the workspace builds on cannot verify, so
//! a Go client that finds no common signature scheme connects without one.
//! The socket directory's permissions are the access control.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine;
use tokio::sync::Notify;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::goplugin;
use crate::server::Provider;
use crate::tfplugin6::provider_server::ProviderServer;

/// go-plugin's core protocol version and the Terraform plugin protocol.
const CORE_PROTOCOL: u32 = 1;
const APP_PROTOCOL: u32 = 6;
/// Terraform's handshake cookie: proves the process was started by Terraform.
const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// Entry point of the `terraform-provider-manifold` binary.
pub fn main() -> std::process::ExitCode {
    if std::env::var(MAGIC_COOKIE_KEY).as_deref() != Ok(MAGIC_COOKIE_VALUE) {
        eprintln!(
            "terraform-provider-manifold is a Terraform plugin: Terraform starts it.\n\
             Install it (see services/terraform-provider-manifold/README.md) and run `terraform plan`."
        );
        return std::process::ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("terraform-provider-manifold: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-manifold: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<()> {
    if let Ok(versions) = std::env::var("PLUGIN_PROTOCOL_VERSIONS")
        && !versions
            .split(',')
            .any(|v| v.trim() == APP_PROTOCOL.to_string())
    {
        bail!(
            "Terraform offers plugin protocol versions {versions}; this provider speaks {APP_PROTOCOL}"
        );
    }
    let dir = SocketDir::create()?;
    let socket = dir.path.join("plugin.sock");
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("binding {}", socket.display()))?;

    let mut builder = Server::builder();
    let mut cert_b64 = String::new();
    let client_cert = std::env::var("PLUGIN_CLIENT_CERT").unwrap_or_default();
    if !client_cert.is_empty() {
        let (identity, der) = self_signed()?;
        builder = builder
            .tls_config(
                ServerTlsConfig::new()
                    .identity(identity)
                    .client_ca_root(Certificate::from_pem(client_cert))
                    .client_auth_optional(true),
            )
            .context("TLS configuration")?;
        cert_b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(der);
    }

    let stop = Arc::new(Notify::new());
    spawn_signal_handlers(stop.clone())?;
    let controller = goplugin::grpc_controller_server::GrpcControllerServer::new(Controller {
        stop: stop.clone(),
    });
    let provider = ProviderServer::new(Arc::new(Provider::new()))
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    let serving = builder
        .add_service(provider)
        .add_service(controller)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            stop.notified().await
        });
    // Rust's stdout is line-buffered: the line reaches Terraform at once.
    println!(
        "{CORE_PROTOCOL}|{APP_PROTOCOL}|unix|{}|grpc|{cert_b64}",
        socket.display()
    );
    let served = serving.await.context("serving");
    drop(dir);
    served
}

/// SIGTERM stops the server (and so removes the socket directory). SIGINT is
/// ignored, as go-plugin servers do: Ctrl-C reaches the whole process group,
/// and Terraform interrupts its plugins itself (StopProvider, then Shutdown).
fn spawn_signal_handlers(stop: Arc<Notify>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    stop.notify_one();
                    return;
                }
                _ = int.recv() => {}
            }
        }
    });
    Ok(())
}

/// A fresh directory only the current user can use, removed when dropped.
/// `$PLUGIN_UNIX_SOCKET_DIR` (go-plugin's setting) chooses where, else the
/// temporary directory.
struct SocketDir {
    path: PathBuf,
}

impl SocketDir {
    fn create() -> Result<SocketDir> {
        use std::hash::{BuildHasher, RandomState};
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(std::env::temp_dir, PathBuf::from);
        let mut last_err = None;
        for attempt in 0u32..16 {
            // RandomState is seeded from the OS per process; mix in the pid and
            // the attempt for a name nobody can predict and claim first.
            let n = RandomState::new().hash_one((std::process::id(), attempt));
            let path = base.join(format!("tf-manifold-{n:016x}"));
            // `create` fails if anything already exists there, so the directory
            // is ours, and `mode` makes it private from the start.
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(SocketDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("creating a socket directory in {}", base.display())
                    });
                }
            }
        }
        Err(last_err.expect("attempted"))
            .with_context(|| format!("creating a socket directory in {}", base.display()))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A certificate for "localhost" (what go-plugin dials) and its DER form.
fn self_signed() -> Result<(Identity, Vec<u8>)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "terraform-provider-manifold");
    // go-plugin adds the certificate it is handed to its root pool.
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok((
        Identity::from_pem(cert.pem(), key.serialize_pem()),
        cert.der().to_vec(),
    ))
}

struct Controller {
    stop: Arc<Notify>,
}

#[tonic::async_trait]
impl goplugin::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(
        &self,
        _: tonic::Request<goplugin::Empty>,
    ) -> Result<tonic::Response<goplugin::Empty>, tonic::Status> {
        self.stop.notify_one();
        Ok(tonic::Response::new(goplugin::Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dir_is_private_fresh_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let a = SocketDir::create().expect("create");
        let b = SocketDir::create().expect("create");
        assert_ne!(a.path, b.path);
        let mode = std::fs::metadata(&a.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        std::fs::write(a.path.join("plugin.sock"), "").unwrap();
        let path = a.path.clone();
        drop(a);
        assert!(!path.exists());
    }
}
