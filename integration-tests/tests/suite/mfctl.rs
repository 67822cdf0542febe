//! The real mfctl binary against the all-in-one control plane: login and
//! contexts (config file mode 0600), `MANIFOLD_*` overrides, CRUD of every
//! resource group with table/JSON/YAML/name output parsed back, the audit
//! log, exit codes, bash completions, `site status` over simulated sites, and a kubeconfig
//! written by `mfctl vk8s kubeconfig` used by the pinned kubectl.
//!
//! The binary is `CARGO_BIN_EXE_mfctl-under-test`: mfctl's own `main.rs`
//! built as a bin target of this package (see integration-tests/Cargo.toml),
//! so it is always built, and fresh, whatever cargo/nextest selects.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use manifold_integration_tests::{TestApp, tool};
use manifold_site_agent::{AgentConfig, SimulatedOptions, SimulatedSite};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

/// Bound on one mfctl or kubectl run.
const RUN: Duration = Duration::from_secs(60);
/// Longest a condition is waited for.
const WAIT: Duration = Duration::from_secs(60);

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// mfctl with a private HOME (so its config is `$HOME/.config/mfctl/config.yaml`)
/// and none of the caller's MANIFOLD_* variables.
struct Mfctl {
    home: tempfile::TempDir,
}

impl Mfctl {
    fn new() -> Mfctl {
        Mfctl {
            home: tempfile::tempdir().expect("home"),
        }
    }

    fn config_file(&self) -> PathBuf {
        self.home.path().join(".config/mfctl/config.yaml")
    }

