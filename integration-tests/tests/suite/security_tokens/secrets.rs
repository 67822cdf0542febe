//! Secret values are for editors and above, as in Kubernetes (whose `view`
//! role reads no Secrets): a namespace viewer lists Secrets (kubectl's
//! Table works) but every list and watch comes without `data`,
//! `stringData` and the last-applied annotation, and a get is 403.

use kube::config::{KubeConfigOptions, Kubeconfig};
use manifold_proto::tenancy::v1 as tpb;
use serde_json::Value;

use crate::kubectl::Kubectl;
use crate::vk8s_grpc::{DEMO, get_kubeconfig, scenario, user_with_role};

/// `hunter2`, as Kubernetes stores it, and the plain value.
const VALUE_B64: &str = "aHVudGVyMg==";
const VALUE: &str = "hunter2";

const APPLIED: &str = "apiVersion: v1
kind: Secret
metadata:
  name: applied
stringData:
  token: hunter2
";

fn leaks(text: &str) -> bool {
    text.contains(VALUE_B64) || text.contains(VALUE)
}

async fn kube_client(kubeconfig: &std::path::Path) -> kube::Client {
    manifold_pki::install_default_crypto_provider();
    let yaml = std::fs::read_to_string(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&yaml).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn viewers_list_secrets_without_their_values_and_cannot_get_one() {
    let s = scenario().await;
    let editor = Kubectl::new(&s.kubeconfig, s.dir.path());
    editor
        .ok(&[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=hunter2",
        ])
        .await;
    // Client-side apply copies the whole object, values too, into an annotation.
    editor.ok_stdin(&["apply", "-f", "-"], APPLIED).await;
    assert_eq!(
        editor.jsonpath(&["secret", "db"], "{.data.password}").await,
        VALUE_B64,
        "editors read Secrets in full"
    );

    let vic = user_with_role(
        &s.channel,
        &s.admin,
        "acme",
        "vic",
        tpb::Role::NamespaceViewer,
        "tenants/acme/namespaces/shop",
    )
    .await;
    let path = s.dir.path().join("vic.kubeconfig");
    std::fs::write(
        &path,
        get_kubeconfig(&s.channel, &vic, DEMO).await.kubeconfig,
    )
    .unwrap();
    let viewer = Kubectl::new(&path, s.dir.path());

    // The Table works: names, types, key counts.
    let table = viewer.ok(&["get", "secrets"]).await;
    let db = table
        .lines()
        .find(|l| l.starts_with("db "))
        .unwrap_or_else(|| panic!("db in:\n{table}"));
    let cells: Vec<&str> = db.split_whitespace().collect();
    assert_eq!(&cells[1..3], ["Opaque", "1"], "{table}");
    // A list (and one narrowed to a name) carries no values.
    for args in [
        vec!["get", "secrets", "-o", "json"],
        vec![
            "get",
            "secrets",
            "--field-selector",
            "metadata.name=applied",
            "-o",
            "yaml",
        ],
    ] {
        let text = viewer.ok(&args).await;
        assert!(!leaks(&text), "{args:?} leaks a value:\n{text}");
        assert!(text.contains("applied"), "{text}");
    }
    let list: Value =
        serde_json::from_str(&viewer.ok(&["get", "secrets", "-o", "json"]).await).unwrap();
    for item in list["items"].as_array().unwrap() {
        assert!(
            item.get("data").is_none() && item.get("stringData").is_none(),
            "{item}"
        );
        assert!(
            item.pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
                .is_none(),
            "{item}"
        );
    }
    // A watch carries none either (the server ends it after two seconds).
    let watched = viewer
        .ok(&[
            "get",
            "--raw",
            "/api/v1/namespaces/shop/secrets?watch=true&timeoutSeconds=2",
        ])
        .await;
    assert!(
        watched.contains("\"ADDED\"") && !leaks(&watched),
        "{watched}"
    );
    // Nor the objects a Table's rows carry, whatever includeObject asks.
    let client = kube_client(&path).await;
    for include in ["Object", "Metadata"] {
        let request = http::Request::get(format!(
            "/api/v1/namespaces/shop/secrets?includeObject={include}"
        ))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
        let text = client.request_text(request).await.expect("a Table");
        assert!(
            text.contains("\"Table\"") && !leaks(&text),
            "{include}: {text}"
        );
    }

    // Getting one is refused as Kubernetes' RBAC refuses it.
    let refused = viewer.fails(&["get", "secret", "db", "-o", "yaml"]).await;
    assert!(
        refused.contains("Forbidden")
            && refused.contains(r#"secrets "db" is forbidden"#)
            && refused.contains(r#"cannot get resource "secrets""#),
        "{refused}"
    );
    assert!(!leaks(&refused), "{refused}");
    // `kubectl auth can-i` tells the same story.
    let can = |verb: &'static str| {
        let viewer = &viewer;
        async move {
            let o = viewer.run(&["auth", "can-i", verb, "secrets"]).await;
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        }
    };
    assert!(can("get").await.starts_with("no"));
    assert_eq!(can("list").await, "yes");
    assert_eq!(can("watch").await, "yes");
    // Everything else a viewer reads is unchanged.
    editor
        .ok(&["create", "configmap", "cfg", "--from-literal=k=visible"])
        .await;
    assert_eq!(
        viewer.jsonpath(&["configmap", "cfg"], "{.data.k}").await,
        "visible"
    );
}
