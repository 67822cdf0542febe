//! The inbound half of a session: acks (handed to the outbound half),
//! status reports (stored), heartbeats (liveness in Postgres and the site
//! registry), log chunks (routed to StreamLogs callers) and certificate
//! renewals. It never waits for the outbound half.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, SubsecRound, Utc};
use manifold_db::Scope;
use manifold_proto::{replication::v1 as pb, sites::v1 as spb};
use pb::agent_message::Msg;
use tokio::sync::watch;
use tonic::Status;
use uuid::Uuid;

use super::SessionHandle;
use super::logs::Delivery;
use crate::Shared;
use crate::domain::{
    ObjectKey, VkName,
    status::{ApplyFailure, EventState, ObjectState, PodRemoval, PodState, Report},
};
use crate::error::ReplicationError;
use crate::storage;
use crate::upstream::convert::{from_struct, ts};

/// Now, to the microsecond Postgres keeps, so times read back compare equal.
pub fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Tells the site registry the site is ONLINE (heartbeat time `now`), with
/// `nodes` when known, and records the same time in Postgres so the offline
/// marker can report against it.
pub async fn report_online(
    shared: &Shared,
    site: &str,
    agent_version: &str,
    nodes: Option<Vec<pb::NodeStatus>>,
) {
    report_live(shared, site, agent_version, nodes, "").await
}

/// [`report_online`], or DEGRADED with `cluster_error` when that is not empty
/// (the agent is connected but cannot reach its cluster).
pub async fn report_live(
    shared: &Shared,
    site: &str,
    agent_version: &str,
    nodes: Option<Vec<pb::NodeStatus>>,
    cluster_error: &str,
) {
    let now = now_micros();
    let nodes_json = nodes.as_ref().map(|n| {
        serde_json::Value::Array(
            n.iter()
                .map(|n| serde_json::json!({"name": n.name, "ready": n.ready}))
                .collect(),
        )
    });
    let site_owned = site.to_owned();
    let stored = manifold_db::transaction!(
        shared.db,
        "replication_heartbeat",
        Scope::System,
        ReplicationError,
        |tx| {
            Ok(storage::sites::heartbeat_any(tx, &site_owned, now, nodes_json.as_ref()).await?)
        }
    );
    let nodes = match (nodes, stored) {
        (Some(n), _) => n.into_iter().map(node).collect(),
        (None, Ok(stored)) => serde_json::from_value::<Vec<StoredNode>>(stored)
            .unwrap_or_default()
            .into_iter()
            .map(StoredNode::into_node)
            .collect(),
        (None, Err(e)) => {
            tracing::warn!(site, error = %e, "recording a heartbeat");
            Vec::new()
        }
    };
    let reply = shared
        .upstream
        .registration()
        .report_site_status(shared.upstream.request(spb::ReportSiteStatusRequest {
            site: format!("sites/{site}"),
            state: if cluster_error.is_empty() {
                spb::site::State::Online
            } else {
                spb::site::State::Degraded
            } as i32,
            agent_version: agent_version.to_owned(),
            nodes,
            heartbeat_time: Some(ts(now)),
            state_message: cluster_error.chars().take(1024).collect(),
        }))
        .await;
    if let Err(s) = reply {
        tracing::warn!(site, code = ?s.code(), error = %s.message(), "reporting the site's status");
    }
}

fn node(n: pb::NodeStatus) -> spb::Node {
    spb::Node {
        name: n.name,
        ready: n.ready,
        ..Default::default()
    }
}

/// A node as kept in `replication.sites.nodes`.
#[derive(serde::Deserialize)]
pub struct StoredNode {
    name: String,
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    cpu_capacity: String,
    #[serde(default)]
    memory_capacity: String,
    #[serde(default)]
    pod_capacity: i32,
    #[serde(default)]
    labels: std::collections::HashMap<String, String>,
}

