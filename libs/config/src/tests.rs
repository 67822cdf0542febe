//! Layering, error and secrecy tests. The environment is always passed explicitly.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use secrecy::ExposeSecret;

use crate::*;

const URL: &str = "postgres://app:hunter2@127.0.0.1:5432/manifold";

fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn toml(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

#[test]
fn defaults() {
    let s = load_from(None, &[], &env(&[("DATABASE_URL", URL)])).unwrap();
    assert_eq!(s.data_dir, PathBuf::from(".manifold"));
    assert_eq!(s.database.url.expose_secret(), URL);
    assert_eq!(s.database.max_connections, 20);
    assert_eq!(s.database.connect_timeout_secs, 30);
    assert_eq!(s.grpc.listen.to_string(), "127.0.0.1:7443");
    assert_eq!(s.grpc.public_endpoint, "https://127.0.0.1:7443");
    assert_eq!(s.kube_api.listen.to_string(), "127.0.0.1:6443");
    assert_eq!(s.kube_api.public_url, "https://127.0.0.1:6443");
    assert_eq!(s.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(s.tls.cert_file, None);
    assert_eq!(s.tls.server_names, vec!["localhost", "127.0.0.1"]);
    assert_eq!(s.auth.cache_ttl_secs, 5);
    assert_eq!(s.auth.stream_recheck_secs, 30);
    assert_eq!(s.sites.renewal_grace_secs, 300);
    assert_eq!(s.sites.certificate_recheck_secs, 60);
    assert_eq!(s.telemetry.log_format, LogFormat::Text);
    assert_eq!(s.telemetry.log_filter, "info");
    assert_eq!(s.vk8s.log_retention_revisions, 10_000);
    assert_eq!(s.vk8s.compaction_interval_secs, 60);
    assert_eq!(s.vk8s.max_objects, 10_000);
    assert_eq!(s.vk8s.max_bytes, 256 * 1024 * 1024);
    assert_eq!(s.vk8s.max_watches_per_principal, 100);
    assert_eq!(s.sites.heartbeat_timeout_secs, 30);
    assert_eq!(
        s.bootstrap_token_file(),
        PathBuf::from(".manifold/admin.token")
    );
    assert_eq!(s.ca_file(), PathBuf::from(".manifold/ca.crt"));
}

#[test]
fn file_overrides_defaults() {
    let file = toml(&format!(
        r#"
data_dir = "/var/lib/manifold"

[database]
url = "{URL}"
max_connections = 5

[grpc]
listen = "0.0.0.0:8443"

[tls]
server_names = ["cp.example", "10.1.2.3"]

[telemetry]
log_format = "json"
"#
    ));
    let s = load_from(Some(file.path()), &[], &HashMap::new()).unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/manifold"));
    assert_eq!(s.database.url.expose_secret(), URL);
    assert_eq!(s.database.max_connections, 5);
    assert_eq!(s.database.connect_timeout_secs, 30, "untouched default");
    assert_eq!(s.grpc.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(s.tls.server_names, vec!["cp.example", "10.1.2.3"]);
    assert_eq!(s.telemetry.log_format, LogFormat::Json);
    assert_eq!(
        s.bootstrap_token_file(),
        PathBuf::from("/var/lib/manifold/admin.token")
    );
}

#[test]
fn env_overrides_file_and_overrides_win() {
    let file = toml(
        r#"
[database]
url = "postgres://file/db"
max_connections = 5
[grpc]
listen = "0.0.0.0:8443"
"#,
    );
    let vars = env(&[
        ("MANIFOLD__DATABASE__MAX_CONNECTIONS", "7"),
        ("MANIFOLD__GRPC__LISTEN", "127.0.0.1:9443"),
        ("MANIFOLD__DATA_DIR", "/tmp/mf"),
        ("MANIFOLD__TLS__SERVER_NAMES", "a.example, 127.0.0.1"),
        ("MANIFOLD__TELEMETRY__LOG_FORMAT", "json"),
        ("MANIFOLD__AUTH__BOOTSTRAP_TOKEN_FILE", "/etc/mf/token"),
        ("MANIFOLD_ENDPOINT", "https://client-setting:7443"),
        ("MANIFOLD_TOKEN", "client-secret"),
        ("DATABASE_URL", URL),
        ("PATH", "/usr/bin"),
    ]);
    let s = load_from(Some(file.path()), &[], &vars).unwrap();
    assert_eq!(
        s.database.url.expose_secret(),
        URL,
        "DATABASE_URL beats the file"
    );
    assert_eq!(s.database.max_connections, 7);
    assert_eq!(s.grpc.listen.to_string(), "127.0.0.1:9443");
    assert_eq!(s.data_dir, PathBuf::from("/tmp/mf"));
    assert_eq!(s.tls.server_names, vec!["a.example", "127.0.0.1"]);
    assert_eq!(s.telemetry.log_format, LogFormat::Json);
    assert_eq!(s.bootstrap_token_file(), PathBuf::from("/etc/mf/token"));

    // The namespaced variable beats DATABASE_URL; explicit overrides beat everything.
    let mut vars = vars;
    vars.insert(
        "MANIFOLD__DATABASE__URL".into(),
        "postgresql://namespaced/db".into(),
    );
    let s = load_from(
        Some(file.path()),
        &[("grpc.listen", "127.0.0.1:1".to_owned())],
        &vars,
    )
    .unwrap();
    assert_eq!(s.database.url.expose_secret(), "postgresql://namespaced/db");
    assert_eq!(s.grpc.listen.to_string(), "127.0.0.1:1");
}

#[test]
fn bad_value_names_the_key() {
    let vars = env(&[("DATABASE_URL", URL)]);

    let file = toml("[grpc]\nlisten = \"nope\"\n");
    let err = load_from(Some(file.path()), &[], &vars).unwrap_err();
    assert_eq!(err.key(), Some("grpc.listen"), "{err}");
    assert!(err.to_string().contains("grpc.listen"), "{err}");

    let mut bad_env = vars.clone();
    bad_env.insert("MANIFOLD__ADMIN__LISTEN".into(), "nope".into());
    let err = load_from(None, &[], &bad_env).unwrap_err();
    assert!(err.to_string().contains("admin.listen"), "{err}");

    let file = toml("[database]\nmax_connections = \"many\"\n");
    let err = load_from(Some(file.path()), &[], &vars).unwrap_err();
    assert!(
        err.to_string().contains("database.max_connections"),
        "{err}"
    );

    let file = toml("[telemetry]\nlog_format = \"xml\"\n");
    let err = load_from(Some(file.path()), &[], &vars).unwrap_err();
    assert!(err.to_string().contains("telemetry.log_format"), "{err}");

    let file = toml("[grpc]\nlisten_addr = \"127.0.0.1:1\"\n");
    let err = load_from(Some(file.path()), &[], &vars).unwrap_err();
    assert_eq!(err.key(), Some("grpc.listen_addr"), "{err}");

    let err = load_from(
        None,
        &[],
        &env(&[("DATABASE_URL", URL), ("MANIFOLD__NOPE", "1")]),
    )
    .unwrap_err();
    assert_eq!(err.key(), Some("nope"), "{err}");

    let file = toml("this is not toml");
    let err = load_from(Some(file.path()), &[], &vars).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err}");

    let err = load_from(Some("/nonexistent/manifold.toml".as_ref()), &[], &vars).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/manifold.toml"),
        "{err}"
    );
}

#[test]
fn missing_database_url() {
    let err = load_from(None, &[], &HashMap::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "database.url is not set: set DATABASE_URL or MANIFOLD__DATABASE__URL"
    );
    assert_eq!(err.key(), Some("database.url"));
    // Empty counts as unset.
    let err = load_from(None, &[], &env(&[("DATABASE_URL", "")])).unwrap_err();
    assert_eq!(err.key(), Some("database.url"));
}

#[test]
fn validation_names_the_key() {
    let vars = env(&[("DATABASE_URL", URL)]);
    let check = |overrides: &[(&str, String)], key: &str| {
        let err = load_from(None, overrides, &vars).unwrap_err();
        assert_eq!(err.key(), Some(key), "{err}");
        assert!(err.to_string().contains(key), "{err}");
    };
    check(&[("tls.cert_file", "/c.pem".into())], "tls.key_file");
    check(&[("tls.key_file", "/k.pem".into())], "tls.cert_file");
    check(
        &[("database.max_connections", "0".into())],
        "database.max_connections",
    );
    check(
        &[("grpc.public_endpoint", "http://127.0.0.1:7443".into())],
        "grpc.public_endpoint",
    );
    check(
        &[("kube_api.public_url", "127.0.0.1:6443".into())],
        "kube_api.public_url",
    );
    check(&[("database.url", "mysql://x".into())], "database.url");
    check(&[("vk8s.max_objects", "0".into())], "vk8s.max_objects");
    check(
        &[("vk8s.max_watches_per_principal", "0".into())],
        "vk8s.max_watches_per_principal",
    );
    check(
        &[("auth.stream_recheck_secs", "0".into())],
        "auth.stream_recheck_secs",
    );
    check(
        &[("auth.stream_recheck_secs", "61".into())],
        "auth.stream_recheck_secs",
    );
    check(
        &[("sites.renewal_grace_secs", "86400".into())],
        "sites.renewal_grace_secs",
    );
    check(
        &[("sites.certificate_recheck_secs", "0".into())],
        "sites.certificate_recheck_secs",
    );

    let ok = load_from(
        None,
        &[
            ("tls.cert_file", "/c.pem".into()),
            ("tls.key_file", "/k.pem".into()),
        ],
        &vars,
    )
    .unwrap();
    assert_eq!(ok.tls.cert_file, Some(PathBuf::from("/c.pem")));
}

#[test]
fn secrets_never_print() {
    let s = load_from(None, &[], &env(&[("DATABASE_URL", URL)])).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    let err = load_from(
        None,
        &[],
        &env(&[("DATABASE_URL", "mysql://u:hunter2@h/db")]),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn services_and_upstreams_split_a_deployment() {
    let s = load_from(None, &[], &env(&[("DATABASE_URL", URL)])).unwrap();
    assert!(SERVICES.iter().all(|name| s.serve.runs(name)));
    assert_eq!(s.upstream.url("tenancy"), None);

    let s = load_from(
        None,
        &[],
        &env(&[
            ("DATABASE_URL", URL),
            ("MANIFOLD__SERVE__SERVICES", "gateway, replication"),
            ("MANIFOLD__UPSTREAM__TENANCY", "https://tenancy:7443"),
        ]),
    )
    .unwrap();
    assert_eq!(s.serve.services, vec!["gateway", "replication"]);
    assert!(!s.serve.runs("tenancy"));
    assert_eq!(s.upstream.url("tenancy"), Some("https://tenancy:7443"));

    let err = load_from(
        None,
        &[("serve.services", "gateway,sitez".into())],
        &env(&[("DATABASE_URL", URL)]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("serve.services") && err.contains("sitez") && err.contains("replication"),
        "{err}"
    );
    let err = load_from(
        None,
        &[("upstream.sites", "http://sites:7443".into())],
        &env(&[("DATABASE_URL", URL)]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("upstream.sites") && err.contains("https://"),
        "{err}"
    );
}

#[test]
fn encryption_key_files_from_file_env_and_default() {
    let s = load_from(None, &[], &env(&[("DATABASE_URL", URL)])).unwrap();
    assert!(s.encryption.key_files.is_empty());
    assert_eq!(
        s.default_encryption_key_file(),
        PathBuf::from(".manifold/encryption.key")
    );

    let file = toml(
        r#"
[encryption]
key_files = ["/etc/mf/keys/b.key", "/etc/mf/keys/a.key"]
"#,
    );
    let s = load_from(Some(file.path()), &[], &env(&[("DATABASE_URL", URL)])).unwrap();
    assert_eq!(
        s.encryption.key_files,
        vec![
            PathBuf::from("/etc/mf/keys/b.key"),
            PathBuf::from("/etc/mf/keys/a.key")
        ]
    );

    // The environment takes a comma-separated list, first key first.
    let vars = env(&[
        ("DATABASE_URL", URL),
        ("MANIFOLD__ENCRYPTION__KEY_FILES", "/k/new.key, /k/old.key"),
    ]);
    let s = load_from(None, &[], &vars).unwrap();
    assert_eq!(
        s.encryption.key_files,
        vec![PathBuf::from("/k/new.key"), PathBuf::from("/k/old.key")]
    );

    let e = load_from(
        None,
        &[("encryption.key_file", "/k".to_owned())],
        &env(&[("DATABASE_URL", URL)]),
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("encryption.key_file"), "{e}");
}
