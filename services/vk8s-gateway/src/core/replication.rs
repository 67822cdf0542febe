//! Observed state from the sites, asked of the replication service's
//! `ReplicationService` with the end user's own token (replication checks
//! Read on the virtual cluster, Write for pod deletion): pods of every site,
//! per-site workload status summed into the one status a vK8s shows, pod
//! deletion and logs.

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};
use manifold_kube_model::kinds::ResourceKind;
use manifold_proto::replication::v1 as pb;
use pb::replication_service_client::ReplicationServiceClient;
use serde_json::{Map, Value};
use tonic::transport::Channel;

use crate::domain::VirtualCluster;
use crate::error::{GatewayError, Target};

/// Label naming the site a pod runs on.
pub const SITE_LABEL: &str = "manifold.dev/site";
/// Annotation listing the sites whose status a workload's `.status` sums.
pub const SITES_ANNOTATION: &str = "manifold.dev/sites";
pub use manifold_kube_model::table::SITE_READY_ANNOTATION;
/// Annotation holding a pod's name on its site (the vK8s name adds the site).
pub const SITE_POD_NAME_ANNOTATION: &str = "manifold.dev/site-pod-name";

/// The name a pod has in the vK8s: its name on the site, a dot, the site.
///
/// Every site runs the same StatefulSet ordinal (`web-0`) and may run pods of
/// the same name for any other reason, so the site's name alone cannot
/// identify a pod of the vK8s. The suffix makes it unique (site ids are
/// unique), stable (it changes only when the site's pod does) and valid (a
/// DNS subdomain, as pod names are), and the user's pod is still the first
/// thing in it: `web-0.pa2-par`.
pub fn vk8s_pod_name(site_pod: &str, site: &str) -> String {
    format!("{site_pod}.{site}")
}

/// The (site pod name, site) pairs a vK8s pod name can stand for: one per
/// dot, since both halves may contain dots. A lookup asks each; only names
/// that join a dotted pod name to a dotted site id have more than one.
pub fn site_pod_names(name: &str) -> impl Iterator<Item = (&str, &str)> {
    name.match_indices('.')
        .map(move |(i, _)| (&name[..i], &name[i + 1..]))
        .filter(|(pod, site)| !pod.is_empty() && !site.is_empty())
}

/// Kinds whose `.status` is the sum over sites.
pub fn is_workload(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job"
    )
}

#[derive(Clone)]
pub struct ReplicationClient {
    channel: Channel,
}

/// A pod event of `WatchPods`, in Kubernetes terms.
pub enum PodChange {
    Upsert(Value, i64),
    Delete(Value, i64),
    /// Every change up to this revision was sent.
    Bookmark(i64),
}

pub(crate) fn with_token<T>(message: T, token: &str) -> Result<tonic::Request<T>, GatewayError> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| GatewayError::Unauthenticated(manifold_auth::AuthError::Malformed))?;
    request.metadata_mut().insert("authorization", value);
    // The call continues the caller's trace.
    manifold_telemetry::inject_context(request.metadata_mut());
    Ok(request)
}

fn upstream(status: tonic::Status, what: &str) -> GatewayError {
    match status.code() {
        tonic::Code::NotFound => GatewayError::NotFound(Target::named(what)),
        tonic::Code::OutOfRange => GatewayError::Gone(status.message().to_owned()),
        _ => GatewayError::Upstream(status),
    }
}

/// Replication not deployed (or not reachable) means "nothing observed yet".
fn absent(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unimplemented | tonic::Code::Unavailable
    )
}

pub fn json_value(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(json_value).collect()),
        Some(Kind::StructValue(s)) => json_struct(s),
    }
}

pub fn json_struct(s: &prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect::<Map<_, _>>(),
    )
}

/// The pod as the vK8s shows it: the agent's translated object, with the
/// site label, the physical node and the phase filled in when missing.
/// Name, namespace and site are replication's (the key it stored the report
/// under, the site it authenticated), never what the object itself claims:
/// a site must not make its pod look like another one. The name is
/// [`vk8s_pod_name`]; the site's own name is kept in an annotation.
///
/// A pod of a site that is offline (its stream gone for longer than the
/// heartbeat timeout) shows what is known of it: phase `Unknown`, reason
/// `SiteOffline`, and no container ready, so READY is `0/N` and the Ready
/// condition is False with a message naming the site. Its last reported
/// node, IP and containers stay, as a node-lost pod's do in Kubernetes.
pub fn pod_object(p: &pb::Pod) -> Value {
    let mut o = p.object.as_ref().map(json_struct).unwrap_or_default();
    if !o.is_object() {
        o = Value::Object(Map::new());
    }
    o["apiVersion"] = "v1".into();
    o["kind"] = "Pod".into();
    let meta = entry(&mut o, "metadata");
    meta.insert("name".into(), vk8s_pod_name(&p.name, &p.site).into());
    meta.insert("namespace".into(), p.namespace.clone().into());
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(SITE_POD_NAME_ANNOTATION.into(), p.name.clone().into());
    }
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    if let Some(l) = labels.as_object_mut() {
        l.insert(SITE_LABEL.into(), p.site.clone().into());
    }
    if !p.node.is_empty() {
        entry(&mut o, "spec").insert("nodeName".into(), p.node.clone().into());
    }
    let status = entry(&mut o, "status");
    if !p.phase.is_empty() {
        status
            .entry("phase")
            .or_insert_with(|| p.phase.clone().into());
    }
    if !p.pod_ip.is_empty() {
        status
            .entry("podIP")
            .or_insert_with(|| p.pod_ip.clone().into());
    }
    if p.site_offline {
        mark_site_offline(status, &p.site);
    }
    o
}

