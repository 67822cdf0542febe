//! Resource names of virtual clusters and their parents, and the id rules
//! they follow.

use std::collections::HashMap;

use crate::error::GatewayError;

/// `tenants/{tenant}/namespaces/{namespace}`: the parent of virtual clusters.
/// `namespace` may be `-` (every namespace) where a list allows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamespaceRef {
    pub tenant: String,
    pub namespace: String,
}

impl NamespaceRef {
    pub fn parse(field: &str, name: &str, allow_wildcard: bool) -> Result<Self, GatewayError> {
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["tenants", t, "namespaces", n] => {
                validate_id(field, t)?;
                if !(allow_wildcard && *n == "-") {
                    validate_id(field, n)?;
                }
                Ok(Self {
                    tenant: (*t).to_owned(),
                    namespace: (*n).to_owned(),
                })
            }
            _ => Err(GatewayError::invalid_argument(
                field,
                format!(
                    "{name:?} is not a namespace name: expected tenants/{{tenant}}/namespaces/{{namespace}}"
                ),
            )),
        }
    }

    pub fn is_wildcard(&self) -> bool {
        self.namespace == "-"
    }

    pub fn name(&self) -> String {
        format!("tenants/{}/namespaces/{}", self.tenant, self.namespace)
    }

    pub fn tenant_name(&self) -> String {
        format!("tenants/{}", self.tenant)
    }
}

/// `tenants/{tenant}/namespaces/{namespace}/virtualClusters/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName {
    pub tenant: String,
    pub namespace: String,
    pub name: String,
}

impl ClusterName {
    pub fn new(parent: &NamespaceRef, name: &str) -> Self {
        Self {
            tenant: parent.tenant.clone(),
            namespace: parent.namespace.clone(),
            name: name.to_owned(),
        }
    }

    pub fn parse(field: &str, name: &str) -> Result<Self, GatewayError> {
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["tenants", t, "namespaces", n, "virtualClusters", v] => {
                for id in [t, n, v] {
                    validate_id(field, id)?;
                }
                Ok(Self {
                    tenant: (*t).to_owned(),
                    namespace: (*n).to_owned(),
                    name: (*v).to_owned(),
                })
            }
            _ => Err(GatewayError::invalid_argument(
                field,
                format!(
                    "{name:?} is not a virtual cluster name: expected \
                     tenants/{{tenant}}/namespaces/{{namespace}}/virtualClusters/{{vk8s}}"
                ),
            )),
        }
    }

    /// The full resource name.
    pub fn resource_name(&self) -> String {
        format!(
            "tenants/{}/namespaces/{}/virtualClusters/{}",
            self.tenant, self.namespace, self.name
        )
    }

    pub fn parent(&self) -> NamespaceRef {
        NamespaceRef {
            tenant: self.tenant.clone(),
            namespace: self.namespace.clone(),
        }
    }

    /// The path the Kubernetes API serves this cluster under:
    /// `/vk8s/{tenant}/{namespace}/{name}`.
    pub fn kube_path(&self) -> String {
        format!("/vk8s/{}/{}/{}", self.tenant, self.namespace, self.name)
    }
}

impl std::fmt::Display for ClusterName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.resource_name())
    }
}

/// Ids are DNS labels: 1-63 lowercase letters, digits and '-', starting with
/// a letter and not ending with '-'.
pub fn validate_id(field: &str, value: &str) -> Result<(), GatewayError> {
    if is_id(value) {
        Ok(())
    } else {
        Err(GatewayError::invalid_argument(
            field,
            format!(
                "{value:?} is not a valid id: use 1-63 lowercase letters, digits and '-', \
                 starting with a letter and not ending with '-' (e.g. \"demo\")"
            ),
        ))
    }
}

pub fn is_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.as_bytes()[0].is_ascii_lowercase()
        && !value.ends_with('-')
}

pub fn validate_labels(field: &str, labels: &HashMap<String, String>) -> Result<(), GatewayError> {
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let value_ok = v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !key_ok || !value_ok {
            return Err(GatewayError::invalid_argument(
                &format!("{field}[{k}]"),
                "label keys and values are at most 63 letters, digits, '-', '_' or '.'",
            ));
        }
    }
    Ok(())
}

/// Normalises virtual site references to full names in `parent`'s
/// namespace: a short id `edge` becomes
/// `tenants/{t}/namespaces/{n}/virtualSites/edge`. Duplicates are dropped.
pub fn normalize_virtual_sites(
    field: &str,
    parent: &NamespaceRef,
    sites: &[String],
) -> Result<Vec<String>, GatewayError> {
    let prefix = format!("{}/virtualSites/", parent.name());
    let mut out: Vec<String> = Vec::with_capacity(sites.len());
    for (i, site) in sites.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let id = match site.strip_prefix(&prefix) {
            Some(id) => id,
            None if site.contains('/') => {
                return Err(GatewayError::invalid_argument(
                    &field,
                    format!(
                        "{site:?} is not a virtual site of {}: use {prefix}{{id}} or the short id",
                        parent.name()
                    ),
                ));
            }
            None => site.as_str(),
        };
        validate_id(&field, id)?;
        let full = format!("{prefix}{id}");
        if !out.contains(&full) {
            out.push(full);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = ClusterName::parse("name", "tenants/acme/namespaces/shop/virtualClusters/demo")
            .unwrap();
        assert_eq!(n.tenant, "acme");
        assert_eq!(
            n.resource_name(),
            "tenants/acme/namespaces/shop/virtualClusters/demo"
        );
        assert_eq!(n.kube_path(), "/vk8s/acme/shop/demo");
        assert_eq!(n.parent().name(), "tenants/acme/namespaces/shop");
        assert!(ClusterName::parse("name", "tenants/acme/namespaces/shop").is_err());
        assert!(
            ClusterName::parse("name", "tenants/Acme/namespaces/shop/virtualClusters/d").is_err()
        );
        assert!(NamespaceRef::parse("parent", "tenants/a/namespaces/-", true).is_ok());
        assert!(NamespaceRef::parse("parent", "tenants/a/namespaces/-", false).is_err());
    }

    #[test]
    fn virtual_sites_are_normalised() {
        let parent = NamespaceRef::parse("p", "tenants/a/namespaces/n", false).unwrap();
        let out = normalize_virtual_sites(
            "virtual_sites",
            &parent,
            &[
                "edge".into(),
                "tenants/a/namespaces/n/virtualSites/edge".into(),
                "core".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                "tenants/a/namespaces/n/virtualSites/edge",
                "tenants/a/namespaces/n/virtualSites/core"
            ]
        );
        assert!(
            normalize_virtual_sites(
                "v",
                &parent,
                &["tenants/b/namespaces/n/virtualSites/x".into()]
            )
            .is_err()
        );
        assert!(normalize_virtual_sites("v", &parent, &["Bad".into()]).is_err());
    }
}