    async fn run_with(&self, env: &[(&str, &str)], stdin: Option<&str>, args: &[&str]) -> Out {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mfctl-under-test"));
        cmd.args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("MFCTL_CONFIG")
            .env_remove("MANIFOLD_ENDPOINT")
            .env_remove("MANIFOLD_CA_FILE")
            .env_remove("MANIFOLD_TOKEN")
            .env("RUST_BACKTRACE", "0")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn mfctl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).await.expect("write stdin");
        }
        let o = tokio::time::timeout(RUN, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("mfctl {args:?} did not finish in {RUN:?}"))
            .expect("mfctl ran");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Out {
        self.run_with(&[], None, args).await
    }

    /// Runs and asserts exit code 0; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert_eq!(
            o.code, 0,
            "mfctl {args:?} failed:\n{}\n{}",
            o.stdout, o.stderr
        );
        o.stdout
    }

    /// Runs with `-o json` and parses stdout.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.ok(&all).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Runs with `-o yaml` and parses stdout.
    async fn yaml(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "yaml"]);
        let out = self.ok(&all).await;
        serde_yaml_ng::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Runs, asserts the exit code, returns stderr.
    async fn fails(&self, code: i32, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert_eq!(
            o.code, code,
            "mfctl {args:?}: want exit {code}:\n{}\n{}",
            o.stdout, o.stderr
        );
        o.stderr
    }

    /// `mfctl login` as the bootstrap system-admin into context `default`.
    async fn login_admin(&self, app: &TestApp) {
        let token_file = app.data_dir.path().join("admin.token");
        let out = self
            .ok(&[
                "login",
                "--endpoint",
                &app.grpc_addr.to_string(),
                "--ca-file",
                &app.ca_file().display().to_string(),
                "--token-file",
                &token_file.display().to_string(),
            ])
            .await;
        assert!(out.contains("Logged in to https://"), "{out}");
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn mfctl_login_contexts_environment_and_exit_codes() {
    let app = TestApp::spawn().await.expect("control plane");
    let m = Mfctl::new();
    let endpoint = app.grpc_addr.to_string();
    let ca = app.ca_file().display().to_string();

    // Completions are generated from the command tree and are valid bash.
    let script = m.ok(&["completion", "bash"]).await;
    assert!(script.contains("_mfctl()"), "{script}");
    assert!(script.contains("registration-token"), "{script}");
    let bash = tokio::process::Command::new("bash")
        .arg("-n")
        .arg({
            let f = m.home.path().join("mfctl.bash");
            std::fs::write(&f, &script).expect("write completion");
            f
        })
        .output()
        .await
        .expect("bash");
    assert!(
        bash.status.success(),
        "{}",
        String::from_utf8_lossy(&bash.stderr)
    );

    // Usage errors and "not logged in" are exit code 2, naming the fix.
    m.fails(2, &["tenant", "frobnicate"]).await;
    let err = m.fails(2, &["tenant", "list"]).await;
    assert!(err.contains("mfctl login"), "{err}");
    assert!(!m.config_file().exists());

    // A bad token: UNAUTHENTICATED (4); nothing saved.
    let err = m
        .fails(
            4,
            &[
                "login",
                "--endpoint",
                &endpoint,
                "--ca-file",
                &ca,
                "--token",
                "mf_bogus",
            ],
        )
        .await;
    assert!(err.contains("UNAUTHENTICATED"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!m.config_file().exists());

    // No CA file for an https endpoint: a usage error that names the flag.
    let err = m
        .fails(2, &["login", "--endpoint", &endpoint, "--token", "x"])
        .await;
    assert!(err.contains("--ca-file"), "{err}");

    // The bootstrap admin; the config is private.
    m.login_admin(&app).await;
    let mode = std::fs::metadata(m.config_file())
        .expect("config written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "config mode {mode:o}");
    let me = m.json(&["whoami"]).await;
    assert!(me["user"].as_str().unwrap().starts_with("users/"), "{me}");
    assert_eq!(me["tenant"], "");

    // Server-side errors and their exit codes, with details and hints.
    let err = m.fails(3, &["tenant", "get", "nope"]).await;
    assert!(err.contains("NOT_FOUND"), "{err}");
    assert!(err.contains("mfctl tenant list"), "{err}");
    let err = m.fails(2, &["tenant", "create", "Not_A_Label"]).await;
    assert!(err.contains("INVALID_ARGUMENT"), "{err}");
    assert!(err.contains("field tenant_id"), "{err}");
    m.ok(&["tenant", "create", "acme"]).await;
    m.ok(&["tenant", "create", "globex"]).await;
    let err = m.fails(5, &["tenant", "create", "acme"]).await;
    assert!(err.contains("ALREADY_EXISTS"), "{err}");

    // A tenant-admin of acme in a second context, logged in with a token
    // minted through mfctl (the secret alone on stdout).
    m.ok(&[
        "user",
        "create",
        "alice",
        "--tenant",
        "acme",
        "--email",
        "a@example.com",
    ])
    .await;
    m.ok(&[
        "role-binding",
        "create",
        "--role",
        "tenant-admin",
        "--user",
        "alice",
        "--tenant",
        "acme",
    ])
    .await;
    let secret = m
        .ok(&[
            "token", "create", "alice", "--tenant", "acme", "--ttl", "1h",
        ])
        .await
        .trim()
        .to_owned();
    assert!(!secret.is_empty() && !secret.contains('\n'), "{secret:?}");
    let o = m
        .run_with(
            &[],
            Some(&secret),
            &[
                "login",
                "--context",
                "alice",
                "--endpoint",
                &endpoint,
                "--ca-file",
                &ca,
                "--token-file",
                "-",
                // Saved as the short id `acme`.
                "--tenant",
                "tenants/acme",
            ],
        )
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let saved = std::fs::read_to_string(m.config_file()).expect("config");
    assert!(
        saved.contains("tenant: acme") && !saved.contains("tenants/acme"),
        "{saved}"
    );
    let contexts = m.json(&["context", "list"]).await;
    assert_eq!(names(&contexts), ["default", "alice"], "{contexts}");
    assert_eq!(contexts[1]["current"], true);
    assert_eq!(contexts[1]["tenant"], "acme");
    assert!(
        contexts[1].get("token").is_none(),
        "tokens are never printed"
    );
    let table = m.ok(&["context", "list"]).await;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with('*') && l.contains("alice")),
        "{table}"
    );
    let me = m.json(&["whoami"]).await;
    assert_eq!(me["user"], "tenants/acme/users/alice");
    // Isolation: another tenant is NOT_FOUND; making tenants is denied.
    m.fails(3, &["tenant", "get", "globex"]).await;
    let err = m.fails(4, &["tenant", "create", "initech"]).await;
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    // The context's default tenant resolves short names.
    m.ok(&["namespace", "create", "shop"]).await;
    let ns = m.json(&["namespace", "get", "shop"]).await;
    assert_eq!(ns["name"], "tenants/acme/namespaces/shop");
    // `context set --tenant tenants/acme` saves `acme` too: short names
    // resolve to tenants/acme/..., never tenants/tenants/acme/...
    m.ok(&["context", "set", "--tenant", "tenants/acme", "-n", "shop"])
        .await;
    let saved = std::fs::read_to_string(m.config_file()).expect("config");
    assert!(
        saved.contains("tenant: acme") && !saved.contains("tenants/acme"),
        "{saved}"
    );
    let current = m.json(&["context", "current"]).await;
    assert_eq!(current["tenant"], "acme", "{current}");
    assert_eq!(current["namespace"], "shop", "{current}");
    m.json(&["vk8s", "list"]).await;
    let alice = m.json(&["user", "get", "alice"]).await;
    assert_eq!(alice["name"], "tenants/acme/users/alice", "{alice}");
    m.json(&["token", "list", "alice"]).await;
    m.json(&["audit", "list", "--limit", "1"]).await;
    // Also when given on the command line.
    let ns = m
        .json(&["namespace", "get", "shop", "--tenant", "tenants/acme"])
        .await;
    assert_eq!(ns["name"], "tenants/acme/namespaces/shop");

    m.ok(&["context", "use", "default"]).await;
    assert_eq!(m.json(&["whoami"]).await["tenant"], "");
    m.ok(&["--context", "alice", "whoami"]).await;
    // An unknown context is a configuration error (2) everywhere; 3 is the
    // API's NOT_FOUND.
    for args in [
        &["context", "use", "nobody"][..],
        &["context", "delete", "nobody"],
        &["--context", "nobody", "context", "set", "--tenant", "acme"],
        &["--context", "nobody", "whoami"],
        &["--context", "nobody", "tenant", "list"],
    ] {
        let err = m.fails(2, args).await;
        assert!(err.contains("no context named \"nobody\""), "{err}");
        assert!(err.contains("known contexts: default, alice"), "{err}");
    }

    // MANIFOLD_* override the current context, field by field.
    let o = m
        .run_with(
            &[("MANIFOLD_TOKEN", &secret)],
            None,
            &["whoami", "-o", "json"],
        )
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("tenants/acme/users/alice"),
        "{}",
        o.stdout
    );
    let o = m
        .run_with(
            &[("MANIFOLD_ENDPOINT", "127.0.0.1:1")],
            None,
            &["tenant", "list", "--timeout", "5s"],
        )
        .await;
    assert_eq!(o.code, 6, "{}", o.stderr);
    assert!(o.stderr.contains("https://127.0.0.1:1"), "{}", o.stderr);
    let o = m
        .run_with(&[("MANIFOLD_TOKEN", "mf_bogus")], None, &["tenant", "list"])
        .await;
    assert_eq!(o.code, 4, "{}", o.stderr);
    let current = m
        .run_with(
            &[("MANIFOLD_TOKEN", "x")],
            None,
            &["context", "current", "-o", "json"],
        )
        .await;
    let current: Value = serde_json::from_str(&current.stdout).expect("json");
    assert_eq!(
        current["fromEnvironment"],
        serde_json::json!(["MANIFOLD_TOKEN"])
    );
    // Environment only, no config file at all.
    let admin = app.admin_token.clone();
    let nowhere = m.home.path().join("no-such-config.yaml");
    let o = m
        .run_with(
            &[
                ("MFCTL_CONFIG", nowhere.to_str().unwrap()),
                ("MANIFOLD_ENDPOINT", &endpoint),
                ("MANIFOLD_CA_FILE", &ca),
                ("MANIFOLD_TOKEN", &admin),
            ],
            None,
            &["tenant", "list", "-o", "name"],
        )
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "tenants/acme\ntenants/globex\n");
    assert!(!nowhere.exists());

    // A revoked token stops working (exit 4) once the auth cache expires.
    let tokens = m
        .json(&["token", "list", "alice", "--tenant", "acme"])
        .await;
    let token_name = tokens[0]["name"].as_str().unwrap().to_owned();
    let revoked = m.json(&["token", "delete", &token_name]).await;
    assert_eq!(revoked["state"], "REVOKED");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let o = m.run(&["--context", "alice", "whoami"]).await;
        if o.code == 4 {
            assert!(o.stderr.contains("mfctl login"), "{}", o.stderr);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "token still works");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    m.ok(&["context", "delete", "alice"]).await;
    assert_eq!(names(&m.json(&["context", "list"]).await), ["default"]);
}

