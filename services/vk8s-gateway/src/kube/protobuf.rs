//! Request bodies in the Kubernetes protobuf encoding
//! (`application/vnd.kubernetes.protobuf`), which client-go's typed clients
//! send since 1.31 (kubectl's `create configmap|secret|deployment|…` and
//! `auth can-i` among them).
//!
//! The envelope is the magic `k8s\0` and a `runtime.Unknown` message
//! (`typeMeta`, `raw`); `raw` is the object. The object is decoded against
//! field tables of the kinds those clients create and turned into the JSON
//! the rest of the gateway works with. Go's encoder writes every
//! non-pointer field even when it is empty, so zero values are dropped
//! unless the field is a pointer in Go (`keep`), where presence means "set".
//! A field the tables do not know is ignored when it carries a zero value
//! and refused (415) otherwise, so nothing a client sent is silently lost.

use base64::Engine;
use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Value};

use crate::error::GatewayError;

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    /// `bytes`, base64 in JSON.
    Bytes,
    Msg(&'static [F]),
    MapStr,
    MapBytes,
    MapQuantity,
    IntOrString,
    Quantity,
    Time,
    /// Accepted and dropped (status on create is ignored anyway).
    Skip,
}

/// One field: tag, JSON name, type, repeated, kept when zero.
#[derive(Clone, Copy)]
struct F(u32, &'static str, Ty, bool, bool);

const fn f(tag: u32, name: &'static str, ty: Ty) -> F {
    F(tag, name, ty, false, false)
}
const fn rep(tag: u32, name: &'static str, ty: Ty) -> F {
    F(tag, name, ty, true, false)
}
/// A Go pointer field: present means set, even to a zero value.
const fn keep(tag: u32, name: &'static str, ty: Ty) -> F {
    F(tag, name, ty, false, true)
}

const OWNER_REFERENCE: &[F] = &[
    f(1, "kind", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(5, "apiVersion", Ty::Str),
    keep(6, "controller", Ty::Bool),
    keep(7, "blockOwnerDeletion", Ty::Bool),
];
const OBJECT_META: &[F] = &[
    f(1, "name", Ty::Str),
    f(2, "generateName", Ty::Str),
    f(3, "namespace", Ty::Str),
    f(5, "uid", Ty::Str),
    f(6, "resourceVersion", Ty::Str),
    f(7, "generation", Ty::Int),
    f(8, "creationTimestamp", Ty::Time),
    keep(9, "deletionTimestamp", Ty::Time),
    keep(10, "deletionGracePeriodSeconds", Ty::Int),
    f(11, "labels", Ty::MapStr),
    f(12, "annotations", Ty::MapStr),
    rep(13, "ownerReferences", Ty::Msg(OWNER_REFERENCE)),
    rep(14, "finalizers", Ty::Str),
];
const LABEL_SELECTOR_REQUIREMENT: &[F] = &[
    f(1, "key", Ty::Str),
    f(2, "operator", Ty::Str),
    rep(3, "values", Ty::Str),
];
const LABEL_SELECTOR: &[F] = &[
    f(1, "matchLabels", Ty::MapStr),
    rep(2, "matchExpressions", Ty::Msg(LABEL_SELECTOR_REQUIREMENT)),
];
const LOCAL_OBJECT_REFERENCE: &[F] = &[f(1, "name", Ty::Str)];
const OBJECT_REFERENCE: &[F] = &[
    f(1, "kind", Ty::Str),
    f(2, "namespace", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(5, "apiVersion", Ty::Str),
    f(6, "resourceVersion", Ty::Str),
    f(7, "fieldPath", Ty::Str),
];

const CONFIG_MAP: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "data", Ty::MapStr),
    f(3, "binaryData", Ty::MapBytes),
    keep(4, "immutable", Ty::Bool),
];
const SECRET: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "data", Ty::MapBytes),
    f(3, "type", Ty::Str),
    f(4, "stringData", Ty::MapStr),
    keep(5, "immutable", Ty::Bool),
];
/// Only its name matters: a create of the vK8s's own namespace finds it
/// existing, any other is refused (`kubectl create namespace` sends protobuf).
const NAMESPACE: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Skip),
    f(3, "status", Ty::Skip),
];
const SERVICE_ACCOUNT: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    rep(2, "secrets", Ty::Msg(OBJECT_REFERENCE)),
    rep(3, "imagePullSecrets", Ty::Msg(LOCAL_OBJECT_REFERENCE)),
    keep(4, "automountServiceAccountToken", Ty::Bool),
];
const SERVICE_PORT: &[F] = &[
    f(1, "name", Ty::Str),
    f(2, "protocol", Ty::Str),
    f(3, "port", Ty::Int),
    f(4, "targetPort", Ty::IntOrString),
    f(5, "nodePort", Ty::Int),
    keep(6, "appProtocol", Ty::Str),
];
const SERVICE_SPEC: &[F] = &[
    rep(1, "ports", Ty::Msg(SERVICE_PORT)),
    f(2, "selector", Ty::MapStr),
    f(3, "clusterIP", Ty::Str),
    f(4, "type", Ty::Str),
    rep(5, "externalIPs", Ty::Str),
    f(7, "sessionAffinity", Ty::Str),
    f(8, "loadBalancerIP", Ty::Str),
    rep(9, "loadBalancerSourceRanges", Ty::Str),
    f(10, "externalName", Ty::Str),
    f(11, "externalTrafficPolicy", Ty::Str),
    f(12, "healthCheckNodePort", Ty::Int),
    f(13, "publishNotReadyAddresses", Ty::Bool),
    keep(17, "ipFamilyPolicy", Ty::Str),
    rep(18, "clusterIPs", Ty::Str),
    rep(19, "ipFamilies", Ty::Str),
    keep(20, "allocateLoadBalancerNodePorts", Ty::Bool),
    keep(21, "loadBalancerClass", Ty::Str),
    keep(22, "internalTrafficPolicy", Ty::Str),
    keep(23, "trafficDistribution", Ty::Str),
];
const SERVICE: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(SERVICE_SPEC)),
    f(3, "status", Ty::Skip),
];
const CONTAINER_PORT: &[F] = &[
    f(1, "name", Ty::Str),
    f(2, "hostPort", Ty::Int),
    f(3, "containerPort", Ty::Int),
    f(4, "protocol", Ty::Str),
    f(5, "hostIP", Ty::Str),
];
const ENV_VAR: &[F] = &[f(1, "name", Ty::Str), f(2, "value", Ty::Str)];
const RESOURCES: &[F] = &[
    f(1, "limits", Ty::MapQuantity),
    f(2, "requests", Ty::MapQuantity),
];
const CONTAINER: &[F] = &[
    f(1, "name", Ty::Str),
    f(2, "image", Ty::Str),
    rep(3, "command", Ty::Str),
    rep(4, "args", Ty::Str),
    f(5, "workingDir", Ty::Str),
    rep(6, "ports", Ty::Msg(CONTAINER_PORT)),
    rep(7, "env", Ty::Msg(ENV_VAR)),
    f(8, "resources", Ty::Msg(RESOURCES)),
    f(13, "terminationMessagePath", Ty::Str),
    f(14, "imagePullPolicy", Ty::Str),
    f(16, "stdin", Ty::Bool),
    f(17, "stdinOnce", Ty::Bool),
    f(18, "tty", Ty::Bool),
    f(20, "terminationMessagePolicy", Ty::Str),
    keep(24, "restartPolicy", Ty::Str),
];
const POD_SPEC: &[F] = &[
    rep(2, "containers", Ty::Msg(CONTAINER)),
    f(3, "restartPolicy", Ty::Str),
    keep(4, "terminationGracePeriodSeconds", Ty::Int),
    keep(5, "activeDeadlineSeconds", Ty::Int),
    f(6, "dnsPolicy", Ty::Str),
    f(7, "nodeSelector", Ty::MapStr),
    f(8, "serviceAccountName", Ty::Str),
    f(9, "serviceAccount", Ty::Str),
    f(10, "nodeName", Ty::Str),
    f(11, "hostNetwork", Ty::Bool),
    f(12, "hostPID", Ty::Bool),
    f(13, "hostIPC", Ty::Bool),
    rep(15, "imagePullSecrets", Ty::Msg(LOCAL_OBJECT_REFERENCE)),
    f(16, "hostname", Ty::Str),
    f(17, "subdomain", Ty::Str),
    f(19, "schedulerName", Ty::Str),
    rep(20, "initContainers", Ty::Msg(CONTAINER)),
    keep(21, "automountServiceAccountToken", Ty::Bool),
    f(24, "priorityClassName", Ty::Str),
];
const POD_TEMPLATE_SPEC: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(POD_SPEC)),
];
const ROLLING_UPDATE: &[F] = &[
    keep(1, "maxUnavailable", Ty::IntOrString),
    keep(2, "maxSurge", Ty::IntOrString),
];
const DEPLOYMENT_STRATEGY: &[F] = &[
    f(1, "type", Ty::Str),
    keep(2, "rollingUpdate", Ty::Msg(ROLLING_UPDATE)),
];
const DEPLOYMENT_SPEC: &[F] = &[
    keep(1, "replicas", Ty::Int),
    keep(2, "selector", Ty::Msg(LABEL_SELECTOR)),
    f(3, "template", Ty::Msg(POD_TEMPLATE_SPEC)),
    f(4, "strategy", Ty::Msg(DEPLOYMENT_STRATEGY)),
    f(5, "minReadySeconds", Ty::Int),
    keep(6, "revisionHistoryLimit", Ty::Int),
    f(7, "paused", Ty::Bool),
    keep(9, "progressDeadlineSeconds", Ty::Int),
];
const DEPLOYMENT: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(DEPLOYMENT_SPEC)),
    f(3, "status", Ty::Skip),
];
const JOB_SPEC: &[F] = &[
    keep(1, "parallelism", Ty::Int),
    keep(2, "completions", Ty::Int),
    keep(3, "activeDeadlineSeconds", Ty::Int),
    keep(4, "selector", Ty::Msg(LABEL_SELECTOR)),
    keep(5, "manualSelector", Ty::Bool),
    f(6, "template", Ty::Msg(POD_TEMPLATE_SPEC)),
    keep(7, "backoffLimit", Ty::Int),
    keep(8, "ttlSecondsAfterFinished", Ty::Int),
    keep(9, "completionMode", Ty::Str),
    keep(10, "suspend", Ty::Bool),
    keep(12, "backoffLimitPerIndex", Ty::Int),
    keep(13, "maxFailedIndexes", Ty::Int),
    keep(14, "podReplacementPolicy", Ty::Str),
    keep(15, "managedBy", Ty::Str),
];
const JOB: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(JOB_SPEC)),
    f(3, "status", Ty::Skip),
];
const JOB_TEMPLATE_SPEC: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(JOB_SPEC)),
];
const CRON_JOB_SPEC: &[F] = &[
    f(1, "schedule", Ty::Str),
    keep(2, "startingDeadlineSeconds", Ty::Int),
    f(3, "concurrencyPolicy", Ty::Str),
    keep(4, "suspend", Ty::Bool),
    f(5, "jobTemplate", Ty::Msg(JOB_TEMPLATE_SPEC)),
    keep(6, "successfulJobsHistoryLimit", Ty::Int),
    keep(7, "failedJobsHistoryLimit", Ty::Int),
    keep(8, "timeZone", Ty::Str),
];
const CRON_JOB: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(CRON_JOB_SPEC)),
    f(3, "status", Ty::Skip),
];
const RESOURCE_ATTRIBUTES: &[F] = &[
    f(1, "namespace", Ty::Str),
    f(2, "verb", Ty::Str),
    f(3, "group", Ty::Str),
    f(4, "version", Ty::Str),
    f(5, "resource", Ty::Str),
    f(6, "subresource", Ty::Str),
    f(7, "name", Ty::Str),
];
const NON_RESOURCE_ATTRIBUTES: &[F] = &[f(1, "path", Ty::Str), f(2, "verb", Ty::Str)];
const ACCESS_REVIEW_SPEC: &[F] = &[
    keep(1, "resourceAttributes", Ty::Msg(RESOURCE_ATTRIBUTES)),
    keep(2, "nonResourceAttributes", Ty::Msg(NON_RESOURCE_ATTRIBUTES)),
];
const SELF_SUBJECT_ACCESS_REVIEW: &[F] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(ACCESS_REVIEW_SPEC)),
    f(3, "status", Ty::Skip),
];
const PRECONDITIONS: &[F] = &[keep(1, "uid", Ty::Str), keep(2, "resourceVersion", Ty::Str)];
const DELETE_OPTIONS: &[F] = &[
    keep(1, "gracePeriodSeconds", Ty::Int),
    keep(2, "preconditions", Ty::Msg(PRECONDITIONS)),
    keep(3, "orphanDependents", Ty::Bool),
    keep(4, "propagationPolicy", Ty::Str),
    rep(5, "dryRun", Ty::Str),
];

