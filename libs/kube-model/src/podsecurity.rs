//! Kubernetes' Pod Security Standards (`privileged` / `baseline` /
//! `restricted`, version `latest`) evaluated on a pod template, worded as
//! kube-apiserver's PodSecurity admission words its refusals, plus the
//! checks Manifold adds for shared sites (`nodeName`, tolerations that
//! bypass a site's taints) and the Service fields a tenant may not set.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

/// A Pod Security level; ordered from the most to the least permissive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    Privileged,
    #[default]
    Baseline,
    Restricted,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Privileged, Level::Baseline, Level::Restricted];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed check: its name (`privileged`, `hostPath volumes`) and what
/// failed (`container "x" must not set securityContext.privileged=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub check: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.check)
        } else {
            write!(f, "{} ({})", self.check, self.detail)
        }
    }
}

/// `violates PodSecurity "restricted:latest": a (…), b (…)`.
pub fn message(level: Level, violations: &[Violation]) -> String {
    let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
    format!(
        "violates PodSecurity \"{}:latest\": {}",
        level.as_str(),
        list.join(", ")
    )
}

/// The kinds whose objects carry a pod template.
pub fn is_pod_bearing(kind: &str) -> bool {
    matches!(
        kind,
        "Pod" | "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob"
    )
}

/// The pod template of an object of `kind`: (metadata, spec). `None` for
/// kinds without one or an object without a spec.
pub fn pod_template<'a>(kind: &str, obj: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let t = match kind {
        "Pod" => obj,
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            obj.pointer("/spec/template")?
        }
        "CronJob" => obj.pointer("/spec/jobTemplate/spec/template")?,
        _ => return None,
    };
    let spec = t.get("spec")?;
    Some((t.get("metadata").unwrap_or(&Value::Null), spec))
}

/// Where the pod template's spec sits in an object of `kind` (for field paths).
pub fn template_path(kind: &str) -> &'static str {
    match kind {
        "Pod" => "spec",
        "CronJob" => "spec.jobTemplate.spec.template.spec",
        _ => "spec.template.spec",
    }
}

/// Every check of `level` that the pod template fails, in the order
/// kube-apiserver reports them.
pub fn evaluate(level: Level, kind: &str, obj: &Value) -> Vec<Violation> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let Some((meta, spec)) = pod_template(kind, obj) else {
        return Vec::new();
    };
    let pod = Pod::new(meta, spec);
    let mut out = Vec::new();
    pod.baseline(&mut out);
    if level == Level::Restricted {
        pod.restricted(&mut out);
    }
    pod.shared_site(&mut out);
    out
}

/// The first field path a violation is about, for `details.causes` and
/// FailedPrecondition answers (`spec.template.spec.containers[0].securityContext.privileged`).
pub fn violation_field(kind: &str, v: &Violation) -> String {
    let base = template_path(kind);
    let tail = match v.check {
        "host namespaces" => "hostNetwork",
        "privileged" => "containers[*].securityContext.privileged",
        "non-default capabilities" | "unrestricted capabilities" => {
            "containers[*].securityContext.capabilities"
        }
        "hostPath volumes" | "restricted volume types" => "volumes",
        "hostPort" => "containers[*].ports[*].hostPort",
        "forbidden AppArmor profile" => "securityContext.appArmorProfile",
        "seLinuxOptions" => "securityContext.seLinuxOptions",
        "procMount" => "containers[*].securityContext.procMount",
        "seccompProfile" => "securityContext.seccompProfile",
        "forbidden sysctls" => "securityContext.sysctls",
        "allowPrivilegeEscalation != false" => {
            "containers[*].securityContext.allowPrivilegeEscalation"
        }
        "runAsNonRoot != true" => "securityContext.runAsNonRoot",
        "runAsUser=0" => "securityContext.runAsUser",
        "hostProcess" => "securityContext.windowsOptions.hostProcess",
        "nodeName" => "nodeName",
        "tolerations" => "tolerations",
        _ => "",
    };
    format!("{base}.{tail}")
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Taint keys of a site that a tenant's toleration may not name: the
/// control plane's and Manifold's own.
const RESERVED_TAINT_PREFIXES: &[&str] = &[
    "node-role.kubernetes.io/",
    "manifold.dev/",
    "node.kubernetes.io/unschedulable",
];

struct Pod<'a> {
    meta: &'a Value,
    spec: &'a Value,
    psc: &'a Value,
    /// (name, container) over initContainers, containers, ephemeralContainers.
    containers: Vec<(&'a str, &'a Value)>,
}

