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
/// a site must not make its pod look like another one.
pub fn pod_object(p: &pb::Pod) -> Value {
    let mut o = p.object.as_ref().map(json_struct).unwrap_or_default();
    if !o.is_object() {
        o = Value::Object(Map::new());
    }
    o["apiVersion"] = "v1".into();
    o["kind"] = "Pod".into();
    let meta = entry(&mut o, "metadata");
    meta.insert("name".into(), p.name.clone().into());
    meta.insert("namespace".into(), p.namespace.clone().into());
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
    o
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
            Ok(r) => Ok(r
                .into_inner()
                .statuses
                .iter()
                .map(|s| {
                    let site = s.site.strip_prefix("sites/").unwrap_or(&s.site);
                    let status = s.status.as_ref().map(json_struct).unwrap_or_default();
                    (
                        site.to_owned(),
                        SiteStatus {
                            status,
                            failure: s.failure.clone(),
                        },
                    )
                })
                .collect()),
            Err(s) if absent(&s) || s.code() == tonic::Code::NotFound => Ok(BTreeMap::new()),
            Err(s) => Err(upstream(s, name)),
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

/// One site's status of an object, and its refusal of the latest version.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SiteStatus {
    pub status: Value,
    pub failure: Option<pb::ApplyFailure>,
}

impl From<Value> for SiteStatus {
    fn from(status: Value) -> Self {
        Self {
            status,
            failure: None,
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
    let annotations = entry(entry_obj(object, "metadata"), "annotations");
    annotations.insert(SITES_ANNOTATION.into(), list.into());
    let mut refusals: Vec<(String, pb::ApplyFailure)> = Vec::new();
    let statuses: Vec<Value> = sites
        .into_iter()
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
    object["status"] = summed;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert_eq!(o["metadata"]["name"], "web-abc");
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
        assert_eq!(o["metadata"]["name"], "own-pod");
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
}
