//! The Helm charts in `helm/`: linted and rendered offline by Helm's own library
//! (`helm/tests/render.py` on the helm-python-sdk that `make tools` installs), and the
//! rendered manifests checked: kinds, one Deployment per service, probes, PDBs,
//! resources, the migration hook, secrets, image tags, and the agent's RBAC.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use k8s_openapi::serde::Deserialize;
use manifold_integration_tests::tool;
use serde_json::{Value, json};

const SERVICES: [&str; 4] = ["tenancy", "sites", "gateway", "replication"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What `render.py` reports for one chart and value set.
pub(crate) struct Rendered {
    lint: Value,
    /// Helm's error when rendering failed (schema violation, `fail` in a template).
    error: Option<String>,
    /// Every rendered object, in template order.
    pub objects: Vec<Value>,
    /// NOTES.txt.
    notes: String,
}

impl Rendered {
    pub(crate) fn ok(self) -> Self {
        if let Some(e) = &self.error {
            panic!("render failed: {e}");
        }
        self
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", self.summary()))
    }

    fn summary(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| format!("{}/{}", str_of(&o["kind"]), str_of(&o["metadata"]["name"])))
            .collect()
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Lints and renders `helm/<chart>` with `values` (release `mf`, namespace `manifold`).
pub(crate) fn render(chart: &str, values: Value) -> Result<Rendered> {
    let root = repo();
    let out = Command::new(tool("python")?)
        .arg(root.join("helm/tests/render.py"))
        .arg(root.join("helm").join(chart))
        .arg(values.to_string())
        .output()
        .context("running helm/tests/render.py")?;
    if !out.status.success() {
        bail!(
            "render.py failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("render.py output")?;
    let mut objects = Vec::new();
    let mut notes = String::new();
    if let Some(manifests) = report["manifests"].as_object() {
        for (path, text) in manifests {
            let text = str_of(text);
            if path.ends_with("NOTES.txt") {
                notes = text.to_owned();
                continue;
            }
            for doc in serde_yaml_ng::Deserializer::from_str(text) {
                let value = Value::deserialize(doc).with_context(|| format!("parsing {path}"))?;
                if !value.is_null() {
                    objects.push(value);
                }
            }
        }
    }
    Ok(Rendered {
        lint: report["lint"].clone(),
        error: report["error"].as_str().map(str::to_owned),
        objects,
        notes,
    })
}

/// No lint finding above "info" (Helm's strict lint: warnings count).
fn assert_lint_clean(r: &Rendered) {
    assert_eq!(r.lint["errors"], json!([]), "lint errors: {}", r.lint);
    let findings: Vec<&Value> = r.lint["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["severity"].as_i64() > Some(1))
                .collect()
        })
        .unwrap_or_default();
    assert!(findings.is_empty(), "lint findings: {findings:?}");
}

/// Minimal values the site-agent chart needs (it refuses to render without them).
pub(crate) fn agent_values() -> Value {
    json!({
        "site": "pa2-par",
        "controlPlane": {
            "endpoint": "https://sites.manifold.example:7443",
            "syncEndpoint": "https://replication.manifold.example:7443",
            "tlsDomain": "sites.manifold.example",
            "caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        },
        "registration": {"existingSecret": "pa2-par-registration"},
    })
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn containers(workload: &Value) -> Vec<&Value> {
    pod_spec(workload)["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    env(container, name).and_then(|e| e["value"].as_str())
}

/// Every object parses as its Kubernetes type (a misplaced or mistyped field fails
/// here rather than at `helm install`), and secret volumes are mode 0440.
fn assert_typed(r: &Rendered) {
    use k8s_openapi::api::{apps, batch, core, policy, rbac};
    fn parse<T: k8s_openapi::serde::de::DeserializeOwned>(o: &Value) -> Result<(), String> {
        serde_json::from_value::<T>(o.clone())
            .map(drop)
            .map_err(|e| e.to_string())
    }
    for o in &r.objects {
        let parsed = match str_of(&o["kind"]) {
            "Deployment" => parse::<apps::v1::Deployment>(o),
            "StatefulSet" => parse::<apps::v1::StatefulSet>(o),
            "Service" => parse::<core::v1::Service>(o),
            "Secret" => parse::<core::v1::Secret>(o),
            "ConfigMap" => parse::<core::v1::ConfigMap>(o),
            "ServiceAccount" => parse::<core::v1::ServiceAccount>(o),
            "Job" => parse::<batch::v1::Job>(o),
            "PodDisruptionBudget" => parse::<policy::v1::PodDisruptionBudget>(o),
            "ClusterRole" => parse::<rbac::v1::ClusterRole>(o),
            "ClusterRoleBinding" => parse::<rbac::v1::ClusterRoleBinding>(o),
            "ServiceMonitor" => Ok(()),
            other => Err(format!("unexpected kind {other}")),
        };
        if let Err(e) = parsed {
            panic!(
                "{}/{}: {e}",
                str_of(&o["kind"]),
                str_of(&o["metadata"]["name"])
            );
        }
        for v in pod_spec(o)["volumes"].as_array().into_iter().flatten() {
            if let Some(mode) = v["secret"].get("defaultMode") {
                assert_eq!(mode, 0o440, "{v}");
            }
        }
    }
}

/// Every container image is pinned: a tag that is not `latest`, or a digest.
fn assert_pinned_images(r: &Rendered) {
    let mut seen = 0;
    for o in &r.objects {
        for c in containers(o) {
            let image = str_of(&c["image"]);
            let (_, tail) = image.rsplit_once('/').unwrap_or(("", image));
            let pinned = tail.contains('@')
                || tail
                    .split_once(':')
                    .is_some_and(|(_, tag)| !tag.is_empty() && !tag.eq_ignore_ascii_case("latest"));
            assert!(
                pinned,
                "{} uses unpinned image {image:?}",
                str_of(&o["metadata"]["name"])
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no containers rendered");
}

fn assert_requests(what: &str, container: &Value) {
    let requests = &container["resources"]["requests"];
    assert!(
        requests["cpu"].is_string() && requests["memory"].is_string(),
        "{what}: resource requests missing: {}",
        container["resources"]
    );
}

fn assert_database_url_from_secret(what: &str, container: &Value, secret: &str) {
    let url = env(container, "DATABASE_URL").unwrap_or_else(|| panic!("{what}: no DATABASE_URL"));
    assert!(
        url.get("value").is_none(),
        "{what}: DATABASE_URL in clear: {url}"
    );
    assert_eq!(
        url["valueFrom"]["secretKeyRef"],
        json!({"name": secret, "key": "DATABASE_URL"}),
        "{what}"
    );
}

#[test]
fn helm_manifold_defaults_render_one_deployment_per_service() {
    let r = render("manifold", json!({})).unwrap().ok();
    assert_lint_clean(&r);
    assert_typed(&r);

    let kinds: BTreeSet<&str> = r.objects.iter().map(|o| str_of(&o["kind"])).collect();
    let expected: BTreeSet<&str> = [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Job",
        "Secret",
        "ServiceAccount",
    ]
    .into();
    assert_eq!(kinds, expected, "{:?}", r.summary());
    assert_eq!(r.of_kind("Deployment").len(), 4, "{:?}", r.summary());
    assert_pinned_images(&r);

    for service in SERVICES {
        let name = format!("mf-manifold-{service}");
        let d = r.named("Deployment", &name);
        let replicas = d["spec"]["replicas"].as_i64().unwrap();
        assert!(replicas >= 2, "{name}: {replicas} replicas");
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
        let spec = pod_spec(d);
        assert_eq!(spec["automountServiceAccountToken"], false, "{name}");
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{name}");

        let [c] = containers(d)[..] else {
            panic!("{name}: expected one container")
        };
        assert_eq!(c["args"], json!(["serve", "--services", service]), "{name}");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        // Probes on the admin endpoint (gRPC probes cannot speak TLS).
        for (probe, path) in [
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"], path, "{name} {probe}: {}", c[probe]);
            assert_eq!(get["port"], "admin", "{name} {probe}");
            assert_eq!(get["scheme"], "HTTPS", "{name} {probe}");
        }
        assert_requests(&name, c);
        assert_database_url_from_secret(&name, c, "mf-manifold-database");
        assert_eq!(env_value(c, "MANIFOLD__GRPC__LISTEN"), Some("0.0.0.0:7443"));
        assert_eq!(
            env_value(c, "MANIFOLD__ADMIN__LISTEN"),
            Some("0.0.0.0:9090")
        );
        // The other three services are reached through their Services.
        for other in SERVICES {
            let key = format!("MANIFOLD__UPSTREAM__{}", other.to_uppercase());
            if other == service {
                assert!(env(c, &key).is_none(), "{name} sets {key}");
            } else {
                assert_eq!(
                    env_value(c, &key),
                    Some(format!("https://mf-manifold-{other}.manifold.svc:7443").as_str()),
                    "{name}"
                );
            }
        }
        // Self-issued server certificates name every Service, localhost and the pod.
        let names = env_value(c, "MANIFOLD__TLS__SERVER_NAMES").unwrap_or_default();
        for n in ["localhost", "$(POD_IP)", "mf-manifold-sites.manifold.svc"] {
            assert!(
                names.split(',').any(|x| x == n),
                "{name}: {n} not in {names}"
            );
        }
        let ports: Vec<&str> = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| str_of(&p["name"]))
            .collect();
        let expected_ports = if service == "gateway" {
            vec!["grpc", "kube-api", "admin"]
        } else {
            vec!["grpc", "admin"]
        };
        assert_eq!(ports, expected_ports, "{name}");

        let svc = r.named("Service", &name);
        assert_eq!(
            svc["spec"]["selector"]["app.kubernetes.io/component"],
            service
        );
        let pdb = r.named("PodDisruptionBudget", &name);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"], d["spec"]["selector"]["matchLabels"],
            "{name}: the PDB must select the Deployment's pods"
        );
    }
    let gateway = containers(r.named("Deployment", "mf-manifold-gateway"))[0];
    assert_eq!(
        env_value(gateway, "MANIFOLD__KUBE_API__LISTEN"),
        Some("0.0.0.0:6443")
    );
    let replication = containers(r.named("Deployment", "mf-manifold-replication"))[0];
    assert_eq!(
        env_value(replication, "MANIFOLD__SERVE__ADVERTISE_URL"),
        Some("https://$(POD_IP):7443")
    );

    // The migration: a pre-install/pre-upgrade hook running `manifold migrate`.
    let job = r.named("Job", "mf-manifold-migrate");
    let annotations = &job["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/hook"], "pre-install,pre-upgrade");
    assert!(
        str_of(&annotations["helm.sh/hook-delete-policy"]).contains("before-hook-creation"),
        "{annotations}"
    );
    let migrate = containers(job)[0];
    assert_eq!(migrate["args"], json!(["migrate"]));
    assert_eq!(pod_spec(job)["restartPolicy"], "Never");
    assert_requests("migrate", migrate);
    assert_database_url_from_secret("migrate", migrate, "mf-manifold-database");

    // The generated CA survives uninstall; no database Secret without a URL.
    let ca = r.named("Secret", "mf-manifold-ca");
    assert_eq!(
        ca["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert!(ca["data"]["ca.crt"].is_string() && ca["data"]["ca.key"].is_string());
    // The operator's first token: generated once, kept, well formed, and
    // mounted (read-only) only into tenancy pods as the bootstrap token file.
    let token = r.named("Secret", "mf-manifold-admin-token");
    assert_eq!(
        token["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let encoded = token["data"]["admin.token"].as_str().expect("admin.token");
    let decoded = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
            .expect("base64"),
    )
    .expect("UTF-8 token");
    let parts: Vec<&str> = decoded.split('_').collect();
    assert!(
        parts.len() == 3
            && parts[0] == "mft"
            && parts[1].len() == 16
            && parts[2].len() == 64
            && parts[1..]
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit())),
        "{decoded}"
    );
    for d in r.of_kind("Deployment") {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let env = containers(d)[0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = env
            .iter()
            .any(|e| e["name"] == "MANIFOLD__AUTH__BOOTSTRAP_TOKEN_FILE");
        assert_eq!(has, name.ends_with("-tenancy"), "{name}");
    }
    // The key that seals Secrets at rest: generated once, kept, 32 random
    // bytes in base64 as the file's text, mounted (read-only) only into the
    // gateway, which is told where it is.
    let keys = r.named("Secret", "mf-manifold-encryption");
    assert_eq!(
        keys["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let b64 = &base64::engine::general_purpose::STANDARD;
    let file = base64::Engine::decode(b64, str_of(&keys["data"]["key-1"])).expect("base64");
    let key = base64::Engine::decode(b64, String::from_utf8(file).expect("text").trim())
        .expect("the key file is base64");
    assert_eq!(key.len(), 32);
    for d in r.of_kind("Deployment") {
        let name = str_of(&d["metadata"]["name"]);
        let c = containers(d)[0];
        let volume = pod_spec(d)["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "encryption");
        if name.ends_with("-gateway") {
            assert_eq!(
                env_value(c, "MANIFOLD__ENCRYPTION__KEY_FILES"),
                Some("/etc/manifold/encryption/key-1")
            );
            let volume = volume.expect("the gateway mounts the keys");
            assert_eq!(volume["secret"]["secretName"], "mf-manifold-encryption");
            assert_eq!(volume["secret"]["defaultMode"], 288);
        } else {
            assert!(
                env(c, "MANIFOLD__ENCRYPTION__KEY_FILES").is_none(),
                "{name}"
            );
            assert!(volume.is_none(), "{name} must not see the encryption keys");
        }
    }
    assert_eq!(r.of_kind("Secret").len(), 3, "{:?}", r.summary());
    assert!(
        r.notes
            .contains("create secret generic mf-manifold-database"),
        "{}",
        r.notes
    );
}

#[test]
fn helm_manifold_value_sets_replicas_byo_tls_monitoring() {
    let mut services = serde_json::Map::new();
    for s in SERVICES {
        services.insert(s.into(), json!({"replicas": 3}));
    }
    let r = render(
        "manifold",
        json!({
            "services": services,
            "tls": {"existingSecret": "manifold-tls", "serverNames": ["manifold.example.com"]},
            "serviceMonitor": {"enabled": true},
            "grafanaDashboard": {"enabled": true},
            "database": {"url": "postgres://manifold:pw@db.example:5432/manifold"},
            "image": {"tag": "0.1.0-rc.1"},
        }),
    )
    .unwrap()
    .ok();
    assert_lint_clean(&r);
    assert_typed(&r);
    assert_pinned_images(&r);
    for service in SERVICES {
        let d = r.named("Deployment", &format!("mf-manifold-{service}"));
        assert_eq!(d["spec"]["replicas"], 3, "{service}");
        let c = containers(d)[0];
        assert!(
            str_of(&c["image"]).ends_with(":0.1.0-rc.1"),
            "{}",
            c["image"]
        );
        let volumes = pod_spec(d)["volumes"].as_array().unwrap();
        let ca_items: Vec<&str> =
            volumes.iter().find(|v| v["name"] == "ca").unwrap()["secret"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| str_of(&i["path"]))
                .collect();
        let byo = volumes.iter().find(|v| v["name"] == "tls");
        if service == "replication" {
            // Issues its own certificate (pod IP) from the CA it needs anyway.
            assert!(byo.is_none());
            assert!(env(c, "MANIFOLD__TLS__CERT_FILE").is_none());
            let names = env_value(c, "MANIFOLD__TLS__SERVER_NAMES").unwrap();
            assert!(names.contains("manifold.example.com"), "{names}");
        } else {
            assert_eq!(byo.unwrap()["secret"]["secretName"], "manifold-tls");
            assert_eq!(
                env_value(c, "MANIFOLD__TLS__CERT_FILE"),
                Some("/etc/manifold/tls/tls.crt")
            );
            assert_eq!(
                env_value(c, "MANIFOLD__TLS__CA_FILE"),
                Some("/etc/manifold/ca/ca.crt")
            );
        }
        // Only the registry (sites, and replication which renews agent certificates)
        // holds the CA key once the server certificate is brought.
        let wants_key = matches!(service, "sites" | "replication");
        assert_eq!(
            ca_items.contains(&"ca.key"),
            wants_key,
            "{service}: {ca_items:?}"
        );
    }
    // The database URL given as a value becomes a hook Secret the migration can read.
    let db = r.named("Secret", "mf-manifold-database");
    assert_eq!(
        db["stringData"]["DATABASE_URL"],
        "postgres://manifold:pw@db.example:5432/manifold"
    );
    assert!(str_of(&db["metadata"]["annotations"]["helm.sh/hook"]).contains("pre-install"));
    let job_weight: i64 = str_of(
        &r.named("Job", "mf-manifold-migrate")["metadata"]["annotations"]["helm.sh/hook-weight"],
    )
    .parse()
    .unwrap();
    let secret_weight: i64 = str_of(&db["metadata"]["annotations"]["helm.sh/hook-weight"])
        .parse()
        .unwrap();
    assert!(
        secret_weight < job_weight,
        "the Secret must exist before the Job"
    );

    let sm = r.named("ServiceMonitor", "mf-manifold");
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "admin");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(
        endpoint["tlsConfig"]["ca"]["secret"]["name"],
        "mf-manifold-ca"
    );

    // The dashboard is another engineer's file: a ConfigMap exactly when it exists.
    let dashboard = repo().join("helm/manifold/dashboards/manifold.json");
    let maps = r.of_kind("ConfigMap");
    if dashboard.exists() {
        assert_eq!(maps.len(), 1, "{:?}", r.summary());
        assert_eq!(maps[0]["metadata"]["labels"]["grafana_dashboard"], "1");
        let json_text = str_of(&maps[0]["data"]["manifold.json"]);
        serde_json::from_str::<Value>(json_text).expect("dashboard JSON survives rendering");
    } else {
        assert!(maps.is_empty(), "{:?}", r.summary());
    }
}

/// A rotation in the chart: the keys of a brought Secret, new one first.
#[test]
fn helm_manifold_encryption_keys_in_order_from_a_brought_secret() {
    let r = render(
        "manifold",
        json!({"encryption": {"existingSecret": "vault-keys", "keys": ["2026-q3", "2026-q1"]}}),
    )
    .unwrap()
    .ok();
    assert_lint_clean(&r);
    assert!(
        r.of_kind("Secret")
            .iter()
            .all(|s| s["metadata"]["name"] != "mf-manifold-encryption"),
        "no generated key beside a brought Secret"
    );
    let d = r.named("Deployment", "mf-manifold-gateway");
    assert_eq!(
        env_value(containers(d)[0], "MANIFOLD__ENCRYPTION__KEY_FILES"),
        Some("/etc/manifold/encryption/2026-q3,/etc/manifold/encryption/2026-q1")
    );
    let volume = pod_spec(d)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "encryption")
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], "vault-keys");
    assert_eq!(
        volume["secret"]["items"],
        json!([{"key": "2026-q3", "path": "2026-q3"}, {"key": "2026-q1", "path": "2026-q1"}])
    );

    for bad in [json!(["../x"]), json!(["a", "a"]), json!("key-1")] {
        let r = render("manifold", json!({"encryption": {"keys": bad}})).unwrap();
        let error = r
            .error
            .unwrap_or_else(|| panic!("encryption.keys {bad} must be refused"));
        assert!(error.contains("/encryption/keys"), "{error}");
    }
}

#[test]
fn helm_schema_and_templates_reject_bad_values_clearly() {
    let bad_replicas = render(
        "manifold",
        json!({"services": {"gateway": {"replicas": "two"}}}),
    )
    .unwrap();
    let error = bad_replicas
        .error
        .expect("replicas: \"two\" must be refused");
    assert!(
        error.contains("/services/gateway/replicas") && error.contains("want integer"),
        "{error}"
    );

    let typo = render("manifold", json!({"servces": {}})).unwrap();
    let error = typo.error.expect("an unknown key must be refused");
    assert!(error.contains("servces"), "{error}");

    let latest = render("manifold", json!({"image": {"tag": "latest"}})).unwrap();
    let error = latest.error.expect("image tag latest must be refused");
    assert!(error.contains("`latest` is not allowed"), "{error}");

    let bad_url = render("manifold", json!({"database": {"url": "mysql://x"}})).unwrap();
    let error = bad_url.error.expect("a non-postgres URL must be refused");
    assert!(error.contains("/database/url"), "{error}");

    let agent_latest = render("site-agent", {
        let mut v = agent_values();
        v["image"] = json!({"tag": "LATEST"});
        v
    })
    .unwrap();
    assert!(
        agent_latest
            .error
            .is_some_and(|e| e.contains("`latest` is not allowed"))
    );
    let no_site = render("site-agent", json!({})).unwrap();
    let error = no_site.error.expect("the agent needs a site name");
    assert!(error.contains("site: set this site's name"), "{error}");
    let wildcard = render("site-agent", {
        let mut v = agent_values();
        v["rbac"] =
            json!({"extraRules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
        v
    })
    .unwrap();
    assert!(
        wildcard.error.is_some(),
        "wildcard extra rules must be refused"
    );
}

#[test]
fn helm_site_agent_rbac_is_exactly_what_the_kube_backend_uses() {
    let r = render("site-agent", agent_values()).unwrap().ok();
    assert_lint_clean(&r);
    assert_typed(&r);
    assert_pinned_images(&r);
    let kinds: BTreeSet<&str> = r.objects.iter().map(|o| str_of(&o["kind"])).collect();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "ServiceAccount",
            "StatefulSet"
        ]
        .into(),
        "{:?}",
        r.summary()
    );
    assert!(r.of_kind("Role").is_empty() && r.of_kind("RoleBinding").is_empty());

    // (group, resource) -> verbs, from services/site-agent/src/backend/kube.
    let mut granted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let role = r.named("ClusterRole", "mf-site-agent");
    for rule in role["rules"].as_array().unwrap() {
        assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
        assert!(rule.get("resourceNames").is_none(), "{rule}");
        let list = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap_or_else(|| panic!("{k} missing in {rule}"))
                .iter()
                .map(|v| str_of(v).to_owned())
                .collect()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    for word in [&group, &resource, &verb] {
                        assert!(!word.contains('*'), "wildcard in {rule}");
                    }
                    granted
                        .entry((group.clone(), resource.clone()))
                        .or_default()
                        .insert(verb);
                }
            }
        }
    }
    let workload = ["get", "list", "watch", "create", "patch", "delete"];
    let no_status = ["get", "list", "create", "patch", "delete"];
    let mut expected: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut want = |group: &str, resources: &[&str], verbs: &[&str]| {
        for resource in resources {
            expected.insert(
                (group.to_owned(), (*resource).to_owned()),
                verbs.iter().map(|v| (*v).to_owned()).collect(),
            );
        }
    };
    want(
        "",
        &["namespaces"],
        &["get", "list", "watch", "create", "patch", "delete"],
    );
    want("", &["services", "persistentvolumeclaims"], &workload);
    want(
        "",
        &["configmaps", "secrets", "serviceaccounts"],
        &no_status,
    );
    want(
        "apps",
        &["deployments", "statefulsets", "daemonsets", "replicasets"],
        &workload,
    );
    want("batch", &["jobs", "cronjobs"], &workload);
    want("", &["pods"], &["list", "watch", "delete"]);
    want("", &["pods/log"], &["get"]);
    want("", &["nodes"], &["list", "watch"]);
    assert_eq!(granted, expected);

    let binding = r.named("ClusterRoleBinding", "mf-site-agent");
    assert_eq!(binding["roleRef"]["name"], "mf-site-agent");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "mf-site-agent", "namespace": "manifold"}])
    );

    let sts = r.named("StatefulSet", "mf-site-agent");
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(pod_spec(sts)["serviceAccountName"], "mf-site-agent");
    assert_eq!(pod_spec(sts)["securityContext"]["runAsNonRoot"], true);
    let c = containers(sts)[0];
    assert_eq!(c["command"], json!(["/usr/local/bin/manifold-site-agent"]));
    assert_requests("agent", c);
    assert_eq!(env_value(c, "MANIFOLD_SITE"), Some("pa2-par"));
    assert_eq!(env_value(c, "MANIFOLD_AGENT_BACKEND"), Some("kube"));
    assert_eq!(
        env_value(c, "MANIFOLD_SYNC_ENDPOINT"),
        Some("https://replication.manifold.example:7443")
    );
    // The token comes from a Secret file, never a value in the pod spec.
    assert!(env(c, "MANIFOLD_REGISTRATION_TOKEN").is_none());
    assert_eq!(
        env_value(c, "MANIFOLD_REGISTRATION_TOKEN_FILE"),
        Some("/etc/manifold-agent/registration/token")
    );
    let volumes = pod_spec(sts)["volumes"].as_array().unwrap();
    let registration = volumes
        .iter()
        .find(|v| v["name"] == "registration")
        .unwrap();
    assert_eq!(registration["secret"]["secretName"], "pa2-par-registration");
    // The identity lives on a volume claim that outlives the pod (and the release).
    assert!(volumes.iter().all(|v| v["name"] != "identity"));
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "identity");
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "identity" && m["mountPath"] == "/var/lib/manifold-agent")
    );
    assert_eq!(
        env_value(c, "MANIFOLD_AGENT_DATA_DIR"),
        Some("/var/lib/manifold-agent")
    );

    // A token given as a value becomes the chart's Secret.
    let mut values = agent_values();
    values["registration"] = json!({"token": "one-time"});
    let r = render("site-agent", values).unwrap().ok();
    let secret = r.named("Secret", "mf-site-agent-registration");
    assert_eq!(secret["stringData"]["token"], "one-time");
}

