//! The Terraform provider (`services/terraform-provider-manifold`) driven by
//! the real Terraform (1.15.5, `.tools/bin/terraform`), offline, through a CLI
//! config whose `dev_overrides` point at the provider binary this package
//! builds (`terraform-provider-manifold-dev`). Checks go through the gRPC API
//! and the real kubectl.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use manifold_integration_tests::{TestApp, authed, tool};
use manifold_proto::{sites::v1 as spb, tenancy::v1 as tpb, vk8s::v1 as vpb};
use serde_json::Value as Json;
use tonic::{Code, transport::Channel};

mod configs;

/// One Terraform command may take this long (the provider's own API calls
/// time out well before).
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// A Terraform working directory wired to the provider under test and to one
/// control plane.
struct Terraform {
    root: tempfile::TempDir,
    env: Vec<(String, String)>,
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Terraform {
    fn new(app: &TestApp) -> Terraform {
        let root = tempfile::tempdir().expect("tempdir");
        let plugins = root.path().join("plugins");
        let work = root.path().join("work");
        let home = root.path().join("home");
        for d in [&plugins, &work, &home] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        // Terraform looks for `terraform-provider-<type>` in the override directory.
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_terraform-provider-manifold-dev"),
            plugins.join("terraform-provider-manifold"),
        )
        .expect("link the provider");
        let cli_config = root.path().join("cli.tfrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"{}\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
                configs::SOURCE,
                plugins.display()
            ),
        )
        .expect("write the CLI config");
        let env = [
            ("TF_CLI_CONFIG_FILE", cli_config.display().to_string()),
            ("TF_IN_AUTOMATION", "1".into()),
            ("TF_INPUT", "0".into()),
            ("CHECKPOINT_DISABLE", "1".into()),
            ("HOME", home.display().to_string()),
            ("TF_DATA_DIR", work.join(".terraform").display().to_string()),
            ("MANIFOLD_ENDPOINT", format!("https://{}", app.grpc_addr)),
            ("MANIFOLD_CA_FILE", app.ca_file().display().to_string()),
            ("MANIFOLD_TOKEN", app.admin_token.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Terraform { root, env }
    }

    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    fn write(&self, main_tf: &str) {
        std::fs::write(self.work().join("main.tf"), main_tf).expect("write main.tf");
    }

    fn unset_env(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    fn set_env(&mut self, key: &str, value: String) {
        self.unset_env(key);
        self.env.push((key.to_owned(), value));
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(tool("terraform").expect("terraform"));
        cmd.args(args)
            .current_dir(self.work())
            .env_remove("TF_LOG")
            .env_remove("MANIFOLD_ENDPOINT")
            .env_remove("MANIFOLD_CA_FILE")
            .env_remove("MANIFOLD_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn terraform");
        tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("terraform {args:?} did not finish in {STEP_TIMEOUT:?}"))
            .expect("terraform ran")
    }

    /// stdout of a command that must succeed.
    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            o.status.success(),
            "terraform {args:?} failed: {}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// stdout + stderr of a command that must fail.
    async fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            !o.status.success(),
            "terraform {args:?} should have failed: {}",
            text(&o)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    async fn apply(&self) -> String {
        self.ok(&["apply", "-auto-approve", "-input=false", "-no-color"])
            .await
    }

    /// Plans into `tfplan` and returns `(address, actions)` of every managed
    /// resource the plan would change.
    async fn planned_changes(&self) -> Vec<(String, Vec<String>)> {
        self.ok(&["plan", "-input=false", "-no-color", "-out=tfplan"])
            .await;
        let plan: Json =
            serde_json::from_str(&self.ok(&["show", "-json", "tfplan"]).await).expect("plan JSON");
        let mut out: Vec<(String, Vec<String>)> = plan["resource_changes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|c| c["mode"] == "managed")
            .map(|c| {
                let actions = c["change"]["actions"]
                    .as_array()
                    .expect("actions")
                    .iter()
                    .map(|a| a.as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>();
                (
                    c["address"].as_str().unwrap_or_default().to_owned(),
                    actions,
                )
            })
            .filter(|(_, a)| a != &["no-op"])
            .collect();
        out.sort();
        out
    }

    /// `terraform plan -detailed-exitcode` says there is nothing to do.
    async fn assert_no_changes(&self) {
        let o = self
            .run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"])
            .await;
        assert_eq!(
            o.status.code(),
            Some(0),
            "expected an empty plan: {}",
            text(&o)
        );
    }

    /// The state as `terraform show -json` prints it (sensitive values included).
    async fn state(&self) -> Json {
        serde_json::from_str(&self.ok(&["show", "-json"]).await).expect("state JSON")
    }
}

/// The attribute values of `address` in `terraform show -json` output.
fn values<'a>(state: &'a Json, address: &str) -> &'a Json {
    state["values"]["root_module"]["resources"]
        .as_array()
        .expect("resources in state")
        .iter()
        .find(|r| r["address"] == address)
        .map(|r| &r["values"])
        .unwrap_or_else(|| panic!("{address} is not in the state: {state:#}"))
}

fn changes(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = pairs
        .iter()
        .map(|(a, acts)| {
            (
                (*a).to_owned(),
                acts.iter().map(|s| (*s).to_owned()).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(tool("kubectl").expect("kubectl"));
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn kubectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
    }
    let o = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished in time")
        .expect("kubectl ran");
    assert!(o.status.success(), "kubectl {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {:?}", v.into_inner()),
        Err(s) => s.code(),
    }
}

const VK8S: &str = "tenants/acme/namespaces/shop/virtualClusters/demo";

/// Create, read a kubeconfig and deploy through it with kubectl, converge
/// (empty second plan), update in place and replace, recover from an
/// out-of-band delete, import, destroy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_manages_tenant_to_vk8s_and_kubectl_deploys() {
    let app = TestApp::spawn().await.expect("spawn the control plane");
    let ch: Channel = app.channel().await.expect("channel");
    let admin = app.admin_token.clone();
    let tf = Terraform::new(&app);

    // ---- create everything, then check it through the API
    tf.write(configs::V1);
    let out = tf.apply().await;
    assert!(out.contains("Apply complete! Resources: 8 added"), "{out}");

    let vc = vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch.clone())
        .get_virtual_cluster(authed(
            &admin,
            vpb::GetVirtualClusterRequest { name: VK8S.into() },
        ))
        .await
        .expect("the vK8s exists")
        .into_inner();
    assert_eq!(vc.display_name, "Demo");
    assert_eq!(
        vc.virtual_sites,
        ["tenants/acme/namespaces/shop/virtualSites/all-edges"]
    );
    let state = tf.state().await;
    let site = values(&state, "manifold_site.par");
    assert!(
        site["registration_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "registration token in state: {site:#}"
    );
    assert_eq!(site["state"], "REGISTERED");
    assert_eq!(site["pod_security"], "BASELINE", "computed default");
    let token = values(&state, "manifold_api_token.ci");
    let secret = token["secret"].as_str().expect("token secret").to_owned();
    let who = tpb::authorization_service_client::AuthorizationServiceClient::new(ch.clone())
        .who_am_i(authed(&secret, tpb::WhoAmIRequest {}))
        .await
        .expect("the minted token works")
        .into_inner();
    assert_eq!(who.token_scope, "tenants/acme/namespaces/shop");
    let outputs: Json =
        serde_json::from_str(&tf.ok(&["output", "-json"]).await).expect("outputs JSON");
    assert_eq!(
        outputs["edge_sites"]["value"],
        serde_json::json!(["sites/pa2-par"])
    );
    assert_eq!(outputs["par_location"]["value"], "Paris");

    // ---- the kubeconfig data source drives the real kubectl
    let kubeconfig_yaml = state["values"]["root_module"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "data.manifold_kubeconfig.demo")
        .and_then(|r| r["values"]["kubeconfig"].as_str())
        .expect("kubeconfig in state")
        .to_owned();
    let kubeconfig = tf.root.path().join("demo.kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml).unwrap();
    let home = tf.root.path().join("home");
    let applied = kubectl(
        &kubeconfig,
        &home,
        &["apply", "-f", "-"],
        Some(configs::DEPLOYMENT),
    )
    .await;
    assert!(
        applied.contains("deployment.apps/productpage created"),
        "{applied}"
    );
    let replicas = kubectl(
        &kubeconfig,
        &home,
        &[
            "get",
            "deployment",
            "productpage",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    )
    .await;
    assert_eq!(replicas, "2");

    // ---- converged: a second plan is empty
    tf.assert_no_changes().await;

    // ---- in-place updates and a replacement, planned exactly
    tf.write(configs::V2);
    assert_eq!(
        tf.planned_changes().await,
        changes(&[
            ("manifold_api_token.ci", &["delete", "create"]),
            ("manifold_namespace.shop", &["update"]),
            ("manifold_site.par", &["update"]),
            ("manifold_virtual_k8s.demo", &["update"]),
            ("manifold_virtual_site.edges", &["update"]),
        ])
    );
    tf.ok(&["apply", "-input=false", "-no-color", "tfplan"])
        .await;
    let vc = vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch.clone())
        .get_virtual_cluster(authed(
            &admin,
            vpb::GetVirtualClusterRequest { name: VK8S.into() },
        ))
        .await
        .expect("the vK8s still exists")
        .into_inner();
    assert_eq!(
        vc.uid,
        values(&state, "manifold_virtual_k8s.demo")["uid"],
        "updated in place"
    );
    assert_eq!(vc.display_name, "Demo v2");
    assert_eq!(vc.labels.get("team").map(String::as_str), Some("web"));
    let vs = spb::virtual_site_service_client::VirtualSiteServiceClient::new(ch.clone())
        .get_virtual_site(authed(
            &admin,
            spb::GetVirtualSiteRequest {
                name: "tenants/acme/namespaces/shop/virtualSites/all-edges".into(),
            },
        ))
        .await
        .expect("virtual site")
        .into_inner();
    assert!(vs.site_selector.contains("tier"), "{}", vs.site_selector);
    let outputs: Json =
        serde_json::from_str(&tf.ok(&["output", "-json"]).await).expect("outputs JSON");
    assert_eq!(
        outputs["par_location"]["value"], "Paris 2",
        "site updated in place"
    );
    let par = spb::site_service_client::SiteServiceClient::new(ch.clone())
        .get_site(authed(
            &admin,
            spb::GetSiteRequest {
                name: "sites/pa2-par".into(),
            },
        ))
        .await
        .expect("site")
        .into_inner();
    assert_eq!(par.pod_security(), spb::PodSecurityLevel::Restricted);
    let old_token = tpb::api_token_service_client::ApiTokenServiceClient::new(ch.clone())
        .get_api_token(authed(
            &admin,
            tpb::GetApiTokenRequest {
                name: token["name"].as_str().unwrap().into(),
            },
        ))
        .await
        .expect("old token")
        .into_inner();
    assert_eq!(
        old_token.state,
        tpb::api_token::State::Revoked as i32,
        "replaced token revoked"
    );
    tf.assert_no_changes().await;
    let state_v2 = tf.state().await;

    // ---- deleted outside Terraform: refresh drops it, the plan recreates it
    let binding = values(&tf.state().await, "manifold_role_binding.ann")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    tpb::role_binding_service_client::RoleBindingServiceClient::new(ch.clone())
        .delete_role_binding(authed(
            &admin,
            tpb::DeleteRoleBindingRequest { name: binding },
        ))
        .await
        .expect("delete the binding behind Terraform's back");
    assert_eq!(
        tf.planned_changes().await,
        changes(&[("manifold_role_binding.ann", &["create"])])
    );
    tf.ok(&["apply", "-input=false", "-no-color", "tfplan"])
        .await;
    tf.assert_no_changes().await;

    // ---- import an existing vK8s by name
    tf.ok(&["state", "rm", "-no-color", "manifold_virtual_k8s.demo"])
        .await;
    let out = tf
        .ok(&[
            "import",
            "-input=false",
            "-no-color",
            "manifold_virtual_k8s.demo",
            VK8S,
        ])
        .await;
    assert!(out.contains("Import successful"), "{out}");
    tf.assert_no_changes().await;

    // ---- import of an object without labels: null, like the config, so
    // the plan is empty (not `labels = {} -> null`)
    tf.ok(&["state", "rm", "-no-color", "manifold_namespace.shop"])
        .await;
    let out = tf
        .ok(&[
            "import",
            "-input=false",
            "-no-color",
            "manifold_namespace.shop",
            "tenants/acme/namespaces/shop",
        ])
        .await;
    assert!(out.contains("Import successful"), "{out}");
    assert!(
        values(&tf.state().await, "manifold_namespace.shop")["labels"].is_null(),
        "no labels imported as null"
    );
    tf.assert_no_changes().await;

    // ---- destroy leaves nothing behind
    let out = tf
        .ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])
        .await;
    assert!(
        out.contains("Destroy complete! Resources: 8 destroyed"),
        "{out}"
    );
    assert_eq!(
        code(
            vpb::virtual_cluster_service_client::VirtualClusterServiceClient::new(ch.clone())
                .get_virtual_cluster(authed(
                    &admin,
                    vpb::GetVirtualClusterRequest { name: VK8S.into() }
                ))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            tpb::tenant_service_client::TenantServiceClient::new(ch.clone())
                .get_tenant(authed(
                    &admin,
                    tpb::GetTenantRequest {
                        name: "tenants/acme".into()
                    }
                ))
                .await
        ),
        Code::NotFound
    );
    let site = spb::site_service_client::SiteServiceClient::new(ch.clone())
        .get_site(authed(
            &admin,
            spb::GetSiteRequest {
                name: "sites/pa2-par".into(),
            },
        ))
        .await
        .expect("decommissioned sites stay readable")
        .into_inner();
    assert_eq!(site.state, spb::site::State::Decommissioned as i32);
    let new_secret = values(&state_v2, "manifold_api_token.ci")["secret"]
        .as_str()
        .expect("new token secret")
        .to_owned();
    for s in [&secret, &new_secret] {
        assert_eq!(
            code(
                tpb::authorization_service_client::AuthorizationServiceClient::new(ch.clone())
                    .who_am_i(authed(s, tpb::WhoAmIRequest {}))
                    .await
            ),
            Code::Unauthenticated,
            "tokens Terraform minted no longer work"
        );
    }
    assert_eq!(tf.ok(&["state", "list"]).await.trim(), "");
}

/// Invalid input and API failures come back as diagnostics naming the
/// attribute or carrying the gRPC message; nothing is half-created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_reports_invalid_input_and_api_errors() {
    let app = TestApp::spawn().await.expect("spawn the control plane");
    let mut tf = Terraform::new(&app);