/// A server that accepts TCP connections and never answers: `--timeout`
/// bounds the TLS/HTTP/2 handshake too (exit 6), not just the TCP connect.
#[tokio::test]
async fn mfctl_connect_times_out_on_a_silent_server() {
    let m = Mfctl::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let ca = manifold_pki::Ca::generate().expect("CA");
    let ca_file = m.home.path().join("ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write CA");
    let ca_file = ca_file.display().to_string();
    let env = [
        ("MANIFOLD_ENDPOINT", addr.as_str()),
        ("MANIFOLD_CA_FILE", ca_file.as_str()),
        ("MANIFOLD_TOKEN", "mf_whatever"),
    ];
    for args in [
        &["tenant", "list", "--timeout", "2s"][..],
        &[
            "login",
            "--endpoint",
            &addr,
            "--ca-file",
            &ca_file,
            "--token",
            "mf_whatever",
            "--timeout",
            "2s",
        ],
    ] {
        let started = std::time::Instant::now();
        let o = m.run_with(&env, None, args).await;
        let took = started.elapsed();
        assert_eq!(o.code, 6, "{args:?}: {}", o.stderr);
        assert!(
            took < Duration::from_secs(20),
            "{args:?}: bounded by the 2 s timeout, took {took:?}: {}",
            o.stderr
        );
        assert!(
            o.stderr.contains(&format!("https://{addr}")),
            "{}",
            o.stderr
        );
        assert!(o.stderr.contains("handshake"), "{}", o.stderr);
        assert!(o.stderr.contains("--timeout"), "{}", o.stderr);
    }
    assert!(!m.config_file().exists(), "a failed login saves nothing");
    drop(silent);
}