/// What an offline site's pod shows: see [`pod_object`].
fn mark_site_offline(status: &mut Map<String, Value>, site: &str) {
    let message = format!(
        "site {site} is offline: its agent has not reported within the heartbeat timeout, so this is the pod's last known state"
    );
    status.insert("phase".into(), "Unknown".into());
    status.insert("reason".into(), "SiteOffline".into());
    status.insert("message".into(), message.clone().into());
    let ready = serde_json::json!({
        "type": "Ready",
        "status": "False",
        "reason": "SiteOffline",
        "message": message,
    });
    let conditions = status
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !conditions.is_array() {
        *conditions = Value::Array(Vec::new());
    }
    if let Some(c) = conditions.as_array_mut() {
        c.retain(|c| c.get("type").and_then(Value::as_str) != Some("Ready"));
        c.push(ready);
    }
    if let Some(list) = status
        .get_mut("containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for c in list.iter_mut().filter_map(Value::as_object_mut) {
            c.insert("ready".into(), false.into());
        }
    }
}

fn entry<'a>(o: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !o.get(key).is_some_and(Value::is_object) {
        o[key] = Value::Object(Map::new());
    }
    o.get_mut(key)
        .and_then(Value::as_object_mut)
        .expect("just made an object")
}

pub fn pod_site(pod: &Value) -> &str {
    pod.pointer("/metadata/labels")
        .and_then(|l| l.get(SITE_LABEL))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl ReplicationClient {
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }

    fn client(&self) -> ReplicationServiceClient<Channel> {
        ReplicationServiceClient::new(self.channel.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    /// Every pod of every site, and the pod revision the list is at.
    pub async fn list_pods(
        &self,
        vc: &VirtualCluster,
        token: &str,
    ) -> Result<(Vec<Value>, i64), GatewayError> {
        self.pods(vc, token, String::new()).await
    }

    /// The pods named `name` (one per site that reports one), read by key:
    /// a get, delete or log of one pod costs the same at 10 pods or 10,000.
    pub async fn pods_named(
        &self,
        vc: &VirtualCluster,
        token: &str,
        name: &str,
    ) -> Result<Vec<Value>, GatewayError> {
        Ok(self.pods(vc, token, name.to_owned()).await?.0)
    }

    async fn pods(
        &self,
        vc: &VirtualCluster,
        token: &str,
        name: String,
    ) -> Result<(Vec<Value>, i64), GatewayError> {
        let vk = vc.name.resource_name();
        let request = with_token(
            pb::ListPodsRequest {
                virtual_cluster: vk.clone(),
                name,
            },
            token,
        )?;
        match self.client().list_pods(request).await {
            Ok(r) => {
                let r = r.into_inner();
                let mut pods: Vec<Value> = r.pods.iter().map(pod_object).collect();
                pods.sort_by(|a, b| {
                    let name = |v: &Value| {
                        v.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    name(a).cmp(&name(b))
                });
                Ok((pods, r.revision))
            }
            Err(s) if absent(&s) => Ok((Vec::new(), 0)),
            Err(s) => Err(upstream(s, &vk)),
        }
    }

    /// Pod changes after `from` (0: the current pods first, then a bookmark).
    pub async fn watch_pods(
        &self,
        vc: &VirtualCluster,
        token: &str,
        from: i64,
    ) -> Result<impl Stream<Item = Result<PodChange, GatewayError>> + Send + use<>, GatewayError>
    {
        let vk = vc.name.resource_name();
        let request = with_token(
            pb::WatchPodsRequest {
                virtual_cluster: vk.clone(),
                from_revision: from,
            },
            token,
        )?;
        let stream = self
            .client()
            .watch_pods(request)
            .await
            .map_err(|s| upstream(s, &vk))?
            .into_inner();
        Ok(stream.filter_map(move |event| {
            let vk = vk.clone();
            async move {
                let event = match event {
                    Ok(e) => e,
                    Err(s) => return Some(Err(upstream(s, &vk))),
                };
                let pod = event.pod.as_ref().map(pod_object);
                match (event.r#type(), pod) {
                    (pb::pod_event::Type::Upsert, Some(p)) => {
                        Some(Ok(PodChange::Upsert(p, event.revision)))
                    }
                    (pb::pod_event::Type::Delete, Some(p)) => {
                        Some(Ok(PodChange::Delete(p, event.revision)))
                    }
                    (pb::pod_event::Type::Bookmark, _) => {
                        Some(Ok(PodChange::Bookmark(event.revision)))
                    }
                    _ => None,
                }
            }
        }))
    }

    /// The Events the sites reported about the vK8s's objects (oldest first),
    /// each labelled with its site, and a resourceVersion for the list.
    pub async fn list_events(
        &self,
        vc: &VirtualCluster,
        token: &str,
    ) -> Result<(Vec<Value>, i64), GatewayError> {
        let vk = vc.name.resource_name();
        let request = with_token(
            pb::ListEventsRequest {
                virtual_cluster: vk.clone(),
                namespace: vc.name.namespace.clone(),
            },
            token,
        )?;
        match self.client().list_events(request).await {
            Ok(r) => {
                let events: Vec<Value> = r
                    .into_inner()
                    .events
                    .iter()
                    .map(|e| event_object(e, &vc.name.namespace))
                    .collect();
                // Events are kept by time; the newest's time names the list.
                let rv = chrono::Utc::now().timestamp_micros();
                Ok((events, rv))
            }
            Err(s) if absent(&s) => Ok((Vec::new(), 0)),
            Err(s) => Err(upstream(s, &vk)),
        }
    }

    /// The nodes of the sites the vK8s spans, as Node objects (see
    /// [`node_objects`]).
    pub async fn list_nodes(
        &self,
        vc: &VirtualCluster,
        token: &str,
    ) -> Result<Vec<Value>, GatewayError> {
        let vk = vc.name.resource_name();
        let request = with_token(
            pb::ListNodesRequest {
                virtual_cluster: vk.clone(),
            },
            token,
        )?;
        match self.client().list_nodes(request).await {
            Ok(r) => Ok(node_objects(&r.into_inner().nodes)),
            Err(s) if absent(&s) => Ok(Vec::new()),
            Err(s) => Err(upstream(s, &vk)),
        }
    }

    /// The status of one object on every site that reported it, by site.
    pub async fn site_statuses(
        &self,
        vc: &VirtualCluster,
        kind: &ResourceKind,
        name: &str,
        token: &str,
    ) -> Result<BTreeMap<String, SiteStatus>, GatewayError> {
        let request = with_token(
            pb::GetObjectStatusRequest {
                r#ref: Some(pb::ObjectRef {
                    virtual_cluster: vc.name.resource_name(),
                    api_version: kind.api_version(),
                    kind: kind.kind.to_owned(),
                    namespace: vc.name.namespace.clone(),
                    name: name.to_owned(),
                }),
            },
            token,
        )?;
        match self.client().get_object_status(request).await {
            Ok(r) => Ok(statuses_by_site(&r.into_inner().statuses)),
            Err(s) if absent(&s) || s.code() == tonic::Code::NotFound => Ok(BTreeMap::new()),
            Err(s) => Err(upstream(s, name)),
        }
    }

    /// The vK8s's status changes, pushed (see WatchObjectStatus); returns
    /// once the stream is live, so every change after this call reaches it.
    /// `None`: the replication service does not offer it (an older one).
    pub async fn watch_object_status(
        &self,
        vc: &VirtualCluster,
        token: &str,
    ) -> Result<Option<tonic::Streaming<pb::ObjectStatusEvent>>, GatewayError> {
        let vk = vc.name.resource_name();
        let request = with_token(
            pb::WatchObjectStatusRequest {
                virtual_cluster: vk.clone(),
            },
            token,
        )?;
        let mut stream = match self.client().watch_object_status(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(None),
            Err(s) => return Err(upstream(s, &vk)),
        };
        // The first event says the stream is live.
        match stream.message().await {
            Ok(Some(_)) => Ok(Some(stream)),
            Ok(None) => Ok(None),
            Err(s) => Err(upstream(s, &vk)),
        }
    }

    pub async fn delete_pod(
        &self,
        vc: &VirtualCluster,
        name: &str,
        site: &str,
        token: &str,
    ) -> Result<(), GatewayError> {
        let request = with_token(
            pb::DeletePodRequest {
                virtual_cluster: vc.name.resource_name(),
                namespace: vc.name.namespace.clone(),
                name: name.to_owned(),
                site: site.to_owned(),
            },
            token,
        )?;
        self.client()
            .delete_pod(request)
            .await
            .map_err(|s| upstream(s, name))?;
        Ok(())
    }

    /// The log of a pod's container, as chunks of bytes.
    pub async fn stream_logs(
        &self,
        vc: &VirtualCluster,
        token: &str,
        request: pb::StreamLogsRequest,
    ) -> Result<impl Stream<Item = Result<Vec<u8>, GatewayError>> + Send + use<>, GatewayError>
    {
        let name = request.pod.clone();
        let request = with_token(
            pb::StreamLogsRequest {
                virtual_cluster: vc.name.resource_name(),
                namespace: vc.name.namespace.clone(),
                ..request
            },
            token,
        )?;
        let stream = self
            .client()
            .stream_logs(request)
            .await
            .map_err(|s| upstream(s, &name))?
            .into_inner();
        Ok(stream
            .take_while(|c| {
                let more = c
                    .as_ref()
                    .map_or(true, |c| c.error.is_empty() || !c.data.is_empty());
                async move { more }
            })
            .filter_map(move |c| {
                let name = name.clone();
                async move {
                    match c {
                        Ok(c) if !c.error.is_empty() && c.data.is_empty() => None,
                        Ok(c) if c.data.is_empty() => None,
                        Ok(c) => Some(Ok(c.data)),
                        Err(s) => Some(Err(upstream(s, &name))),
                    }
                }
            }))
    }
}

/// The statuses of one object as replication answers them, by site id.
pub fn statuses_by_site(statuses: &[pb::ObjectStatus]) -> BTreeMap<String, SiteStatus> {
    statuses
        .iter()
        .map(|s| {
            let site = s.site.strip_prefix("sites/").unwrap_or(&s.site);
            let status = s.status.as_ref().map(json_struct).unwrap_or_default();
            (
                site.to_owned(),
                SiteStatus {
                    status,
                    failure: s.failure.clone(),
                    offline: s.site_offline,
                },
            )
        })
        .collect()
}

/// One site's status of an object, and its refusal of the latest version.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SiteStatus {
    pub status: Value,
    pub failure: Option<pb::ApplyFailure>,
    /// The site is offline: `status` is its last report.
    pub offline: bool,
}

