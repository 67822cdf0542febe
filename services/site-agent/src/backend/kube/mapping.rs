//! Translation between vK8s objects and the physical cluster: the physical namespace
//! of a vK8s, ownership labels, the object as applied (server fields stripped,
//! ownership added), and the way back for pods and workload status.
//!
//! Pure functions, so they are unit-tested without a cluster.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::BackendError;
use crate::model::{
    DesiredObject, ObjectKey, ObservedObject, ObservedPod, PodId, VirtualCluster, well_known,
};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "manifold-agent";

/// The label selector of everything the agent manages.
pub fn managed_selector() -> String {
    format!(
        "{}={}",
        well_known::MANAGED_BY_LABEL,
        well_known::MANAGED_BY_VALUE
    )
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Lowercase base32 (RFC 4648 alphabet, lowercased) of the first `n` characters.
fn base32(bytes: &[u8], n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(n);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 && out.len() < n {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
        if out.len() >= n {
            break;
        }
    }
    out
}

/// The physical namespace of a vK8s: `mf-<tenant>-<namespace>-<vk8s>`.
///
/// That form is used only when it is unambiguous (no id contains `-`) and fits in
/// 63 characters. Otherwise the name is `mfh-<readable prefix>-<hash>`, where the
/// hash (50 bits of SHA-256 of the full vK8s name) makes it unique; the distinct
/// prefix keeps the two forms from ever colliding. The namespace also carries the
/// exact vK8s name as an annotation, checked before use.
pub fn physical_namespace(vc: &VirtualCluster) -> String {
    let plain = format!("mf-{}-{}-{}", vc.tenant(), vc.namespace(), vc.name());
    let unambiguous = [vc.tenant(), vc.namespace(), vc.name()]
        .iter()
        .all(|id| !id.contains('-'));
    if unambiguous && plain.len() <= 63 {
        return plain;
    }
    let hash = base32(&digest(&vc.to_string()), 10);
    let readable = format!("{}-{}-{}", vc.tenant(), vc.namespace(), vc.name());
    // "mfh-" + readable + "-" + hash ≤ 63.
    let room = 63 - 4 - 1 - hash.len();
    let cut: String = readable.chars().take(room).collect();
    format!("mfh-{}-{hash}", cut.trim_end_matches('-'))
}

/// The value of the `manifold.dev/virtual-cluster` label: `<tenant>.<namespace>.<vk8s>`
/// (ids never contain dots, so this is unambiguous), or `h-<hash>` when longer than a
/// label value may be.
pub fn virtual_cluster_label(vc: &VirtualCluster) -> String {
    let dotted = format!("{}.{}.{}", vc.tenant(), vc.namespace(), vc.name());
    if dotted.len() <= 63 {
        dotted
    } else {
        format!("h-{}", &hex::encode(digest(&vc.to_string()))[..40])
    }
}

/// The Namespace object the agent creates for a vK8s; with the site's Pod
/// Security level (when known) as the namespace's enforce label, so the site's
/// own admission refuses what the level forbids.
pub fn namespace_object(vc: &VirtualCluster, pod_security: Option<&str>) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert(
        well_known::MANAGED_BY_LABEL.into(),
        well_known::MANAGED_BY_VALUE.into(),
    );
    labels.insert(
        well_known::VIRTUAL_CLUSTER_LABEL.into(),
        virtual_cluster_label(vc).into(),
    );
    if let Some(level) = pod_security {
        labels.insert(well_known::POD_SECURITY_ENFORCE_LABEL.into(), level.into());
        labels.insert(
            well_known::POD_SECURITY_ENFORCE_VERSION_LABEL.into(),
            "latest".into(),
        );
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": physical_namespace(vc),
            "labels": labels,
            "annotations": {
                well_known::VIRTUAL_CLUSTER_ANNOTATION: vc.to_string(),
            },
        },
    })
}

/// Whether a namespace's enforce label already says `pod_security` (nothing
/// to say counts as yes).
pub fn pod_security_labelled(namespace: &Value, pod_security: Option<&str>) -> bool {
    let Some(level) = pod_security else {
        return true;
    };
    namespace
        .pointer("/metadata/labels")
        .and_then(|l| l.get(well_known::POD_SECURITY_ENFORCE_LABEL))
        .and_then(Value::as_str)
        == Some(level)
}

