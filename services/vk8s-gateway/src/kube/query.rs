//! Query parameters of Kubernetes API requests.

use manifold_kube_model::selectors::{FieldSelector, LabelSelector};
use manifold_kube_model::{FieldValidation, IncludeObject};

use crate::core::list::Selectors;
use crate::error::GatewayError;

#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

fn bad(message: String) -> GatewayError {
    GatewayError::BadRequest(message)
}

impl Query {
    pub fn parse(uri: &http::Uri) -> Result<Self, GatewayError> {
        let pairs = match uri.query() {
            None => Vec::new(),
            Some(q) => {
                axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
                    .map_err(|e| bad(format!("malformed query string {q:?}: {e}")))?
                    .0
            }
        };
        Ok(Self { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, key: &str) -> Result<bool, GatewayError> {
        match self.get(key) {
            None | Some("" | "false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(other) => Err(bad(format!(
                "invalid value {other:?} for {key}: use true or false"
            ))),
        }
    }

    /// `Some(flag)` when the parameter is present at all.
    pub fn optional_flag(&self, key: &str) -> Result<Option<bool>, GatewayError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.flag(key).map(Some),
        }
    }

    pub fn selectors(&self) -> Result<Selectors, GatewayError> {
        let label = match self.get("labelSelector") {
            Some(s) if !s.is_empty() => LabelSelector::parse(s)
                .map_err(|e| bad(format!("unable to parse requirement: {e}")))?,
            _ => LabelSelector::everything(),
        };
        let field = match self.get("fieldSelector") {
            Some(s) if !s.is_empty() => FieldSelector::parse(s).map_err(|e| bad(e.to_string()))?,
            _ => FieldSelector::everything(),
        };
        Ok(Selectors { label, field })
    }

    /// `limit`; 0 or absent means everything.
    pub fn limit(&self) -> Result<Option<i64>, GatewayError> {
        match self.get("limit") {
            None | Some("") => Ok(None),
            Some(s) => match s.parse::<i64>() {
                Ok(0) => Ok(None),
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(bad(format!(
                    "invalid limit {s:?}: must be a non-negative integer"
                ))),
            },
        }
    }

    pub fn dry_run(&self) -> Result<bool, GatewayError> {
        let values: Vec<&str> = self
            .pairs
            .iter()
            .filter(|(k, _)| k == "dryRun")
            .map(|(_, v)| v.as_str())
            .collect();
        match values.as_slice() {
            [] => Ok(false),
            ["All"] => Ok(true),
            other => Err(GatewayError::BadRequest(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            ))),
        }
    }

    pub fn field_validation(&self) -> Result<FieldValidation, GatewayError> {
        match self.get("fieldValidation") {
            None | Some("") => Ok(FieldValidation::default()),
            Some(v) => FieldValidation::parse(v).ok_or_else(|| {
                bad(format!(
                    "fieldValidation: Unsupported value: {v:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                ))
            }),
        }
    }

    /// `fieldManager`, or what the API server derives from the User-Agent
    /// (its part before the first `/`).
    pub fn field_manager(&self, user_agent: Option<&str>) -> String {
        if let Some(m) = self.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_owned();
        }
        let agent = user_agent.unwrap_or("unknown");
        let prefix = agent.split('/').next().unwrap_or(agent);
        prefix.chars().take(128).collect()
    }

    /// The `fieldManager` as sent (apply needs one explicitly).
    pub fn explicit_field_manager(&self) -> Option<&str> {
        self.get("fieldManager").filter(|m| !m.is_empty())
    }

    pub fn include_object(&self) -> Result<IncludeObject, GatewayError> {
        match self.get("includeObject") {
            None | Some("") => Ok(IncludeObject::default()),
            Some(v) => IncludeObject::parse(v)
                .ok_or_else(|| bad(format!("includeObject: unsupported value {v:?}"))),
        }
    }

    pub fn timeout_seconds(&self) -> Result<Option<u64>, GatewayError> {
        match self.get("timeoutSeconds") {
            None | Some("") => Ok(None),
            Some(s) => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad(format!("invalid timeoutSeconds {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(&format!("/x?{s}").parse().unwrap()).unwrap()
    }

    #[test]
    fn parameters() {
        let query = q("limit=500&labelSelector=app%3Dweb%2Ctier+in+(a%2Cb)&watch=1&dryRun=All");
        assert_eq!(query.limit().unwrap(), Some(500));
        assert!(query.flag("watch").unwrap());
        assert!(query.dry_run().unwrap());
        let s = query.selectors().unwrap();
        assert_eq!(s.label.requirements().len(), 2);
        assert!(q("dryRun=Some").dry_run().is_err());
        assert!(q("limit=-1").limit().is_err());
        assert_eq!(q("limit=0").limit().unwrap(), None);
        assert_eq!(
            q("").field_manager(Some("kubectl/v1.33.1 (linux/amd64)")),
            "kubectl"
        );
        assert_eq!(q("fieldManager=me").field_manager(None), "me");
        assert_eq!(
            q("fieldValidation=Strict").field_validation().unwrap(),
            FieldValidation::Strict
        );
        assert!(q("fieldValidation=Loose").field_validation().is_err());
    }
}
