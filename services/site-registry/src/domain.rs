//! The registry's domain: validated names, site and virtual-site records, the
//! placement rule, registration-token secrets, page tokens and etags. No
//! tonic, no SQL.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use manifold_kube_model::LabelSelector;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::SiteError;

/// `sites/{site}`.
pub fn site_name(site: &str) -> String {
    format!("sites/{site}")
}

/// Checks a site id: it becomes the certificate identity
/// (`spiffe://manifold/site/<site>`), so the PKI's rule applies.
pub fn validate_site_id(field: &str, site: &str) -> Result<(), SiteError> {
    manifold_pki::validate_site_name(site).map_err(|_| {
        SiteError::invalid(
            field,
            format!(
                "{site:?} is not a valid site id: use 1-253 lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit (e.g. \"pa2-par\")"
            ),
        )
    })
}

/// `sites/{site}` → `site`.
pub fn parse_site_name(field: &str, name: &str) -> Result<String, SiteError> {
    let bad = || {
        SiteError::invalid(
            field,
            format!("{name:?} is not a site name; expected \"sites/{{site}}\""),
        )
    };
    let site = name.strip_prefix("sites/").ok_or_else(bad)?;
    validate_site_id(field, site).map_err(|_| bad())?;
    Ok(site.to_owned())
}

/// A DNS label: what tenant, namespace and virtual-site ids are.
pub fn validate_id(field: &str, value: &str) -> Result<(), SiteError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.as_bytes()[0].is_ascii_lowercase()
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SiteError::invalid(
            field,
            format!(
                "{value:?} is not a valid id: use 1-63 lowercase letters, digits and '-', \
                 starting with a letter and not ending with '-' (e.g. \"all-edges\")"
            ),
        ))
    }
}

/// Who owns a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Shared by every tenant; managed by system-admins.
    Provider,
    /// One tenant's own site (customer edge), by tenant name.
    Tenant(String),
}

impl Owner {
    /// `""` or `tenants/{t}`: the resource whose Admin permission manages it.
    pub fn resource(&self) -> String {
        match self {
            Owner::Provider => String::new(),
            Owner::Tenant(t) => format!("tenants/{t}"),
        }
    }

    pub fn parse(field: &str, owner: &str) -> Result<Owner, SiteError> {
        if owner.is_empty() {
            return Ok(Owner::Provider);
        }
        match owner.strip_prefix("tenants/") {
            Some(t) if validate_id(field, t).is_ok() => Ok(Owner::Tenant(t.to_owned())),
            _ => Err(SiteError::invalid(
                field,
                format!(
                    "{owner:?} is not an owner; use \"\" (provider, shared by all tenants) or \"tenants/{{tenant}}\""
                ),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Unspecified,
    CloudRegion,
    Pop,
    Edge,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Unspecified => "unspecified",
            ProviderKind::CloudRegion => "cloud-region",
            ProviderKind::Pop => "pop",
            ProviderKind::Edge => "edge",
        }
    }

    pub fn parse(s: &str) -> ProviderKind {
        match s {
            "cloud-region" => ProviderKind::CloudRegion,
            "pop" => ProviderKind::Pop,
            "edge" => ProviderKind::Edge,
            _ => ProviderKind::Unspecified,
        }
    }
}

/// registered → online ↔ degraded ↔ offline → decommissioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteState {
    /// Known to the registry; no agent has reported yet.
    Registered,
    Online,
    /// The agent is connected but cannot reach its cluster's API server.
    Degraded,
    Offline,
    /// Terminal: certificates revoked, never placed on again.
    Decommissioned,
}

impl SiteState {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Registered => "registered",
            SiteState::Online => "online",
            SiteState::Degraded => "degraded",
            SiteState::Offline => "offline",
            SiteState::Decommissioned => "decommissioned",
        }
    }

    pub fn parse(s: &str) -> SiteState {
        match s {
            "online" => SiteState::Online,
            "degraded" => SiteState::Degraded,
            "offline" => SiteState::Offline,
            "decommissioned" => SiteState::Decommissioned,
            _ => SiteState::Registered,
        }
    }
}

pub type Labels = BTreeMap<String, String>;