/// Whether the agent applied this object itself (server-side apply under
/// [`FIELD_MANAGER`]), as opposed to something a controller on the site made from
/// what the agent applied: a Deployment's ReplicaSets carry the template's
/// ownership labels and the Deployment's annotations, but a controller owner and
/// no apply of ours. Only what the agent applied is the agent's to prune, delete
/// or report.
pub fn applied_by_agent(object: &Value) -> bool {
    let controlled = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        });
    if controlled {
        return false;
    }
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| {
            entries.iter().any(|e| {
                e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
                    && e.get("operation").and_then(Value::as_str) == Some("Apply")
            })
        })
}

/// The vK8s a managed object (or namespace) belongs to, from its annotation.
pub fn virtual_cluster_of(object: &Value) -> Option<VirtualCluster> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(well_known::VIRTUAL_CLUSTER_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| VirtualCluster::parse(s).ok())
}

/// The vK8s named by an object's `manifold.dev/virtual-cluster` label when it has the
/// dotted form (the hashed form needs the namespace's annotation).
pub fn virtual_cluster_from_labels(object: &Value) -> Option<VirtualCluster> {
    let label = object
        .pointer("/metadata/labels")?
        .get(well_known::VIRTUAL_CLUSTER_LABEL)?
        .as_str()?;
    let mut parts = label.split('.');
    let (t, n, v) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    VirtualCluster::new(t, n, v).ok()
}

/// Metadata fields the API server owns; never applied.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "finalizers",
    "generateName",
];

/// Labels set by the vK8s' own Job controller emulation, if any: they would not match
/// the physical Job's UID.
const JOB_GENERATED_LABELS: &[&str] = &["controller-uid", "batch.kubernetes.io/controller-uid"];

fn object_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let map = v.as_object_mut()?;
    let entry = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

fn add_ownership_labels(metadata: &mut Value, vc_label: &str) {
    if let Some(labels) = object_mut(metadata, "labels") {
        labels.insert(
            well_known::MANAGED_BY_LABEL.into(),
            well_known::MANAGED_BY_VALUE.into(),
        );
        labels.insert(well_known::VIRTUAL_CLUSTER_LABEL.into(), vc_label.into());
    }
}

/// The pod template path of a kind, when it has one.
fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// The object to server-side apply for `desired`: in the physical namespace, without
/// server-owned fields and status, with ownership labels (also on pod templates, so
/// the pods can be watched) and the vK8s name, revision and generation as annotations.
pub fn to_physical(desired: &DesiredObject) -> Result<Value, BackendError> {
    let key = &desired.key;
    if key.namespace.is_empty() {
        return Err(BackendError::Invalid(format!(
            "{key}: cluster-scoped objects are not replicated to sites"
        )));
    }
    if key.namespace != key.virtual_cluster.namespace() {
        return Err(BackendError::Invalid(format!(
            "{key}: a vK8s of namespace {} cannot hold objects of namespace {}",
            key.virtual_cluster.namespace(),
            key.namespace
        )));
    }
    let vc = &key.virtual_cluster;
    let vc_label = virtual_cluster_label(vc);
    let mut obj = desired.object.clone();
    let Some(map) = obj.as_object_mut() else {
        return Err(BackendError::Invalid(format!("{key}: not a JSON object")));
    };
    map.remove("status");
    map.insert("apiVersion".into(), key.api_version.clone().into());
    map.insert("kind".into(), key.kind.clone().into());
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = metadata.as_object_mut() {
        for field in SERVER_METADATA {
            m.remove(*field);
        }
        m.insert("name".into(), key.name.clone().into());
        m.insert("namespace".into(), physical_namespace(vc).into());
    }
    add_ownership_labels(metadata, &vc_label);
    if let Some(annotations) = object_mut(metadata, "annotations") {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        annotations.insert(
            well_known::VIRTUAL_CLUSTER_ANNOTATION.into(),
            vc.to_string().into(),
        );
        annotations.insert(
            well_known::REVISION_ANNOTATION.into(),
            desired.revision.to_string().into(),
        );
        annotations.insert(
            well_known::GENERATION_ANNOTATION.into(),
            desired.generation().to_string().into(),
        );
    }
    if let Some(pointer) = template_pointer(&key.kind)
        && let Some(template) = obj.pointer_mut(pointer).and_then(Value::as_object_mut)
    {
        let meta = template
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        add_ownership_labels(meta, &vc_label);
        if key.kind == "Job"
            && let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut)
        {
            for l in JOB_GENERATED_LABELS {
                labels.remove(*l);
            }
        }
    }
    match key.kind.as_str() {
        "Service" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                // Cluster IPs and node ports are the site's to assign.
                if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                    spec.remove("clusterIP");
                    spec.remove("clusterIPs");
                }
                spec.remove("healthCheckNodePort");
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.remove("nodePort");
                    }
                }
            }
        }
        "PersistentVolumeClaim" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("volumeName");
            }
        }
        "Job" => {
            let manual = obj
                .pointer("/spec/manualSelector")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !manual && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("selector");
            }
        }
        _ => {}
    }
    Ok(obj)
}

