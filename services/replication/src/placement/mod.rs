//! The placement index of one process: which virtual sites each vK8s spans
//! (polled from the gateway, which has no watch for it) and which sites each
//! virtual site resolves to (the site registry's `WatchPlacement`), turned
//! into every site's [`Membership`] and published to the sessions.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use manifold_proto::{sites::v1 as spb, vk8s::v1 as vpb};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::domain::{Membership, PlacementInputs, VkName, placement::memberships};
use crate::upstream::Upstream;

/// The placement every session decides with.
#[derive(Debug, Default)]
pub struct PlacementView {
    /// The index has loaded both inputs once.
    pub ready: bool,
    pub sites: HashMap<String, Arc<Membership>>,
    /// Every vK8s the index knows (placed or not).
    pub clusters: HashSet<String>,
}

impl PlacementView {
    pub fn membership(&self, site: &str) -> Arc<Membership> {
        self.sites.get(site).cloned().unwrap_or_default()
    }
}

/// The published index.
pub struct Placement {
    tx: watch::Sender<Arc<PlacementView>>,
    nudge: Notify,
}

impl Placement {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: watch::channel(Arc::new(PlacementView::default())).0,
            nudge: Notify::new(),
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<PlacementView>> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Arc<PlacementView> {
        self.tx.borrow().clone()
    }

    /// Asks for an early poll of the vK8s (a change named one not known yet).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Waits until the index has loaded once; false on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| v.ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn publish(&self, inputs: &PlacementInputs, ready: bool) {
        let previous = self.current();
        let sites = memberships(inputs)
            .into_iter()
            .map(|(site, m)| {
                let arc = match previous.sites.get(&site) {
                    Some(old) if **old == m => old.clone(),
                    _ => Arc::new(m),
                };
                (site, arc)
            })
            .collect();
        let view = PlacementView {
            ready,
            sites,
            clusters: inputs.clusters.keys().cloned().collect(),
        };
        self.tx.send_replace(Arc::new(view));
    }
}

/// How long after (re)opening the placement watch its initial burst is
/// taken as complete.
const SETTLE: Duration = Duration::from_millis(500);

