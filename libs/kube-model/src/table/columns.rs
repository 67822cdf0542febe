//! Column definitions of each kind's `meta.k8s.io/v1` Table, as the API server declares them.

use serde_json::{Value, json};

/// One `columnDefinitions[]` entry. kubectl upper-cases `name` for its header and shows
/// `priority > 0` columns only with `-o wide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

impl Column {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

const fn col(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
    priority: i32,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace; it identifies the object in URLs.",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "string",
    "Time since the object's creationTimestamp.",
    0,
);
const CONTAINERS: Column = col(
    "Containers",
    "string",
    "Names of each container in the template.",
    1,
);
const IMAGES: Column = col(
    "Images",
    "string",
    "Images referenced by each container in the template.",
    1,
);
const SELECTOR: Column = col(
    "Selector",
    "string",
    "Label selector of the pods this object manages.",
    1,
);
const SITES: Column = col(
    "Sites",
    "string",
    "Ready pods out of the desired on each Manifold site (annotation manifold.dev/site-ready).",
    1,
);

const DEPLOYMENT: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "Number of ready pods out of the desired replicas.",
        0,
    ),
    col(
        "Up-to-date",
        "integer",
        "Total number of pods matching the newest pod template.",
        0,
    ),
    col(
        "Available",
        "integer",
        "Number of pods ready for at least minReadySeconds.",
        0,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
    SITES,
];

const STATEFULSET: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "Number of ready pods out of the desired replicas.",
        0,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SITES,
];

const DAEMONSET: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Number of nodes that should run the daemon pod.",
        0,
    ),
    col(
        "Current",
        "integer",
        "Number of nodes running at least one daemon pod that should.",
        0,
    ),
    col(
        "Ready",
        "integer",
        "Number of nodes with a ready daemon pod.",
        0,
    ),
    col(
        "Up-to-date",
        "integer",
        "Number of nodes running the updated daemon pod.",
        0,
    ),
    col(
        "Available",
        "integer",
        "Number of nodes with an available daemon pod.",
        0,
    ),
    col(
        "Node Selector",
        "string",
        "Node selector of the pod template.",
        0,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
    SITES,
];

const REPLICASET: &[Column] = &[
    NAME,
    col("Desired", "integer", "Number of desired pods.", 0),
    col("Current", "integer", "Number of actual pods.", 0),
    col("Ready", "integer", "Number of ready pods.", 0),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job.", 0),
    col(
        "Completions",
        "string",
        "Succeeded pods out of the desired completions.",
        0,
    ),
    col(
        "Duration",
        "string",
        "Time the job took to complete, or has been running.",
        0,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const CRONJOB: &[Column] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format.", 0),
    col("Timezone", "string", "The time zone of the schedule.", 0),
    col(
        "Suspend",
        "boolean",
        "Whether subsequent executions are suspended.",
        0,
    ),
    col("Active", "integer", "Number of currently running jobs.", 0),
    col(
        "Last Schedule",
        "string",
        "When the job was last scheduled.",
        0,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", "How the service is exposed.", 0),
    col(
        "Cluster-IP",
        "string",
        "The virtual IP of the service inside the cluster.",
        0,
    ),
    col(
        "External-IP",
        "string",
        "External addresses of the service.",
        0,
    ),
    col("Port(s)", "string", "Ports exposed by the service.", 0),
    AGE,
    SELECTOR,
];

const CONFIGMAP: &[Column] = &[
    NAME,
    col("Data", "integer", "Number of data and binaryData keys.", 0),
    AGE,
];

const SECRET: &[Column] = &[
    NAME,
    col("Type", "string", "The type of the secret.", 0),
    col("Data", "integer", "Number of data keys.", 0),
    AGE,
];

const PVC: &[Column] = &[
    NAME,
    col("Status", "string", "Phase of the claim.", 0),
    col("Volume", "string", "Name of the bound volume.", 0),
    col("Capacity", "string", "Capacity of the bound volume.", 0),
    col(
        "Access Modes",
        "string",
        "Access modes of the bound volume.",
        0,
    ),
    col("StorageClass", "string", "Storage class of the claim.", 0),
    col(
        "VolumeAttributesClass",
        "string",
        "Volume attributes class of the claim.",
        0,
    ),
    AGE,
    col(
        "VolumeMode",
        "string",
        "Whether the volume is a filesystem or a block device.",
        1,
    ),
];

const SERVICEACCOUNT: &[Column] = &[
    NAME,
    col("Secrets", "integer", "Number of referenced secrets.", 0),
    AGE,
];

const EVENT: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "Time since the event was last observed.",
        0,
    ),
    col("Type", "string", "Type of the event (Normal, Warning).", 0),
    col(
        "Reason",
        "string",
        "Short machine-readable reason for the event.",
        0,
    ),
    col("Object", "string", "The object the event is about.", 0),
    col(
        "Subobject",
        "string",
        "The part of the object the event is about.",
        1,
    ),
    col(
        "Source",
        "string",
        "The component that reported the event.",
        1,
    ),
    col(
        "Message",
        "string",
        "Human-readable description of the event.",
        0,
    ),
    col(
        "First Seen",
        "string",
        "Time since the event was first observed.",
        1,
    ),
    col("Count", "integer", "Number of times the event occurred.", 1),
    Column {
        priority: 1,
        ..NAME
    },
];

const POD: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "Ready containers out of all containers.",
        0,
    ),
    col(
        "Status",
        "string",
        "Aggregated status of the pod's containers.",
        0,
    ),
    col(
        "Restarts",
        "string",
        "Container restarts, and how long ago the last one was.",
        0,
    ),
    AGE,
    col("IP", "string", "IP address of the pod.", 1),
    col("Node", "string", "Node the pod runs on.", 1),
    col(
        "Nominated Node",
        "string",
        "Node the scheduler nominated for the pod.",
        1,
    ),
    col(
        "Readiness Gates",
        "string",
        "Readiness gates that are true, out of all gates.",
        1,
    ),
    col(
        "Site",
        "string",
        "Manifold site the pod runs on (label manifold.dev/site).",
        1,
    ),
];

const NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "Phase of the namespace.", 0),
    AGE,
];

const NODE: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "Ready, NotReady, or Unknown while the node's site is offline.",
        0,
    ),
    col("Roles", "string", "The roles of the node.", 0),
    AGE,
    col("Version", "string", "Kubelet version.", 0),
    col(
        "Site",
        "string",
        "Manifold site the node belongs to (label manifold.dev/site).",
        1,
    ),
];

const DEFAULT: &[Column] = &[NAME, AGE];

/// The columns of a kind's Table; unknown kinds get Name and Age.
pub fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Deployment" => DEPLOYMENT,
        "StatefulSet" => STATEFULSET,
        "DaemonSet" => DAEMONSET,
        "ReplicaSet" => REPLICASET,
        "Job" => JOB,
        "CronJob" => CRONJOB,
        "Service" => SERVICE,
        "ConfigMap" => CONFIGMAP,
        "Secret" => SECRET,
        "PersistentVolumeClaim" => PVC,
        "ServiceAccount" => SERVICEACCOUNT,
        "Event" => EVENT,
        "Pod" => POD,
        "Namespace" => NAMESPACE,
        "Node" => NODE,
        _ => DEFAULT,
    }
}