/// Removes the agent's ownership labels from a label map.
fn strip_ownership(labels: &mut Map<String, Value>) {
    labels.remove(well_known::MANAGED_BY_LABEL);
    labels.remove(well_known::VIRTUAL_CLUSTER_LABEL);
}

/// A physical pod of vK8s `vc`, as the vK8s shows it: namespace = the Manifold
/// namespace, ownership labels replaced by `manifold.dev/site=<site>`, the physical
/// node name kept. `None` when the object is not a usable pod.
pub fn pod_to_virtual(pod: &Value, vc: &VirtualCluster, site: &str) -> Option<ObservedPod> {
    let name = pod.pointer("/metadata/name")?.as_str()?.to_owned();
    let mut object = pod.clone();
    let metadata = object.get_mut("metadata")?.as_object_mut()?;
    metadata.insert("namespace".into(), vc.namespace().into());
    metadata.remove("managedFields");
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(labels) = labels.as_object_mut() {
        strip_ownership(labels);
        labels.insert(well_known::SITE_LABEL.into(), site.into());
    }
    let str_at = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let restarts = object
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                .sum::<i64>()
        })
        .unwrap_or(0);
    let owner = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .or_else(|| refs.first())
        })
        .cloned()
        .unwrap_or(Value::Null);
    let owner_field = |f: &str| {
        owner
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    Some(ObservedPod {
        id: PodId {
            virtual_cluster: vc.clone(),
            namespace: vc.namespace().to_owned(),
            name,
        },
        node: str_at("/spec/nodeName"),
        phase: str_at("/status/phase"),
        pod_ip: str_at("/status/podIP"),
        restarts: i32::try_from(restarts).unwrap_or(i32::MAX),
        owner_kind: owner_field("kind"),
        owner_name: owner_field("name"),
        object,
    })
}

fn annotation_i64(object: &Value, key: &str) -> Option<i64> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// The observed status of a managed object, in vK8s terms. `observedGeneration`
/// counts physical generations on the site; it is translated to the vK8s generation
/// recorded at apply time (one less while the site has not caught up), so that
/// `kubectl rollout status` on the vK8s waits for every site.
pub fn status_to_virtual(object: &Value) -> Option<ObservedObject> {
    let vc = virtual_cluster_of(object)?;
    let status = object.get("status")?.clone();
    let mut status = match status {
        Value::Object(m) => m,
        _ => return None,
    };
    let revision = annotation_i64(object, well_known::REVISION_ANNOTATION).unwrap_or(0);
    if let Some(observed) = status.get("observedGeneration").and_then(Value::as_i64) {
        let physical = object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(observed);
        let virtual_generation =
            annotation_i64(object, well_known::GENERATION_ANNOTATION).unwrap_or(physical);
        let translated = if observed >= physical {
            virtual_generation
        } else {
            (virtual_generation - 1).max(0)
        };
        status.insert("observedGeneration".into(), translated.into());
    }
    Some(ObservedObject {
        key: ObjectKey {
            api_version: object.get("apiVersion")?.as_str()?.to_owned(),
            kind: object.get("kind")?.as_str()?.to_owned(),
            namespace: vc.namespace().to_owned(),
            name: object.pointer("/metadata/name")?.as_str()?.to_owned(),
            virtual_cluster: vc,
        },
        status: Value::Object(status),
        observed_revision: revision,
        failure: None,
    })
}