/// Site labels are matched by Kubernetes label selectors, so they follow
/// Kubernetes' label rules.
pub fn validate_labels(field: &str, labels: &Labels) -> Result<(), SiteError> {
    use manifold_kube_model::names::{is_qualified_name, is_valid_label_value};
    for (k, v) in labels {
        if let Some(msg) = is_qualified_name(k).into_iter().next() {
            return Err(SiteError::invalid(
                &format!("{field}[{k}]"),
                format!("invalid label key: {msg}"),
            ));
        }
        if let Some(msg) = is_valid_label_value(v).into_iter().next() {
            return Err(SiteError::invalid(
                &format!("{field}[{k}]"),
                format!("invalid label value {v:?}: {msg}"),
            ));
        }
    }
    Ok(())
}

/// Free text fields (display name, location): bounded, single line.
pub fn validate_text(field: &str, value: &str) -> Result<(), SiteError> {
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err(SiteError::invalid(
            field,
            "at most 256 characters, without control characters",
        ));
    }
    Ok(())
}

pub use manifold_kube_model::podsecurity::Level as PodSecurityLevel;

/// A node of a site, as its agent reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub ready: bool,
    #[serde(default)]
    pub cpu_capacity: String,
    #[serde(default)]
    pub memory_capacity: String,
    #[serde(default)]
    pub pod_capacity: i32,
    #[serde(default)]
    pub labels: Labels,
}

/// The most nodes one report may carry.
pub const MAX_NODES: usize = 10_000;

pub fn validate_nodes(field: &str, nodes: &[Node]) -> Result<(), SiteError> {
    if nodes.len() > MAX_NODES {
        return Err(SiteError::invalid(
            field,
            format!("at most {MAX_NODES} nodes per report"),
        ));
    }
    for (i, n) in nodes.iter().enumerate() {
        if n.name.is_empty() || n.name.len() > 253 {
            return Err(SiteError::invalid(
                &format!("{field}[{i}].name"),
                "required, at most 253 characters",
            ));
        }
        if n.pod_capacity < 0 {
            return Err(SiteError::invalid(
                &format!("{field}[{i}].pod_capacity"),
                "must not be negative",
            ));
        }
    }
    Ok(())
}

/// The fields an operator writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSpec {
    pub display_name: String,
    pub location: String,
    pub provider_kind: ProviderKind,
    pub labels: Labels,
    /// The Pod Security Standard workloads placed here must meet.
    pub pod_security: PodSecurityLevel,
}

#[derive(Debug, Clone)]
pub struct SiteRecord {
    pub id: Uuid,
    /// The owning tenant's uid; `None` for provider sites.
    pub tenant_id: Option<Uuid>,
    pub owner: Owner,
    /// The site id (`pa2-par`).
    pub site: String,
    pub spec: SiteSpec,
    pub state: SiteState,
    /// Why the site is in its state (DEGRADED: the agent's error).
    pub state_message: String,
    pub agent_version: String,
    pub nodes: Vec<Node>,
    pub last_heartbeat_time: Option<DateTime<Utc>>,
    pub register_time: Option<DateTime<Utc>>,
    pub decommission_time: Option<DateTime<Utc>>,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl SiteRecord {
    pub fn name(&self) -> String {
        site_name(&self.site)
    }
}

/// What replication (or the agent) observed.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub site: String,
    /// Online, Degraded or Offline.
    pub state: SiteState,
    /// Degraded: why.
    pub state_message: String,
    pub agent_version: String,
    pub nodes: Vec<Node>,
    pub heartbeat_time: DateTime<Utc>,
}

/// `tenants/{t}/namespaces/{n}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamespaceRef {
    pub tenant: String,
    pub namespace: String,
}

impl NamespaceRef {
    pub fn name(&self) -> String {
        format!("tenants/{}/namespaces/{}", self.tenant, self.namespace)
    }

    pub fn parse(field: &str, name: &str) -> Result<NamespaceRef, SiteError> {
        match name.split('/').collect::<Vec<_>>().as_slice() {
            ["tenants", t, "namespaces", n]
                if validate_id(field, t).is_ok() && validate_id(field, n).is_ok() =>
            {
                Ok(NamespaceRef {
                    tenant: (*t).to_owned(),
                    namespace: (*n).to_owned(),
                })
            }
            _ => Err(SiteError::invalid(
                field,
                format!(
                    "{name:?} is not a namespace name; expected \"tenants/{{tenant}}/namespaces/{{namespace}}\""
                ),
            )),
        }
    }
}

