//! Secrets at rest: what Postgres holds of a Secret (object table, change
//! log, audit log) is ciphertext, read straight from the tables as someone
//! with a database dump would; kubectl and the object feed still see the
//! data; a deleted Secret's old revisions carry none; key rotation from A
//! to B through `manifold rotate-encryption`, with restarts, loses nothing;
//! a Secret under a key that is gone is a clear error, and can be deleted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use manifold_db::sqlx::{self, Connection, PgConnection, Row};
use manifold_integration_tests::{TestApp, authed, binary};
use manifold_proto::vk8s::v1 as pb;

use crate::kubectl::Kubectl;
use crate::vk8s_grpc::{DEMO, Scenario, get_kubeconfig, scenario, scenario_on};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A value nobody else writes, so finding it anywhere is a leak.
fn marker(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// A Secret manifest with one `data` and one `stringData` value.
fn secret_yaml(name: &str, data: &str, string_data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels:\n    app: web\n\
         type: Opaque\ndata:\n  token: {}\nstringData:\n  password: {string_data}\n",
        b64(data)
    )
}

/// Every stored body (as text) of the Secret `name`: its row and each of
/// its change-log entries, `prev_body` included. Read as the database
/// login (a superuser here: row-level security does not apply).
async fn stored_bodies(url: &str, name: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let mut out: Vec<String> =
        sqlx::query("SELECT body::text AS b FROM vk8s.objects WHERE kind = 'Secret' AND name = $1")
            .bind(name)
            .fetch_all(&mut conn)
            .await
            .expect("objects")
            .iter()
            .map(|r| r.get("b"))
            .collect();
    for r in sqlx::query(
        "SELECT body::text AS b, prev_body::text AS p FROM vk8s.changes \
         WHERE kind = 'Secret' AND name = $1 ORDER BY revision",
    )
    .bind(name)
    .fetch_all(&mut conn)
    .await
    .expect("changes")
    {
        out.push(r.get("b"));
        if let Some(p) = r.get::<Option<String>, _>("p") {
            out.push(p);
        }
    }
    out
}

/// The key names the stored bodies of Secrets are sealed with (`-` for a
/// plain body), each once, sorted.
async fn sealing_keys(url: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let rows = sqlx::query(
        "SELECT DISTINCT coalesce(b #>> '{manifold.dev/sealed,key}', '-') AS k FROM ( \
             SELECT body AS b FROM vk8s.objects WHERE kind = 'Secret' \
             UNION ALL SELECT body FROM vk8s.changes WHERE kind = 'Secret' \
             UNION ALL SELECT prev_body FROM vk8s.changes WHERE kind = 'Secret' AND prev_body IS NOT NULL) s \
         ORDER BY k",
    )
    .fetch_all(&mut conn)
    .await
    .expect("keys");
    rows.iter().map(|r| r.get("k")).collect()
}

fn assert_sealed(bodies: &[String], secrets: &[&str]) {
    assert!(!bodies.is_empty());
    for body in bodies {
        assert!(body.contains("manifold.dev/sealed"), "not sealed: {body}");
        for s in secrets {
            assert!(!body.contains(s), "{s} stored in the clear: {body}");
        }
    }
}

