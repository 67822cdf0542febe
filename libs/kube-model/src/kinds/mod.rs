//! Registry of the resource kinds a vK8s serves: names, scope, verbs, subresources, lookups.

mod discovery;

pub use discovery::{
    AGGREGATED_DISCOVERY_V2_MEDIA_TYPE, AGGREGATED_DISCOVERY_V2BETA1_MEDIA_TYPE, DiscoveryFormat,
    aggregated_apis, aggregated_core, api_group_list, api_resource_list, api_versions,
};

/// A Kubernetes API verb as listed in discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Create,
    Delete,
    DeleteCollection,
    Get,
    List,
    Patch,
    Update,
    Watch,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Patch => "patch",
            Verb::Update => "update",
            Verb::Watch => "watch",
        }
    }

    pub fn parse(s: &str) -> Option<Verb> {
        ALL_VERBS.iter().copied().find(|v| v.as_str() == s)
    }
}

/// A subresource (`deployments/scale`, `pods/log`, ...) and the kind it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [Verb],
}

/// Everything the gateway needs to know about one served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [Verb],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Tenants may create/update/patch it (otherwise it is read-only or delete-only).
    pub tenant_writable: bool,
    /// Where the PodSpec lives inside the object, for kinds that carry one.
    pub pod_spec_path: Option<&'static [&'static str]>,
}

impl ResourceKind {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `Deployment.apps` / `ConfigMap`, as used in "is invalid" messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `deployments.apps` / `configmaps`, as used in NotFound/AlreadyExists messages.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn supports(&self, verb: Verb) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

pub const ALL_VERBS: &[Verb] = &[
    Verb::Create,
    Verb::Delete,
    Verb::DeleteCollection,
    Verb::Get,
    Verb::List,
    Verb::Patch,
    Verb::Update,
    Verb::Watch,
];
const READ_VERBS: &[Verb] = &[Verb::Get, Verb::List, Verb::Watch];
/// Nodes are read from the sites' last reports: no watch.
const NODE_VERBS: &[Verb] = &[Verb::Get, Verb::List];
const POD_VERBS: &[Verb] = &[
    Verb::Delete,
    Verb::DeleteCollection,
    Verb::Get,
    Verb::List,
    Verb::Watch,
];
const SUB_RW: &[Verb] = &[Verb::Get, Verb::Patch, Verb::Update];
const SUB_RO: &[Verb] = &[Verb::Get];
const ALL: &[&str] = &["all"];
const TEMPLATE_SPEC: &[&str] = &["spec", "template", "spec"];

const fn status(group: &'static str, kind: &'static str, verbs: &'static [Verb]) -> Subresource {
    Subresource {
        name: "status",
        group,
        version: "v1",
        kind,
        verbs,
    }
}

const fn scale(verbs: &'static [Verb]) -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs,
    }
}

#[allow(clippy::too_many_arguments)]
const fn kind(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    verbs: &'static [Verb],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
    pod_spec_path: Option<&'static [&'static str]>,
) -> ResourceKind {
    ResourceKind {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        short_names,
        namespaced: true,
        verbs,
        categories,
        subresources,
        // Only kinds with the full verb set accept tenant writes.
        tenant_writable: verbs.len() == ALL_VERBS.len(),
        pod_spec_path,
    }
}