/// A kind the agent replicates, with the REST plural of its resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownKind {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// Whether its `.status` is reported back.
    pub has_status: bool,
}

/// The kinds a vK8s serves for placement (see DESIGN.md), plus a few common
/// namespaced ones. Other kinds are resolved by discovery when first applied.
pub const KNOWN_KINDS: &[KnownKind] = &[
    KnownKind {
        api_version: "apps/v1",
        kind: "Deployment",
        plural: "deployments",
        has_status: true,
    },
    KnownKind {
        api_version: "apps/v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        has_status: true,
    },
    KnownKind {
        api_version: "apps/v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        has_status: true,
    },
    KnownKind {
        api_version: "apps/v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        has_status: true,
    },
    KnownKind {
        api_version: "batch/v1",
        kind: "Job",
        plural: "jobs",
        has_status: true,
    },
    KnownKind {
        api_version: "batch/v1",
        kind: "CronJob",
        plural: "cronjobs",
        has_status: true,
    },
    KnownKind {
        api_version: "v1",
        kind: "Service",
        plural: "services",
        has_status: true,
    },
    KnownKind {
        api_version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        has_status: true,
    },
    KnownKind {
        api_version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        has_status: false,
    },
    KnownKind {
        api_version: "v1",
        kind: "Secret",
        plural: "secrets",
        has_status: false,
    },
    KnownKind {
        api_version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        has_status: false,
    },
];

