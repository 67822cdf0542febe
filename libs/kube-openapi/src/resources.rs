//! The REST resources Manifold serves, as the OpenAPI documents describe them.
//!
//! Group, version, kind and plural come from k8s-openapi's `Resource` trait so
//! they cannot drift from the types whose schemas are published.

use std::borrow::Cow;

use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
use k8s_openapi::{ListableResource, Resource};
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// Whether objects of a resource live in a namespace or in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One served resource: its kind, its URL segment and what it supports.
#[derive(Debug, Clone, Copy)]
pub struct ServedResource {
    /// API group, `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// The plural URL segment, e.g. `deployments`.
    pub plural: &'static str,
    pub scope: Scope,
    /// Has a `/status` subresource (get, put, patch).
    pub status: bool,
    /// Has an autoscaling/v1 `/scale` subresource (get, put, patch).
    pub scale: bool,
    /// Supports DELETE on the collection.
    pub delete_collection: bool,
    pub(crate) definition_name: fn() -> Cow<'static, str>,
    pub(crate) add_schema: fn(&mut SchemaGenerator) -> Schema,
}

impl ServedResource {
    /// The group-version path segment the OpenAPI v3 index uses: `api/v1`
    /// for the core group, `apis/<group>/<version>` otherwise.
    pub fn group_version_path(&self) -> String {
        group_version_path(self.group, self.version)
    }

    /// The Kubernetes definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub fn definition(&self) -> Cow<'static, str> {
        (self.definition_name)()
    }

    /// The definition name of the list kind, next to the kind's own.
    pub fn list_definition(&self) -> String {
        let definition = self.definition();
        match definition.rsplit_once('.') {
            Some((package, _)) => format!("{package}.{}", self.list_kind),
            None => self.list_kind.to_owned(),
        }
    }
}

/// `api/v1` for the core group, `apis/<group>/<version>` otherwise.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Maps k8s-openapi's scope marker types onto [`Scope`].
trait ScopeOf {
    const SCOPE: Scope;
}

impl ScopeOf for k8s_openapi::NamespaceResourceScope {
    const SCOPE: Scope = Scope::Namespaced;
}

impl ScopeOf for k8s_openapi::ClusterResourceScope {
    const SCOPE: Scope = Scope::Cluster;
}

const fn served<K>() -> ServedResource
where
    K: Resource + ListableResource + JsonSchema,
    K::Scope: ScopeOf,
{
    ServedResource {
        group: K::GROUP,
        version: K::VERSION,
        kind: K::KIND,
        list_kind: K::LIST_KIND,
        plural: K::URL_PATH_SEGMENT,
        scope: <K::Scope as ScopeOf>::SCOPE,
        status: false,
        scale: false,
        delete_collection: true,
        definition_name: <K as JsonSchema>::schema_name,
        add_schema: SchemaGenerator::subschema_for::<K>,
    }
}

const fn with_status(mut r: ServedResource) -> ServedResource {
    r.status = true;
    r
}

const fn with_scale(mut r: ServedResource) -> ServedResource {
    r.scale = true;
    r
}

const fn without_delete_collection(mut r: ServedResource) -> ServedResource {
    r.delete_collection = false;
    r
}

/// Every served resource, in the order the documents list them.
pub static SERVED: &[ServedResource] = &[
    with_scale(with_status(served::<apps::Deployment>())),
    with_scale(with_status(served::<apps::StatefulSet>())),
    with_status(served::<apps::DaemonSet>()),
    with_scale(with_status(served::<apps::ReplicaSet>())),
    with_status(served::<batch::Job>()),
    with_status(served::<batch::CronJob>()),
    with_status(served::<core::Service>()),
    served::<core::ConfigMap>(),
    served::<core::Secret>(),
    with_status(served::<core::PersistentVolumeClaim>()),
    served::<core::ServiceAccount>(),
    served::<core::Event>(),
    with_status(served::<core::Pod>()),
    without_delete_collection(with_status(served::<core::Namespace>())),
];

/// The group-versions that get a document, as `(group, version)`. autoscaling/v1
/// has no resources of its own here; it carries the `Scale` kind.
pub const GROUP_VERSIONS: &[(&str, &str)] = &[
    ("", "v1"),
    ("apps", "v1"),
    ("batch", "v1"),
    ("autoscaling", "v1"),
];

/// The resources of one group-version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ServedResource> + 'a {
    SERVED
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}