impl From<Value> for SiteStatus {
    fn from(status: Value) -> Self {
        Self {
            status,
            failure: None,
            offline: false,
        }
    }
}

/// An Event a site reported, as the vK8s shows it.
fn event_object(e: &pb::SiteEvent, namespace: &str) -> Value {
    let mut o = e.object.as_ref().map(json_struct).unwrap_or_default();
    if !o.is_object() {
        o = Value::Object(Map::new());
    }
    o["apiVersion"] = "v1".into();
    o["kind"] = "Event".into();
    let meta = entry(&mut o, "metadata");
    meta.insert("namespace".into(), namespace.into());
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(l) = labels.as_object_mut() {
        l.insert(SITE_LABEL.into(), e.site.clone().into());
    }
    // An Event about a pod names the pod as the vK8s does, so `kubectl
    // describe pod web-0.pa2-par` and `--field-selector
    // involvedObject.name=…` find it.
    if let Some(involved) = o.get_mut("involvedObject").and_then(Value::as_object_mut)
        && involved.get("kind").and_then(Value::as_str) == Some("Pod")
        && let Some(name) = involved.get("name").and_then(Value::as_str)
    {
        let name = vk8s_pod_name(name, &e.site);
        involved.insert("name".into(), name.into());
    }
    o
}