impl StoredNode {
    /// `ready` None keeps the stored readiness.
    pub fn into_node_ready(self, ready: Option<bool>) -> spb::Node {
        spb::Node {
            name: self.name,
            ready: ready.unwrap_or(self.ready),
            cpu_capacity: self.cpu_capacity,
            memory_capacity: self.memory_capacity,
            pod_capacity: self.pod_capacity,
            labels: self.labels,
        }
    }

    fn into_node(self) -> spb::Node {
        self.into_node_ready(None)
    }
}

pub struct Inbound {
    shared: Arc<Shared>,
    handle: Arc<SessionHandle>,
    der: Vec<u8>,
    last_registry_report: Option<Instant>,
    last_nodes: Vec<pb::NodeStatus>,
    last_cluster_error: String,
}

impl Inbound {
    pub fn new(shared: Arc<Shared>, handle: Arc<SessionHandle>, der: &[u8]) -> Self {
        Self {
            shared,
            handle,
            der: der.to_vec(),
            last_registry_report: None,
            last_nodes: Vec::new(),
            last_cluster_error: String::new(),
        }
    }

    /// Reads the agent's messages until it closes its side (Ok) or breaks
    /// the protocol (Err).
    pub async fn run(
        mut self,
        mut stream: tonic::Streaming<pb::AgentMessage>,
        acks: watch::Sender<i64>,
    ) -> Result<(), Status> {
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(s) => {
                    tracing::debug!(site = %self.handle.site, error = %s.message(), "agent stream broke");
                    return Ok(());
                }
            };
            match msg.msg {
                Some(Msg::Ack(a)) => {
                    acks.send_if_modified(|v| {
                        let newer = a.revision > *v;
                        if newer {
                            *v = a.revision;
                        }
                        newer
                    });
                }
                Some(Msg::Status(r)) => self.status(r).await?,
                Some(Msg::Heartbeat(h)) => self.heartbeat(h).await,
                Some(Msg::Log(chunk)) => self.log(chunk),
                Some(Msg::Renew(r)) => self.renew(r),
                Some(Msg::Hello(_)) => {
                    return Err(Status::invalid_argument(
                        "Hello may only be sent once, as the first message",
                    ));
                }
                None => {}
            }
        }
    }

    async fn status(&mut self, r: pb::StatusReport) -> Result<(), Status> {
        let site = self.handle.site.clone();
        let (mut report, skipped) = report_from_proto(&site, r);
        let membership = self.shared.placement.current().membership(&site);
        let foreign = report.retain_clusters(|vk| membership.contains_cluster(vk));
        if skipped + foreign > 0 {
            tracing::warn!(site = %site, malformed = skipped, not_placed = foreign,
                "status report entries ignored");
        }
        if report.is_empty() {
            return Ok(());
        }
        let mut tenants: HashMap<String, Uuid> = HashMap::new();
        let wanted: BTreeSet<String> = report
            .objects
            .iter()
            .map(|o| o.key.virtual_cluster.clone())
            .chain(report.pods.iter().map(|p| p.virtual_cluster.clone()))
            .chain(report.events.iter().map(|e| e.virtual_cluster.clone()))
            .collect();
        for vk in wanted {
            let Ok(name) = VkName::parse("virtual_cluster", &vk) else {
                continue;
            };
            match self.shared.upstream.tenant_uid(&name.tenant).await {
                Ok(id) => {
                    tenants.insert(vk, id);
                }
                Err(e) => {
                    tracing::warn!(site = %site, vk = %vk, error = %e, "no tenant for a reported vK8s")
                }
            }
        }
        let stored = manifold_db::transaction!(
            self.shared.db,
            "replication_status_report",
            Scope::System,
            ReplicationError,
            |tx| { Ok(storage::report::apply(tx, &site, &report, &tenants).await?) }
        );
        stored.map_err(|e| {
            tracing::warn!(site = %site, error = %e, "storing a status report");
            Status::unavailable(
                "the status report could not be stored; reconnect and send a full report",
            )
        })
    }

    async fn heartbeat(&mut self, h: pb::Heartbeat) {
        // A heartbeat that changes nothing costs no Postgres statement and
        // no registry call: it is noted on the handle and written with every
        // other session's in one batch per pass (`keep_sessions`). Only the
        // first heartbeat of a stream, a change of nodes or cluster error,
        // or the registry having lost sight of the site send a full report.
        let changed = (!h.nodes_unknown && h.nodes != self.last_nodes)
            || h.cluster_error != self.last_cluster_error;
        let first = self.last_registry_report.is_none();
        let asked = self.handle.take_report_request();
        if !(changed || first || asked) {
            self.handle.note_heartbeat(now_micros());
            return;
        }
        self.last_registry_report = Some(Instant::now());
        if h.cluster_error != self.last_cluster_error {
            if h.cluster_error.is_empty() {
                tracing::info!(site = %self.handle.site, "the site reaches its cluster again");
            } else {
                tracing::warn!(site = %self.handle.site, error = %h.cluster_error,
                    "the site's agent cannot reach its cluster: DEGRADED");
            }
            self.last_cluster_error = h.cluster_error.clone();
        }
        // An agent that has not listed its nodes yet keeps the stored list.
        let nodes = (!h.nodes_unknown).then(|| {
            self.last_nodes = h.nodes.clone();
            h.nodes
        });
        report_live(
            &self.shared,
            &self.handle.site,
            &self.handle.agent_version,
            nodes,
            &h.cluster_error,
        )
        .await;
    }

    fn log(&self, chunk: pb::LogChunk) {
        let last = chunk.eof || !chunk.error.is_empty();
        let id = chunk.request_id.clone();
        match self.shared.logs.deliver(&self.handle.site, chunk) {
            Delivery::Delivered => {}
            Delivery::Unrouted | Delivery::Overflow if !last => {
                let _ = self.handle.commands.try_send(pb::ControlMessage {
                    msg: Some(pb::control_message::Msg::LogRequest(pb::LogRequest {
                        request_id: id,
                        cancel: true,
                        ..Default::default()
                    })),
                });
            }
            _ => {}
        }
    }

    fn renew(&self, r: pb::RenewRequest) {
        let shared = self.shared.clone();
        let handle = self.handle.clone();
        let der = self.der.clone();
        tokio::spawn(async move {
            let response = match shared.authority.renew(&der, &r.csr_pem).await {
                Ok(x) => pb::RenewResponse {
                    certificate_pem: x.certificate_pem,
                    ca_bundle_pem: x.ca_bundle_pem,
                    expire_time: x.expire_time,
                    error: String::new(),
                },
                Err(e) => {
                    tracing::warn!(site = %handle.site, error = %e, "certificate renewal refused");
                    pb::RenewResponse {
                        error: e.to_string(),
                        ..Default::default()
                    }
                }
            };
            let msg = pb::ControlMessage {
                msg: Some(pb::control_message::Msg::Renew(response)),
            };
            let _ = tokio::time::timeout(Duration::from_secs(30), handle.commands.send(msg)).await;
        });
    }
}