/// Every kind a vK8s serves, core group first, in discovery order.
pub static KINDS: &[ResourceKind] = &[
    // core/v1
    kind(
        "",
        "ConfigMap",
        "configmaps",
        "configmap",
        &["cm"],
        ALL_VERBS,
        &[],
        &[],
        None,
    ),
    kind(
        "",
        "Event",
        "events",
        "event",
        &["ev"],
        READ_VERBS,
        &[],
        &[],
        None,
    ),
    ResourceKind {
        namespaced: false,
        ..kind(
            "",
            "Namespace",
            "namespaces",
            "namespace",
            &["ns"],
            READ_VERBS,
            &[],
            &[],
            None,
        )
    },
    ResourceKind {
        namespaced: false,
        ..kind(
            "",
            "Node",
            "nodes",
            "node",
            &["no"],
            NODE_VERBS,
            &[],
            &[],
            None,
        )
    },
    kind(
        "",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        &["pvc"],
        ALL_VERBS,
        &[],
        &[],
        None,
    ),
    kind(
        "",
        "Pod",
        "pods",
        "pod",
        &["po"],
        POD_VERBS,
        ALL,
        &[
            Subresource {
                name: "exec",
                group: "",
                version: "v1",
                kind: "PodExecOptions",
                verbs: &[Verb::Create, Verb::Get],
            },
            Subresource {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: SUB_RO,
            },
            status("", "Pod", SUB_RO),
        ],
        Some(&["spec"]),
    ),
    kind(
        "",
        "Secret",
        "secrets",
        "secret",
        &[],
        ALL_VERBS,
        &[],
        &[],
        None,
    ),
    kind(
        "",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        ALL_VERBS,
        &[],
        &[],
        None,
    ),
    kind(
        "",
        "Service",
        "services",
        "service",
        &["svc"],
        ALL_VERBS,
        ALL,
        &[],
        None,
    ),
    // apps/v1
    kind(
        "apps",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        &["ds"],
        ALL_VERBS,
        ALL,
        &[status("apps", "DaemonSet", SUB_RW)],
        Some(TEMPLATE_SPEC),
    ),
    kind(
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        &["deploy"],
        ALL_VERBS,
        ALL,
        &[scale(SUB_RW), status("apps", "Deployment", SUB_RW)],
        Some(TEMPLATE_SPEC),
    ),
    kind(
        "apps",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        &["rs"],
        READ_VERBS,
        ALL,
        &[scale(SUB_RO), status("apps", "ReplicaSet", SUB_RO)],
        Some(TEMPLATE_SPEC),
    ),
    kind(
        "apps",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        &["sts"],
        ALL_VERBS,
        ALL,
        &[scale(SUB_RW), status("apps", "StatefulSet", SUB_RW)],
        Some(TEMPLATE_SPEC),
    ),
    // batch/v1
    kind(
        "batch",
        "CronJob",
        "cronjobs",
        "cronjob",
        &["cj"],
        ALL_VERBS,
        ALL,
        &[status("batch", "CronJob", SUB_RW)],
        Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
    ),
    kind(
        "batch",
        "Job",
        "jobs",
        "job",
        &[],
        ALL_VERBS,
        ALL,
        &[status("batch", "Job", SUB_RW)],
        Some(TEMPLATE_SPEC),
    ),
];

/// All served kinds.
pub fn all() -> &'static [ResourceKind] {
    KINDS
}

/// Lookup by URL coordinates: `("apps", "v1", "deployments")`; core group is `""`.
pub fn by_resource(group: &str, version: &str, plural: &str) -> Option<&'static ResourceKind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// Lookup by kind name (`Deployment`). Kind names are unique among served kinds.
pub fn by_kind(kind: &str) -> Option<&'static ResourceKind> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// Lookup by group and kind (`apps`, `Deployment`).
pub fn by_group_kind(group: &str, kind: &str) -> Option<&'static ResourceKind> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}

/// Lookup by `apiVersion` + `kind` as found in an object body.
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static ResourceKind> {
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
}

/// Lookup by short name (`deploy`, `po`, `svc`).
pub fn by_short_name(short: &str) -> Option<&'static ResourceKind> {
    KINDS.iter().find(|k| k.short_names.contains(&short))
}

/// Resolves what a user may type (`deployments`, `deployment`, `deploy`,
/// `Deployment`, `deployments.apps`), the way kubectl resolves resource arguments.
pub fn resolve(name: &str) -> Option<&'static ResourceKind> {
    let (resource, group) = match name.split_once('.') {
        Some((r, g)) => (r, Some(g)),
        None => (name, None),
    };
    KINDS.iter().find(|k| {
        group.is_none_or(|g| g == k.group)
            && (k.plural == resource
                || k.singular == resource
                || k.short_names.contains(&resource)
                || k.kind.eq_ignore_ascii_case(resource))
    })
}

/// Kinds in one category (`all`).
pub fn in_category(category: &str) -> Vec<&'static ResourceKind> {
    KINDS
        .iter()
        .filter(|k| k.categories.contains(&category))
        .collect()
}

/// The served `(group, version)` pairs, core (`""`) first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for k in KINDS {
        if !out.contains(&(k.group, k.version)) {
            out.push((k.group, k.version));
        }
    }
    out
}