/// Puts the summed per-site status into a workload object, and the list of
/// sites it sums into the `manifold.dev/sites` annotation. `spec` stays as
/// written: `spec.replicas` is per site.
///
/// A site that refuses the object's current version (its failure names the
/// object's resourceVersion) has seen that generation and said no: it counts as
/// having observed it, the status gets a `Synced=False` condition naming every
/// refusing site and its error, and a Deployment a `Progressing=False` condition
/// with reason `ProgressDeadlineExceeded`, so `kubectl rollout status` stops
/// with an error instead of waiting forever.
pub fn merge_status(kind: &str, object: &mut Value, sites: BTreeMap<String, SiteStatus>) {
    if sites.is_empty() {
        return;
    }
    let names: Vec<&str> = sites.keys().map(String::as_str).collect();
    let list = names.join(",");
    let current: i64 = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = site_ready(kind, object, &sites);
    let annotations = entry(entry_obj(object, "metadata"), "annotations");
    annotations.insert(SITES_ANNOTATION.into(), list.into());
    match ready {
        Some(r) => annotations.insert(SITE_READY_ANNOTATION.into(), r.into()),
        None => annotations.remove(SITE_READY_ANNOTATION),
    };
    let mut refusals: Vec<(String, pb::ApplyFailure)> = Vec::new();
    let mut offline: Vec<String> = Vec::new();
    let statuses: Vec<Value> = sites
        .into_iter()
        .map(|(site, mut s)| {
            if s.offline {
                not_ready(&mut s.status);
                offline.push(site.clone());
            }
            (site, s)
        })
        .map(|(site, s)| match s.failure {
            Some(f) if f.revision >= current => {
                let mut status = s.status;
                if !status.is_object() {
                    status = Value::Object(Map::new());
                }
                status["observedGeneration"] = generation.into();
                refusals.push((site, f));
                status
            }
            _ => s.status,
        })
        .collect();
    let mut summed = manifold_kube_model::status::sum_workload_status(kind, statuses);
    if !refusals.is_empty() {
        add_refusal_conditions(kind, &mut summed, &refusals);
    }
    if !offline.is_empty() {
        add_offline_condition(&mut summed, &offline);
    }
    object["status"] = summed;
}