/// The kinds decoded, by (apiVersion, kind).
const KINDS: &[(&str, &str, &[F])] = &[
    ("v1", "ConfigMap", CONFIG_MAP),
    ("v1", "Secret", SECRET),
    ("v1", "ServiceAccount", SERVICE_ACCOUNT),
    ("v1", "Namespace", NAMESPACE),
    ("v1", "Service", SERVICE),
    ("apps/v1", "Deployment", DEPLOYMENT),
    ("batch/v1", "Job", JOB),
    ("batch/v1", "CronJob", CRON_JOB),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        SELF_SUBJECT_ACCESS_REVIEW,
    ),
    ("v1", "DeleteOptions", DELETE_OPTIONS),
    ("meta.k8s.io/v1", "DeleteOptions", DELETE_OPTIONS),
];

fn unsupported(detail: String) -> GatewayError {
    GatewayError::UnsupportedMediaType(format!(
        "{detail}; send the object as JSON or YAML instead (kubectl create -f / apply -f)"
    ))
}

fn malformed() -> GatewayError {
    GatewayError::BadRequest("the protobuf body of the request is malformed".into())
}

/// One field as it appears on the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed(u64),
    Bytes(&'a [u8]),
}

impl Wire<'_> {
    fn is_zero(&self) -> bool {
        match self {
            Wire::Varint(v) | Wire::Fixed(v) => *v == 0,
            Wire::Bytes(b) => b.is_empty(),
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, GatewayError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.buf.split_first().ok_or_else(malformed)?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], GatewayError> {
        if self.buf.len() < n {
            return Err(malformed());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, GatewayError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| malformed())?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| malformed())?,
            )),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| malformed())?;
                Wire::Bytes(self.take(n)?)
            }
            5 => Wire::Fixed(u64::from(u32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| malformed())?,
            ))),
            _ => return Err(malformed()),
        };
        Ok(Some((tag, wire)))
    }
}

