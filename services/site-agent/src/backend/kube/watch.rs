//! Watchers on the physical cluster (kube-runtime `watcher`, with its default
//! backoff): managed pods and the objects the agent applied feed the status feed,
//! nodes feed the heartbeat, managed namespaces keep the namespace cache honest.
//! After a watch restart, entries not re-listed are dropped. The feed is ready once
//! every watch has listed once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::mapping::{self, KnownKind, applied_by_agent, managed_selector};
use super::{KubeInner, gvk, lock};
use crate::model::{ObjectKey, ObservedPod, PodId};

/// How many watches [`spawn_all`] starts (pods, nodes, namespaces, and one per
/// kind with a status).
pub(super) const WATCH_COUNT: usize = 3 + status_kinds();

const fn status_kinds() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < mapping::KNOWN_KINDS.len() {
        if mapping::KNOWN_KINDS[i].has_status {
            n += 1;
        }
        i += 1;
    }
    n
}

pub(super) fn spawn_all(inner: &Arc<KubeInner>, stop: &CancellationToken) {
    tokio::spawn(pods(inner.clone(), stop.clone()));
    tokio::spawn(nodes(inner.clone(), stop.clone()));
    tokio::spawn(namespaces(inner.clone(), stop.clone()));
    for kind in mapping::KNOWN_KINDS.iter().filter(|k| k.has_status) {
        tokio::spawn(statuses(inner.clone(), *kind, stop.clone()));
    }
}

/// Calls [`KubeInner::watch_listed`] the first time only.
struct FirstList<'a> {
    inner: &'a KubeInner,
    done: bool,
}

impl<'a> FirstList<'a> {
    fn new(inner: &'a KubeInner) -> Self {
        Self { inner, done: false }
    }

    fn listed(&mut self) {
        if !self.done {
            self.done = true;
            self.inner.watch_listed();
        }
    }
}

async fn namespaces(inner: Arc<KubeInner>, stop: CancellationToken) {
    let api: Api<Namespace> = Api::all(inner.client.clone());
    let config = watcher::Config::default().labels(&managed_selector());
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut first = FirstList::new(&inner);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(site = %inner.site, error = %e, "namespace watch failed; retrying")
            }
            Some(Ok(Event::InitDone)) => first.listed(),
            Some(Ok(Event::Init)) => {}
            Some(Ok(Event::InitApply(ns) | Event::Apply(ns))) => {
                if ns.metadata.deletion_timestamp.is_some()
                    && let Some(name) = &ns.metadata.name
                {
                    inner.namespace_lost(name);
                }
            }
            Some(Ok(Event::Delete(ns))) => {
                if let Some(name) = &ns.metadata.name {
                    inner.namespace_lost(name);
                }
            }
        }
    }
}

/// Whether a node's Ready condition is True.
pub(super) fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

async fn translate(inner: &KubeInner, pod: &Pod) -> Option<ObservedPod> {
    let value = serde_json::to_value(pod).ok()?;
    let vc = match mapping::virtual_cluster_from_labels(&value) {
        Some(vc) => vc,
        None => {
            let ns = pod.metadata.namespace.as_deref()?;
            inner.virtual_cluster_of_namespace(ns).await?
        }
    };
    mapping::pod_to_virtual(&value, &vc, &inner.site)
}

async fn pods(inner: Arc<KubeInner>, stop: CancellationToken) {
    let api: Api<Pod> = Api::all(inner.client.clone());
    let config = watcher::Config::default().labels(&managed_selector());
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut relisted: Option<HashSet<PodId>> = None;
    let mut first = FirstList::new(&inner);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(site = %inner.site, error = %e, "pod watch failed; retrying")
            }
            Some(Ok(Event::Init)) => relisted = Some(HashSet::new()),
            Some(Ok(Event::InitApply(pod) | Event::Apply(pod))) => {
                if let Some(p) = translate(&inner, &pod).await {
                    if let Some(seen) = &mut relisted {
                        seen.insert(p.id.clone());
                    }
                    inner.feed.upsert_pod(p);
                }
            }
            Some(Ok(Event::Delete(pod))) => {
                if let Some(p) = translate(&inner, &pod).await {
                    inner.feed.remove_pod(&p.id);
                }
            }
            Some(Ok(Event::InitDone)) => {
                if let Some(seen) = relisted.take() {
                    inner.feed.retain_pods(|id| seen.contains(id));
                }
                first.listed();
            }
        }
    }
}

