//! The wire edge: protobuf messages of `manifold.replication.v1` to domain values and
//! back, and JSON ↔ `google.protobuf.Struct`.

use manifold_proto::replication::v1 as pb;
use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

use crate::error::ModelError;
use crate::model::{
    ApplyFailure, DesiredObject, LogParams, NodeInfo, ObjectKey, ObservedObject, ObservedPod,
    PodId, SiteEvent, VirtualCluster,
};

/// A JSON object as a `Struct`; anything else becomes an empty one.
pub fn json_to_struct(value: &Value) -> prost_types::Struct {
    match value {
        Value::Object(map) => prost_types::Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        },
        _ => prost_types::Struct::default(),
    }
}

fn json_to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(_) => Kind::StructValue(json_to_struct(value)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A `Struct` as a JSON object. Struct numbers are doubles; integral ones within the
/// exactly representable range come back as JSON integers (`replicas: 2`, not `2.0`).
pub fn struct_to_json(s: prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .into_iter()
            .map(|(k, v)| (k, value_to_json(v)))
            .collect::<Map<String, Value>>(),
    )
}

fn value_to_json(value: prost_types::Value) -> Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => number(n),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

fn number(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.is_finite() && n.fract() == 0.0 && n.abs() <= EXACT {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

impl TryFrom<pb::ObjectRef> for ObjectKey {
    type Error = ModelError;

    fn try_from(r: pb::ObjectRef) -> Result<Self, ModelError> {
        if r.kind.is_empty() || r.api_version.is_empty() || r.name.is_empty() {
            return Err(ModelError::InvalidMessage(format!(
                "object ref needs api_version, kind and name: {r:?}"
            )));
        }
        Ok(ObjectKey {
            virtual_cluster: VirtualCluster::parse(&r.virtual_cluster)?,
            api_version: r.api_version,
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
        })
    }
}

impl From<&ObjectKey> for pb::ObjectRef {
    fn from(k: &ObjectKey) -> Self {
        pb::ObjectRef {
            virtual_cluster: k.virtual_cluster.to_string(),
            api_version: k.api_version.clone(),
            kind: k.kind.clone(),
            namespace: k.namespace.clone(),
            name: k.name.clone(),
        }
    }
}

/// A certificate the control plane issued on renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewedCert {
    pub certificate_pem: String,
    pub ca_bundle_pem: String,
}

/// The answer to a RenewRequest.
pub type RenewOutcome = Result<RenewedCert, String>;

/// A control-plane message, validated.
#[derive(Debug, PartialEq)]
pub enum Command {
    Apply(DesiredObject),
    Delete {
        key: ObjectKey,
        revision: i64,
    },
    SnapshotBegin {
        revision: i64,
    },
    SnapshotEnd {
        revision: i64,
    },
    Progress {
        revision: i64,
    },
    Logs {
        request_id: String,
        params: LogParams,
    },
    CancelLogs {
        request_id: String,
    },
    DeletePod {
        virtual_cluster: Option<VirtualCluster>,
        namespace: String,
        pod: String,
    },
    Renewed(RenewOutcome),
    /// The site's settings: its Pod Security level, when the control plane
    /// says (`privileged`, `baseline` or `restricted`).
    Settings {
        pod_security: Option<String>,
    },
}

/// The Pod Security levels a namespace label may name.
pub const POD_SECURITY_LEVELS: [&str; 3] = ["privileged", "baseline", "restricted"];

/// An optional vK8s name: empty means not given.
fn optional_vc(name: &str) -> Result<Option<VirtualCluster>, ModelError> {
    if name.is_empty() {
        Ok(None)
    } else {
        VirtualCluster::parse(name).map(Some)
    }
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, ModelError> {
    value.ok_or_else(|| ModelError::InvalidMessage(format!("{field} is required")))
}

impl TryFrom<pb::ControlMessage> for Command {
    type Error = ModelError;

    fn try_from(msg: pb::ControlMessage) -> Result<Self, ModelError> {
        use pb::control_message::Msg;
        Ok(match required("msg", msg.msg)? {
            Msg::Apply(a) => {
                let key = ObjectKey::try_from(required("apply.ref", a.r#ref)?)?;
                let object = struct_to_json(required("apply.object", a.object)?);
                Command::Apply(DesiredObject::new(key, a.revision, object)?)
            }
            Msg::Delete(d) => Command::Delete {
                key: ObjectKey::try_from(required("delete.ref", d.r#ref)?)?,
                revision: d.revision,
            },
            Msg::SnapshotBegin(s) => Command::SnapshotBegin {
                revision: s.revision,
            },
            Msg::SnapshotEnd(s) => Command::SnapshotEnd {
                revision: s.revision,
            },
            Msg::Progress(p) => Command::Progress {
                revision: p.revision,
            },
            Msg::LogRequest(l) if l.cancel => Command::CancelLogs {
                request_id: l.request_id,
            },
            Msg::LogRequest(l) => {
                if l.pod.is_empty() || l.namespace.is_empty() {
                    return Err(ModelError::InvalidMessage(
                        "log_request needs namespace and pod".into(),
                    ));
                }
                Command::Logs {
                    request_id: l.request_id,
                    params: LogParams {
                        virtual_cluster: optional_vc(&l.virtual_cluster)?,
                        namespace: l.namespace,
                        pod: l.pod,
                        container: Some(l.container).filter(|c| !c.is_empty()),
                        follow: l.follow,
                        tail_lines: Some(l.tail_lines).filter(|n| *n > 0),
                        timestamps: l.timestamps,
                    },
                }
            }
            Msg::DeletePod(d) => {
                if d.pod.is_empty() || d.namespace.is_empty() {
                    return Err(ModelError::InvalidMessage(
                        "delete_pod needs namespace and pod".into(),
                    ));
                }
                Command::DeletePod {
                    virtual_cluster: optional_vc(&d.virtual_cluster)?,
                    namespace: d.namespace,
                    pod: d.pod,
                }
            }
            Msg::Renew(r) if !r.error.is_empty() => Command::Renewed(Err(r.error)),
            Msg::Renew(r) if r.certificate_pem.is_empty() => {
                Command::Renewed(Err("the control plane sent no certificate".into()))
            }
            Msg::Settings(c) if c.pod_security.is_empty() => {
                Command::Settings { pod_security: None }
            }
            Msg::Settings(c) => {
                if !POD_SECURITY_LEVELS.contains(&c.pod_security.as_str()) {
                    return Err(ModelError::InvalidMessage(format!(
                        "settings.pod_security {:?} is not one of privileged, baseline, restricted",
                        c.pod_security
                    )));
                }
                Command::Settings {
                    pod_security: Some(c.pod_security),
                }
            }
            Msg::Renew(r) => Command::Renewed(Ok(RenewedCert {
                certificate_pem: r.certificate_pem,
                ca_bundle_pem: r.ca_bundle_pem,
            })),
        })
    }
}

/// A pod for a status report.
pub fn pod_to_proto(site: &str, pod: &ObservedPod) -> pb::Pod {
    pb::Pod {
        virtual_cluster: pod.id.virtual_cluster.to_string(),
        namespace: pod.id.namespace.clone(),
        name: pod.id.name.clone(),
        site: site.to_owned(),
        node: pod.node.clone(),
        phase: pod.phase.clone(),
        pod_ip: pod.pod_ip.clone(),
        restarts: pod.restarts,
        owner_kind: pod.owner_kind.clone(),
        owner_name: pod.owner_name.clone(),
        object: Some(json_to_struct(&pod.object)),
        site_offline: false,
    }
}

/// A removed pod for a status report.
pub fn pod_ref_to_proto(id: &PodId) -> pb::PodRef {
    pb::PodRef {
        virtual_cluster: id.virtual_cluster.to_string(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
    }
}

/// An object status for a status report.
pub fn object_status_to_proto(site: &str, o: &ObservedObject) -> pb::ObjectStatus {
    pb::ObjectStatus {
        r#ref: Some(pb::ObjectRef::from(&o.key)),
        site: site.to_owned(),
        status: Some(json_to_struct(&o.status)),
        observed_revision: o.observed_revision,
        update_time: None,
        failure: o.failure.as_ref().map(failure_to_proto),
        site_offline: false,
    }
}

/// A refusal for a status report.
pub fn failure_to_proto(f: &ApplyFailure) -> pb::ApplyFailure {
    pb::ApplyFailure {
        revision: f.revision,
        code: i32::from(f.code),
        reason: f.reason.clone(),
        message: f.message.clone(),
        first_time: Some(prost_types::Timestamp::from(f.first_time)),
        attempts: i32::try_from(f.attempts).unwrap_or(i32::MAX),
    }
}

/// An Event for a status report.
pub fn event_to_proto(site: &str, e: &SiteEvent) -> pb::SiteEvent {
    pb::SiteEvent {
        virtual_cluster: e.virtual_cluster.to_string(),
        object: Some(json_to_struct(&e.object)),
        site: site.to_owned(),
    }
}

pub fn node_to_proto(n: &NodeInfo) -> pb::NodeStatus {
    pb::NodeStatus {
        name: n.name.clone(),
        ready: n.ready,
    }
}

/// Wraps one agent message.
pub fn agent_message(msg: pb::agent_message::Msg) -> pb::AgentMessage {
    pb::AgentMessage { msg: Some(msg) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn struct_round_trip_keeps_integers_integral() {
        let v = json!({"spec": {"replicas": 2, "ratio": 0.5, "tags": ["a", null, true],
                        "big": 1e300, "neg": -3}});
        let back = struct_to_json(json_to_struct(&v));
        assert_eq!(back, v);
        assert!(back.pointer("/spec/replicas").unwrap().is_i64());
    }

    #[test]
    fn settings_name_a_known_pod_security_level_or_none() {
        let msg = |level: &str| pb::ControlMessage {
            msg: Some(pb::control_message::Msg::Settings(pb::SiteSettings {
                pod_security: level.into(),
            })),
        };
        assert_eq!(
            Command::try_from(msg("restricted")).unwrap(),
            Command::Settings {
                pod_security: Some("restricted".into())
            }
        );
        assert_eq!(
            Command::try_from(msg("")).unwrap(),
            Command::Settings { pod_security: None }
        );
        let err = Command::try_from(msg("root")).unwrap_err().to_string();
        assert!(err.contains("settings.pod_security"), "{err}");
    }

    #[test]
    fn apply_is_validated() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "web", "namespace": "shop"}});
        let msg = |name: &str, vc: &str| pb::ControlMessage {
            msg: Some(pb::control_message::Msg::Apply(pb::Apply {
                revision: 7,
                r#ref: Some(pb::ObjectRef {
                    virtual_cluster: vc.into(),
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    namespace: "shop".into(),
                    name: name.into(),
                }),
                object: Some(json_to_struct(&object)),
            })),
        };
        let vc = "tenants/acme/namespaces/shop/virtualClusters/demo";
        match Command::try_from(msg("web", vc)).unwrap() {
            Command::Apply(d) => {
                assert_eq!(d.revision, 7);
                assert_eq!(d.key.virtual_cluster.tenant(), "acme");
                assert_eq!(d.key.group(), "apps");
            }
            other => panic!("{other:?}"),
        }
        assert!(Command::try_from(msg("other", vc)).is_err());
        assert!(Command::try_from(msg("web", "tenants/acme/demo")).is_err());
        assert!(Command::try_from(pb::ControlMessage { msg: None }).is_err());
    }

    #[test]
    fn log_requests_and_renewals() {
        let log = |cancel: bool, vc: &str| pb::ControlMessage {
            msg: Some(pb::control_message::Msg::LogRequest(pb::LogRequest {
                request_id: "r1".into(),
                namespace: "shop".into(),
                pod: "web-1".into(),
                tail_lines: 0,
                virtual_cluster: vc.into(),
                cancel,
                ..Default::default()
            })),
        };
        match Command::try_from(log(
            false,
            "tenants/acme/namespaces/shop/virtualClusters/demo",
        ))
        .unwrap()
        {
            Command::Logs { params, .. } => {
                assert_eq!(params.tail_lines, None);
                assert_eq!(params.container, None);
                assert_eq!(params.virtual_cluster.unwrap().name(), "demo");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Command::try_from(log(true, "")).unwrap(),
            Command::CancelLogs {
                request_id: "r1".into()
            }
        );
        let renew = pb::ControlMessage {
            msg: Some(pb::control_message::Msg::Renew(pb::RenewResponse {
                error: "revoked".into(),
                ..Default::default()
            })),
        };
        assert_eq!(
            Command::try_from(renew).unwrap(),
            Command::Renewed(Err("revoked".into()))
        );
    }
}
