//! OpenAPI documents for the Kubernetes kinds Manifold serves, so that plain
//! kubectl can `create -f`, `apply -f` (with the default `--validate=strict`)
//! and `explain` against a virtual cluster.
//!
//! The schemas come from k8s-openapi's `JsonSchema` implementations (its
//! `schemars` feature), reshaped the way kube-apiserver publishes them. Every
//! document is built on first use and kept for the life of the process.
//!
//! Endpoints and what to answer them with:
//!
//! | request | answer |
//! |---|---|
//! | `GET <base>/openapi/v3` | [`v3_index`]`(base)` |
//! | `GET <base>/openapi/v3/<gv>?hash=…` | [`v3_group_version`]`(gv)`'s `json` |
//! | `GET <base>/openapi/v2` | [`v2_document`]'s `json`, or its `protobuf` |
//!
//! All as `application/json`, except `/openapi/v2` for a client whose
//! `Accept` puts [`V2_PROTOBUF`] first: kubectl ≤ 1.27 asks only for that
//! (then for `/swagger-2.0.0.pb-v1`) and fails `apply` without it; it gets
//! the definitions as `openapi.v2.Document` protobuf, typed
//! [`V2_PROTOBUF_CONTENT_TYPE`].

#![forbid(unsafe_code)]

mod annotations;
mod check;
mod definitions;
mod dialect;
mod documents;
mod error;
mod operations;
mod resources;
mod v2_proto;

use serde_json::{Map, Value, json};

pub use annotations::{ATOMIC_STRUCTS, FIELD_RULES, FieldRule, ListType, field_rule};
pub use check::check;
pub use documents::{GroupVersionDocument, SwaggerDocument};
pub use error::Error;
pub use resources::{GROUP_VERSIONS, SERVED, Scope, ServedResource, group_version_path};
pub use v2_proto::{V2_PROTOBUF, V2_PROTOBUF_CONTENT_TYPE};

/// The OpenAPI v3 index (`GET /openapi/v3`):
/// `{"paths": {"apis/apps/v1": {"serverRelativeURL": "<base>/openapi/v3/apis/apps/v1?hash=…"}, …}}`.
///
/// `base` is the path prefix the cluster is served under (e.g.
/// `/vk8s/acme/shop/demo`, or `""`). client-go keeps its own prefix for URLs
/// that start with `/openapi/v3` and otherwise takes the URL as relative to the
/// server root, so a non-empty `base` must be the full prefix of the
/// kubeconfig's server URL.
pub fn v3_index(base: &str) -> Value {
    let base = base.trim_end_matches('/');
    let paths: Map<String, Value> = documents::get()
        .v3
        .iter()
        .map(|doc| {
            let url = format!("{base}/openapi/v3/{}?hash={}", doc.path, doc.hash);
            (doc.path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The OpenAPI 3.0 document of one group-version: `api/v1`, `apis/apps/v1`,
/// `apis/batch/v1` or `apis/autoscaling/v1` (a leading `/` is ignored).
pub fn v3_group_version(group_version: &str) -> Option<&'static GroupVersionDocument> {
    let group_version = group_version.trim_start_matches('/');
    documents::get()
        .v3
        .iter()
        .find(|doc| doc.path == group_version)
}

/// All group-version documents, in index order.
pub fn v3_group_versions() -> &'static [GroupVersionDocument] {
    &documents::get().v3
}

/// The Swagger 2.0 document (`GET /openapi/v2`) with every served path and
/// definition.
pub fn v2_document() -> &'static SwaggerDocument {
    &documents::get().v2
}