fn text(bytes: &[u8]) -> Result<String, GatewayError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed())
}

/// A `map<string, V>` entry: key = 1, value = 2.
fn map_entry<'a>(bytes: &'a [u8]) -> Result<(String, Option<Wire<'a>>), GatewayError> {
    let mut r = Reader { buf: bytes };
    let (mut key, mut value) = (String::new(), None);
    while let Some((tag, wire)) = r.field()? {
        match (tag, wire) {
            (1, Wire::Bytes(b)) => key = text(b)?,
            (2, w) => value = Some(w),
            _ => {}
        }
    }
    Ok((key, value))
}

fn scalar(ty: Ty, wire: Wire<'_>, path: &str) -> Result<Value, GatewayError> {
    Ok(match (ty, wire) {
        (Ty::Str, Wire::Bytes(b)) => Value::String(text(b)?),
        // Varints of int32/int64 fields: negative values are sign-extended.
        (Ty::Int, Wire::Varint(v)) => Value::from(v as i64),
        (Ty::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Ty::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Ty::Msg(fields), Wire::Bytes(b)) => decode_message(b, fields, path)?,
        (Ty::Quantity, Wire::Bytes(b)) => {
            let mut r = Reader { buf: b };
            let mut s = String::new();
            while let Some((tag, w)) = r.field()? {
                if let (1, Wire::Bytes(v)) = (tag, w) {
                    s = text(v)?;
                }
            }
            Value::String(s)
        }
        (Ty::IntOrString, Wire::Bytes(b)) => {
            let mut r = Reader { buf: b };
            let (mut kind, mut int, mut string) = (0, 0i64, String::new());
            while let Some((tag, w)) = r.field()? {
                match (tag, w) {
                    (1, Wire::Varint(v)) => kind = v,
                    (2, Wire::Varint(v)) => int = v as i64,
                    (3, Wire::Bytes(v)) => string = text(v)?,
                    _ => {}
                }
            }
            if kind == 1 {
                Value::String(string)
            } else {
                Value::from(int)
            }
        }
        (Ty::Time, Wire::Bytes(b)) => {
            let mut r = Reader { buf: b };
            let mut seconds = 0i64;
            while let Some((tag, w)) = r.field()? {
                if let (1, Wire::Varint(v)) = (tag, w) {
                    seconds = v as i64;
                }
            }
            match DateTime::from_timestamp(seconds, 0) {
                Some(t) if seconds != 0 => {
                    Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true))
                }
                _ => Value::Null,
            }
        }
        _ => {
            return Err(unsupported(format!(
                "field {path} has an unexpected protobuf wire type"
            )));
        }
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn decode_message(bytes: &[u8], fields: &[F], path: &str) -> Result<Value, GatewayError> {
    let mut out = Map::new();
    let mut r = Reader { buf: bytes };
    while let Some((tag, wire)) = r.field()? {
        let Some(&F(_, name, ty, repeated, keep)) = fields.iter().find(|f| f.0 == tag) else {
            if wire.is_zero() {
                continue;
            }
            return Err(unsupported(format!(
                "field {tag} of {} is not understood in protobuf form",
                if path.is_empty() { "the object" } else { path }
            )));
        };
        let child = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        let value = match ty {
            Ty::Skip => continue,
            Ty::MapStr | Ty::MapBytes | Ty::MapQuantity => {
                let Wire::Bytes(b) = wire else {
                    return Err(malformed());
                };
                let (key, v) = map_entry(b)?;
                let v = match (ty, v) {
                    (_, None) => Value::String(String::new()),
                    (Ty::MapStr, Some(w)) => scalar(Ty::Str, w, &child)?,
                    (Ty::MapBytes, Some(w)) => scalar(Ty::Bytes, w, &child)?,
                    (_, Some(w)) => scalar(Ty::Quantity, w, &child)?,
                };
                if let Value::Object(m) =
                    out.entry(name).or_insert_with(|| Value::Object(Map::new()))
                {
                    m.insert(key, v);
                }
                continue;
            }
            _ => scalar(ty, wire, &child)?,
        };
        if repeated {
            if let Value::Array(items) = out.entry(name).or_insert_with(|| Value::Array(Vec::new()))
            {
                items.push(value);
            }
        } else if keep || !is_empty(&value) {
            out.insert(name.to_owned(), value);
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a `k8s\0`-framed protobuf body into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, GatewayError> {
    let raw = body.strip_prefix(MAGIC).ok_or_else(malformed)?;
    let mut r = Reader { buf: raw };
    let (mut api_version, mut kind, mut object) = (String::new(), String::new(), &[][..]);
    while let Some((tag, wire)) = r.field()? {
        match (tag, wire) {
            (1, Wire::Bytes(type_meta)) => {
                let mut t = Reader { buf: type_meta };
                while let Some((tag, w)) = t.field()? {
                    match (tag, w) {
                        (1, Wire::Bytes(v)) => api_version = text(v)?,
                        (2, Wire::Bytes(v)) => kind = text(v)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => object = b,
            (3 | 4, Wire::Bytes(b)) if !b.is_empty() => {
                return Err(unsupported(
                    "encoded or nested protobuf content is not supported".into(),
                ));
            }
            _ => {}
        }
    }
    let fields = KINDS
        .iter()
        .find(|(av, k, _)| *av == api_version && *k == kind)
        .map(|(_, _, fields)| *fields)
        .ok_or_else(|| {
            unsupported(format!(
                "{kind} ({api_version}) is not accepted in protobuf form"
            ))
        })?;
    let mut value = decode_message(object, fields, "")?;
    if let Value::Object(m) = &mut value {
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