fn object_key(r: &pb::ObjectRef) -> Option<ObjectKey> {
    VkName::parse("virtual_cluster", &r.virtual_cluster).ok()?;
    if r.api_version.is_empty() || r.kind.is_empty() || r.name.is_empty() {
        return None;
    }
    Some(ObjectKey {
        virtual_cluster: r.virtual_cluster.clone(),
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
    })
}

fn same_site(reported: &str, site: &str) -> bool {
    reported.is_empty() || reported.trim_start_matches("sites/") == site
}

/// The checked report and how many entries were malformed (skipped).
pub fn report_from_proto(site: &str, r: pb::StatusReport) -> (Report, usize) {
    let mut skipped = 0;
    let mut report = Report {
        full: r.full,
        ..Default::default()
    };
    for o in r.objects {
        match o.r#ref.as_ref().and_then(object_key) {
            Some(key) if same_site(&o.site, site) => report.objects.push(ObjectState {
                key,
                status: o
                    .status
                    .as_ref()
                    .map_or_else(|| serde_json::json!({}), from_struct),
                observed_revision: o.observed_revision,
                failure: o.failure.as_ref().map(ApplyFailure::from_proto),
            }),
            _ => skipped += 1,
        }
    }
    for k in r.deleted_objects {
        match object_key(&k) {
            Some(key) => report.deleted_objects.push(key),
            None => skipped += 1,
        }
    }
    for p in r.pods {
        // A vK8s's pods live in its namespace (the Kubernetes namespace is
        // the Manifold namespace); a pod elsewhere is not one of its pods.
        let ok = VkName::parse("virtual_cluster", &p.virtual_cluster)
            .is_ok_and(|vk| vk.namespace == p.namespace)
            && !p.name.is_empty()
            && same_site(&p.site, site);
        if !ok {
            skipped += 1;
            continue;
        }
        let mut object = p
            .object
            .as_ref()
            .map_or_else(|| serde_json::json!({}), from_struct);
        // The object names the pod the report is stored under, whatever the
        // site wrote into it: readers match on the name.
        if let Some(meta) = object
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| serde_json::json!({})))
            .and_then(serde_json::Value::as_object_mut)
        {
            meta.insert("name".into(), p.name.clone().into());
            meta.insert("namespace".into(), p.namespace.clone().into());
        }
        report.pods.push(PodState {
            object,
            virtual_cluster: p.virtual_cluster,
            namespace: p.namespace,
            name: p.name,
            node: p.node,
            phase: p.phase,
            pod_ip: p.pod_ip,
            restarts: p.restarts,
            owner_kind: p.owner_kind,
            owner_name: p.owner_name,
        });
    }
    for d in r.deleted_pods {
        match d.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                report.removed_pods.push(PodRemoval::AnyCluster {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => skipped += 1,
        }
    }
    for p in r.removed_pods {
        if p.namespace.is_empty() || p.name.is_empty() {
            skipped += 1;
            continue;
        }
        report.removed_pods.push(PodRemoval::Exact {
            virtual_cluster: p.virtual_cluster,
            namespace: p.namespace,
            name: p.name,
        });
    }
    for e in r.events {
        let object = e
            .object
            .as_ref()
            .map_or_else(|| serde_json::json!({}), from_struct);
        let meta = |k: &str| {
            object
                .pointer(&format!("/metadata/{k}"))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let (namespace, name) = (meta("namespace"), meta("name"));
        if VkName::parse("virtual_cluster", &e.virtual_cluster).is_err()
            || namespace.is_empty()
            || name.is_empty()
        {
            skipped += 1;
            continue;
        }
        report.events.push(EventState {
            virtual_cluster: e.virtual_cluster,
            namespace,
            name,
            object,
        });
    }
    (report, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VK: &str = "tenants/acme/namespaces/shop/virtualClusters/demo";

    fn pod(namespace: &str, name: &str, object_name: &str) -> pb::Pod {
        let meta = serde_json::json!({"metadata": {"name": object_name, "namespace": "elsewhere"}});
        pb::Pod {
            virtual_cluster: VK.into(),
            namespace: namespace.into(),
            name: name.into(),
            object: crate::upstream::convert::to_struct(&meta),
            ..Default::default()
        }
    }

    #[test]
    fn reported_pods_are_named_by_their_key_and_stay_in_their_namespace() {
        let r = pb::StatusReport {
            pods: vec![
                pod("shop", "own-pod", "someone-elses-pod"),
                pod("other", "stray", "stray"),
                pb::Pod {
                    site: "sites/pa2-par".into(),
                    ..pod("shop", "claims-another-site", "x")
                },
            ],
            ..Default::default()
        };
        let (report, skipped) = report_from_proto("ny8-nyc", r);
        assert_eq!(skipped, 2, "another namespace, another site");
        assert_eq!(report.pods.len(), 1);
        let p = &report.pods[0];
        assert_eq!(p.name, "own-pod");
        assert_eq!(p.object["metadata"]["name"], "own-pod");
        assert_eq!(p.object["metadata"]["namespace"], "shop");
    }
}