fn s<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

fn b(v: &Value, p: &str) -> Option<bool> {
    v.pointer(p).and_then(Value::as_bool)
}

fn arr<'a>(v: &'a Value, p: &str) -> &'a [Value] {
    v.pointer(p)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `container "a"` / `containers "a", "b"`.
fn names(singular: &str, plural: &str, items: &[impl AsRef<str>]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{:?}", i.as_ref())).collect();
    let word = if items.len() == 1 { singular } else { plural };
    format!("{word} {}", quoted.join(", "))
}

impl<'a> Pod<'a> {
    fn new(meta: &'a Value, spec: &'a Value) -> Self {
        let mut containers = Vec::new();
        for list in ["/initContainers", "/containers", "/ephemeralContainers"] {
            for c in arr(spec, list) {
                containers.push((s(c, "/name").unwrap_or(""), c));
            }
        }
        Self {
            meta,
            spec,
            psc: spec.get("securityContext").unwrap_or(&Value::Null),
            containers,
        }
    }

    fn containers_where(&self, f: impl Fn(&Value) -> bool) -> Vec<&'a str> {
        self.containers
            .iter()
            .filter(|(_, c)| f(c))
            .map(|(n, _)| *n)
            .collect()
    }

    fn baseline(&self, out: &mut Vec<Violation>) {
        // hostProcess
        let pod_hp = b(self.psc, "/windowsOptions/hostProcess") == Some(true);
        let hp = self.containers_where(|c| {
            b(c, "/securityContext/windowsOptions/hostProcess") == Some(true)
        });
        if pod_hp || !hp.is_empty() {
            let who = match (pod_hp, hp.is_empty()) {
                (true, true) => "pod".to_owned(),
                (true, false) => format!("pod and {}", names("container", "containers", &hp)),
                _ => names("container", "containers", &hp),
            };
            out.push(Violation {
                check: "hostProcess",
                detail: format!(
                    "{who} must not set securityContext.windowsOptions.hostProcess=true"
                ),
            });
        }
        // host namespaces
        let host: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
            .into_iter()
            .filter(|k| self.spec.get(*k).and_then(Value::as_bool) == Some(true))
            .collect();
        if !host.is_empty() {
            out.push(Violation {
                check: "host namespaces",
                detail: host
                    .iter()
                    .map(|k| format!("{k}=true"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        // privileged
        let p = self.containers_where(|c| b(c, "/securityContext/privileged") == Some(true));
        if !p.is_empty() {
            out.push(Violation {
                check: "privileged",
                detail: format!(
                    "{} must not set securityContext.privileged=true",
                    names("container", "containers", &p)
                ),
            });
        }
        // capabilities beyond the default set
        let mut caps = Vec::new();
        for (n, c) in &self.containers {
            let bad: Vec<&str> = arr(c, "/securityContext/capabilities/add")
                .iter()
                .filter_map(Value::as_str)
                .filter(|cap| !BASELINE_CAPABILITIES.contains(cap))
                .collect();
            if !bad.is_empty() {
                let quoted: Vec<String> = bad.iter().map(|c| format!("{c:?}")).collect();
                caps.push(format!(
                    "container {n:?} must not include {} in securityContext.capabilities.add",
                    quoted.join(", ")
                ));
            }
        }
        if !caps.is_empty() {
            out.push(Violation {
                check: "non-default capabilities",
                detail: caps.join("; "),
            });
        }
        // hostPath volumes
        let hp: Vec<&str> = arr(self.spec, "/volumes")
            .iter()
            .filter(|v| v.get("hostPath").is_some())
            .map(|v| s(v, "/name").unwrap_or(""))
            .collect();
        if !hp.is_empty() {
            out.push(Violation {
                check: "hostPath volumes",
                detail: names("volume", "volumes", &hp),
            });
        }
        // hostPort
        let mut ports = Vec::new();
        for (n, c) in &self.containers {
            let used: Vec<String> = arr(c, "/ports")
                .iter()
                .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
                .filter(|p| *p != 0)
                .map(|p| p.to_string())
                .collect();
            if !used.is_empty() {
                let word = if used.len() == 1 {
                    "hostPort"
                } else {
                    "hostPorts"
                };
                ports.push(format!("container {n:?} uses {word} {}", used.join(", ")));
            }
        }
        if !ports.is_empty() {
            out.push(Violation {
                check: "hostPort",
                detail: ports.join("; "),
            });
        }
        // AppArmor
        let mut aa = Vec::new();
        if let Some(anns) = self.meta.pointer("/annotations").and_then(Value::as_object) {
            for (k, v) in anns {
                if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                    && let Some(v) = v.as_str()
                    && v != "runtime/default"
                    && !v.starts_with("localhost/")
                {
                    aa.push(format!("{k}={v:?}"));
                }
            }
        }
        if s(self.psc, "/appArmorProfile/type") == Some("Unconfined") {
            aa.push(
                "pod must not set securityContext.appArmorProfile.type to \"Unconfined\"".into(),
            );
        }
        for (n, c) in &self.containers {
            if s(c, "/securityContext/appArmorProfile/type") == Some("Unconfined") {
                aa.push(format!(
                    "container {n:?} must not set securityContext.appArmorProfile.type to \"Unconfined\""
                ));
            }
        }
        if !aa.is_empty() {
            out.push(Violation {
                check: "forbidden AppArmor profile",
                detail: aa.join("; "),
            });
        }
        // SELinux
        let mut se = Vec::new();
        let mut check_se = |who: String, o: Option<&Value>| {
            let Some(o) = o else { return };
            let mut bad = Vec::new();
            if let Some(t) = s(o, "/type")
                && !SELINUX_TYPES.contains(&t)
            {
                bad.push(format!("type {t:?}"));
            }
            for k in ["user", "role"] {
                if let Some(v) = o.get(k).and_then(Value::as_str)
                    && !v.is_empty()
                {
                    bad.push(format!("{k} {v:?}"));
                }
            }
            if !bad.is_empty() {
                se.push(format!(
                    "{who} set forbidden securityContext.seLinuxOptions: {}",
                    bad.join(", ")
                ));
            }
        };
        check_se("pod".into(), self.psc.get("seLinuxOptions"));
        for (n, c) in &self.containers {
            check_se(
                format!("container {n:?}"),
                c.pointer("/securityContext/seLinuxOptions"),
            );
        }
        if !se.is_empty() {
            out.push(Violation {
                check: "seLinuxOptions",
                detail: se.join("; "),
            });
        }
        // procMount
        let pm = self.containers_where(|c| {
            s(c, "/securityContext/procMount").is_some_and(|v| v != "Default")
        });
        if !pm.is_empty() {
            out.push(Violation {
                check: "procMount",
                detail: format!(
                    "{} must not set securityContext.procMount to \"Unmasked\"",
                    names("container", "containers", &pm)
                ),
            });
        }
        // seccomp: baseline forbids Unconfined only
        let mut sc = Vec::new();
        if s(self.psc, "/seccompProfile/type") == Some("Unconfined") {
            sc.push(
                "pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_owned(),
            );
        }
        let cs = self.containers_where(|c| {
            s(c, "/securityContext/seccompProfile/type") == Some("Unconfined")
        });
        if !cs.is_empty() {
            sc.push(format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                names("container", "containers", &cs)
            ));
        }
        if !sc.is_empty() {
            out.push(Violation {
                check: "seccompProfile",
                detail: sc.join("; "),
            });
        }
        // sysctls
        let bad: Vec<&str> = arr(self.psc, "/sysctls")
            .iter()
            .filter_map(|x| s(x, "/name"))
            .filter(|n| !SAFE_SYSCTLS.contains(n))
            .collect();
        if !bad.is_empty() {
            out.push(Violation {
                check: "forbidden sysctls",
                detail: bad.join(", "),
            });
        }
    }

    fn restricted(&self, out: &mut Vec<Violation>) {
        // volume types
        let mut vols = Vec::new();
        for v in arr(self.spec, "/volumes") {
            let name = s(v, "/name").unwrap_or("");
            if let Some(o) = v.as_object()
                && let Some(t) = o.keys().find(|k| {
                    k.as_str() != "name" && !RESTRICTED_VOLUME_TYPES.contains(&k.as_str())
                })
            {
                vols.push(format!("volume {name:?} uses restricted volume type {t:?}"));
            }
        }
        if !vols.is_empty() {
            out.push(Violation {
                check: "restricted volume types",
                detail: vols.join("; "),
            });
        }
        // allowPrivilegeEscalation
        let ape = self
            .containers_where(|c| b(c, "/securityContext/allowPrivilegeEscalation") != Some(false));
        if !ape.is_empty() {
            out.push(Violation {
                check: "allowPrivilegeEscalation != false",
                detail: format!(
                    "{} must set securityContext.allowPrivilegeEscalation=false",
                    names("container", "containers", &ape)
                ),
            });
        }
        // capabilities: drop ALL, add at most NET_BIND_SERVICE
        let mut caps = Vec::new();
        let no_drop = self.containers_where(|c| {
            !arr(c, "/securityContext/capabilities/drop")
                .iter()
                .any(|d| d.as_str() == Some("ALL"))
        });
        if !no_drop.is_empty() {
            caps.push(format!(
                "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                names("container", "containers", &no_drop)
            ));
        }
        for (n, c) in &self.containers {
            let bad: Vec<String> = arr(c, "/securityContext/capabilities/add")
                .iter()
                .filter_map(Value::as_str)
                .filter(|cap| *cap != "NET_BIND_SERVICE")
                .map(|c| format!("{c:?}"))
                .collect();
            if !bad.is_empty() {
                caps.push(format!(
                    "container {n:?} must not include {} in securityContext.capabilities.add",
                    bad.join(", ")
                ));
            }
        }
        if !caps.is_empty() {
            out.push(Violation {
                check: "unrestricted capabilities",
                detail: caps.join("; "),
            });
        }
        // runAsNonRoot
        let pod_nonroot = b(self.psc, "/runAsNonRoot");
        let explicit_false = pod_nonroot == Some(false)
            || self
                .containers
                .iter()
                .any(|(_, c)| b(c, "/securityContext/runAsNonRoot") == Some(false));
        let unset = self.containers_where(|c| {
            b(c, "/securityContext/runAsNonRoot").is_none() && pod_nonroot != Some(true)
        });
        if explicit_false || !unset.is_empty() {
            let detail = if explicit_false {
                "pod or containers must not set securityContext.runAsNonRoot=false".to_owned()
            } else if unset.len() == self.containers.len() {
                "pod or containers must set securityContext.runAsNonRoot=true".to_owned()
            } else {
                format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    names("container", "containers", &unset)
                )
            };
            out.push(Violation {
                check: "runAsNonRoot != true",
                detail,
            });
        }
        // runAsUser=0
        let pod_root = self.psc.get("runAsUser").and_then(Value::as_i64) == Some(0);
        let root = self.containers_where(|c| {
            c.pointer("/securityContext/runAsUser")
                .and_then(Value::as_i64)
                == Some(0)
        });
        if pod_root || !root.is_empty() {
            let who = match (pod_root, root.is_empty()) {
                (true, true) => "pod".to_owned(),
                (true, false) => format!("pod and {}", names("container", "containers", &root)),
                _ => names("container", "containers", &root),
            };
            out.push(Violation {
                check: "runAsUser=0",
                detail: format!("{who} must not set runAsUser=0"),
            });
        }
        // seccompProfile must be RuntimeDefault or Localhost
        let ok = |t: Option<&str>| matches!(t, Some("RuntimeDefault") | Some("Localhost"));
        let pod_ok = ok(s(self.psc, "/seccompProfile/type"));
        let pod_set = s(self.psc, "/seccompProfile/type").is_some();
        let bad = self.containers_where(|c| {
            let t = s(c, "/securityContext/seccompProfile/type");
            match t {
                Some(_) => !ok(t),
                None => !pod_ok,
            }
        });
        if !bad.is_empty() && !out.iter().any(|v| v.check == "seccompProfile") {
            let who = if !pod_set && bad.len() == self.containers.len() {
                "pod or containers".to_owned()
            } else {
                format!("pod or {}", names("container", "containers", &bad))
            };
            out.push(Violation {
                check: "seccompProfile",
                detail: format!(
                    "{who} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\""
                ),
            });
        }
    }

    /// Manifold's own checks at baseline and restricted: a pod on a shared
    /// site is placed by the site's scheduler, inside the site's taints.
    fn shared_site(&self, out: &mut Vec<Violation>) {
        if let Some(n) = s(self.spec, "/nodeName").filter(|n| !n.is_empty()) {
            out.push(Violation {
                check: "nodeName",
                detail: format!(
                    "pod must not set spec.nodeName ({n:?}): the site's scheduler places pods"
                ),
            });
        }
        let mut bad = BTreeSet::new();
        for t in arr(self.spec, "/tolerations") {
            let key = s(t, "/key").unwrap_or("");
            let op = s(t, "/operator").unwrap_or("Equal");
            if key.is_empty() && op == "Exists" {
                bad.insert("operator Exists with an empty key tolerates every taint".to_owned());
            } else if RESERVED_TAINT_PREFIXES.iter().any(|p| key.starts_with(p)) {
                bad.insert(format!(
                    "key {key:?} is a site taint tenants may not tolerate"
                ));
            }
        }
        if !bad.is_empty() {
            out.push(Violation {
                check: "tolerations",
                detail: bad.into_iter().collect::<Vec<_>>().join("; "),
            });
        }
    }
}

/// Service fields a tenant may not set on a shared site: (field path,
/// value) of `spec.externalIPs` (CVE-2020-8554) and `spec.loadBalancerIP`.
pub fn forbidden_service_fields(obj: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Some(ips) = obj.pointer("/spec/externalIPs").and_then(Value::as_array) {
        for (i, ip) in ips.iter().enumerate() {
            out.push((format!("spec.externalIPs[{i}]"), ip.clone()));
        }
    }
    if let Some(ip) = obj
        .pointer("/spec/loadBalancerIP")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        out.push(("spec.loadBalancerIP".to_owned(), ip.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    fn restricted_container() -> Value {
        json!({"name": "c", "image": "i", "securityContext": {
            "allowPrivilegeEscalation": false,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            "seccompProfile": {"type": "RuntimeDefault"}}})
    }

    #[test]
    fn levels_order_and_parse() {
        assert!(Level::Restricted > Level::Baseline);
        assert!(Level::Baseline > Level::Privileged);
        assert_eq!(Level::parse("restricted"), Some(Level::Restricted));
        assert_eq!(Level::parse("Restricted"), None);
        assert_eq!(Level::default(), Level::Baseline);
    }

    #[test]
    fn plain_pod_passes_baseline_but_not_restricted() {
        let p = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        assert!(evaluate(Level::Baseline, "Pod", &p).is_empty());
        let v = evaluate(Level::Restricted, "Pod", &p);
        let checks: Vec<&str> = v.iter().map(|v| v.check).collect();
        assert_eq!(
            checks,
            [
                "allowPrivilegeEscalation != false",
                "unrestricted capabilities",
                "runAsNonRoot != true",
                "seccompProfile"
            ]
        );
        assert_eq!(
            message(Level::Restricted, &v[..1]),
            r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#
        );
    }

    #[test]
    fn restricted_pod_passes() {
        let p = pod(json!({"containers": [restricted_container()],
            "volumes": [{"name": "d", "emptyDir": {}}]}));
        assert_eq!(evaluate(Level::Restricted, "Pod", &p), []);
    }

    #[test]
    fn baseline_checks_are_worded_like_kube_apiserver() {
        let d = json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "hostNetwork": true, "hostPID": true,
            "nodeName": "node-1",
            "tolerations": [{"operator": "Exists"}],
            "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [
                {"name": "x", "image": "i", "securityContext": {"privileged": true,
                    "capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}},
                 "ports": [{"containerPort": 80, "hostPort": 80}]}]}}}});
        let v = evaluate(Level::Baseline, "Deployment", &d);
        let msg = message(Level::Baseline, &v);
        assert_eq!(
            msg,
            "violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true, hostPID=true), \
             privileged (container \"x\" must not set securityContext.privileged=true), \
             non-default capabilities (container \"x\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add), \
             hostPath volumes (volume \"h\"), hostPort (container \"x\" uses hostPort 80), \
             forbidden sysctls (kernel.msgmax), \
             nodeName (pod must not set spec.nodeName (\"node-1\"): the site's scheduler places pods), \
             tolerations (operator Exists with an empty key tolerates every taint)"
        );
        assert!(evaluate(Level::Privileged, "Deployment", &d).is_empty());
        assert_eq!(
            violation_field("Deployment", &v[1]),
            "spec.template.spec.containers[*].securityContext.privileged"
        );
    }

    #[test]
    fn cronjob_templates_and_restricted_volume_types() {
        let mut c = restricted_container();
        c["securityContext"]["procMount"] = json!("Unmasked");
        let cj = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [c], "volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]}}}}}});
        let v = evaluate(Level::Restricted, "CronJob", &cj);
        let checks: Vec<&str> = v.iter().map(|v| v.check).collect();
        assert_eq!(checks, ["procMount", "restricted volume types"]);
        assert_eq!(
            v[1].detail,
            r#"volume "n" uses restricted volume type "nfs""#
        );
    }

    #[test]
    fn services_external_ips_and_load_balancer_ip() {
        let s = json!({"spec": {"externalIPs": ["1.2.3.4"], "loadBalancerIP": "5.6.7.8"}});
        let f: Vec<String> = forbidden_service_fields(&s)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(f, ["spec.externalIPs[0]", "spec.loadBalancerIP"]);
        assert!(forbidden_service_fields(&json!({"spec": {"loadBalancerIP": ""}})).is_empty());
    }
}
