//! The `kube` backend: a real cluster through kube-rs. Objects are server-side
//! applied under the field manager `manifold-agent` into one physical namespace per
//! vK8s (created on demand, see [`mapping::physical_namespace`]), labelled as managed
//! by Manifold; a snapshot prunes what the agent applied and the snapshot did not
//! name (never what the site's controllers made from it), and removes the namespaces
//! of vK8s no longer placed here; watchers on pods, nodes, managed namespaces and
//! managed workloads keep the status feed current, and the feed is ready once every
//! watch has listed.

pub mod mapping;
mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{AsyncReadExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use tokio_util::sync::{CancellationToken, DropGuard};

use self::mapping::{
    FIELD_MANAGER, applied_by_agent, known_kind, managed_selector, physical_namespace,
};
use super::{Backend, LogStream};
use crate::error::{AgentError, BackendError};
use crate::feed::StatusFeed;
use crate::model::{DesiredObject, LogParams, NodeInfo, ObjectKey, VirtualCluster, well_known};

/// Objects listed per page while pruning.
const PRUNE_PAGE: u32 = 500;

/// A physical cluster.
pub struct KubeBackend {
    inner: Arc<KubeInner>,
    _stop: DropGuard,
}

pub(crate) struct KubeInner {
    site: String,
    client: kube::Client,
    feed: Arc<StatusFeed>,
    /// Physical namespaces verified (or created) as belonging to a vK8s.
    namespaces: Mutex<HashMap<String, VirtualCluster>>,
    /// Kinds resolved by discovery, by (apiVersion, kind).
    discovered: Mutex<HashMap<(String, String), ApiResource>>,
    /// Node name → Ready, kept by the node watcher.
    nodes: Mutex<BTreeMap<String, bool>>,
    /// Whether the node watcher has listed.
    nodes_listed: AtomicBool,
    /// Watches that have not listed yet; the feed is ready at zero.
    unlisted: AtomicUsize,
    /// Namespaces the agent is deleting itself (their deletion is no drift).
    removing: Mutex<HashSet<String>>,
    /// The site's Pod Security level, as the control plane last sent it.
    pod_security: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// kube-rs errors as backend errors. An answer of the API server about this
/// request is a refusal of the object (every 4xx, and a 500, which the applier
/// double-checks against the cluster's health); throttling (429), 503, 504 and
/// anything that is not an answer (connection refused, TLS, timeouts) mean the
/// cluster cannot be reached.
pub(crate) fn backend_error(e: kube::Error) -> BackendError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => BackendError::NotFound(s.message.clone()),
        kube::Error::Api(s) if matches!(s.code, 429 | 503 | 504) => {
            BackendError::Unavailable(format!("{} {}: {}", s.code, s.reason, s.message))
        }
        kube::Error::Api(s) if s.code >= 400 => BackendError::Refused {
            code: s.code,
            reason: if s.reason.is_empty() {
                "Unknown".into()
            } else {
                s.reason.clone()
            },
            message: s.message.clone(),
        },
        _ => BackendError::Unavailable(e.to_string()),
    }
}

/// Whether an error says the namespace itself is missing (deleted on the site).
fn namespace_missing(e: &BackendError, namespace: &str) -> bool {
    matches!(e, BackendError::NotFound(m) if m.contains(&format!("namespaces \"{namespace}\" not found")))
}

fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

impl KubeBackend {
    /// Connects with the in-cluster service account or the local kubeconfig.
    pub async fn connect(site: &str) -> Result<Self, AgentError> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| AgentError::Config(format!("kubernetes client: {e}")))?;
        Ok(Self::new(site, client))
    }

    /// A backend on `client`; starts the watchers (call within a Tokio runtime).
    pub fn new(site: &str, client: kube::Client) -> Self {
        let inner = Arc::new(KubeInner {
            site: site.to_owned(),
            client,
            // Not ready until every watch has listed: a full report before that
            // would say that pods vanished.
            feed: Arc::new(StatusFeed::with_ready(false)),
            namespaces: Mutex::new(HashMap::new()),
            discovered: Mutex::new(HashMap::new()),
            nodes: Mutex::new(BTreeMap::new()),
            nodes_listed: AtomicBool::new(false),
            unlisted: AtomicUsize::new(watch::WATCH_COUNT),
            removing: Mutex::new(HashSet::new()),
            pod_security: Mutex::new(None),
        });
        let stop = CancellationToken::new();
        watch::spawn_all(&inner, &stop);
        Self {
            inner,
            _stop: stop.drop_guard(),
        }
    }
}