/// Kinds of one group version, in discovery order.
pub fn kinds_in(group: &str, version: &str) -> Vec<&'static ResourceKind> {
    KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let d = by_resource("apps", "v1", "deployments").unwrap();
        assert_eq!(d.kind, "Deployment");
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(d.list_kind(), "DeploymentList");
        assert_eq!(d.qualified_kind(), "Deployment.apps");
        assert_eq!(d.qualified_resource(), "deployments.apps");
        assert!(d.tenant_writable);
        assert_eq!(by_kind("ConfigMap").unwrap().api_version(), "v1");
        assert_eq!(by_short_name("deploy").unwrap().kind, "Deployment");
        assert_eq!(by_short_name("po").unwrap().kind, "Pod");
        assert_eq!(by_short_name("cj").unwrap().group, "batch");
        assert!(by_resource("", "v1", "deployments").is_none());
        assert!(by_resource("apps", "v1beta1", "deployments").is_none());
        assert_eq!(
            by_api_version_kind("batch/v1", "Job").unwrap().plural,
            "jobs"
        );
        assert!(by_api_version_kind("v1", "Job").is_none());
        assert_eq!(by_group_kind("", "Service").unwrap().plural, "services");
    }

    #[test]
    fn resolve_like_kubectl() {
        for name in [
            "deployments",
            "deployment",
            "deploy",
            "Deployment",
            "deployments.apps",
        ] {
            assert_eq!(resolve(name).unwrap().kind, "Deployment", "{name}");
        }
        assert_eq!(resolve("svc").unwrap().kind, "Service");
        assert!(resolve("deployments.batch").is_none());
        assert_eq!(resolve("no").unwrap().kind, "Node");
        assert!(!resolve("nodes").unwrap().namespaced);
        assert!(resolve("persistentvolumes").is_none());
    }

    #[test]
    fn verbs_and_writability() {
        let rs = by_kind("ReplicaSet").unwrap();
        assert_eq!(rs.verbs, READ_VERBS);
        assert!(!rs.tenant_writable);
        let pod = by_kind("Pod").unwrap();
        assert!(pod.supports(Verb::Delete) && pod.supports(Verb::DeleteCollection));
        assert!(!pod.supports(Verb::Create) && !pod.tenant_writable);
        let ns = by_kind("Namespace").unwrap();
        assert!(!ns.namespaced && !ns.tenant_writable);
        assert!(by_kind("Event").unwrap().verbs == READ_VERBS);
        for k in [
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "Service",
            "ConfigMap",
            "Secret",
            "PersistentVolumeClaim",
            "ServiceAccount",
        ] {
            assert!(by_kind(k).unwrap().tenant_writable, "{k}");
        }
        assert_eq!(
            Verb::parse("deletecollection"),
            Some(Verb::DeleteCollection)
        );
        assert_eq!(Verb::parse("nope"), None);
    }

    #[test]
    fn subresources() {
        let d = by_kind("Deployment").unwrap();
        let s = d.subresource("scale").unwrap();
        assert_eq!((s.group, s.version, s.kind), ("autoscaling", "v1", "Scale"));
        assert_eq!(d.subresource("status").unwrap().kind, "Deployment");
        assert!(by_kind("DaemonSet").unwrap().subresource("scale").is_none());
        assert!(by_kind("Job").unwrap().subresource("status").is_some());
        let pod = by_kind("Pod").unwrap();
        assert_eq!(pod.subresource("log").unwrap().verbs, &[Verb::Get]);
        assert_eq!(pod.subresource("exec").unwrap().kind, "PodExecOptions");
        assert!(pod.subresource("status").is_some());
    }

    #[test]
    fn categories_and_group_versions() {
        let all: Vec<&str> = in_category("all").iter().map(|k| k.kind).collect();
        for k in [
            "Pod",
            "Service",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
        ] {
            assert!(all.contains(&k), "{k}");
        }
        assert!(!all.contains(&"ConfigMap"));
        assert_eq!(
            group_versions(),
            vec![("", "v1"), ("apps", "v1"), ("batch", "v1")]
        );
        assert_eq!(kinds_in("batch", "v1").len(), 2);
        assert_eq!(by_kind("CronJob").unwrap().pod_spec_path.unwrap().len(), 5);
    }
}
