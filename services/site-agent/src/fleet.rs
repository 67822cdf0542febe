//! Simulated sites run in-process, as the all-in-one's `--simulated-sites` and the
//! load tools need them: for each site, create it in the site registry (an existing
//! one is reused), mint a registration token, register, and run a real agent on a
//! real TLS stream against a [`SimulatedBackend`]. Credentials stay in memory, so
//! every start registers afresh (which revokes the site's earlier certificates).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use manifold_proto::sites::v1 as sites_pb;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::backend::simulated::{SimulatedBackend, SimulatedOptions};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::identity::register;

/// Site registry calls made concurrently while starting a fleet.
const CONCURRENCY: usize = 16;

/// One simulated site to run.
#[derive(Clone, Debug)]
pub struct SimulatedSite {
    /// Site id (`pa2-par`).
    pub name: String,
    /// Labels given to the site when it is created (`env=edge`).
    pub labels: BTreeMap<String, String>,
    pub nodes: usize,
}

impl SimulatedSite {
    /// A site labelled `env=edge` with two nodes, as in the reference scenario.
    pub fn edge(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::from([("env".to_owned(), "edge".to_owned())]),
            nodes: 2,
        }
    }
}

/// Running simulated sites.
pub struct Fleet {
    /// Each site's simulated cluster (for failure knobs and inspection).
    pub backends: HashMap<String, Arc<SimulatedBackend>>,
    tasks: JoinSet<(String, Result<(), AgentError>)>,
}

impl Fleet {
    /// Waits until every agent has stopped (after the shutdown token fired),
    /// logging the ones that failed.
    pub async fn wait(mut self) {
        while let Some(done) = self.tasks.join_next().await {
            match done {
                Ok((_, Ok(()))) => {}
                Ok((site, Err(e))) => {
                    tracing::error!(%site, error = %e, "simulated site agent failed")
                }
                Err(e) => tracing::error!(error = %e, "simulated site agent panicked"),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

fn authed<T>(token: &str, message: T) -> Result<tonic::Request<T>, AgentError> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| AgentError::Config("the admin token is not valid ASCII".into()))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Creates `site` unless it exists and returns a fresh registration token for it.
async fn prepare_site(
    channel: Channel,
    admin_token: &str,
    site: &SimulatedSite,
) -> Result<String, AgentError> {
    let mut sites = sites_pb::site_service_client::SiteServiceClient::new(channel);
    let created = sites
        .create_site(authed(
            admin_token,
            sites_pb::CreateSiteRequest {
                site_id: site.name.clone(),
                site: Some(sites_pb::Site {
                    display_name: format!("{} (simulated)", site.name),
                    provider_kind: sites_pb::site::ProviderKind::Edge as i32,
                    labels: site.labels.clone().into_iter().collect(),
                    ..Default::default()
                }),
            },
        )?)
        .await;
    match created {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::AlreadyExists => {}
        Err(s) => return Err(AgentError::Rpc(s)),
    }
    let token = sites
        .create_registration_token(authed(
            admin_token,
            sites_pb::CreateRegistrationTokenRequest {
                site: format!("sites/{}", site.name),
                ttl_seconds: 0,
            },
        )?)
        .await?
        .into_inner()
        .token;
    Ok(token)
}

/// Starts `sites` against the control plane at `base.endpoint` (trusting
/// `base.ca_pem`); `channel` reaches its SiteService, `admin_token` authorizes
/// creating sites and tokens. `base` supplies the agents' timings; its site,
/// token, identity and data directory are replaced per site.
pub async fn start_simulated_sites(
    channel: Channel,
    admin_token: &str,
    base: &AgentConfig,
    sites: Vec<SimulatedSite>,
    options: SimulatedOptions,
    shutdown: CancellationToken,
) -> Result<Fleet, AgentError> {
    let prepared: Vec<Result<(SimulatedSite, AgentConfig), AgentError>> =
        futures::stream::iter(sites)
            .map(|site| {
                let channel = channel.clone();
                async move {
                    let token = prepare_site(channel, admin_token, &site).await?;
                    let mut config = base.clone();
                    config.site = site.name.clone();
                    config.data_dir = None;
                    config.registration_token = Some(token.into());
                    config.identity = None;
                    config.identity = Some(register(&config).await?);
                    config.registration_token = None;
                    Ok((site, config))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    let mut fleet = Fleet {
        backends: HashMap::new(),
        tasks: JoinSet::new(),
    };
    for result in prepared {
        let (site, config) = result?;
        let backend = Arc::new(SimulatedBackend::new(
            &site.name,
            site.nodes,
            options.clone(),
        ));
        fleet.backends.insert(site.name.clone(), backend.clone());
        let shutdown = shutdown.clone();
        fleet.tasks.spawn(async move {
            let result = crate::session::run(config, backend, shutdown).await;
            (site.name, result)
        });
    }
    tracing::info!(sites = fleet.len(), "simulated sites running");
    Ok(fleet)
}