/// Checked before anything is sent: cleartext endpoints and durations that
/// would overflow are usage errors (2) naming the flag or variable.
#[tokio::test]
async fn mfctl_refuses_cleartext_endpoints_and_overflowing_durations() {
    let m = Mfctl::new();
    // A listener that would take the token if it were sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let http = format!("http://{addr}");

    let o = m
        .run_with(
            &[
                ("MANIFOLD_ENDPOINT", &http),
                ("MANIFOLD_TOKEN", "mf_secret"),
            ],
            None,
            &["tenant", "list"],
        )
        .await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("cleartext"), "{}", o.stderr);
    assert!(o.stderr.contains("MANIFOLD_ENDPOINT"), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("use https://{addr}")),
        "{}",
        o.stderr
    );

    let err = m
        .fails(2, &["login", "--endpoint", &http, "--token", "mf_secret"])
        .await;
    assert!(err.contains("cleartext"), "{err}");
    assert!(err.contains("--endpoint"), "{err}");
    assert!(err.contains(&format!("use https://{addr}")), "{err}");
    let err = m
        .fails(
            2,
            &[
                "login",
                "--endpoint",
                &http,
                "--token",
                "mf_secret",
                "--no-verify",
            ],
        )
        .await;
    assert!(err.contains("cleartext"), "{err}");
    assert!(!m.config_file().exists(), "nothing saved");
    let nothing = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(
        nothing.is_err(),
        "mfctl connected to the cleartext endpoint"
    );

    for (flag, args) in [
        ("--since", &["audit", "list", "--since", "999999999d"][..]),
        (
            "--until",
            &["audit", "list", "--until", "18446744073709551615d"],
        ),
        (
            "--timeout",
            &["tenant", "list", "--timeout", "18446744073709551615d"],
        ),
        ("--timeout", &["--timeout", "999999999999999h", "whoami"]),
        (
            "--ttl",
            &["token", "create", "alice", "--ttl", "999999999999999d"],
        ),
        (
            "--ttl",
            &["vk8s", "kubeconfig", "demo", "--ttl", "213503982334602d"],
        ),
    ] {
        let err = m.fails(2, args).await;
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(err.contains("too long"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn mfctl_crud_for_every_resource_group() {
    let app = TestApp::spawn().await.expect("control plane");
    let m = Mfctl::new();
    m.login_admin(&app).await;

    // Tenants: create, get (JSON and YAML), list, update with labels and the
    // etag, stale etag → ABORTED (5).
    let t = m
        .json(&[
            "tenant",
            "create",
            "acme",
            "--display-name",
            "Acme",
            "--label",
            "tier=gold",
        ])
        .await;
    assert_eq!(t["name"], "tenants/acme");
    assert_eq!(t["state"], "ACTIVE");
    let stale_etag = t["etag"].as_str().unwrap().to_owned();
    let y = m.yaml(&["tenant", "get", "tenants/acme"]).await;
    assert_eq!(y["displayName"], "Acme");
    assert_eq!(y["labels"]["tier"], "gold");
    let table = m.ok(&["tenant", "list"]).await;
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("STATE"),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("acme ")), "{table}");
    let t = m
        .json(&[
            "tenant",
            "update",
            "acme",
            "--display-name",
            "Acme Corp",
            "--label",
            "region=eu",
            "--remove-label",
            "tier",
        ])
        .await;
    assert_eq!(t["displayName"], "Acme Corp");
    assert_eq!(t["labels"], serde_json::json!({"region": "eu"}));
    let err = m
        .fails(
            5,
            &[
                "tenant",
                "update",
                "acme",
                "--display-name",
                "X",
                "--etag",
                &stale_etag,
            ],
        )
        .await;
    assert!(err.contains("ABORTED"), "{err}");
    m.fails(2, &["tenant", "update", "acme"]).await;
    let t = m
        .json(&["tenant", "update", "acme", "--state", "suspended"])
        .await;
    assert_eq!(t["state"], "SUSPENDED");
    m.json(&["tenant", "update", "acme", "--state", "active"])
        .await;

    // Namespaces.
    m.ok(&["namespace", "create", "shop", "--tenant", "acme"])
        .await;
    m.ok(&[
        "ns",
        "create",
        "tenants/acme/namespaces/lab",
        "--label",
        "team=x",
    ])
    .await;
    let list = m.json(&["namespace", "list", "--tenant", "acme"]).await;
    assert_eq!(
        names(&list),
        [
            "tenants/acme/namespaces/lab",
            "tenants/acme/namespaces/shop"
        ]
    );
    let lab = m
        .json(&["namespace", "get", "lab", "--tenant", "acme"])
        .await;
    let relabelled = m
        .json(&[
            "namespace",
            "update",
            "lab",
            "--tenant",
            "acme",
            "--label",
            "tier=2",
            "--remove-label",
            "team",
            "--display-name",
            "Lab",
        ])
        .await;
    assert_eq!(relabelled["uid"], lab["uid"], "updated in place");
    assert_eq!(relabelled["labels"], serde_json::json!({"tier": "2"}));
    assert_eq!(relabelled["displayName"], "Lab", "{relabelled}");
    m.ok(&["namespace", "delete", "lab", "--tenant", "acme"])
        .await;
    m.fails(3, &["namespace", "get", "lab", "--tenant", "acme"])
        .await;
    let err = m.fails(2, &["namespace", "get", "lab"]).await;
    assert!(err.contains("--tenant"), "{err}");
    // A tenant with namespaces is not deleted without --force.
    let err = m.fails(5, &["tenant", "delete", "acme"]).await;
    assert!(err.contains("--force"), "{err}");

    // Defaults in the context make short names resolve.
    m.ok(&["context", "set", "--tenant", "acme", "-n", "shop"])
        .await;

    // Users, role bindings and tokens.
    let u = m
        .json(&["user", "create", "bob", "--email", "bob@example.com"])
        .await;
    assert_eq!(u["name"], "tenants/acme/users/bob");
    assert_eq!(
        names(&m.json(&["user", "list"]).await),
        ["tenants/acme/users/bob"]
    );
    let rb = m
        .json(&[
            "role-binding",
            "create",
            "editors",
            "--role",
            "namespace-editor",
            "--user",
            "bob",
        ])
        .await;
    assert_eq!(
        rb["name"],
        "tenants/acme/namespaces/shop/roleBindings/editors"
    );
    assert_eq!(rb["role"], "NAMESPACE_EDITOR");
    assert_eq!(rb["user"], "tenants/acme/users/bob");
    assert_eq!(
        m.json(&["rb", "get", "editors"]).await["user"],
        "tenants/acme/users/bob"
    );
    let all = m.json(&["role-binding", "list"]).await;
    assert_eq!(
        names(&all),
        ["tenants/acme/namespaces/shop/roleBindings/editors"]
    );
    let tok = m
        .json(&[
            "token",
            "create",
            "bob",
            "--ttl",
            "2h",
            "--scope",
            "tenants/acme/namespaces/shop",
        ])
        .await;
    assert!(!tok["secret"].as_str().unwrap().is_empty(), "{tok}");
    let tname = tok["name"].as_str().unwrap().to_owned();
    assert!(
        tname.starts_with("tenants/acme/users/bob/tokens/"),
        "{tname}"
    );
    let got = m.json(&["token", "get", &tname]).await;
    assert_eq!(got["state"], "ACTIVE");
    assert!(got.get("secret").is_none(), "{got}");
    let id = tname.rsplit('/').next().unwrap();
    m.ok(&["token", "get", id, "--user", "bob"]).await;
    assert_eq!(
        names(&m.json(&["token", "list", "bob"]).await),
        [tname.as_str()]
    );
    m.ok(&["token", "revoke", &tname]).await;
    assert_eq!(m.json(&["token", "get", &tname]).await["state"], "REVOKED");
    m.ok(&["role-binding", "delete", "editors"]).await;
    assert_eq!(
        m.json(&["role-binding", "list"]).await,
        serde_json::json!([])
    );
    m.ok(&["user", "delete", "bob"]).await;
    m.fails(3, &["user", "get", "bob"]).await;

    // Sites: create, get, list with a selector, update, registration token,
    // decommission.
    let s = m
        .json(&[
            "site",
            "create",
            "lab1",
            "--label",
            "env=lab",
            "--location",
            "Paris",
            "--provider-kind",
            "edge",
        ])
        .await;
    assert_eq!(s["name"], "sites/lab1");
    assert_eq!(s["state"], "REGISTERED");
    assert_eq!(s["providerKind"], "EDGE");
    assert_eq!(s["podSecurity"], "BASELINE", "the default level");
    m.ok(&[
        "site",
        "create",
        "lab2",
        "--label",
        "env=prod",
        "--pod-security",
        "restricted",
    ])
    .await;
    assert_eq!(
        m.json(&["site", "get", "lab2"]).await["podSecurity"],
        "RESTRICTED"
    );
    let table = m.ok(&["site", "list"]).await;
    assert!(
        table
            .lines()
            .next()
            .unwrap_or_default()
            .contains("POD SECURITY"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("lab2") && l.contains("restricted")),
        "{table}"
    );
    let sel = m.json(&["site", "list", "-l", "env=lab"]).await;
    assert_eq!(names(&sel), ["sites/lab1"]);
    let s = m
        .json(&[
            "site",
            "update",
            "lab2",
            "--label",
            "env=lab",
            "--display-name",
            "Lab 2",
        ])
        .await;
    assert_eq!(s["displayName"], "Lab 2");
    assert_eq!(s["podSecurity"], "RESTRICTED", "kept when not named");
    let s = m
        .json(&["site", "update", "lab2", "--pod-security", "privileged"])
        .await;
    assert_eq!(s["podSecurity"], "PRIVILEGED");
    let names_only = m.ok(&["site", "list", "-l", "env=lab", "-o", "name"]).await;
    assert_eq!(names_only, "sites/lab1\nsites/lab2\n");
    let token = m.ok(&["site", "registration-token", "lab1"]).await;
    assert!(
        !token.trim().is_empty() && token.lines().count() == 1,
        "{token:?}"
    );
    let rt = m
        .json(&["site", "registration-token", "sites/lab1", "--ttl", "15m"])
        .await;
    assert_eq!(rt["site"], "sites/lab1");
    assert!(rt["expireTime"].as_str().is_some(), "{rt}");
    m.fails(3, &["site", "registration-token", "nope"]).await;

    // Virtual sites in the context's namespace.
    let vs = m
        .json(&["virtual-site", "create", "labs", "-l", "env=lab"])
        .await;
    assert_eq!(vs["name"], "tenants/acme/namespaces/shop/virtualSites/labs");
    let resolved = m.ok(&["vs", "resolve", "labs"]).await;
    assert_eq!(resolved, "sites/lab1\nsites/lab2\n");
    let vs = m
        .json(&[
            "virtual-site",
            "update",
            "labs",
            "--selector",
            "env=lab,kind!=x",
            "--display-name",
            "Labs",
        ])
        .await;
    assert_eq!(vs["siteSelector"], "env=lab,kind!=x");
    m.ok(&["virtual-site", "create", "prod", "-l", "env=prod"])
        .await;
    assert_eq!(
        m.json(&["virtual-site", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let err = m
        .fails(2, &["virtual-site", "create", "bad", "-l", "env in ("])
        .await;
    assert!(err.contains("INVALID_ARGUMENT"), "{err}");

    // Virtual clusters.
    let v = m
        .json(&[
            "vk8s",
            "create",
            "demo",
            "--virtual-site",
            "labs",
            "--label",
            "app=shop",
        ])
        .await;
    assert_eq!(
        v["name"],
        "tenants/acme/namespaces/shop/virtualClusters/demo"
    );
    assert!(
        v["serverUrl"]
            .as_str()
            .unwrap()
            .contains("/vk8s/acme/shop/demo"),
        "{v}"
    );
    let v = m
        .yaml(&[
            "vk8s",
            "update",
            "demo",
            "--virtual-site",
            "labs,prod",
            "--display-name",
            "Demo",
        ])
        .await;
    assert_eq!(v["virtualSites"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["displayName"], "Demo");
    let table = m.ok(&["vk8s", "list"]).await;
    assert!(
        table.lines().nth(1).unwrap().starts_with("demo "),
        "{table}"
    );
    let kubeconfig = m.ok(&["vk8s", "kubeconfig", "demo"]).await;
    let k: Value = serde_yaml_ng::from_str(&kubeconfig).expect("kubeconfig is YAML");
    assert_eq!(k["kind"], "Config");
    m.ok(&["vk8s", "delete", "demo"]).await;
    m.fails(3, &["vk8s", "get", "demo"]).await;
    m.ok(&["virtual-site", "delete", "prod"]).await;
    m.ok(&["virtual-site", "delete", "labs"]).await;

    let gone = m.json(&["site", "delete", "lab2"]).await;
    assert_eq!(gone["deleted"], true);
    assert_eq!(
        m.json(&["site", "get", "lab2"]).await["state"],
        "DECOMMISSIONED"
    );
    assert_eq!(names(&m.json(&["site", "list"]).await), ["sites/lab1"]);
    let all = m.json(&["site", "list", "--show-decommissioned"]).await;
    assert_eq!(names(&all), ["sites/lab1", "sites/lab2"]);

    // The audit log of the tenant, filtered (events may land a little late).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = m
            .json(&[
                "audit",
                "list",
                "--actor",
                "users/admin",
                "--method",
                "CreateNamespace",
                "--since",
                "1h",
                "--limit",
                "1",
            ])
            .await;
        let events = events.as_array().unwrap();
        if let Some(e) = events.first() {
            assert_eq!(events.len(), 1, "{events:?}");
            assert_eq!(e["tenant"], "tenants/acme", "{e}");
            assert!(
                e["method"].as_str().unwrap().ends_with("/CreateNamespace"),
                "{e}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no audit event");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let future = m
        .json(&["audit", "list", "--since", "2999-01-01T00:00:00Z"])
        .await;
    assert_eq!(future, serde_json::json!([]));
    m.fails(2, &["audit", "list", "--since", "yesterday"]).await;

    m.ok(&["tenant", "delete", "acme", "--force"]).await;
    m.fails(3, &["tenant", "get", "acme"]).await;
}

#[tokio::test]
async fn mfctl_site_status_and_kubeconfig_with_simulated_sites() {
    let app = TestApp::spawn().await.expect("control plane");
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let mut base = AgentConfig::new("unused", format!("https://{}", app.grpc_addr), app.ca_pem());
    base.heartbeat_interval = Duration::from_secs(1);
    base.status_debounce = Duration::from_millis(100);
    let _fleet = manifold_site_agent::start_simulated_sites(
        app.channel().await.expect("channel"),
        &app.admin_token,
        &base,
        vec![
            SimulatedSite::edge("pa2-par"),
            SimulatedSite::edge("ny8-nyc"),
        ],
        SimulatedOptions::default(),
        stop.clone(),
    )
    .await
    .expect("simulated sites");

    let m = Mfctl::new();
    m.login_admin(&app).await;
    m.ok(&["site", "create", "idle1", "--label", "env=lab"])
        .await;

    // Both agents connect: online, heartbeat, version, 2/2 nodes, a session.
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        let status = m.json(&["site", "status"]).await;
        let ready = status.as_array().unwrap().iter().filter(|s| {
            s["online"] == true && s["nodes"]["ready"] == 2 && s["session"].is_object()
        });
        if ready.count() == 2 {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sites not online: {status}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        names(&status),
        ["sites/idle1", "sites/ny8-nyc", "sites/pa2-par"]
    );
    let pa2 = &status[2];
    assert!(pa2["lastHeartbeatTime"].as_str().is_some(), "{pa2}");
    assert!(!pa2["agentVersion"].as_str().unwrap().is_empty(), "{pa2}");
    assert!(pa2["pending"].is_i64(), "{pa2}");
    assert_eq!(status[0]["state"], "REGISTERED");
    assert_eq!(status[0]["session"], Value::Null);
    let table = m.ok(&["site", "status"]).await;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in [
        "NAME",
        "STATE",
        "LAST HEARTBEAT",
        "AGENT",
        "NODES",
        "PENDING",
    ] {
        assert!(header.contains(col), "{table}");
    }
    let row = table.lines().find(|l| l.starts_with("pa2-par")).unwrap();
    assert!(
        row.contains("online") && row.contains("2/2") && row.contains(" ago"),
        "{table}"
    );
    let one = m.json(&["site", "status", "ny8-nyc"]).await;
    assert_eq!(names(&one), ["sites/ny8-nyc"]);
    m.fails(3, &["site", "status", "nope"]).await;

    // A vK8s over both sites, its kubeconfig piped to a file, used by kubectl.
    m.ok(&["tenant", "create", "acme"]).await;
    m.ok(&["context", "set", "--tenant", "acme", "-n", "shop"])
        .await;
    m.ok(&["namespace", "create", "shop"]).await;
    m.ok(&["virtual-site", "create", "all-edges", "-l", "env=edge"])
        .await;
    m.ok(&["vk8s", "create", "demo", "--virtual-site", "all-edges"])
        .await;
    let kubeconfig = m.home.path().join("demo.kubeconfig");
    let o = m.run(&["vk8s", "kubeconfig", "demo", "--ttl", "1h"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    std::fs::write(&kubeconfig, &o.stdout).expect("write kubeconfig");
    let kubectl = |args: &'static [&'static str]| kubectl(m.home.path(), &kubeconfig, args);
    let ns = kubectl(&["get", "ns", "-o", "name"]).await;
    assert!(ns.lines().any(|l| l == "namespace/shop"), "{ns}");
    kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=1",
    ])
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pods = kubectl(&["get", "pods", "-o", "name"]).await;
        if pods.lines().count() == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "pods: {pods}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Once the agents have acked the deployment nothing is pending.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = m.json(&["site", "status", "pa2-par", "ny8-nyc"]).await;
        let acked = status.as_array().unwrap().iter().all(|s| {
            s["pending"] == 0 && s["session"]["lastAckedRevision"].as_i64().unwrap_or(0) > 0
        });
        if acked {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not acked: {status}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs the pinned kubectl with `kubeconfig` and a private HOME; asserts success.
async fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(tool("kubectl").expect("kubectl"));
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let o = tokio::time::timeout(RUN, cmd.output())
        .await
        .expect("kubectl finished in time")
        .expect("kubectl ran");
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