#[tokio::test]
async fn secrets_are_ciphertext_in_postgres_and_plain_to_kubectl_and_the_feed() {
    let s = scenario().await;
    let k = Kubectl::new(&s.kubeconfig, s.dir.path());
    let (token, password, password2) = (marker("tok"), marker("pw"), marker("pw2"));
    // apply: kubectl's last-applied-configuration annotation repeats the data.
    k.ok_stdin(&["apply", "-f", "-"], &secret_yaml("db", &token, &password))
        .await;
    k.ok_stdin(
        &["apply", "-f", "-"],
        &secret_yaml("db", &token, &password2),
    )
    .await;

    // kubectl reads the data back.
    assert_eq!(
        k.jsonpath(&["secret", "db"], "{.data.token}").await,
        b64(&token)
    );
    let listed = k.ok(&["get", "secrets", "-o", "json"]).await;
    assert!(listed.contains(&b64(&token)), "{listed}");

    // Postgres holds ciphertext only: the row and every change-log entry
    // (ADDED, MODIFIED and its previous state). Neither the values, nor their
    // base64, nor the key names of the data are readable.
    let bodies = stored_bodies(&s.app.database_url, "db").await;
    assert_eq!(
        bodies.len(),
        4,
        "row, ADDED, MODIFIED + its prev: {bodies:?}"
    );
    assert_sealed(
        &bodies,
        &[
            &token,
            &b64(&token),
            &password,
            &b64(&password),
            &password2,
            &b64(&password2),
            "last-applied",
        ],
    );
    // Other kinds stay plain JSON (and searchable).
    k.ok(&[
        "create",
        "configmap",
        "plain",
        "--from-literal=k=visible-value",
    ])
    .await;
    let mut conn = PgConnection::connect(&s.app.database_url).await.unwrap();
    let cm: String =
        sqlx::query_scalar("SELECT body::text FROM vk8s.objects WHERE kind = 'ConfigMap'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(cm.contains("visible-value"), "{cm}");

    // The feed decrypts for replication (which sends it on over mTLS).
    let mut chunks = pb::object_feed_client::ObjectFeedClient::new(s.channel.clone())
        .snapshot(authed(&s.admin, pb::SnapshotRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mut seen = false;
    while let Some(chunk) = chunks.message().await.unwrap() {
        for o in chunk.objects.iter().filter(|o| o.kind == "Secret") {
            let text = format!("{:?}", o.object);
            assert!(text.contains(&b64(&token)), "{text}");
            seen = true;
        }
    }
    assert!(seen, "the snapshot has the Secret");
}

/// `GET` of a collection at an exact old revision, and a watch from one.
async fn list_at(k: &Kubectl, rv: &str) -> String {
    k.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/shop/secrets?resourceVersion={rv}&resourceVersionMatch=Exact"),
    ])
    .await
}

async fn watch_from(k: &Kubectl, rv: &str) -> String {
    k.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/shop/secrets?watch=true&resourceVersion={rv}&timeoutSeconds=2"
        ),
    ])
    .await
}

#[tokio::test]
async fn a_deleted_secrets_old_revisions_and_watches_carry_no_data() {
    let s = scenario().await;
    let k = Kubectl::new(&s.kubeconfig, s.dir.path());
    let (token, password, password2) = (marker("tok"), marker("pw"), marker("pw2"));
    k.ok_stdin(
        &["apply", "-f", "-"],
        &secret_yaml("gone", &token, &password),
    )
    .await;
    let rv1 = k
        .jsonpath(&["secret", "gone"], "{.metadata.resourceVersion}")
        .await;
    k.ok_stdin(
        &["apply", "-f", "-"],
        &secret_yaml("gone", &token, &password2),
    )
    .await;
    let rv2 = k
        .jsonpath(&["secret", "gone"], "{.metadata.resourceVersion}")
        .await;
    // Another Secret stays, with its history.
    let kept = marker("kept");
    k.ok_stdin(&["apply", "-f", "-"], &secret_yaml("kept", &kept, &kept))
        .await;
    let rv_kept = k
        .jsonpath(&["secret", "kept"], "{.metadata.resourceVersion}")
        .await;

    // While it exists, its old revisions hold its data (as in Kubernetes).
    let old = list_at(&k, &rv1).await;
    assert!(
        old.contains(&b64(&token)) && old.contains(&password),
        "{old}"
    );

    k.ok(&["delete", "secret", "gone"]).await;
    let leaks = [
        token.clone(),
        b64(&token),
        b64(&password),
        b64(&password2),
        password.clone(),
        password2.clone(),
    ];
    for rv in [&rv1, &rv2] {
        let list = list_at(&k, rv).await;
        // It existed then, so it is listed: name, labels, no data.
        assert!(list.contains("\"gone\""), "{list}");
        for leak in &leaks {
            assert!(
                !list.contains(leak.as_str()),
                "{leak} at revision {rv}: {list}"
            );
        }
        assert!(!list.contains("last-applied"), "{list}");
    }
    // The kept Secret's old state still carries its data.
    assert!(list_at(&k, &rv_kept).await.contains(&b64(&kept)));

    // A watch from its first revision replays MODIFIED and DELETED without
    // its data (resourceVersion 0 would mean "the current state").
    let from = rv1.clone();
    let events = watch_from(&k, &from).await;
    assert!(events.contains("\"MODIFIED\""), "{events}");
    assert!(events.contains("\"DELETED\""), "{events}");
    assert!(events.contains("\"gone\""), "{events}");
    for leak in &leaks {
        assert!(
            !events.contains(leak.as_str()),
            "{leak} in the watch: {events}"
        );
    }
    // A watch with a label selector still sees the deletion (labels stay).
    let selected = k
        .ok(&[
            "get",
            "--raw",
            &format!(
                "/api/v1/namespaces/shop/secrets?watch=true&resourceVersion={from}&timeoutSeconds=2&labelSelector=app%3Dweb"
            ),
        ])
        .await;
    assert!(selected.contains("\"DELETED\""), "{selected}");

    // What the database keeps of it is still ciphertext (and, as the reads
    // above show, opens to its identity and labels alone).
    assert_sealed(
        &stored_bodies(&s.app.database_url, "gone").await,
        &leaks.each_ref().map(String::as_str),
    );
}