impl KubeInner {
    /// A watch listed for the first time; the last one makes the feed ready.
    pub(crate) fn watch_listed(&self) {
        if self.unlisted.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!(site = %self.site, "every watch has listed; observed state is complete");
            self.feed.set_ready(true);
        }
    }

    /// A managed namespace is gone or going: forget it, and if the agent did not
    /// delete it itself, have everything desired sent again (it held objects).
    pub(crate) fn namespace_lost(&self, name: &str) {
        let known = lock(&self.namespaces).remove(name).is_some();
        let ours = lock(&self.removing).remove(name);
        if known && !ours {
            tracing::warn!(site = %self.site, namespace = %name,
                "a managed namespace was deleted on the site; resynchronising");
            self.feed.request_resync();
        }
    }

    /// The API resource of a kind: from the table of known kinds, else discovery.
    async fn resource(&self, api_version: &str, kind: &str) -> Result<ApiResource, BackendError> {
        let gvk = gvk(api_version, kind);
        if let Some(k) = known_kind(api_version, kind) {
            return Ok(ApiResource::from_gvk_with_plural(&gvk, k.plural));
        }
        let cache_key = (api_version.to_owned(), kind.to_owned());
        if let Some(ar) = lock(&self.discovered).get(&cache_key) {
            return Ok(ar.clone());
        }
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| match backend_error(e) {
                BackendError::NotFound(_) => BackendError::Invalid(format!(
                    "{api_version} {kind} is not served by this cluster"
                )),
                other => other,
            })?;
        if caps.scope != Scope::Namespaced {
            return Err(BackendError::Invalid(format!(
                "{api_version} {kind} is cluster-scoped; only namespaced objects are replicated"
            )));
        }
        lock(&self.discovered).insert(cache_key, ar.clone());
        Ok(ar)
    }

    /// Every kind that may hold managed objects (known and discovered so far).
    fn managed_resources(&self) -> Vec<ApiResource> {
        let mut out: Vec<ApiResource> = mapping::KNOWN_KINDS
            .iter()
            .map(|k| ApiResource::from_gvk_with_plural(&gvk(k.api_version, k.kind), k.plural))
            .collect();
        out.extend(lock(&self.discovered).values().cloned());
        out
    }

    /// Creates (or verifies) the physical namespace of `vc`. A namespace of that
    /// name that belongs to something else is a conflict, never silently shared.
    async fn ensure_namespace(&self, vc: &VirtualCluster) -> Result<String, BackendError> {
        let name = physical_namespace(vc);
        if lock(&self.namespaces).get(&name) == Some(vc) {
            return Ok(name);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        if let Some(existing) = api.get_opt(&name).await.map_err(backend_error)? {
            let owner = existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(well_known::VIRTUAL_CLUSTER_ANNOTATION));
            if owner.map(String::as_str) != Some(vc.to_string().as_str()) {
                return Err(BackendError::Conflict(format!(
                    "namespace {name} exists and does not belong to {vc}"
                )));
            }
            if existing.metadata.deletion_timestamp.is_some() {
                // Retried by the applier until it is gone, then made anew.
                return Err(BackendError::Refused {
                    code: 409,
                    reason: "NamespaceTerminating".into(),
                    message: format!(
                        "namespace {name} is being deleted on the site; the object is applied once it is gone"
                    ),
                });
            }
            lock(&self.removing).remove(&name);
            let level = lock(&self.pod_security).clone();
            let value = serde_json::to_value(&existing).unwrap_or_default();
            if !mapping::pod_security_labelled(&value, level.as_deref()) {
                self.label_namespace(vc, level.as_deref()).await?;
            }
        } else {
            let level = lock(&self.pod_security).clone();
            self.label_namespace(vc, level.as_deref()).await?;
            tracing::info!(site = %self.site, namespace = %name, %vc, "created namespace");
        }
        lock(&self.namespaces).insert(name.clone(), vc.clone());
        Ok(name)
    }

    /// Applies the namespace of `vc` with the agent's labels and `level`.
    async fn label_namespace(
        &self,
        vc: &VirtualCluster,
        level: Option<&str>,
    ) -> Result<(), BackendError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.patch(
            &physical_namespace(vc),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&mapping::namespace_object(vc, level)),
        )
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    /// Labels every namespace the agent made with the site's Pod Security
    /// level (after the operator changed it, or on the first stream after a
    /// restart). A namespace that cannot be labelled now is labelled when
    /// the next object of its vK8s is applied.
    async fn relabel_namespaces(&self) -> Result<usize, BackendError> {
        let level = lock(&self.pod_security).clone();
        let api: Api<Namespace> = Api::all(self.client.clone());
        let namespaces = api
            .list(&ListParams::default().labels(&managed_selector()))
            .await
            .map_err(backend_error)?;
        let mut relabelled = 0;
        for ns in namespaces.items {
            let value = serde_json::to_value(&ns).unwrap_or_default();
            let Some(vc) = mapping::virtual_cluster_of(&value) else {
                continue;
            };
            if ns.metadata.deletion_timestamp.is_some()
                || mapping::pod_security_labelled(&value, level.as_deref())
            {
                continue;
            }
            self.label_namespace(&vc, level.as_deref()).await?;
            relabelled += 1;
        }
        Ok(relabelled)
    }

    /// Deletes the physical namespace of `vc` (everything in it goes with it),
    /// when it exists and belongs to `vc`.
    async fn remove_namespace(&self, vc: &VirtualCluster) -> Result<(), BackendError> {
        let name = physical_namespace(vc);
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Some(existing) = api.get_opt(&name).await.map_err(backend_error)? else {
            lock(&self.namespaces).remove(&name);
            return Ok(());
        };
        let value = serde_json::to_value(&existing).unwrap_or_default();
        if mapping::virtual_cluster_of(&value).as_ref() != Some(vc) {
            return Ok(());
        }
        lock(&self.removing).insert(name.clone());
        lock(&self.namespaces).remove(&name);
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {
                tracing::info!(site = %self.site, namespace = %name, %vc,
                    "removed the namespace of a vK8s no longer placed here");
                Ok(())
            }
            Err(e) => match backend_error(e) {
                BackendError::NotFound(_) => Ok(()),
                other => {
                    lock(&self.removing).remove(&name);
                    Err(other)
                }
            },
        }
    }

    /// The vK8s of a physical namespace: from the cache, else its annotation.
    pub(crate) async fn virtual_cluster_of_namespace(
        &self,
        namespace: &str,
    ) -> Option<VirtualCluster> {
        if let Some(vc) = lock(&self.namespaces).get(namespace) {
            return Some(vc.clone());
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = api.get_opt(namespace).await.ok().flatten()?;
        let value = serde_json::to_value(&ns).ok()?;
        let vc = mapping::virtual_cluster_of(&value)?;
        if physical_namespace(&vc) != namespace {
            return None;
        }
        lock(&self.namespaces).insert(namespace.to_owned(), vc.clone());
        Some(vc)
    }

    /// The physical namespace of a pod known by its vK8s (when given), Manifold
    /// namespace and name.
    fn pod_namespace(
        &self,
        vc: Option<&VirtualCluster>,
        namespace: &str,
        pod: &str,
    ) -> Result<String, BackendError> {
        if let Some(vc) = vc {
            if vc.namespace() != namespace {
                return Err(BackendError::Invalid(format!(
                    "{vc} holds no namespace {namespace}"
                )));
            }
            return Ok(physical_namespace(vc));
        }
        let matches = self.feed.find_pods(namespace, pod);
        match matches.as_slice() {
            [one] => Ok(physical_namespace(&one.id.virtual_cluster)),
            [] => Err(BackendError::NotFound(format!(
                "pods \"{pod}\" not found in namespace {namespace}"
            ))),
            _ => Err(BackendError::Conflict(format!(
                "pod {pod} exists in {} vK8s of namespace {namespace}",
                matches.len()
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Backend for KubeBackend {
    fn set_pod_security(&self, level: &str) {
        {
            let mut current = lock(&self.inner.pod_security);
            if current.as_deref() == Some(level) {
                return;
            }
            *current = Some(level.to_owned());
        }
        // Namespaces verified before are checked again at their next apply.
        lock(&self.inner.namespaces).clear();
        let inner = self.inner.clone();
        tokio::spawn(async move {
            match inner.relabel_namespaces().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(site = %inner.site, namespaces = n,
                    level = ?lock(&inner.pod_security), "namespaces relabelled"),
                Err(e) => tracing::warn!(site = %inner.site, error = %e,
                    "relabelling namespaces with the Pod Security level"),
            }
        });
    }

    async fn apply(&self, object: &DesiredObject) -> Result<(), BackendError> {
        let key = &object.key;
        if key.kind == "Namespace" && key.group().is_empty() {
            // Namespaces are the agent's to create, per vK8s.
            return Ok(());
        }
        let physical = mapping::to_physical(object)?;
        let inner = &self.inner;
        let ar = inner.resource(&key.api_version, &key.kind).await?;
        // A namespace deleted on the site behind the cache's back is made again,
        // once.
        for attempt in 0..2 {
            let ns = inner.ensure_namespace(&key.virtual_cluster).await?;
            let api: Api<DynamicObject> = Api::namespaced_with(inner.client.clone(), &ns, &ar);
            match api
                .patch(
                    &key.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&physical),
                )
                .await
                .map_err(backend_error)
            {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 0 && namespace_missing(&e, &ns) => {
                    lock(&inner.namespaces).remove(&ns);
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    async fn delete(&self, key: &ObjectKey, _revision: i64) -> Result<(), BackendError> {
        if key.namespace.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let ar = inner.resource(&key.api_version, &key.kind).await?;
        let ns = physical_namespace(&key.virtual_cluster);
        let api: Api<DynamicObject> = Api::namespaced_with(inner.client.clone(), &ns, &ar);
        let Some(existing) = api.get_opt(&key.name).await.map_err(backend_error)? else {
            inner.feed.remove_object(key);
            return Ok(());
        };
        let value = serde_json::to_value(&existing).unwrap_or_default();
        if !applied_by_agent(&value) {
            return Err(BackendError::Conflict(format!(
                "{key}: the object on the site was not applied by Manifold; left alone"
            )));
        }
        match api.delete(&key.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) => match backend_error(e) {
                BackendError::NotFound(_) => {}
                other => return Err(other),
            },
        }
        inner.feed.remove_object(key);
        Ok(())
    }

    async fn end_snapshot(
        &self,
        revision: i64,
        keep: &HashSet<ObjectKey>,
    ) -> Result<usize, BackendError> {
        let inner = &self.inner;
        let mut pruned = 0;
        // vK8s with an object applied from a newer revision than the snapshot's:
        // the snapshot is older than what the site holds, so neither that object
        // nor its namespace is the snapshot's to remove.
        let mut newer: HashSet<VirtualCluster> = HashSet::new();
        for ar in inner.managed_resources() {
            let api: Api<DynamicObject> = Api::all_with(inner.client.clone(), &ar);
            let mut params = ListParams::default()
                .labels(&managed_selector())
                .limit(PRUNE_PAGE);
            loop {
                let page = api.list(&params).await.map_err(backend_error)?;
                for obj in &page.items {
                    let value = serde_json::to_value(obj).unwrap_or_default();
                    // What a controller on the site made (a Deployment's
                    // ReplicaSets) is not the agent's to prune.
                    if !applied_by_agent(&value) {
                        continue;
                    }
                    let Some(vc) = mapping::virtual_cluster_of(&value) else {
                        continue;
                    };
                    let (Some(name), Some(ns)) = (&obj.metadata.name, &obj.metadata.namespace)
                    else {
                        continue;
                    };
                    // Only what sits in the vK8s' own namespace is ours to prune.
                    if *ns != physical_namespace(&vc) {
                        continue;
                    }
                    let key = ObjectKey {
                        api_version: ar.api_version.clone(),
                        kind: ar.kind.clone(),
                        namespace: vc.namespace().to_owned(),
                        name: name.clone(),
                        virtual_cluster: vc,
                    };
                    if keep.contains(&key) {
                        continue;
                    }
                    let applied_at = value
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(well_known::REVISION_ANNOTATION))
                        .and_then(serde_json::Value::as_str)
                        .and_then(|r| r.parse::<i64>().ok())
                        .unwrap_or(0);
                    if applied_at > revision {
                        tracing::info!(site = %inner.site, %key, applied_at, revision,
                            "kept: applied from a revision newer than the snapshot");
                        newer.insert(key.virtual_cluster.clone());
                        continue;
                    }
                    let scoped: Api<DynamicObject> =
                        Api::namespaced_with(inner.client.clone(), ns, &ar);
                    match scoped.delete(name, &DeleteParams::background()).await {
                        Ok(_) => {}
                        Err(e) => match backend_error(e) {
                            BackendError::NotFound(_) => {}
                            other => return Err(other),
                        },
                    }
                    tracing::info!(site = %inner.site, %key, "pruned");
                    inner.feed.remove_object(&key);
                    pruned += 1;
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params.continue_token = Some(token),
                    None => break,
                }
            }
        }
        // The namespaces of vK8s the snapshot names nothing of (no longer placed
        // here, or emptied).
        let wanted: HashSet<&VirtualCluster> = keep.iter().map(|k| &k.virtual_cluster).collect();
        let api: Api<Namespace> = Api::all(inner.client.clone());
        let namespaces = api
            .list(&ListParams::default().labels(&managed_selector()))
            .await
            .map_err(backend_error)?;
        for ns in namespaces.items {
            let value = serde_json::to_value(&ns).unwrap_or_default();
            let Some(vc) = mapping::virtual_cluster_of(&value) else {
                continue;
            };
            if !wanted.contains(&vc)
                && !newer.contains(&vc)
                && ns.metadata.deletion_timestamp.is_none()
            {
                inner.remove_namespace(&vc).await?;
            }
        }
        Ok(pruned)
    }

    async fn remove_virtual_cluster(&self, vc: &VirtualCluster) -> Result<(), BackendError> {
        self.inner.remove_namespace(vc).await
    }

    async fn probe(&self) -> Result<(), String> {
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(
            Duration::from_secs(2),
            self.inner.client.request_text(request),
        )
        .await
        {
            Ok(Ok(body)) if body.trim() == "ok" => Ok(()),
            Ok(Ok(body)) => Err(format!("the API server is not ready: {}", body.trim())),
            Ok(Err(e)) => Err(format!("the API server cannot be reached: {e}")),
            Err(_) => Err("the API server did not answer /readyz within 2s".into()),
        }
    }

    fn status_feed(&self) -> Arc<StatusFeed> {
        self.inner.feed.clone()
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        if self.inner.nodes_listed.load(Ordering::Acquire) {
            return Ok(lock(&self.inner.nodes)
                .iter()
                .map(|(name, ready)| NodeInfo {
                    name: name.clone(),
                    ready: *ready,
                })
                .collect());
        }
        let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.inner.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(backend_error)?;
        Ok(list
            .items
            .iter()
            .map(|n| NodeInfo {
                name: n.metadata.name.clone().unwrap_or_default(),
                ready: watch::node_ready(n),
            })
            .collect())
    }

    async fn logs(&self, params: &LogParams) -> Result<LogStream, BackendError> {
        let ns = self.inner.pod_namespace(
            params.virtual_cluster.as_ref(),
            &params.namespace,
            &params.pod,
        )?;
        let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), &ns);
        let lp = kube::api::LogParams {
            container: params.container.clone(),
            follow: params.follow,
            tail_lines: params.tail_lines,
            timestamps: params.timestamps,
            ..Default::default()
        };
        let reader = api
            .log_stream(&params.pod, &lp)
            .await
            .map_err(backend_error)?;
        let stream = futures::stream::unfold(Some(Box::pin(reader)), |reader| async move {
            let mut reader = reader?;
            let mut buf = vec![0u8; 16 * 1024];
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf), Some(reader)))
                }
                Err(e) => Some((Err(BackendError::Unavailable(e.to_string())), None)),
            }
        });
        Ok(stream.boxed())
    }

    async fn delete_pod(
        &self,
        virtual_cluster: Option<&VirtualCluster>,
        namespace: &str,
        pod: &str,
    ) -> Result<(), BackendError> {
        let ns = self.inner.pod_namespace(virtual_cluster, namespace, pod)?;
        let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), &ns);
        api.delete(pod, &DeleteParams::default())
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}