    tf.write(configs::INVALID_ID);
    let err = tf.fails(&["validate", "-no-color"]).await;
    assert!(err.contains("Invalid tenant_id"), "{err}");
    assert!(err.contains("\"Bad_Tenant\" is not a valid id"), "{err}");
    assert!(
        err.contains("tenant_id = \"Bad_Tenant\""),
        "points at the attribute: {err}"
    );

    tf.write(configs::INVALID_ENUM);
    let err = tf.fails(&["plan", "-input=false", "-no-color"]).await;
    assert!(err.contains("Invalid role"), "{err}");
    assert!(err.contains("role"), "{err}");

    tf.write(configs::MISSING_ATTRIBUTE);
    let err = tf.fails(&["validate", "-no-color"]).await;
    assert!(err.contains("Missing required argument"), "{err}");
    assert!(err.contains("\"site_selector\""), "{err}");

    tf.write(configs::API_ERROR);
    let err = tf
        .fails(&["apply", "-auto-approve", "-input=false", "-no-color"])
        .await;
    assert!(err.contains("CreateNamespace failed"), "{err}");
    assert!(err.contains("NotFound"), "gRPC code in the detail: {err}");
    assert_eq!(
        tf.ok(&["state", "list"]).await.trim(),
        "",
        "nothing recorded"
    );