struct Index {
    virtual_sites: BTreeMap<String, BTreeSet<String>>,
    /// Virtual sites not re-confirmed since the watch was reopened.
    unconfirmed: BTreeSet<String>,
    /// tenant → (vK8s → its virtual sites).
    clusters: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Index {
    fn inputs(&self) -> PlacementInputs {
        PlacementInputs {
            clusters: self
                .clusters
                .values()
                .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect(),
            virtual_sites: self.virtual_sites.clone(),
        }
    }

    fn tenants(&self) -> BTreeSet<String> {
        self.virtual_sites
            .keys()
            .filter_map(|vs| vs.strip_prefix("tenants/")?.split('/').next())
            .map(str::to_owned)
            .collect()
    }

    fn apply(&mut self, e: spb::PlacementEvent) -> bool {
        self.unconfirmed.remove(&e.virtual_site);
        if e.deleted {
            return self.virtual_sites.remove(&e.virtual_site).is_some();
        }
        let sites: BTreeSet<String> = e
            .sites
            .iter()
            .map(|s| s.trim_start_matches("sites/").to_owned())
            .collect();
        self.virtual_sites.insert(e.virtual_site, sites.clone()) != Some(sites)
    }
}

/// Keeps the index current until `stop`.
pub async fn run(
    placement: Arc<Placement>,
    upstream: Arc<Upstream>,
    poll: Duration,
    stop: CancellationToken,
) {
    let mut index = Index {
        virtual_sites: BTreeMap::new(),
        unconfirmed: BTreeSet::new(),
        clusters: BTreeMap::new(),
    };
    let mut ready = false;
    let mut stream: Option<tonic::Streaming<spb::PlacementEvent>> = None;
    let mut reconnect_at = Instant::now();
    let mut settle_at: Option<Instant> = None;
    let mut delay = Duration::from_millis(200);
    let mut last_poll = Instant::now();
    let mut ticker = tokio::time::interval(poll.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut dirty = false;
        let mut poll_now = false;
        tokio::select! {
            _ = stop.cancelled() => return,
            msg = next_event(stream.as_mut()) => match msg {
                Ok(Some(e)) => dirty = index.apply(e),
                Ok(None) | Err(_) => {
                    if let Err(s) = &msg {
                        tracing::warn!(error = %s.message(), "placement watch failed; reopening");
                    }
                    stream = None;
                    reconnect_at = Instant::now() + delay;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            },
            _ = tokio::time::sleep_until(reconnect_at), if stream.is_none() => {
                match upstream
                    .virtual_sites()
                    .watch_placement(upstream.request(spb::WatchPlacementRequest { parent: String::new() }))
                    .await
                {
                    Ok(s) => {
                        stream = Some(s.into_inner());
                        delay = Duration::from_millis(200);
                        index.unconfirmed = index.virtual_sites.keys().cloned().collect();
                        settle_at = Some(Instant::now() + SETTLE);
                    }
                    Err(s) => {
                        tracing::warn!(error = %s.message(), "placement watch refused; retrying");
                        reconnect_at = Instant::now() + delay;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            },
            _ = sleep_until_opt(settle_at) => {
                settle_at = None;
                dirty |= confirm(&mut index, &upstream).await;
                poll_now = true;
            },
            _ = ticker.tick() => poll_now = true,
            // Nudges come per unknown change; one early poll a second is plenty.
            _ = placement.nudge.notified() => poll_now = last_poll.elapsed() >= Duration::from_secs(1),
        }
        if poll_now && (ready || settle_at.is_none() && stream.is_some()) {
            dirty |= poll_clusters(&mut index, &upstream).await;
            last_poll = Instant::now();
            if !ready {
                ready = true;
                dirty = true;
            }
        }
        if dirty {
            placement.publish(&index.inputs(), ready);
        }
    }
}

async fn next_event(
    stream: Option<&mut tonic::Streaming<spb::PlacementEvent>>,
) -> Result<Option<spb::PlacementEvent>, tonic::Status> {
    match stream {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Virtual sites the reopened watch did not mention may be gone: ask.
async fn confirm(index: &mut Index, upstream: &Upstream) -> bool {
    let mut dirty = false;
    for vs in std::mem::take(&mut index.unconfirmed) {
        let reply = upstream
            .virtual_sites()
            .resolve_virtual_site(
                upstream.request(spb::ResolveVirtualSiteRequest { name: vs.clone() }),
            )
            .await;
        dirty |= match reply {
            Ok(r) => index.apply(spb::PlacementEvent {
                virtual_site: vs,
                sites: r.into_inner().sites,
                revision: 0,
                deleted: false,
            }),
            Err(s) if s.code() == tonic::Code::NotFound => {
                index.virtual_sites.remove(&vs).is_some()
            }
            Err(s) => {
                tracing::warn!(virtual_site = %vs, error = %s.message(), "resolving a virtual site");
                false
            }
        };
    }
    dirty
}

/// Re-reads the vK8s of every tenant that has virtual sites. A tenant whose
/// list fails keeps its previous vK8s.
async fn poll_clusters(index: &mut Index, upstream: &Upstream) -> bool {
    let tenants = index.tenants();
    let results: Vec<(String, Result<TenantClusters, tonic::Status>)> =
        futures::stream::iter(tenants.iter().cloned())
            .map(|t| async move {
                let r = list_tenant_clusters(upstream, &t).await;
                (t, r)
            })
            .buffer_unordered(8)
            .collect()
            .await;
    let mut dirty = false;
    let before = index.clusters.len();
    index.clusters.retain(|t, _| tenants.contains(t));
    dirty |= before != index.clusters.len();
    for (tenant, result) in results {
        match result {
            Ok(clusters) => {
                if index.clusters.get(&tenant) != Some(&clusters) {
                    index.clusters.insert(tenant, clusters);
                    dirty = true;
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                dirty |= index.clusters.remove(&tenant).is_some();
            }
            Err(s) => {
                tracing::warn!(tenant = %tenant, error = %s.message(), "listing virtual clusters");
            }
        }
    }
    dirty
}

/// One tenant's vK8s and their virtual sites.
type TenantClusters = BTreeMap<String, BTreeSet<String>>;

async fn list_tenant_clusters(
    upstream: &Upstream,
    tenant: &str,
) -> Result<TenantClusters, tonic::Status> {
    let mut out = BTreeMap::new();
    let mut page_token = String::new();
    // Bounded: 1,000 pages of 500.
    for _ in 0..1_000 {
        let page = upstream
            .clusters()
            .list_virtual_clusters(upstream.request(vpb::ListVirtualClustersRequest {
                parent: format!("tenants/{tenant}/namespaces/-"),
                page_size: 500,
                page_token: page_token.clone(),
            }))
            .await?
            .into_inner();
        for vc in page.virtual_clusters {
            let Ok(vk) = VkName::parse("name", &vc.name) else {
                continue;
            };
            let vss: BTreeSet<String> = vc
                .virtual_sites
                .iter()
                .filter_map(|vs| vk.virtual_site(vs))
                .collect();
            out.insert(vc.name, vss);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(out)
}