#[tokio::test]
async fn secret_values_never_reach_the_audit_log() {
    let s = scenario().await;
    let k = Kubectl::new(&s.kubeconfig, s.dir.path());
    // YAML turns an unquoted number into an integer: a type error whose
    // message would quote the value, and the audit log stores messages.
    let pin = format!("9{}", rand_digits());
    let out = k
        .fails_stdin(
            &["create", "-f", "-"],
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: pin\nstringData:\n  pin: {pin}\n"
            ),
        )
        .await;
    assert!(
        out.contains("stringData.pin") && out.contains("invalid type"),
        "{out}"
    );
    assert!(!out.contains(&pin), "{out}");

    let mut conn = PgConnection::connect(&s.app.database_url).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let message: String = loop {
        let row: Option<String> = sqlx::query_scalar(
            "SELECT message FROM audit.events WHERE path LIKE '%/secrets' AND NOT success",
        )
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        match row {
            Some(m) => break m,
            None if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            None => panic!("the refused create was never audited"),
        }
    };
    assert!(message.contains("invalid type"), "{message}");
    assert!(!message.contains(&pin), "{message}");
}

fn rand_digits() -> String {
    uuid::Uuid::new_v4()
        .as_u128()
        .to_string()
        .chars()
        .take(12)
        .collect()
}

fn write_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let key: [u8; 32] = *uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect::<Vec<u8>>()
        .first_chunk()
        .unwrap();
    std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(key)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// Restarts the control plane with `keys` (the first encrypts) and points
/// the kubeconfig at the new port.
async fn restart_with_keys(s: Scenario, keys: &[&Path]) -> (Scenario, Kubectl) {
    let list = keys
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let Scenario {
        app,
        admin,
        editor,
        dir,
        kubeconfig,
        ..
    } = s;
    let app = app
        .restart_with(&[("encryption.key_files", list)])
        .await
        .expect("restart");
    let channel = app.channel().await.expect("channel");
    let yaml = get_kubeconfig(&channel, &editor, DEMO).await.kubeconfig;
    std::fs::write(&kubeconfig, yaml).unwrap();
    let k = Kubectl::new(&kubeconfig, dir.path());
    (
        Scenario {
            app,
            channel,
            admin,
            editor,
            dir,
            kubeconfig,
        },
        k,
    )
}

