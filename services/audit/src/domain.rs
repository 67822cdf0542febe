//! What a ListAuditEvents request asks for, validated: whose events, which
//! ones, and where the page starts. No tonic or SQL here.

use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::AuditError;

/// Largest page; the default is [`DEFAULT_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: u32 = 1000;
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Whose events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// One tenant's events (by tenant name).
    Tenant(String),
    /// Every event, of every tenant and the system.
    All,
}

impl Parent {
    pub fn parse(parent: &str) -> Result<Self, AuditError> {
        if parent.is_empty() || parent == "tenants/-" {
            return Ok(Parent::All);
        }
        match parent.strip_prefix("tenants/") {
            Some(t) if is_dns_label(t) => Ok(Parent::Tenant(t.to_owned())),
            _ => Err(AuditError::invalid(
                "parent",
                "expected `tenants/{tenant}`, or `tenants/-` (or empty) for every tenant",
            )),
        }
    }

    /// The resource whose Admin permission the caller needs.
    pub fn resource(&self) -> String {
        match self {
            Parent::Tenant(t) => format!("tenants/{t}"),
            Parent::All => String::new(),
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Where a page starts: after the event at (time, id), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}.{}",
            self.time.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(token: &str) -> Result<Self, AuditError> {
        let bad = || AuditError::invalid("page_token", "not a token this service returned");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (micros, id) = raw.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        Ok(Self {
            time: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// A validated list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub parent: Parent,
    pub page_size: u32,
    pub after: Option<Cursor>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub method: Option<String>,
    /// `grpc` or `kubernetes`.
    pub source: Option<&'static str>,
    pub success: Option<bool>,
    pub code: Option<String>,
}

/// An empty string means "no filter".
pub fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

pub fn page_size(requested: i32) -> Result<u32, AuditError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(AuditError::invalid("page_size", "must not be negative")),
        n => Ok((n as u32).min(MAX_PAGE_SIZE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(Parent::parse("").unwrap(), Parent::All);
        assert_eq!(Parent::parse("tenants/-").unwrap(), Parent::All);
        assert_eq!(
            Parent::parse("tenants/acme").unwrap(),
            Parent::Tenant("acme".into())
        );
        assert!(Parent::parse("tenants/acme/namespaces/x").is_err());
        assert!(Parent::parse("sites/x").is_err());
        assert!(Parent::parse("tenants/").is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            time: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert!(Cursor::decode("nope").is_err());
        assert!(Cursor::decode("").is_err());
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }
}
