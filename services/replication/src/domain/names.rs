//! Checked names: sites, virtual clusters, virtual sites and object
//! coordinates. Every value here was validated when it was built.

use std::fmt;

use crate::error::ReplicationError;

/// A site id (`pa2-par`), as named in agent certificates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(String);

impl SiteId {
    /// Accepts `pa2-par` or `sites/pa2-par`.
    pub fn parse(field: &str, value: &str) -> Result<Self, ReplicationError> {
        let id = value.strip_prefix("sites/").unwrap_or(value);
        manifold_pki::validate_site_name(id).map_err(|_| {
            ReplicationError::invalid(
                field,
                format!("{value:?} is not a site name (`sites/{{site}}` or the bare id)"),
            )
        })?;
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sites/{site}`.
    pub fn resource_name(&self) -> String {
        format!("sites/{}", self.0)
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `tenants/{t}/namespaces/{n}/virtualClusters/{v}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VkName {
    pub tenant: String,
    pub namespace: String,
    pub name: String,
}

impl VkName {
    pub fn parse(field: &str, value: &str) -> Result<Self, ReplicationError> {
        let parts: Vec<&str> = value.split('/').collect();
        match parts.as_slice() {
            ["tenants", t, "namespaces", n, "virtualClusters", v]
                if segment_ok(t) && segment_ok(n) && segment_ok(v) =>
            {
                Ok(Self {
                    tenant: (*t).to_owned(),
                    namespace: (*n).to_owned(),
                    name: (*v).to_owned(),
                })
            }
            _ => Err(ReplicationError::invalid(
                field,
                format!(
                    "{value:?} is not a virtual cluster name \
                     (`tenants/{{tenant}}/namespaces/{{namespace}}/virtualClusters/{{vk8s}}`)"
                ),
            )),
        }
    }

    pub fn resource_name(&self) -> String {
        format!(
            "tenants/{}/namespaces/{}/virtualClusters/{}",
            self.tenant, self.namespace, self.name
        )
    }

    /// The full name of a virtual site given by its short id (or already by
    /// its full name) in this cluster's namespace. None when the full name
    /// points into another namespace or is malformed.
    pub fn virtual_site(&self, id_or_name: &str) -> Option<String> {
        let id_or_name = id_or_name.trim();
        let prefix = format!(
            "tenants/{}/namespaces/{}/virtualSites/",
            self.tenant, self.namespace
        );
        let id = match id_or_name.strip_prefix(&prefix) {
            Some(id) => id,
            None if id_or_name.contains('/') => return None,
            None => id_or_name,
        };
        segment_ok(id).then(|| format!("{prefix}{id}"))
    }
}

impl fmt::Display for VkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_name())
    }
}

/// The coordinates of a Kubernetes object in a vK8s.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The vK8s's resource name.
    pub virtual_cluster: String,
    /// `apps/v1`, `v1`.
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    /// The API group of `api_version` (`apps`, or empty for the core group).
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }
}

/// The API group of an `apiVersion` string.
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(
            SiteId::parse("s", "sites/pa2-par").unwrap().as_str(),
            "pa2-par"
        );
        assert_eq!(SiteId::parse("s", "pa2-par").unwrap().as_str(), "pa2-par");
        assert!(SiteId::parse("s", "Bad_Site").is_err());
        let vk = VkName::parse("v", "tenants/acme/namespaces/shop/virtualClusters/demo").unwrap();
        assert_eq!(vk.tenant, "acme");
        assert_eq!(
            vk.resource_name(),
            "tenants/acme/namespaces/shop/virtualClusters/demo"
        );
        assert!(VkName::parse("v", "tenants/acme/namespaces/shop").is_err());
        assert_eq!(
            vk.virtual_site("all-edges").as_deref(),
            Some("tenants/acme/namespaces/shop/virtualSites/all-edges")
        );
        assert_eq!(
            vk.virtual_site("tenants/acme/namespaces/shop/virtualSites/eu")
                .as_deref(),
            Some("tenants/acme/namespaces/shop/virtualSites/eu")
        );
        assert_eq!(
            vk.virtual_site("tenants/other/namespaces/shop/virtualSites/eu"),
            None
        );
        assert_eq!(vk.virtual_site("Bad"), None);
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("v1"), "");
    }
}
