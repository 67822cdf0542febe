//! Per-kind list semantics (merge keys, sets, atomic lists) used by strategic merge and server-side apply.

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// A list of objects identified by this key (`containers` by `name`).
    Map(&'static str),
    /// A list of scalars merged as a set (`finalizers`).
    Set,
    /// Replaced as a whole.
    Atomic,
}

/// What is known about one field of an object type.
#[derive(Debug, Clone, Copy)]
pub enum FieldKind {
    /// A nested object with its own schema.
    Struct(&'static Schema),
    /// A list, and the schema of its items when they are objects.
    List(ListType, Option<&'static Schema>),
}

/// The fields of one object type that need more than "maps merge, lists replace".
#[derive(Debug)]
pub struct Schema {
    fields: &'static [(&'static str, FieldKind)],
}

impl Schema {
    pub fn field(&self, name: &str) -> Option<&'static FieldKind> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, k)| k)
    }

    /// The schema of a nested object field.
    pub fn child(&self, name: &str) -> Option<&'static Schema> {
        match self.field(name)? {
            FieldKind::Struct(s) => Some(s),
            FieldKind::List(..) => None,
        }
    }

    /// The list semantics of a field; unknown lists are atomic.
    pub fn list(&self, name: &str) -> (ListType, Option<&'static Schema>) {
        match self.field(name) {
            Some(FieldKind::List(t, item)) => (*t, *item),
            _ => (ListType::Atomic, None),
        }
    }
}

use FieldKind::{List, Struct};
use ListType::{Map, Set};

const fn by(key: &'static str) -> FieldKind {
    List(Map(key), None)
}

static CONTAINER: Schema = Schema {
    fields: &[
        ("env", by("name")),
        ("ports", by("containerPort")),
        ("volumeMounts", by("mountPath")),
        ("volumeDevices", by("devicePath")),
    ],
};

static POD_SPEC: Schema = Schema {
    fields: &[
        ("containers", List(Map("name"), Some(&CONTAINER))),
        ("initContainers", List(Map("name"), Some(&CONTAINER))),
        ("ephemeralContainers", List(Map("name"), Some(&CONTAINER))),
        ("volumes", by("name")),
        ("imagePullSecrets", by("name")),
        ("resourceClaims", by("name")),
        ("schedulingGates", by("name")),
        ("hostAliases", by("ip")),
        ("topologySpreadConstraints", by("topologyKey")),
    ],
};

static OBJECT_META: Schema = Schema {
    fields: &[
        ("ownerReferences", by("uid")),
        ("finalizers", List(Set, None)),
    ],
};

static POD_TEMPLATE: Schema = Schema {
    fields: &[
        ("metadata", Struct(&OBJECT_META)),
        ("spec", Struct(&POD_SPEC)),
    ],
};

static CONDITIONED_STATUS: Schema = Schema {
    fields: &[("conditions", by("type"))],
};

static WORKLOAD_SPEC: Schema = Schema {
    fields: &[("template", Struct(&POD_TEMPLATE))],
};

static WORKLOAD: Schema = Schema {
    fields: &[
        ("metadata", Struct(&OBJECT_META)),
        ("spec", Struct(&WORKLOAD_SPEC)),
        ("status", Struct(&CONDITIONED_STATUS)),
    ],
};

static JOB_TEMPLATE: Schema = Schema {
    fields: &[
        ("metadata", Struct(&OBJECT_META)),
        ("spec", Struct(&WORKLOAD_SPEC)),
    ],
};

static CRONJOB_SPEC: Schema = Schema {
    fields: &[("jobTemplate", Struct(&JOB_TEMPLATE))],
};

static CRONJOB: Schema = Schema {
    fields: &[
        ("metadata", Struct(&OBJECT_META)),
        ("spec", Struct(&CRONJOB_SPEC)),
    ],
};

