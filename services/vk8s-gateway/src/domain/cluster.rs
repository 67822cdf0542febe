//! Virtual clusters: the record, what an update may change, and etags.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::names::ClusterName;
use crate::error::GatewayError;

/// A stored virtual cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualCluster {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: ClusterName,
    pub display_name: String,
    pub labels: HashMap<String, String>,
    /// Full virtual site names.
    pub virtual_sites: Vec<String>,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// The fields of a new virtual cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCluster {
    pub name: ClusterName,
    pub tenant_id: Uuid,
    pub display_name: String,
    pub labels: HashMap<String, String>,
    pub virtual_sites: Vec<String>,
}

/// The fields an update replaces; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterUpdate {
    pub display_name: Option<String>,
    pub labels: Option<HashMap<String, String>>,
    pub virtual_sites: Option<Vec<String>>,
    /// The version the caller read (from its etag), if it sent one.
    pub expected_version: Option<i64>,
}

/// The paths an update mask may name.
pub const UPDATABLE_FIELDS: &[&str] = &["display_name", "labels", "virtual_sites"];

/// Which updatable fields a mask selects; an empty mask selects all of them.
pub fn mask_fields(paths: &[String]) -> Result<Vec<&'static str>, GatewayError> {
    if paths.is_empty() || paths.iter().any(|p| p == "*") {
        return Ok(UPDATABLE_FIELDS.to_vec());
    }
    paths
        .iter()
        .map(|p| {
            UPDATABLE_FIELDS
                .iter()
                .copied()
                .find(|f| f == p)
                .ok_or_else(|| {
                    GatewayError::invalid_argument(
                        "update_mask",
                        format!(
                            "{p:?} cannot be updated; updatable fields: {}",
                            UPDATABLE_FIELDS.join(", ")
                        ),
                    )
                })
        })
        .collect()
}

pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

pub fn parse_etag(field: &str, etag: &str) -> Result<Option<i64>, GatewayError> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.trim_matches('"').parse().map(Some).map_err(|_| {
        GatewayError::invalid_argument(
            field,
            "not an etag from this API; send back the etag you read",
        )
    })
}

/// Opaque keyset page token: the last name returned.
pub fn encode_page_token(last: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

pub fn decode_page_token(token: &str) -> Result<String, GatewayError> {
    use base64::Engine;
    if token.is_empty() {
        return Ok(String::new());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            GatewayError::invalid_argument(
                "page_token",
                "not a token from a previous response; omit it to start over",
            )
        })
}

/// Page size after defaults and bounds (AIP-158).
pub fn page_size(requested: i32) -> Result<i64, GatewayError> {
    match requested {
        0 => Ok(50),
        n if n < 0 => Err(GatewayError::invalid_argument(
            "page_size",
            "must not be negative",
        )),
        n => Ok(i64::from(n.min(1000))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_fields(&[]).unwrap(), UPDATABLE_FIELDS);
        assert_eq!(mask_fields(&["labels".into()]).unwrap(), vec!["labels"]);
        assert!(mask_fields(&["name".into()]).is_err());
    }

    #[test]
    fn etags_and_tokens() {
        assert_eq!(parse_etag("etag", &etag(7)).unwrap(), Some(7));
        assert_eq!(parse_etag("etag", "").unwrap(), None);
        assert!(parse_etag("etag", "x").is_err());
        assert_eq!(
            decode_page_token(&encode_page_token("demo")).unwrap(),
            "demo"
        );
        assert!(decode_page_token("!!").is_err());
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(5000).unwrap(), 1000);
    }
}