/// A container's environment as the kubelet would hand it over: `valueFrom` filled in
/// (the pod IP, a database URL), `$(VAR)` references expanded.
fn kubelet_env(container: &Value, pod_ip: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = str_of(&e["name"]).to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            let mut v = v.to_owned();
            for (k, known) in &out {
                v = v.replace(&format!("$({k})"), known.as_str());
            }
            v
        } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP" {
            pod_ip.to_owned()
        } else if e["valueFrom"]["secretKeyRef"].is_object() {
            "postgres://manifold:secret@db.example:5432/manifold".to_owned()
        } else {
            panic!("unexpected env {e}")
        };
        out.insert(name, value);
    }
    out
}

/// The environment each Deployment sets is accepted by the real settings loader and
/// means what the chart intends (no unknown `MANIFOLD__` key, listeners, upstreams,
/// certificate names with the pod IP).
#[test]
fn helm_manifold_env_is_valid_manifold_settings() {
    for (values, pod_ip) in [
        (json!({}), "10.1.2.3"),
        (json!({"tls": {"existingSecret": "byo"}}), "10.1.2.3"),
        (json!({"listenAddress": "::"}), "fd00::7"),
    ] {
        let r = render("manifold", values.clone()).unwrap().ok();
        for service in SERVICES {
            let d = r.named("Deployment", &format!("mf-manifold-{service}"));
            let c = containers(d)[0];
            let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(str_of).collect();
            let env = kubelet_env(c, pod_ip);
            let what = format!("{service} with {values}");
            let settings =
                manifold_config::load_from(None, &[("serve.services", args[2].to_owned())], &env)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(settings.serve.services, vec![service.to_owned()], "{what}");
            assert_eq!(settings.grpc.listen.port(), 7443, "{what}");
            assert!(settings.grpc.listen.ip().is_unspecified(), "{what}");
            assert!(settings.admin.listen.ip().is_unspecified(), "{what}");
            assert_eq!(settings.data_dir, PathBuf::from("/var/lib/manifold"));
            for other in SERVICES {
                let url = settings.upstream.url(other);
                if other == service {
                    assert_eq!(url, None, "{what}");
                } else {
                    assert_eq!(
                        url,
                        Some(format!("https://mf-manifold-{other}.manifold.svc:7443").as_str()),
                        "{what}"
                    );
                }
            }
            if settings.tls.cert_file.is_none() {
                assert!(
                    settings.tls.server_names.iter().any(|n| n == pod_ip),
                    "{what}: {:?}",
                    settings.tls.server_names
                );
            }
            if service == "gateway" {
                assert_eq!(
                    settings.encryption.key_files,
                    vec![PathBuf::from("/etc/manifold/encryption/key-1")],
                    "{what}"
                );
            }
            if service == "replication" {
                let ip = if pod_ip.contains(':') {
                    format!("[{pod_ip}]")
                } else {
                    pod_ip.to_owned()
                };
                assert_eq!(
                    settings.serve.advertise_url,
                    format!("https://{ip}:7443"),
                    "{what}"
                );
            }
        }
        // The migration Job's environment loads too.
        let job = r.named("Job", "mf-manifold-migrate");
        manifold_config::load_from(None, &[], &kubelet_env(containers(job)[0], pod_ip))
            .unwrap_or_else(|e| panic!("migrate with {values}: {e}"));
    }
}

