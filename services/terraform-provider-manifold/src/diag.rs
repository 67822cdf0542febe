//! Diagnostics: what the user reads when something is wrong, naming the
//! attribute when there is one, and gRPC errors of the Manifold API turned
//! into them with the server's message and field violations.

use tonic_types::StatusExt;

use crate::tfplugin6 as tf;

#[derive(Clone, Debug)]
pub struct Diag {
    pub error: bool,
    pub summary: String,
    pub detail: String,
    pub attribute: Option<String>,
}

impl Diag {
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Diag {
        Diag {
            error: true,
            summary: summary.into(),
            detail: detail.into(),
            attribute: None,
        }
    }

    /// An error about one attribute; Terraform points at it in the source.
    pub fn attr(attribute: &str, summary: impl Into<String>, detail: impl Into<String>) -> Diag {
        Diag {
            attribute: Some(attribute.to_owned()),
            ..Diag::error(summary, detail)
        }
    }

    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Diag {
        Diag {
            error: false,
            ..Diag::error(summary, detail)
        }
    }

    /// A failed Manifold call: `what` says which operation, the detail carries
    /// the gRPC code, message and any `BadRequest` field violations.
    pub fn api(what: &str, status: &tonic::Status) -> Diag {
        let mut detail = format!("{:?}: {}", status.code(), status.message());
        let details = status.get_error_details();
        if let Some(bad) = details.bad_request() {
            for v in &bad.field_violations {
                detail.push_str(&format!("\n  field {}: {}", v.field, v.description));
            }
        }
        if let Some(pf) = details.precondition_failure() {
            for v in &pf.violations {
                detail.push_str(&format!(
                    "\n  {} {}: {}",
                    v.r#type, v.subject, v.description
                ));
            }
        }
        Diag::error(format!("{what} failed"), detail)
    }

    pub fn to_proto(&self) -> tf::Diagnostic {
        tf::Diagnostic {
            severity: if self.error {
                tf::diagnostic::Severity::Error
            } else {
                tf::diagnostic::Severity::Warning
            } as i32,
            summary: self.summary.clone(),
            detail: self.detail.clone(),
            attribute: self.attribute.as_deref().map(attr_path),
        }
    }
}

pub fn attr_path(name: &str) -> tf::AttributePath {
    tf::AttributePath {
        steps: vec![tf::attribute_path::Step {
            selector: Some(tf::attribute_path::step::Selector::AttributeName(
                name.to_owned(),
            )),
        }],
    }
}

pub fn to_proto(diags: &[Diag]) -> Vec<tf::Diagnostic> {
    diags.iter().map(Diag::to_proto).collect()
}

pub fn has_errors(diags: &[Diag]) -> bool {
    diags.iter().any(|d| d.error)
}