    tf.write(configs::BAD_TIMEOUT);
    let err = tf.fails(&["plan", "-input=false", "-no-color"]).await;
    assert!(err.contains("Invalid timeout"), "{err}");

    tf.write(configs::INVALID_SITE_ID);
    let err = tf.fails(&["validate", "-no-color"]).await;
    assert!(err.contains("Invalid site_id"), "{err}");
    assert!(err.contains("site_id = \"edge.ny.\""), "{err}");

    // Overflowing timeouts are a diagnostic, not a provider crash.
    tf.write(configs::SITES_QUERY);
    tf.set_env("MANIFOLD_TIMEOUT", "99999999999999999999h".into());
    let err = tf.fails(&["plan", "-input=false", "-no-color"]).await;
    assert!(err.contains("Invalid timeout"), "{err}");
    assert!(err.contains("too long"), "{err}");
    tf.unset_env("MANIFOLD_TIMEOUT");

    // The token never travels in cleartext.
    tf.set_env("MANIFOLD_ENDPOINT", format!("http://{}", app.grpc_addr));
    let err = tf.fails(&["plan", "-input=false", "-no-color"]).await;
    assert!(err.contains("Insecure or unsupported endpoint"), "{err}");
    assert!(err.contains("cleartext"), "{err}");

    // A token that cannot be a header value is named, not silently dropped.
    tf.set_env("MANIFOLD_ENDPOINT", format!("https://{}", app.grpc_addr));
    tf.set_env("MANIFOLD_TOKEN", "mft_not\nonelinE".into());
    let err = tf.fails(&["plan", "-input=false", "-no-color"]).await;
    assert!(err.contains("Invalid Manifold API token"), "{err}");
    tf.set_env("MANIFOLD_TOKEN", app.admin_token.clone());

