//! Domain values to protos and back: virtual clusters, timestamps, and JSON
//! objects as `google.protobuf.Struct`.

use chrono::{DateTime, Utc};
use manifold_proto::vk8s::v1 as pb;
use prost_types::value::Kind;
use serde_json::Value;

use crate::core::CreateCluster;
use crate::domain::cluster::{ClusterUpdate, etag, mask_fields, parse_etag};
use crate::domain::names::{normalize_virtual_sites, validate_id, validate_labels};
use crate::domain::{ClusterName, NamespaceRef, VirtualCluster};
use crate::error::GatewayError;

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn cluster(vc: &VirtualCluster, public_url: &str) -> pb::VirtualCluster {
    pb::VirtualCluster {
        name: vc.name.resource_name(),
        uid: vc.id.to_string(),
        display_name: vc.display_name.clone(),
        labels: vc.labels.clone(),
        virtual_sites: vc.virtual_sites.clone(),
        server_url: format!(
            "{}{}",
            public_url.trim_end_matches('/'),
            vc.name.kube_path()
        ),
        create_time: Some(ts(vc.create_time)),
        update_time: Some(ts(vc.update_time)),
        etag: etag(vc.version),
    }
}

impl TryFrom<pb::CreateVirtualClusterRequest> for CreateCluster {
    type Error = GatewayError;

    fn try_from(req: pb::CreateVirtualClusterRequest) -> Result<Self, GatewayError> {
        let parent = NamespaceRef::parse("parent", &req.parent, false)?;
        validate_id("virtual_cluster_id", &req.virtual_cluster_id)?;
        let vc = req.virtual_cluster.unwrap_or_default();
        validate_labels("virtual_cluster.labels", &vc.labels)?;
        let virtual_sites =
            normalize_virtual_sites("virtual_cluster.virtual_sites", &parent, &vc.virtual_sites)?;
        Ok(CreateCluster {
            parent,
            id: req.virtual_cluster_id,
            display_name: vc.display_name,
            labels: vc.labels,
            virtual_sites,
        })
    }
}

/// A validated update request.
pub struct UpdateRequest {
    pub name: ClusterName,
    pub update: ClusterUpdate,
}

impl TryFrom<pb::UpdateVirtualClusterRequest> for UpdateRequest {
    type Error = GatewayError;

    fn try_from(req: pb::UpdateVirtualClusterRequest) -> Result<Self, GatewayError> {
        let vc = req
            .virtual_cluster
            .ok_or_else(|| GatewayError::invalid_argument("virtual_cluster", "required"))?;
        let name = ClusterName::parse("virtual_cluster.name", &vc.name)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let fields = mask_fields(&paths)?;
        let mut update = ClusterUpdate {
            expected_version: parse_etag("virtual_cluster.etag", &vc.etag)?,
            ..Default::default()
        };
        for field in fields {
            match field {
                "display_name" => update.display_name = Some(vc.display_name.clone()),
                "labels" => {
                    validate_labels("virtual_cluster.labels", &vc.labels)?;
                    update.labels = Some(vc.labels.clone());
                }
                "virtual_sites" => {
                    update.virtual_sites = Some(normalize_virtual_sites(
                        "virtual_cluster.virtual_sites",
                        &name.parent(),
                        &vc.virtual_sites,
                    )?);
                }
                _ => {}
            }
        }
        Ok(UpdateRequest { name, update })
    }
}

/// A JSON object as a `google.protobuf.Struct` (`None` for non-objects).
pub fn to_struct(value: &Value) -> Option<prost_types::Struct> {
    match value {
        Value::Object(map) => Some(prost_types::Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
        _ => None,
    }
}

fn to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Value::Object(_) => Kind::StructValue(to_struct(value).unwrap_or_default()),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn json_objects_become_structs() {
        let s = to_struct(&json!({"a": 1, "b": [true, null, "x"], "c": {"d": 2.5}})).unwrap();
        assert_eq!(s.fields["a"].kind, Some(Kind::NumberValue(1.0)));
        let Some(Kind::ListValue(l)) = &s.fields["b"].kind else {
            panic!()
        };
        assert_eq!(l.values.len(), 3);
        assert!(to_struct(&json!([1])).is_none());
    }

    #[test]
    fn updates_follow_the_mask() {
        let req = pb::UpdateVirtualClusterRequest {
            virtual_cluster: Some(pb::VirtualCluster {
                name: "tenants/a/namespaces/n/virtualClusters/v".into(),
                display_name: "D".into(),
                labels: labels(&[("k", "v")]),
                etag: "\"3\"".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into()],
            }),
        };
        let u = UpdateRequest::try_from(req).unwrap();
        assert_eq!(u.update.display_name, None);
        assert_eq!(u.update.labels.unwrap()["k"], "v");
        assert_eq!(u.update.expected_version, Some(3));
    }
}
