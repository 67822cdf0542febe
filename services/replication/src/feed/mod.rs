//! The object feed as replication consumes it: one shared, bounded ring of
//! recent changes per process (fed by one `ObjectFeed.Watch`), private
//! catch-up watches for sessions that fell behind it, and snapshots.

mod ring;
mod snapshot;
mod source;

use std::collections::BTreeSet;

use manifold_proto::vk8s::v1 as pb;

pub use ring::{Ring, run_hub};
pub use snapshot::Snapshots;
pub use source::Source;

use crate::domain::{ObjectKey, VIRTUAL_SITES_ANNOTATION, VkName, placement::narrowing};
use crate::upstream::convert::struct_str;

/// One object change (or one object of a snapshot).
#[derive(Debug, Clone)]
pub struct Change {
    pub revision: i64,
    pub deleted: bool,
    pub key: ObjectKey,
    /// The full object (absent on delete).
    pub object: Option<prost_types::Struct>,
    /// The virtual sites the object's annotation narrows it to.
    pub narrowing: Option<BTreeSet<String>>,
}

impl Change {
    /// None for PROGRESS (and unknown) events.
    pub fn from_event(e: pb::ObjectEvent) -> Option<Change> {
        let deleted = match pb::object_event::Type::try_from(e.r#type) {
            Ok(pb::object_event::Type::Upsert) => false,
            Ok(pb::object_event::Type::Delete) => true,
            _ => return None,
        };
        let narrowing = e.object.as_ref().and_then(|o| {
            let annotation = struct_str(o, &["metadata", "annotations", VIRTUAL_SITES_ANNOTATION]);
            let vk = VkName::parse("virtual_cluster", &e.virtual_cluster).ok()?;
            narrowing(&vk, annotation)
        });
        Some(Change {
            revision: e.revision,
            deleted,
            key: ObjectKey {
                virtual_cluster: e.virtual_cluster,
                api_version: e.api_version,
                kind: e.kind,
                namespace: e.namespace,
                name: e.object_name,
            },
            object: if deleted { None } else { e.object },
            narrowing,
        })
    }

    /// Rough memory size (for the snapshot cache's bound).
    pub fn size(&self) -> usize {
        use prost::Message as _;
        256 + self.object.as_ref().map_or(0, |o| o.encoded_len())
    }
}

/// Why a feed could not go on from a position.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FeedError {
    /// The log no longer reaches back far enough: take a snapshot.
    #[error("the change log was compacted past this position")]
    OutOfRange,
    #[error("the object feed is unavailable: {0}")]
    Unavailable(String),
}

impl FeedError {
    pub fn from_status(s: &tonic::Status) -> Self {
        match s.code() {
            tonic::Code::OutOfRange => FeedError::OutOfRange,
            _ => FeedError::Unavailable(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}

/// What a source yields: changes in revision order, and the position the
/// batch reaches (every change up to `upto` is in this or earlier batches).
#[derive(Debug, Default)]
pub struct Batch {
    pub changes: Vec<std::sync::Arc<Change>>,
    pub upto: i64,
}