/// `manifold rotate-encryption` as an operator runs it, against the test's
/// database with `keys`.
async fn rotate(s: &Scenario, keys: &[&Path], extra: &[&str]) -> (Option<i32>, String) {
    let list = keys
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = tokio::process::Command::new(binary("manifold").expect("manifold binary"));
    cmd.arg("rotate-encryption")
        .args(extra)
        .env("DATABASE_URL", &s.app.database_url)
        .env("MANIFOLD__DATA_DIR", s.app.data_dir.path())
        .env("MANIFOLD__ENCRYPTION__KEY_FILES", list)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("rotate-encryption finished in time")
        .expect("rotate-encryption ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn rotating_from_key_a_to_b_loses_nothing_and_a_missing_key_is_a_clear_error() {
    let keys = tempfile::tempdir().unwrap();
    let a = write_key(keys.path(), "a.key");
    let b = write_key(keys.path(), "b.key");
    let c = write_key(keys.path(), "c.key");
    let app = TestApp::spawn_with(&[("encryption.key_files", a.display().to_string())])
        .await
        .expect("spawn");
    let s = scenario_on(app).await;
    let k = Kubectl::new(&s.kubeconfig, s.dir.path());
    let (one, two) = (marker("one"), marker("two"));
    k.ok_stdin(&["apply", "-f", "-"], &secret_yaml("one", &one, &one))
        .await;
    let rv_one = k
        .jsonpath(&["secret", "one"], "{.metadata.resourceVersion}")
        .await;
    k.ok_stdin(&["apply", "-f", "-"], &secret_yaml("two", &two, &two))
        .await;
    k.ok_stdin(
        &["apply", "-f", "-"],
        &secret_yaml("two", &two, &marker("two-b")),
    )
    .await;
    assert_eq!(sealing_keys(&s.app.database_url).await, ["a.key"]);

    // B first, A still there: new writes use B, A's Secrets still read.
    let (s, k) = restart_with_keys(s, &[&b, &a]).await;
    assert_eq!(
        k.jsonpath(&["secret", "one"], "{.data.token}").await,
        b64(&one)
    );
    let three = marker("three");
    k.ok_stdin(&["apply", "-f", "-"], &secret_yaml("three", &three, &three))
        .await;
    assert_eq!(sealing_keys(&s.app.database_url).await, ["a.key", "b.key"]);

    // A dry run reports A in use and changes nothing.
    let (code, out) = rotate(&s, &[&b, &a], &["--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("\"a.key\""), "{out}");
    assert_eq!(sealing_keys(&s.app.database_url).await, ["a.key", "b.key"]);
    // The rotation moves everything to B, while the server serves.
    let (code, out) = rotate(&s, &[&b, &a], &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("re-encrypted 2 Secrets"), "{out}");
    assert!(out.contains("the other keys may be removed"), "{out}");
    assert_eq!(sealing_keys(&s.app.database_url).await, ["b.key"]);
    // Twice is harmless.
    let (code, out) = rotate(&s, &[&b, &a], &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("re-encrypted 0 Secrets and 0 change-log"),
        "{out}"
    );

    // A removed: after a restart every Secret still reads, and so does the
    // change log (an old revision of `one`, re-encrypted in place).
    let (s, k) = restart_with_keys(s, &[&b]).await;
    for (name, value) in [("one", &one), ("two", &two), ("three", &three)] {
        assert_eq!(
            k.jsonpath(&["secret", name], "{.data.token}").await,
            b64(value),
            "{name}"
        );
    }
    assert!(list_at(&k, &rv_one).await.contains(&b64(&one)));
    assert_sealed(
        &stored_bodies(&s.app.database_url, "one").await,
        &[&one, &b64(&one)],
    );

    // A Secret written under a key that is later dropped (C) is a clear
    // error, not garbage; the others still read; and it can be deleted.
    let (s, k) = restart_with_keys(s, &[&c, &b]).await;
    let lost = marker("lost");
    k.ok_stdin(&["apply", "-f", "-"], &secret_yaml("lost", &lost, &lost))
        .await;
    let (s, k) = restart_with_keys(s, &[&b]).await;
    let err = k.fails(&["get", "secret", "lost"]).await;
    assert!(
        err.contains("cannot be decrypted")
            && err.contains("\"c.key\"")
            && err.contains("encryption.key_files"),
        "{err}"
    );
    assert!(!err.contains(&b64(&lost)), "{err}");
    let err = k.fails(&["get", "secrets"]).await;
    assert!(err.contains("cannot be decrypted"), "{err}");
    assert_eq!(
        k.jsonpath(&["secret", "one"], "{.data.token}").await,
        b64(&one)
    );
    // The feed leaves it out but keeps serving everything else.
    let mut chunks = pb::object_feed_client::ObjectFeedClient::new(s.channel.clone())
        .snapshot(authed(&s.admin, pb::SnapshotRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mut names = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        names.extend(chunk.objects.into_iter().map(|o| o.object_name));
    }
    assert!(
        names.contains(&"one".to_owned()) && !names.contains(&"lost".to_owned()),
        "{names:?}"
    );
    // The rotation reports it and keeps it (it cannot re-encrypt it).
    let (code, out) = rotate(&s, &[&b], &[]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("does not decrypt") && out.contains("NOT CONFIGURED"),
        "{out}"
    );
    k.ok(&["delete", "secret", "lost"]).await;
    let names = k.ok(&["get", "secrets", "-o", "name"]).await;
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["secret/one", "secret/three", "secret/two"]
    );
}

#[tokio::test]
async fn a_secret_reaches_its_site_decrypted_over_the_agent_stream() {
    use manifold_proto::replication::v1::control_message::Msg;

    let h = crate::replication::harness(&[], |_| {}).await;
    let pa2 = h.site("pa2-par", &[("env", "edge")]).await;
    h.scenario(&[("edge", "env=edge")], &["edge"]).await;
    let token = marker("site");
    h.apply(&secret_yaml("db", &token, &token)).await;
    crate::replication::settle().await;

    let mut agent = h.connect(Some(&pa2), "pa2-par", 0).await.expect("connect");
    let seen = agent
        .until(|m| matches!(m, Msg::Apply(a) if crate::replication::named(&a.r#ref) == "Secret/db"))
        .await;
    let Some(Msg::Apply(apply)) = seen.last() else {
        unreachable!()
    };
    let object = format!("{:?}", apply.object);
    assert!(object.contains(&b64(&token)), "{object}");
    assert_sealed(
        &stored_bodies(&h.app.database_url, "db").await,
        &[&token, &b64(&token)],
    );
}