/// Ready out of desired on each site (`ny8-nyc=2/2,pa2-par=offline`), for
/// the kinds whose pods are counted that way; `kubectl get -o wide` shows it
/// as SITES and `kubectl describe` among the annotations.
fn site_ready(kind: &str, object: &Value, sites: &BTreeMap<String, SiteStatus>) -> Option<String> {
    let replicas = || {
        object
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    };
    let of = |status: &Value, field: &str| status.get(field).and_then(Value::as_i64).unwrap_or(0);
    let cells: Vec<String> = sites
        .iter()
        .map(|(site, s)| {
            if s.offline {
                return format!("{site}=offline");
            }
            let (ready, desired) = match kind {
                "DaemonSet" => (
                    of(&s.status, "numberReady"),
                    of(&s.status, "desiredNumberScheduled"),
                ),
                _ => (of(&s.status, "readyReplicas"), replicas()),
            };
            format!("{site}={ready}/{desired}")
        })
        .collect();
    matches!(
        kind,
        "Deployment" | "StatefulSet" | "ReplicaSet" | "DaemonSet"
    )
    .then(|| cells.join(","))
}

/// An offline site's last report, as the sum counts it: what it last said
/// it runs, and nothing of it ready or available, since nothing is known
/// of it now. READY on the vK8s therefore counts only the pods of sites
/// that are reporting.
fn not_ready(status: &mut Value) {
    let Some(s) = status.as_object_mut() else {
        return;
    };
    for field in [
        "readyReplicas",
        "availableReplicas",
        "numberReady",
        "numberAvailable",
        "ready",
    ] {
        if s.contains_key(field) {
            s.insert(field.into(), 0.into());
        }
    }
    if let Some(replicas) = s.get("replicas").cloned() {
        s.insert("unavailableReplicas".into(), replicas);
    }
    if let Some(desired) = s.get("desiredNumberScheduled").cloned() {
        s.insert("numberUnavailable".into(), desired);
    }
}

/// Condition `SitesOnline` False naming the offline sites.
fn add_offline_condition(status: &mut Value, sites: &[String]) {
    if !status.is_object() {
        *status = Value::Object(Map::new());
    }
    let message = format!(
        "sites {} are offline: their pods are shown with their last known state and none of them is counted as ready",
        sites.join(", ")
    );
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let conditions = status
        .as_object_mut()
        .expect("an object")
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !conditions.is_array() {
        *conditions = Value::Array(Vec::new());
    }
    let list = conditions.as_array_mut().expect("an array");
    list.retain(|c| c.get("type").and_then(Value::as_str) != Some("SitesOnline"));
    list.push(serde_json::json!({
        "type": "SitesOnline",
        "status": "False",
        "reason": "SiteOffline",
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }));
}

fn add_refusal_conditions(kind: &str, status: &mut Value, refusals: &[(String, pb::ApplyFailure)]) {
    let message = refusals
        .iter()
        .map(|(site, f)| {
            format!(
                "site {site} refused revision {} ({} {}): {}",
                f.revision, f.code, f.reason, f.message
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let since = refusals
        .iter()
        .filter_map(|(_, f)| f.first_time.as_ref())
        .map(|t| (t.seconds, t.nanos))
        .min()
        .and_then(|(s, n)| chrono::DateTime::from_timestamp(s, n.max(0) as u32))
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if !status.is_object() {
        *status = Value::Object(Map::new());
    }
    let conditions = status
        .as_object_mut()
        .expect("an object")
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !conditions.is_array() {
        *conditions = Value::Array(Vec::new());
    }
    let list = conditions.as_array_mut().expect("an array");
    let mut set = |type_: &str, reason: &str| {
        list.retain(|c| c.get("type").and_then(Value::as_str) != Some(type_));
        list.push(serde_json::json!({
            "type": type_,
            "status": "False",
            "reason": reason,
            "message": message,
            "lastUpdateTime": since,
            "lastTransitionTime": since,
        }));
    };
    set("Synced", "SiteRefused");
    if kind == "Deployment" {
        set("Progressing", "ProgressDeadlineExceeded");
    }
}

fn entry_obj<'a>(o: &'a mut Value, key: &str) -> &'a mut Value {
    entry(o, key);
    o.get_mut(key).expect("just made")
}

/// How many sites a workload's status sums (1 when it names none), the
/// multiplier for READY n/m of `spec.replicas`.
pub fn site_count(object: &Value) -> i64 {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SITES_ANNOTATION))
        .and_then(Value::as_str)
        .map_or(1, |s| {
            s.split(',').filter(|x| !x.is_empty()).count().max(1) as i64
        })
}