    // A server that accepts connections and never answers: the provider's
    // timeout bounds the call.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    tf.set_env(
        "MANIFOLD_ENDPOINT",
        format!("https://{}", silent.local_addr().unwrap()),
    );
    tf.set_env("MANIFOLD_TIMEOUT", "2s".into());
    tf.write(configs::SITES_QUERY);
    let started = std::time::Instant::now();
    let err = tf.fails(&["plan", "-input=false", "-no-color"]).await;
    assert!(err.contains("Reading manifold_sites timed out"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by the 2 s timeout, took {:?}: {err}",
        started.elapsed()
    );
    drop(silent);

    tf.write(configs::API_ERROR);
    tf.unset_env("MANIFOLD_TOKEN");
    let err = tf.fails(&["plan", "-input=false", "-no-color"]).await;
    assert!(err.contains("Missing Manifold API token"), "{err}");
    assert!(err.contains("MANIFOLD_TOKEN"), "{err}");
}

/// CreateSite succeeds and CreateRegistrationToken fails: the site is kept in
/// the state (tainted), not decommissioned (its id could never be used
/// again). A site decommissioned outside Terraform is an error on refresh,
/// not a create that can never succeed. The token comes with the trailing
/// newline `file()` keeps, and the site id has dots and digits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_keeps_a_half_created_site_and_refuses_a_decommissioned_one() {
    let app = TestApp::spawn().await.expect("spawn the control plane");
    let ch: Channel = app.channel().await.expect("channel");
    let admin = app.admin_token.clone();
    let mut tf = Terraform::new(&app);
    tf.set_env("MANIFOLD_TOKEN", format!("{admin}\n"));
    let sites = spb::site_service_client::SiteServiceClient::new(ch.clone());
    let get = |sites: spb::site_service_client::SiteServiceClient<Channel>| {
        let admin = admin.clone();
        async move {
            let mut sites = sites;
            sites
                .get_site(authed(
                    &admin,
                    spb::GetSiteRequest {
                        name: "sites/1.ny.edge".into(),
                    },
                ))
                .await
                .expect("the site exists")
                .into_inner()
        }
    };

    tf.write(configs::SITE_TOKEN_FAILS);
    let err = tf
        .fails(&["apply", "-auto-approve", "-input=false", "-no-color"])
        .await;
    assert!(err.contains("CreateRegistrationToken failed"), "{err}");
    assert!(err.contains("ttl_seconds"), "server's violation: {err}");
    assert!(err.contains("kept in the state"), "{err}");
    assert_eq!(
        get(sites.clone()).await.state,
        spb::site::State::Registered as i32,
        "not decommissioned"
    );
    let state = tf.state().await;
    let r = state["values"]["root_module"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["address"] == "manifold_site.ny")
        .unwrap_or_else(|| panic!("the site is in the state: {state:#}"))
        .clone();
    assert_eq!(r["tainted"], true, "{r:#}");
    assert_eq!(r["values"]["name"], "sites/1.ny.edge");
    assert!(r["values"]["registration_token"].is_null(), "{r:#}");
    assert_eq!(
        r["values"]["labels"],
        serde_json::json!({}),
        "configured {{}} kept"
    );

    // Recovery the diagnostic suggests: untaint; the plan is then empty.
    tf.ok(&["untaint", "-no-color", "manifold_site.ny"]).await;
    tf.assert_no_changes().await;

    // Decommissioned behind Terraform's back: refresh says why it cannot be
    // recreated instead of planning a create that would fail.
    sites
        .clone()
        .delete_site(authed(
            &admin,
            spb::DeleteSiteRequest {
                name: "sites/1.ny.edge".into(),
                etag: String::new(),
            },
        ))
        .await
        .expect("decommission");
    let err = tf.fails(&["plan", "-input=false", "-no-color"]).await;
    assert!(
        err.contains("Site decommissioned outside Terraform"),
        "{err}"
    );
    assert!(err.contains("cannot be reused"), "{err}");
    assert!(err.contains("site_id"), "{err}");
    tf.ok(&["state", "rm", "-no-color", "manifold_site.ny"])
        .await;
    assert_eq!(tf.ok(&["state", "list"]).await.trim(), "");
}
