//! Kubernetes object handling shared by the vK8s gateway and the site agent: served
//! kinds and discovery, name and selector rules, the four patch types with managedFields,
//! object validation, Table output, and aggregation of per-site workload status.
//!
//! Everything works on `serde_json::Value` objects as stored and served; typed
//! k8s-openapi structs are used only to check that an object decodes.
#![forbid(unsafe_code)]

pub mod field_error;
#[cfg(test)]
mod fuzz;
mod json;
pub mod kinds;
pub mod names;
pub mod patch;
pub mod podsecurity;
pub mod selectors;
pub mod status;
pub mod table;
pub mod validate;

pub use field_error::{CauseType, FieldError};
pub use kinds::{DiscoveryFormat, ResourceKind, Subresource, Verb};
pub use patch::{ApplyError, Conflict, PatchError, PatchType};
pub use selectors::{FieldSelector, LabelSelector, SelectorError};
pub use status::sum_workload_status;
pub use table::{IncludeObject, TableOptions};
pub use validate::{
    FieldValidation, Validated, ValidationError, ValidationRequest, validate_object,
};