pub fn known_kind(api_version: &str, kind: &str) -> Option<&'static KnownKind> {
    KNOWN_KINDS
        .iter()
        .find(|k| k.api_version == api_version && k.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vc(t: &str, n: &str, v: &str) -> VirtualCluster {
        VirtualCluster::new(t, n, v).unwrap()
    }

    #[test]
    fn namespaces_carry_the_sites_pod_security_level_when_known() {
        let v = vc("acme", "shop", "demo");
        let ns = namespace_object(&v, Some("restricted"));
        let labels = &ns["metadata"]["labels"];
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(
            labels["pod-security.kubernetes.io/enforce-version"],
            "latest"
        );
        assert_eq!(labels["manifold.dev/managed-by"], "manifold");
        assert!(pod_security_labelled(&ns, Some("restricted")));
        assert!(!pod_security_labelled(&ns, Some("baseline")));
        // Not told: no label, and nothing to change.
        let plain = namespace_object(&v, None);
        assert!(
            plain["metadata"]["labels"]
                .get("pod-security.kubernetes.io/enforce")
                .is_none()
        );
        assert!(pod_security_labelled(&plain, None));
        assert!(!pod_security_labelled(&plain, Some("baseline")));
    }

    #[test]
    fn namespace_names_are_readable_when_unambiguous() {
        assert_eq!(
            physical_namespace(&vc("acme", "shop", "demo")),
            "mf-acme-shop-demo"
        );
    }

    #[test]
    fn namespace_names_never_collide() {
        // Joined with '-', these two would both read mf-a-b-c-d.
        let a = physical_namespace(&vc("a-b", "c", "d"));
        let b = physical_namespace(&vc("a", "b-c", "d"));
        assert_ne!(a, b);
        assert!(a.starts_with("mfh-a-b-c-d-"));
        // Nor can a hashed name equal a plain one.
        assert!(!physical_namespace(&vc("mfh", "x", "y")).starts_with("mfh-"));
        // Long ids are cut to 63 characters and stay distinct.
        let long = "x".repeat(63);
        let l1 = physical_namespace(&vc(&long, &long, "one"));
        let l2 = physical_namespace(&vc(&long, &long, "two"));
        assert!(l1.len() <= 63 && l2.len() <= 63);
        assert_ne!(l1, l2);
        for name in [&a, &b, &l1, &l2] {
            assert!(
                name.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            );
            assert!(!name.ends_with('-'));
        }
    }

    #[test]
    fn only_what_the_agent_applied_is_its_own() {
        let applied = json!({"metadata": {"managedFields": [
            {"manager": "manifold-agent", "operation": "Apply"},
            {"manager": "kube-controller-manager", "operation": "Update"}]}});
        assert!(applied_by_agent(&applied));
        // A Deployment's ReplicaSet: labels and annotations copied, made by the
        // controller, owned by the Deployment.
        let replica_set = json!({"metadata": {
            "labels": {well_known::MANAGED_BY_LABEL: "manifold"},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]}});
        assert!(!applied_by_agent(&replica_set));
        // Even one the agent once applied is not its own once a controller owns it.
        let adopted = json!({"metadata": {
            "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": true}],
            "managedFields": [{"manager": "manifold-agent", "operation": "Apply"}]}});
        assert!(!applied_by_agent(&adopted));
        let updated_only = json!({"metadata": {"managedFields": [
            {"manager": "manifold-agent", "operation": "Update"}]}});
        assert!(!applied_by_agent(&updated_only));
        assert!(!applied_by_agent(&json!({"metadata": {}})));
    }

    #[test]
    fn virtual_cluster_labels_are_valid_label_values() {
        assert_eq!(
            virtual_cluster_label(&vc("acme", "shop", "demo")),
            "acme.shop.demo"
        );
        let long = "y".repeat(40);
        let l = virtual_cluster_label(&vc(&long, &long, "v"));
        assert!(l.len() <= 63 && l.starts_with("h-"));
    }

    fn desired(kind: &str, api_version: &str, object: Value) -> DesiredObject {
        let key = ObjectKey {
            virtual_cluster: vc("acme", "shop", "demo"),
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: "shop".into(),
            name: object["metadata"]["name"].as_str().unwrap().into(),
        };
        DesiredObject::new(key, 42, object).unwrap()
    }

    #[test]
    fn labels_name_their_virtual_cluster() {
        let v = vc("acme", "shop", "demo");
        let labelled = json!({"metadata": {"labels": {well_known::VIRTUAL_CLUSTER_LABEL: virtual_cluster_label(&v)}}});
        assert_eq!(virtual_cluster_from_labels(&labelled), Some(v));
        let hashed = json!({"metadata": {"labels": {well_known::VIRTUAL_CLUSTER_LABEL: "h-0123"}}});
        assert_eq!(virtual_cluster_from_labels(&hashed), None);
    }

    #[test]
    fn physical_objects_carry_ownership_and_no_server_fields() {
        let d = desired(
            "Deployment",
            "apps/v1",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                             "generation": 3, "managedFields": [], "labels": {"app": "web"},
                             "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
                "status": {"replicas": 6}
            }),
        );
        let p = to_physical(&d).unwrap();
        assert_eq!(p["metadata"]["namespace"], "mf-acme-shop-demo");
        assert!(p["metadata"].get("uid").is_none());
        assert!(p["metadata"].get("resourceVersion").is_none());
        assert!(p["metadata"].get("managedFields").is_none());
        assert!(p.get("status").is_none());
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        assert_eq!(
            p["metadata"]["labels"][well_known::MANAGED_BY_LABEL],
            "manifold"
        );
        assert_eq!(
            p["metadata"]["labels"][well_known::VIRTUAL_CLUSTER_LABEL],
            "acme.shop.demo"
        );
        assert_eq!(
            p["metadata"]["annotations"][well_known::REVISION_ANNOTATION],
            "42"
        );
        assert_eq!(
            p["metadata"]["annotations"][well_known::GENERATION_ANNOTATION],
            "3"
        );
        assert_eq!(
            p["metadata"]["annotations"][well_known::VIRTUAL_CLUSTER_ANNOTATION],
            "tenants/acme/namespaces/shop/virtualClusters/demo"
        );
        assert!(
            p["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none()
        );
        let tl = &p["spec"]["template"]["metadata"]["labels"];
        assert_eq!(tl["app"], "web");
        assert_eq!(tl[well_known::MANAGED_BY_LABEL], "manifold");
        // The selector is untouched: it still selects the (labelled) pods.
        assert_eq!(
            p["spec"]["selector"],
            json!({"matchLabels": {"app": "web"}})
        );
    }

    #[test]
    fn services_lose_site_assigned_fields_and_cluster_scope_is_refused() {
        let d = desired(
            "Service",
            "v1",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                            "ports": [{"port": 80, "nodePort": 30001}]}}),
        );
        let p = to_physical(&d).unwrap();
        assert!(p["spec"].get("clusterIP").is_none());
        assert!(p["spec"]["ports"][0].get("nodePort").is_none());
        let headless = desired(
            "Service",
            "v1",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"}, "spec": {"clusterIP": "None"}}),
        );
        assert_eq!(to_physical(&headless).unwrap()["spec"]["clusterIP"], "None");

        let mut cluster_scoped = desired(
            "ClusterRole",
            "rbac.authorization.k8s.io/v1",
            json!({"metadata": {"name": "x"}}),
        );
        cluster_scoped.key.namespace = String::new();
        assert!(matches!(
            to_physical(&cluster_scoped),
            Err(BackendError::Invalid(_))
        ));
    }

    #[test]
    fn cronjob_templates_are_labelled() {
        let d = desired(
            "CronJob",
            "batch/v1",
            json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}),
        );
        let p = to_physical(&d).unwrap();
        assert_eq!(
            p["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
                [well_known::MANAGED_BY_LABEL],
            "manifold"
        );
    }

    #[test]
    fn pods_translate_back_to_virtual_terms() {
        let v = vc("acme", "shop", "demo");
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-7c5d-abcde", "namespace": "mf-acme-shop-demo",
                         "managedFields": [{}],
                         "labels": {"app": "web", well_known::MANAGED_BY_LABEL: "manifold",
                                    well_known::VIRTUAL_CLUSTER_LABEL: "acme.shop.demo"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7c5d", "controller": true}]},
            "spec": {"nodeName": "worker-3"},
            "status": {"phase": "Running", "podIP": "10.1.2.3",
                       "containerStatuses": [{"restartCount": 2}, {"restartCount": 1}]}
        });
        let p = pod_to_virtual(&pod, &v, "pa2-par").unwrap();
        assert_eq!(p.id.namespace, "shop");
        assert_eq!(p.id.name, "web-7c5d-abcde");
        assert_eq!(p.node, "worker-3");
        assert_eq!(p.phase, "Running");
        assert_eq!(p.pod_ip, "10.1.2.3");
        assert_eq!(p.restarts, 3);
        assert_eq!(
            (p.owner_kind.as_str(), p.owner_name.as_str()),
            ("ReplicaSet", "web-7c5d")
        );
        let labels = &p.object["metadata"]["labels"];
        assert_eq!(labels[well_known::SITE_LABEL], "pa2-par");
        assert!(labels.get(well_known::MANAGED_BY_LABEL).is_none());
        assert_eq!(p.object["metadata"]["namespace"], "shop");
        assert!(p.object["metadata"].get("managedFields").is_none());
        assert_eq!(p.object["spec"]["nodeName"], "worker-3");
    }

    #[test]
    fn status_generation_is_translated_to_the_vk8s() {
        let object = |observed: i64| {
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "mf-acme-shop-demo", "generation": 12,
                             "annotations": {
                                 well_known::VIRTUAL_CLUSTER_ANNOTATION: "tenants/acme/namespaces/shop/virtualClusters/demo",
                                 well_known::REVISION_ANNOTATION: "99",
                                 well_known::GENERATION_ANNOTATION: "4"}},
                "status": {"observedGeneration": observed, "replicas": 2}
            })
        };
        let caught_up = status_to_virtual(&object(12)).unwrap();
        assert_eq!(caught_up.status["observedGeneration"], 4);
        assert_eq!(caught_up.observed_revision, 99);
        assert_eq!(caught_up.key.namespace, "shop");
        assert_eq!(caught_up.key.name, "web");
        assert_eq!(caught_up.key.virtual_cluster.name(), "demo");
        let behind = status_to_virtual(&object(11)).unwrap();
        assert_eq!(behind.status["observedGeneration"], 3);
        assert!(status_to_virtual(&json!({"metadata": {"name": "x"}, "status": {}})).is_none());
    }
}