static POD: Schema = Schema {
    fields: &[
        ("metadata", Struct(&OBJECT_META)),
        ("spec", Struct(&POD_SPEC)),
        ("status", Struct(&CONDITIONED_STATUS)),
    ],
};

static SERVICE_SPEC: Schema = Schema {
    fields: &[("ports", by("port"))],
};

static SERVICE: Schema = Schema {
    fields: &[
        ("metadata", Struct(&OBJECT_META)),
        ("spec", Struct(&SERVICE_SPEC)),
        ("status", Struct(&CONDITIONED_STATUS)),
    ],
};

static SERVICE_ACCOUNT: Schema = Schema {
    fields: &[("metadata", Struct(&OBJECT_META)), ("secrets", by("name"))],
};

static WITH_CONDITIONS: Schema = Schema {
    fields: &[
        ("metadata", Struct(&OBJECT_META)),
        ("status", Struct(&CONDITIONED_STATUS)),
    ],
};

static META_ONLY: Schema = Schema {
    fields: &[("metadata", Struct(&OBJECT_META))],
};

/// The merge schema of a kind; kinds without special lists get the ObjectMeta-only schema.
pub fn schema_for_kind(kind: &str) -> &'static Schema {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => &WORKLOAD,
        "CronJob" => &CRONJOB,
        "Pod" => &POD,
        "Service" => &SERVICE,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "PersistentVolumeClaim" | "Namespace" => &WITH_CONDITIONS,
        _ => &META_ONLY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(kind: &str, path: &[&str]) -> Option<&'static Schema> {
        path.iter()
            .try_fold(schema_for_kind(kind), |s, p| s.child(p))
    }

    #[test]
    fn pod_spec_locations() {
        for (kind, path) in [
            ("Deployment", &["spec", "template", "spec"][..]),
            ("StatefulSet", &["spec", "template", "spec"][..]),
            ("DaemonSet", &["spec", "template", "spec"][..]),
            ("ReplicaSet", &["spec", "template", "spec"][..]),
            ("Job", &["spec", "template", "spec"][..]),
            (
                "CronJob",
                &["spec", "jobTemplate", "spec", "template", "spec"][..],
            ),
            ("Pod", &["spec"][..]),
        ] {
            let spec = walk(kind, path).unwrap_or_else(|| panic!("{kind}"));
            let (t, item) = spec.list("containers");
            assert_eq!(t, ListType::Map("name"), "{kind}");
            assert_eq!(item.unwrap().list("env").0, ListType::Map("name"));
        }
    }

    #[test]
    fn merge_keys() {
        let spec = walk("Deployment", &["spec", "template", "spec"]).unwrap();
        assert_eq!(spec.list("hostAliases").0, ListType::Map("ip"));
        assert_eq!(
            spec.list("topologySpreadConstraints").0,
            ListType::Map("topologyKey")
        );
        assert_eq!(spec.list("tolerations").0, ListType::Atomic);
        assert_eq!(spec.list("readinessGates").0, ListType::Atomic);
        let c = spec.list("containers").1.unwrap();
        assert_eq!(c.list("ports").0, ListType::Map("containerPort"));
        assert_eq!(c.list("volumeMounts").0, ListType::Map("mountPath"));
        assert_eq!(c.list("volumeDevices").0, ListType::Map("devicePath"));
        for atomic in ["args", "command", "envFrom"] {
            assert_eq!(c.list(atomic).0, ListType::Atomic);
        }
        assert_eq!(
            walk("Service", &["spec"]).unwrap().list("ports").0,
            ListType::Map("port")
        );
        let meta = walk("ConfigMap", &["metadata"]).unwrap();
        assert_eq!(meta.list("finalizers").0, ListType::Set);
        assert_eq!(meta.list("ownerReferences").0, ListType::Map("uid"));
        assert_eq!(
            walk("Deployment", &["status"])
                .unwrap()
                .list("conditions")
                .0,
            ListType::Map("type")
        );
        assert!(walk("ConfigMap", &["data"]).is_none());
    }
}