/// Nodes as a tenant sees them: the physical name (pods' `spec.nodeName`),
/// or `{node}.{site}` when two of the vK8s's sites have a node of that name;
/// the labels `manifold.dev/site` and `kubernetes.io/hostname` (the physical
/// name); a Ready condition: True/False as the site's last heartbeat said,
/// Unknown with reason `SiteOffline` once the site is offline. Nothing else
/// of the node (addresses, capacity, other tenants' pods) is shown.
pub fn node_objects(nodes: &[pb::SiteNode]) -> Vec<Value> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for n in nodes {
        *seen.entry(n.name.as_str()).or_default() += 1;
    }
    let mut objects: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let name = if seen[n.name.as_str()] > 1 {
                format!("{}.{}", n.name, n.site)
            } else {
                n.name.clone()
            };
            let (status, reason, message) = match (n.site_offline, n.ready) {
                (true, _) => (
                    "Unknown",
                    "SiteOffline",
                    format!(
                        "site {} is offline: its agent has stopped reporting",
                        n.site
                    ),
                ),
                (false, true) => (
                    "True",
                    "KubeletReady",
                    "kubelet is posting ready status".into(),
                ),
                (false, false) => (
                    "False",
                    "KubeletNotReady",
                    format!("the agent of site {} reports the node not ready", n.site),
                ),
            };
            let mut condition = serde_json::json!({
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": message,
            });
            if let Some(t) = n.last_heartbeat_time.as_ref().and_then(|t| {
                chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            }) {
                condition["lastHeartbeatTime"] =
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into();
            }
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        SITE_LABEL: n.site,
                        "kubernetes.io/hostname": n.name,
                    },
                },
                "spec": {},
                "status": { "conditions": [condition] },
            })
        })
        .collect();
    objects.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    objects
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reported(name: &str, site: &str, offline: bool) -> pb::Pod {
        let object = json!({
            "metadata": {"name": "claimed-by-the-site", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "web", "ready": true}]},
        });
        fn value(v: &Value) -> prost_types::Value {
            use prost_types::value::Kind;
            let kind = match v {
                Value::Null => Kind::NullValue(0),
                Value::Bool(b) => Kind::BoolValue(*b),
                Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
                Value::String(s) => Kind::StringValue(s.clone()),
                Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                    values: a.iter().map(value).collect(),
                }),
                Value::Object(o) => Kind::StructValue(prost_types::Struct {
                    fields: o.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
                }),
            };
            prost_types::Value { kind: Some(kind) }
        }
        let object = match value(&object).kind {
            Some(prost_types::value::Kind::StructValue(s)) => Some(s),
            _ => None,
        };
        pb::Pod {
            virtual_cluster: "vk".into(),
            namespace: "default".into(),
            name: name.into(),
            site: site.into(),
            phase: "Running".into(),
            object,
            site_offline: offline,
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_is_named_by_its_site_pod_name_and_its_site() {
        let pod = pod_object(&reported("web-0", "pa2-par", false));
        assert_eq!(pod["metadata"]["name"], "web-0.pa2-par");
        assert_eq!(
            pod["metadata"]["annotations"][SITE_POD_NAME_ANNOTATION],
            "web-0"
        );
        assert_eq!(pod["metadata"]["labels"][SITE_LABEL], "pa2-par");
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        // Every reading of the name, each split at one dot.
        let splits: Vec<_> = site_pod_names("web-0.pa2-par").collect();
        assert_eq!(splits, [("web-0", "pa2-par")]);
        let splits: Vec<_> = site_pod_names("a.b.eu.west").collect();
        assert_eq!(
            splits,
            [("a", "b.eu.west"), ("a.b", "eu.west"), ("a.b.eu", "west")]
        );
        assert_eq!(site_pod_names("web-0").count(), 0);
        assert_eq!(site_pod_names(".x").count(), 0);
        assert_eq!(site_pod_names("x.").count(), 0);
    }

    #[test]
    fn an_offline_sites_pod_is_unknown_and_not_ready() {
        let online = pod_object(&reported("web-0", "pa2-par", false));
        assert_eq!(online["status"]["phase"], "Running");
        assert_eq!(online["status"]["containerStatuses"][0]["ready"], true);
        let pod = pod_object(&reported("web-0", "pa2-par", true));
        assert_eq!(pod["status"]["phase"], "Unknown");
        assert_eq!(pod["status"]["reason"], "SiteOffline");
        assert_eq!(pod["status"]["containerStatuses"][0]["ready"], false);
        let ready: Vec<&Value> = pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["type"] == "Ready")
            .collect();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0]["status"], "False");
        assert!(
            ready[0]["message"].as_str().unwrap().contains("pa2-par"),
            "{pod}"
        );
    }

    #[test]
    fn an_offline_site_counts_nothing_ready_and_is_named_in_a_condition() {
        let mut d = json!({"metadata": {"name": "web", "generation": 2},
                           "spec": {"replicas": 2}});
        let sites = BTreeMap::from([
            ("pa2-par".to_owned(), site_status(2, 2).into()),
            (
                "ny8-nyc".to_owned(),
                SiteStatus {
                    status: site_status(2, 2),
                    failure: None,
                    offline: true,
                },
            ),
        ]);
        merge_status("Deployment", &mut d, sites);
        assert_eq!(d["status"]["replicas"], 4);
        assert_eq!(d["status"]["readyReplicas"], 2);
        assert_eq!(d["status"]["availableReplicas"], 2);
        let c: Vec<&Value> = d["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["type"] == "SitesOnline")
            .collect();
        assert_eq!(c.len(), 1, "{d}");
        assert_eq!(c[0]["status"], "False");
        assert!(c[0]["message"].as_str().unwrap().contains("ny8-nyc"));
        assert!(!c[0]["message"].as_str().unwrap().contains("pa2-par"));
    }

    fn site_status(ready: i64, generation: i64) -> Value {
        json!({"replicas": 2, "updatedReplicas": 2, "readyReplicas": ready,
               "availableReplicas": ready, "observedGeneration": generation})
    }

    #[test]
    fn status_is_the_sum_over_sites_and_names_them() {
        let mut d = json!({"metadata": {"name": "productpage", "generation": 2},
                           "spec": {"replicas": 2}, "status": {"replicas": 99}});
        let sites = BTreeMap::from([
            ("pa2-par".to_owned(), site_status(2, 2).into()),
            ("ny8-nyc".to_owned(), site_status(2, 2).into()),
            ("ams9-ams".to_owned(), site_status(1, 1).into()),
        ]);
        merge_status("Deployment", &mut d, sites);
        assert_eq!(d["status"]["replicas"], 6);
        assert_eq!(d["status"]["readyReplicas"], 5);
        assert_eq!(d["status"]["observedGeneration"], 1);
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(
            d["metadata"]["annotations"][SITES_ANNOTATION],
            "ams9-ams,ny8-nyc,pa2-par"
        );
        assert_eq!(site_count(&d), 3);
        assert_eq!(
            d["metadata"]["annotations"][SITE_READY_ANNOTATION],
            "ams9-ams=1/2,ny8-nyc=2/2,pa2-par=2/2"
        );
    }

    #[test]
    fn a_site_refusing_the_current_version_ends_the_rollout_with_its_error() {
        let mut d = json!({"metadata": {"name": "web", "generation": 3, "resourceVersion": "42"},
                           "spec": {"replicas": 2}});
        let refused = pb::ApplyFailure {
            revision: 42,
            code: 422,
            reason: "Invalid".into(),
            message: "spec.selector: field is immutable".into(),
            ..Default::default()
        };
        let sites = BTreeMap::from([
            ("pa2-par".to_owned(), site_status(2, 3).into()),
            (
                "ny8-nyc".to_owned(),
                SiteStatus {
                    status: site_status(2, 2),
                    failure: Some(refused.clone()),
                    offline: false,
                },
            ),
        ]);
        merge_status("Deployment", &mut d, sites);
        assert_eq!(
            d["status"]["observedGeneration"], 3,
            "the refusing site saw it"
        );
        let conditions = d["status"]["conditions"].as_array().unwrap();
        let by_type = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap();
        assert_eq!(by_type("Progressing")["reason"], "ProgressDeadlineExceeded");
        let synced = by_type("Synced");
        assert_eq!(synced["status"], "False");
        let message = synced["message"].as_str().unwrap();
        assert!(
            message.contains("site ny8-nyc refused revision 42 (422 Invalid): spec.selector"),
            "{message}"
        );

        // A refusal of an older version (a newer one is on its way) is not shown.
        let mut d = json!({"metadata": {"name": "web", "generation": 4, "resourceVersion": "50"}});
        merge_status(
            "Deployment",
            &mut d,
            BTreeMap::from([(
                "ny8-nyc".to_owned(),
                SiteStatus {
                    status: site_status(2, 2),
                    failure: Some(refused),
                    offline: false,
                },
            )]),
        );
        assert!(
            d["status"]
                .get("conditions")
                .is_none_or(|c| c.as_array().unwrap().is_empty())
        );
        assert_eq!(d["status"]["observedGeneration"], 2);
    }

    #[test]
    fn nothing_reported_leaves_the_object_alone() {
        let mut d = json!({"metadata": {"name": "web"}, "status": {"replicas": 1}});
        let before = d.clone();
        merge_status("Deployment", &mut d, BTreeMap::new());
        assert_eq!(d, before);
        assert_eq!(site_count(&d), 1);
    }

    #[test]
    fn pods_carry_site_node_and_phase() {
        let p = pb::Pod {
            virtual_cluster: "tenants/acme/namespaces/shop/virtualClusters/demo".into(),
            namespace: "shop".into(),
            name: "web-abc".into(),
            site: "pa2-par".into(),
            node: "pa2-par-node-1".into(),
            phase: "Running".into(),
            pod_ip: "10.0.0.7".into(),
            ..Default::default()
        };
        let o = pod_object(&p);
        assert_eq!(o["kind"], "Pod");
        assert_eq!(o["metadata"]["name"], "web-abc.pa2-par");
        assert_eq!(o["metadata"]["namespace"], "shop");
        assert_eq!(pod_site(&o), "pa2-par");
        assert_eq!(o["spec"]["nodeName"], "pa2-par-node-1");
        assert_eq!(o["status"]["phase"], "Running");
        assert_eq!(o["status"]["podIP"], "10.0.0.7");
    }

    #[test]
    fn a_pod_cannot_claim_another_name_namespace_or_site() {
        use prost_types::value::Kind;
        let text = |s: &str| prost_types::Value {
            kind: Some(Kind::StringValue(s.into())),
        };
        let meta = prost_types::Struct {
            fields: [
                ("name".to_owned(), text("victim-pod")),
                ("namespace".to_owned(), text("other")),
                ("labels".to_owned(), text("not a map")),
            ]
            .into_iter()
            .collect(),
        };
        let p = pb::Pod {
            name: "own-pod".into(),
            namespace: "shop".into(),
            site: "ny8-nyc".into(),
            object: Some(prost_types::Struct {
                fields: [(
                    "metadata".to_owned(),
                    prost_types::Value {
                        kind: Some(Kind::StructValue(meta)),
                    },
                )]
                .into_iter()
                .collect(),
            }),
            ..Default::default()
        };
        let o = pod_object(&p);
        assert_eq!(o["metadata"]["name"], "own-pod.ny8-nyc");
        assert_eq!(
            o["metadata"]["annotations"][SITE_POD_NAME_ANNOTATION],
            "own-pod"
        );
        assert_eq!(o["metadata"]["namespace"], "shop");
        assert_eq!(pod_site(&o), "ny8-nyc");
    }

    #[test]
    fn struct_values_become_json() {
        use prost_types::value::Kind;
        let v = |k: Kind| prost_types::Value { kind: Some(k) };
        let s = prost_types::Struct {
            fields: [
                ("a".to_owned(), v(Kind::NumberValue(1.0))),
                (
                    "b".to_owned(),
                    v(Kind::ListValue(prost_types::ListValue {
                        values: vec![v(Kind::BoolValue(true)), v(Kind::StringValue("x".into()))],
                    })),
                ),
                ("c".to_owned(), v(Kind::NumberValue(1.5))),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(json_struct(&s), json!({"a": 1, "b": [true, "x"], "c": 1.5}));
    }

    #[test]
    fn nodes_are_named_labelled_and_qualified_only_on_a_clash() {
        let node = |site: &str, name: &str, ready: bool, offline: bool| pb::SiteNode {
            site: site.into(),
            name: name.into(),
            ready,
            site_offline: offline,
            last_heartbeat_time: None,
        };
        let nodes = node_objects(&[
            node("pa2-par", "pa2-par-node-1", true, false),
            node("pa2-par", "worker", false, false),
            node("ny8-nyc", "worker", true, true),
        ]);
        let names: Vec<&str> = nodes
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["pa2-par-node-1", "worker.ny8-nyc", "worker.pa2-par"]
        );
        let ready = |i: usize| &nodes[i]["status"]["conditions"][0];
        assert_eq!(ready(0)["status"], "True");
        assert_eq!(
            (ready(1)["status"].as_str(), ready(1)["reason"].as_str()),
            (Some("Unknown"), Some("SiteOffline"))
        );
        assert_eq!(ready(2)["status"], "False");
        assert_eq!(nodes[1]["metadata"]["labels"][SITE_LABEL], "ny8-nyc");
        assert_eq!(
            nodes[1]["metadata"]["labels"]["kubernetes.io/hostname"],
            "worker"
        );
        assert!(nodes[0]["status"].get("addresses").is_none());
    }
}
