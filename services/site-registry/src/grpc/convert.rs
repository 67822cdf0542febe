//! Records to protos and back; incoming protos become checked domain values
//! here, before any handler logic runs.

use chrono::{DateTime, Utc};
use manifold_proto::sites::v1 as pb;

use crate::domain::*;
use crate::error::SiteError;

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_ts(field: &str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>, SiteError> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| SiteError::invalid(field, "not a valid timestamp"))
}

pub fn provider_kind_from_proto(field: &str, v: i32) -> Result<ProviderKind, SiteError> {
    match pb::site::ProviderKind::try_from(v) {
        Ok(pb::site::ProviderKind::Unspecified) => Ok(ProviderKind::Unspecified),
        Ok(pb::site::ProviderKind::CloudRegion) => Ok(ProviderKind::CloudRegion),
        Ok(pb::site::ProviderKind::Pop) => Ok(ProviderKind::Pop),
        Ok(pb::site::ProviderKind::Edge) => Ok(ProviderKind::Edge),
        Err(_) => Err(SiteError::invalid(
            field,
            "must be CLOUD_REGION, POP or EDGE",
        )),
    }
}

/// `None` for UNSPECIFIED (the caller decides: the default on create, the
/// stored level on update).
pub fn pod_security_from_proto(field: &str, v: i32) -> Result<Option<PodSecurityLevel>, SiteError> {
    match pb::PodSecurityLevel::try_from(v) {
        Ok(pb::PodSecurityLevel::Unspecified) => Ok(None),
        Ok(pb::PodSecurityLevel::Privileged) => Ok(Some(PodSecurityLevel::Privileged)),
        Ok(pb::PodSecurityLevel::Baseline) => Ok(Some(PodSecurityLevel::Baseline)),
        Ok(pb::PodSecurityLevel::Restricted) => Ok(Some(PodSecurityLevel::Restricted)),
        Err(_) => Err(SiteError::invalid(
            field,
            "must be PRIVILEGED, BASELINE or RESTRICTED",
        )),
    }
}

pub fn pod_security(l: PodSecurityLevel) -> pb::PodSecurityLevel {
    match l {
        PodSecurityLevel::Privileged => pb::PodSecurityLevel::Privileged,
        PodSecurityLevel::Baseline => pb::PodSecurityLevel::Baseline,
        PodSecurityLevel::Restricted => pb::PodSecurityLevel::Restricted,
    }
}

fn provider_kind(k: ProviderKind) -> pb::site::ProviderKind {
    match k {
        ProviderKind::Unspecified => pb::site::ProviderKind::Unspecified,
        ProviderKind::CloudRegion => pb::site::ProviderKind::CloudRegion,
        ProviderKind::Pop => pb::site::ProviderKind::Pop,
        ProviderKind::Edge => pb::site::ProviderKind::Edge,
    }
}

pub fn state_from_proto(field: &str, v: i32) -> Result<SiteState, SiteError> {
    match pb::site::State::try_from(v) {
        Ok(pb::site::State::Online) => Ok(SiteState::Online),
        Ok(pb::site::State::Offline) => Ok(SiteState::Offline),
        Ok(pb::site::State::Degraded) => Ok(SiteState::Degraded),
        _ => Err(SiteError::invalid(
            field,
            "must be ONLINE, DEGRADED or OFFLINE",
        )),
    }
}

fn state(s: SiteState) -> pb::site::State {
    match s {
        SiteState::Registered => pb::site::State::Registered,
        SiteState::Online => pb::site::State::Online,
        SiteState::Offline => pb::site::State::Offline,
        SiteState::Degraded => pb::site::State::Degraded,
        SiteState::Decommissioned => pb::site::State::Decommissioned,
    }
}

pub fn labels_from_proto(labels: std::collections::HashMap<String, String>) -> Labels {
    labels.into_iter().collect()
}

pub fn node_from_proto(n: pb::Node) -> Node {
    Node {
        name: n.name,
        ready: n.ready,
        cpu_capacity: n.cpu_capacity,
        memory_capacity: n.memory_capacity,
        pod_capacity: n.pod_capacity,
        labels: labels_from_proto(n.labels),
    }
}

fn node(n: Node) -> pb::Node {
    pb::Node {
        name: n.name,
        ready: n.ready,
        cpu_capacity: n.cpu_capacity,
        memory_capacity: n.memory_capacity,
        pod_capacity: n.pod_capacity,
        labels: n.labels.into_iter().collect(),
    }
}

pub fn site(s: SiteRecord) -> pb::Site {
    pb::Site {
        name: s.name(),
        uid: s.id.to_string(),
        display_name: s.spec.display_name,
        location: s.spec.location,
        provider_kind: provider_kind(s.spec.provider_kind) as i32,
        labels: s.spec.labels.into_iter().collect(),
        pod_security: pod_security(s.spec.pod_security) as i32,
        owner: s.owner.resource(),
        state: state(s.state) as i32,
        state_message: s.state_message,
        last_heartbeat_time: s.last_heartbeat_time.map(ts),
        agent_version: s.agent_version,
        nodes: s.nodes.into_iter().map(node).collect(),
        create_time: Some(ts(s.create_time)),
        update_time: Some(ts(s.update_time)),
        etag: etag(s.version),
        register_time: s.register_time.map(ts),
        decommission_time: s.decommission_time.map(ts),
    }
}

pub fn virtual_site(v: VirtualSiteRecord) -> pb::VirtualSite {
    pb::VirtualSite {
        name: v.vs.name(),
        uid: v.id.to_string(),
        display_name: v.display_name,
        site_selector: v.selector.as_str().to_owned(),
        create_time: Some(ts(v.create_time)),
        update_time: Some(ts(v.update_time)),
        etag: etag(v.version),
    }
}

/// The paths of an update mask, checked against what may be updated.
pub fn mask_paths(
    mask: Option<prost_types::FieldMask>,
    updatable: &[&str],
) -> Result<Vec<String>, SiteError> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    for path in &paths {
        if !updatable.contains(&path.as_str()) {
            return Err(SiteError::invalid(
                "update_mask",
                format!(
                    "{path:?} cannot be updated; updatable: {}",
                    updatable.join(", ")
                ),
            ));
        }
    }
    Ok(paths)
}
