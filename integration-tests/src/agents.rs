//! Site agents as an operator runs them: the site is created in the registry
//! (provider-owned, with labels), a one-time registration token is minted, and
//! `manifold-site-agent --backend kube` runs as its own process against the
//! cluster's kubeconfig, keeping its identity in a data directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use manifold_proto::sites::v1 as spb;
use tonic::Code;
use tonic::transport::Channel;

use crate::{Service, authed, binary};

/// Where and how an agent reaches the control plane.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    /// gRPC URL (`https://127.0.0.1:7443`).
    pub endpoint: String,
    /// The control-plane CA bundle.
    pub ca_file: PathBuf,
    /// A system-admin token (creates sites and registration tokens).
    pub admin_token: String,
}

/// Creates site `site` with `labels` unless it exists (then its labels are left
/// as they are).
pub async fn ensure_site(
    channel: &Channel,
    admin_token: &str,
    site: &str,
    labels: &HashMap<String, String>,
) -> Result<()> {
    let mut sites = spb::site_service_client::SiteServiceClient::new(channel.clone());
    let created = sites
        .create_site(authed(
            admin_token,
            spb::CreateSiteRequest {
                site_id: site.to_owned(),
                site: Some(spb::Site {
                    display_name: format!("{site} (real cluster)"),
                    labels: labels.clone(),
                    provider_kind: spb::site::ProviderKind::Edge as i32,
                    ..Default::default()
                }),
            },
        ))
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        Err(s) => Err(anyhow::anyhow!("creating site {site}: {}", s.message())),
    }
}

/// A one-time registration token for `site`.
pub async fn registration_token(
    channel: &Channel,
    admin_token: &str,
    site: &str,
) -> Result<String> {
    let token = spb::site_service_client::SiteServiceClient::new(channel.clone())
        .create_registration_token(authed(
            admin_token,
            spb::CreateRegistrationTokenRequest {
                site: format!("sites/{site}"),
                ttl_seconds: 600,
            },
        ))
        .await
        .with_context(|| format!("registration token for {site}"))?
        .into_inner()
        .token;
    Ok(token)
}

/// Starts `manifold-site-agent --backend kube` for `site` against the cluster of
/// `kubeconfig`, its identity in `data_dir` (registering first, with a fresh
/// token, when the directory holds none). Logs go to `log`.
pub async fn start_kube_agent(
    channel: &Channel,
    cp: &ControlPlane,
    site: &str,
    kubeconfig: &Path,
    data_dir: &Path,
    extra_env: &[(&str, String)],
    log: &Path,
) -> Result<Service> {
    std::fs::create_dir_all(data_dir)?;
    let mut env = vec![
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("MANIFOLD_ENDPOINT", cp.endpoint.clone()),
        ("MANIFOLD_CA_FILE", cp.ca_file.display().to_string()),
        ("MANIFOLD_SITE", site.to_owned()),
        ("MANIFOLD_AGENT_DATA_DIR", data_dir.display().to_string()),
        ("MANIFOLD_AGENT_BACKEND", "kube".to_owned()),
        ("MANIFOLD_HEARTBEAT_SECS", "1".to_owned()),
        (
            "RUST_LOG",
            std::env::var("AGENT_LOG").unwrap_or_else(|_| "info,kube=warn,hyper=warn".into()),
        ),
    ];
    if !data_dir.join("identity.pem").exists() {
        let token = registration_token(channel, &cp.admin_token, site).await?;
        let token_file = data_dir.join("registration.token");
        std::fs::write(&token_file, token)?;
        env.push((
            "MANIFOLD_REGISTRATION_TOKEN_FILE",
            token_file.display().to_string(),
        ));
    }
    env.extend(extra_env.iter().cloned());
    Service::start(&binary("manifold-site-agent")?, &[], &env, log)
}