async fn nodes(inner: Arc<KubeInner>, stop: CancellationToken) {
    let api: Api<Node> = Api::all(inner.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relisted: Option<BTreeMap<String, bool>> = None;
    let mut first = FirstList::new(&inner);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(site = %inner.site, error = %e, "node watch failed; retrying")
            }
            Some(Ok(Event::Init)) => relisted = Some(BTreeMap::new()),
            Some(Ok(Event::InitApply(node))) => {
                if let (Some(seen), Some(name)) = (&mut relisted, node.metadata.name.clone()) {
                    seen.insert(name, node_ready(&node));
                }
            }
            Some(Ok(Event::InitDone)) => {
                if let Some(seen) = relisted.take() {
                    *lock(&inner.nodes) = seen;
                }
                inner
                    .nodes_listed
                    .store(true, std::sync::atomic::Ordering::Release);
                first.listed();
            }
            Some(Ok(Event::Apply(node))) => {
                if let Some(name) = node.metadata.name.clone() {
                    lock(&inner.nodes).insert(name, node_ready(&node));
                }
            }
            Some(Ok(Event::Delete(node))) => {
                if let Some(name) = &node.metadata.name {
                    lock(&inner.nodes).remove(name);
                }
            }
        }
    }
}

/// The object as JSON with its type filled in (list items come without it).
fn typed_value(obj: &DynamicObject, ar: &ApiResource) -> Option<Value> {
    let mut value = serde_json::to_value(obj).ok()?;
    let map = value.as_object_mut()?;
    map.insert("apiVersion".into(), ar.api_version.clone().into());
    map.insert("kind".into(), ar.kind.clone().into());
    Some(value)
}

fn key_of(value: &Value, ar: &ApiResource) -> Option<ObjectKey> {
    let vc = mapping::virtual_cluster_of(value)?;
    Some(ObjectKey {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
        namespace: vc.namespace().to_owned(),
        name: value.pointer("/metadata/name")?.as_str()?.to_owned(),
        virtual_cluster: vc,
    })
}

async fn statuses(inner: Arc<KubeInner>, kind: KnownKind, stop: CancellationToken) {
    let ar = ApiResource::from_gvk_with_plural(&gvk(kind.api_version, kind.kind), kind.plural);
    let api: Api<DynamicObject> = Api::all_with(inner.client.clone(), &ar);
    let config = watcher::Config::default().labels(&managed_selector());
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut relisted: Option<HashSet<ObjectKey>> = None;
    let mut first = FirstList::new(&inner);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(site = %inner.site, kind = kind.kind, error = %e, "watch failed; retrying")
            }
            Some(Ok(Event::Init)) => relisted = Some(HashSet::new()),
            Some(Ok(Event::InitApply(obj) | Event::Apply(obj))) => {
                let Some(value) = typed_value(&obj, &ar) else {
                    continue;
                };
                // A controller's ReplicaSet of a Deployment is not a vK8s object.
                if !applied_by_agent(&value) {
                    continue;
                }
                if let Some(observed) = mapping::status_to_virtual(&value) {
                    if let Some(seen) = &mut relisted {
                        seen.insert(observed.key.clone());
                    }
                    inner.feed.set_object(observed);
                }
            }
            Some(Ok(Event::Delete(obj))) => {
                if let Some(value) = typed_value(&obj, &ar)
                    && applied_by_agent(&value)
                    && let Some(key) = key_of(&value, &ar)
                {
                    inner.feed.remove_object(&key);
                }
            }
            Some(Ok(Event::InitDone)) => {
                if let Some(seen) = relisted.take() {
                    inner
                        .feed
                        .retain_objects(|k| k.kind != kind.kind || seen.contains(k));
                }
                first.listed();
            }
        }
    }
}