/// The agent's environment variables are ones `manifold-site-agent` reads.
#[test]
fn helm_site_agent_env_matches_the_agent_flags() {
    let cli = std::fs::read_to_string(repo().join("services/site-agent/src/cli.rs")).unwrap();
    let r = render("site-agent", agent_values()).unwrap().ok();
    let c = containers(r.named("StatefulSet", "mf-site-agent"))[0];
    for e in c["env"].as_array().unwrap() {
        let name = str_of(&e["name"]);
        if name.starts_with("OTEL_") {
            continue;
        }
        assert!(
            cli.contains(&format!("env = \"{name}\"")),
            "the agent has no flag reading {name}"
        );
    }
}

/// The charts run binaries at paths the image puts them; the image is pinned,
/// multi-stage and non-root. (It cannot be built here: no container runtime.)
#[test]
fn helm_charts_match_the_dockerfile() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let from: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.trim_start().starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "builder and runtime stages: {from:?}");
    assert!(from.iter().all(|l| !l.contains(":latest")), "{from:?}");
    assert!(
        dockerfile.contains("ARG RUST_VERSION=1."),
        "pinned toolchain"
    );
    assert!(dockerfile.contains("--locked"));
    for bin in ["manifold", "manifold-site-agent", "manifold-tenancy"] {
        assert!(
            dockerfile.contains(&format!("--bin {bin}")),
            "{bin} not built"
        );
    }
    assert!(dockerfile.contains("/usr/local/bin/"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/manifold\"]"));
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    let dockerignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(dockerignore.lines().any(|l| l.trim() == "target/"));

    // Both charts default to the chart's appVersion, the workspace version.
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    for chart in ["manifold", "site-agent"] {
        let meta =
            std::fs::read_to_string(repo().join("helm").join(chart).join("Chart.yaml")).unwrap();
        assert!(
            meta.contains(&format!("appVersion: \"{version}\"")),
            "{chart} appVersion is not the workspace version {version}"
        );
    }
}