/// `tenants/{t}/namespaces/{n}/virtualSites/{vs}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualSiteRef {
    pub parent: NamespaceRef,
    pub id: String,
}

impl VirtualSiteRef {
    pub fn name(&self) -> String {
        format!("{}/virtualSites/{}", self.parent.name(), self.id)
    }

    pub fn parse(field: &str, name: &str) -> Result<VirtualSiteRef, SiteError> {
        let bad = || {
            SiteError::invalid(
                field,
                format!(
                    "{name:?} is not a virtual site name; expected \"tenants/{{tenant}}/namespaces/{{namespace}}/virtualSites/{{virtual_site}}\""
                ),
            )
        };
        let (parent, id) = name.rsplit_once("/virtualSites/").ok_or_else(bad)?;
        let parent = NamespaceRef::parse(field, parent).map_err(|_| bad())?;
        validate_id(field, id).map_err(|_| bad())?;
        Ok(VirtualSiteRef {
            parent,
            id: id.to_owned(),
        })
    }
}

/// A parsed, checked site selector (Kubernetes label selector syntax).
#[derive(Debug, Clone)]
pub struct SiteSelector {
    source: String,
    selector: LabelSelector,
}

impl SiteSelector {
    /// Required and non-trivial: a virtual site that silently selected every
    /// site would place workloads everywhere.
    pub fn parse(field: &str, source: &str) -> Result<SiteSelector, SiteError> {
        let trimmed = source.trim();
        if trimmed.is_empty() {
            return Err(SiteError::invalid(
                field,
                "required: a label selector over site labels, e.g. \"env=edge,region in (eu,us)\"",
            ));
        }
        let selector = LabelSelector::parse(trimmed).map_err(|e| {
            SiteError::invalid(
                field,
                format!(
                    "{source:?} is not a label selector: {e} (e.g. \"env=edge,region in (eu,us)\")"
                ),
            )
        })?;
        Ok(SiteSelector {
            source: trimmed.to_owned(),
            selector,
        })
    }

    /// Parses a stored selector; one that no longer parses selects nothing.
    pub fn stored(source: &str) -> SiteSelector {
        SiteSelector {
            source: source.to_owned(),
            selector: LabelSelector::parse(source).unwrap_or_else(|_| LabelSelector::nothing()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.selector.matches_map(labels)
    }
}

#[derive(Debug, Clone)]
pub struct VirtualSiteRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub vs: VirtualSiteRef,
    pub display_name: String,
    pub selector: SiteSelector,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// What placement needs to know about a site.
#[derive(Debug, Clone)]
pub struct PlacementCandidate {
    pub site: String,
    pub tenant_id: Option<Uuid>,
    pub labels: Labels,
    pub pod_security: PodSecurityLevel,
}

/// The sites (as `sites/{site}`, sorted) a virtual site of tenant `tenant_id`
/// places on: matching, not decommissioned (callers pass only live sites), and
/// either provider-owned or that tenant's own. Another tenant's private site
/// is never returned, whatever the selector says.
pub fn placement(
    selector: &SiteSelector,
    tenant_id: Uuid,
    candidates: &[PlacementCandidate],
) -> Vec<String> {
    let mut sites: Vec<String> = candidates
        .iter()
        .filter(|c| c.tenant_id.is_none_or(|t| t == tenant_id))
        .filter(|c| selector.matches(&c.labels))
        .map(|c| site_name(&c.site))
        .collect();
    sites.sort();
    sites
}

/// A freshly minted registration token: `mfr_<token_id>_<secret>`. The token
/// id is the lookup key; only SHA-256 of the secret half is stored.
pub struct RegistrationSecret {
    pub token_id: String,
    pub token: String,
    pub hash: Vec<u8>,
}

const TOKEN_PREFIX: &str = "mfr_";

pub fn new_registration_secret() -> RegistrationSecret {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let token_id = hex::encode(id);
    let secret = hex::encode(secret);
    RegistrationSecret {
        token: format!("{TOKEN_PREFIX}{token_id}_{secret}"),
        hash: hash_secret(&secret),
        token_id,
    }
}

/// Splits a registration token into (token id, secret half).
pub fn split_registration_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && !secret.is_empty()).then_some((id, secret))
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Constant-time comparison of two hashes.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Opaque keyset page token: the last key returned.
pub fn encode_page_token(last: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

pub fn decode_page_token(token: &str) -> Result<String, SiteError> {
    use base64::Engine;
    if token.is_empty() {
        return Ok(String::new());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            SiteError::invalid(
                "page_token",
                "not a token from a previous response; omit it to start over",
            )
        })
}

/// Page size after defaults and bounds (AIP-158).
pub fn page_size(requested: i32) -> Result<i64, SiteError> {
    match requested {
        0 => Ok(50),
        n if n < 0 => Err(SiteError::invalid("page_size", "must not be negative")),
        n => Ok(i64::from(n.min(1000))),
    }
}

pub fn parse_etag(field: &str, etag: &str) -> Result<Option<i64>, SiteError> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.trim_matches('"').parse().map(Some).map_err(|_| {
        SiteError::invalid(
            field,
            "not an etag from this API; send back the etag you read",
        )
    })
}

pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(site: &str, tenant: Option<Uuid>, labels: &[(&str, &str)]) -> PlacementCandidate {
        PlacementCandidate {
            pod_security: PodSecurityLevel::Baseline,
            site: site.into(),
            tenant_id: tenant,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_site_name("f", "sites/pa2-par").unwrap(), "pa2-par");
        for bad in ["pa2-par", "sites/", "sites/A", "sites/a/b", "tenants/x"] {
            assert!(parse_site_name("f", bad).is_err(), "{bad}");
        }
        let vs =
            VirtualSiteRef::parse("f", "tenants/acme/namespaces/shop/virtualSites/edges").unwrap();
        assert_eq!(vs.parent.tenant, "acme");
        assert_eq!(vs.id, "edges");
        assert_eq!(vs.name(), "tenants/acme/namespaces/shop/virtualSites/edges");
        assert!(VirtualSiteRef::parse("f", "tenants/acme/namespaces/shop").is_err());
        assert_eq!(Owner::parse("f", "").unwrap(), Owner::Provider);
        assert_eq!(
            Owner::parse("f", "tenants/acme").unwrap(),
            Owner::Tenant("acme".into())
        );
        assert!(Owner::parse("f", "acme").is_err());
    }

    #[test]
    fn selectors_are_required_and_checked() {
        assert!(SiteSelector::parse("f", "").is_err());
        assert!(SiteSelector::parse("f", "env in (").is_err());
        let s = SiteSelector::parse("f", "env=edge,region in (eu,us)").unwrap();
        let labels: Labels = [("env", "edge"), ("region", "eu")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert!(s.matches(&labels));
    }

    #[test]
    fn placement_never_crosses_tenants() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let s = SiteSelector::parse("f", "env=edge").unwrap();
        let sites = [
            candidate("zz-provider", None, &[("env", "edge")]),
            candidate("a-own", Some(a), &[("env", "edge")]),
            candidate("b-own", Some(b), &[("env", "edge")]),
            candidate("core", None, &[("env", "core")]),
        ];
        assert_eq!(
            placement(&s, a, &sites),
            vec!["sites/a-own", "sites/zz-provider"]
        );
        assert_eq!(
            placement(&s, b, &sites),
            vec!["sites/b-own", "sites/zz-provider"]
        );
    }

    #[test]
    fn registration_secrets_round_trip() {
        let s = new_registration_secret();
        let (id, secret) = split_registration_token(&s.token).unwrap();
        assert_eq!(id, s.token_id);
        assert!(hashes_equal(&hash_secret(secret), &s.hash));
        assert!(split_registration_token("mft_0123456789abcdef_x").is_none());
    }

    #[test]
    fn labels_follow_kubernetes_rules() {
        let ok: Labels = [("env".to_owned(), "edge".to_owned())].into();
        assert!(validate_labels("l", &ok).is_ok());
        let bad: Labels = [("bad key".to_owned(), "x".to_owned())].into();
        assert!(validate_labels("l", &bad).is_err());
        let bad: Labels = [("k".to_owned(), "-x".to_owned())].into();
        assert!(validate_labels("l", &bad).is_err());
    }
}
