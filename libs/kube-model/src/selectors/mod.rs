//! Label and field selectors: parsing, matching, and conversion from `metav1.LabelSelector`.

mod field;
mod label;

pub use field::{FieldOp, FieldRequirement, FieldSelector};
pub use label::{LabelSelector, Operator, Requirement, format_label_selector, format_labels};

/// A selector string or `metav1.LabelSelector` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);
