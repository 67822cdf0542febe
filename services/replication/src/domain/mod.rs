//! The domain: names, placement rules and observed state, free of gRPC and
//! SQL.

pub mod names;
pub mod placement;
pub mod status;

pub use names::{ObjectKey, SiteId, VkName, group_of};
pub use placement::{Decision, Membership, PlacementInputs, VIRTUAL_SITES_ANNOTATION};
