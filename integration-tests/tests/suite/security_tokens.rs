//! Tokens, scope and agent identity, attacked the way an attacker would:
//! a scoped operator token reaching for every tenant, tokens minting
//! longer-lived or wider tokens and surviving their parent's revocation,
//! long-lived streams outliving their credential, viewers reading Secret
//! values, a stolen agent certificate renewed beside the real agent, and
//! a site making its pod answer for another site's pod. The threat model
//! these walls belong to is `docs/security-tokens.md`.

mod agents;
mod lineage;
mod pods;
mod scope;
mod secrets;
mod streams;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use manifold_integration_tests::{TestApp, authed, tool};
use manifold_proto::tenancy::v1 as tpb;
use tonic::transport::Channel;

/// The bearer token in a kubeconfig `GetKubeconfig` returned.
pub(crate) fn token_of(kubeconfig: &str) -> String {
    let doc: serde_json::Value = serde_yaml_ng::from_str(kubeconfig).expect("kubeconfig YAML");
    doc["users"][0]["user"]["token"]
        .as_str()
        .expect("a token in the kubeconfig")
        .to_owned()
}

/// A client process left running (a watch, `logs -f`, a streaming
/// grpcurl), its output in files so it never blocks on a full pipe.
pub(crate) struct Running {
    pub what: String,
    child: tokio::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn spawn(mut cmd: tokio::process::Command, what: &str, dir: &Path) -> Running {
        let slug: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let stdout = dir.join(format!("{slug}.out"));
        let stderr = dir.join(format!("{slug}.err"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        Running {
            what: what.to_owned(),
            child,
            stdout,
            stderr,
        }
    }

    /// Still running (not exited on its own).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("child status").is_none()
    }

    /// Waits up to `limit` for the process to end by itself.
    pub async fn ends_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|s| s.expect("child ran"))
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// `kubectl -n shop ARGS` with `kubeconfig`, left running.
pub(crate) fn spawn_kubectl(kubeconfig: &Path, dir: &Path, args: &[&str]) -> Running {
    let mut cmd = tokio::process::Command::new(tool("kubectl").expect("kubectl"));
    cmd.args(["-n", "shop"])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir);
    Running::spawn(cmd, &format!("kubectl {}", args.join(" ")), dir)
}

/// A streaming grpcurl call with `token`, left running.
pub(crate) fn spawn_grpcurl(
    app: &TestApp,
    dir: &Path,
    token: &str,
    data: &str,
    method: &str,
) -> Running {
    let mut cmd = tokio::process::Command::new(tool("grpcurl").expect("grpcurl"));
    cmd.arg("-cacert")
        .arg(app.ca_file())
        .args(["-H", &format!("authorization: Bearer {token}")])
        .args(["-d", data])
        .arg(app.grpc_addr.to_string())
        .arg(method);
    Running::spawn(cmd, &format!("grpcurl {method}"), dir)
}

/// grpcurl's one-line summary of a failed call: `Code: X`.
pub(crate) fn grpc_code(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Code: "))
        .unwrap_or_else(|| panic!("no gRPC code in {text:?}"))
        .to_owned()
}

/// A token for `user` (its own parent: `users/x` or
/// `tenants/t/users/x`), minted with `token`, valid `ttl` seconds.
pub(crate) async fn mint(
    ch: &Channel,
    token: &str,
    user: &str,
    ttl: i64,
    scope: &str,
) -> Result<tpb::CreateApiTokenResponse, tonic::Status> {
    tpb::api_token_service_client::ApiTokenServiceClient::new(ch.clone())
        .create_api_token(authed(
            token,
            tpb::CreateApiTokenRequest {
                parent: user.into(),
                token: Some(tpb::ApiToken {
                    scope: scope.into(),
                    ..Default::default()
                }),
                ttl: Some(prost_types::Duration {
                    seconds: ttl,
                    nanos: 0,
                }),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

/// Revokes token `name` (`{user}/tokens/{id}`) as `token`.
pub(crate) async fn revoke(ch: &Channel, token: &str, name: &str) {
    tpb::api_token_service_client::ApiTokenServiceClient::new(ch.clone())
        .revoke_api_token(authed(
            token,
            tpb::RevokeApiTokenRequest { name: name.into() },
        ))
        .await
        .expect("revoke token");
}

/// The code `WhoAmI` answers `token` with (`Ok` when it authenticates).
pub(crate) async fn who_am_i(ch: &Channel, token: &str) -> tonic::Code {
    match tpb::authorization_service_client::AuthorizationServiceClient::new(ch.clone())
        .who_am_i(authed(token, tpb::WhoAmIRequest {}))
        .await
    {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// The token name a token's `WhoAmI` reports.
pub(crate) async fn token_name(ch: &Channel, token: &str) -> String {
    tpb::authorization_service_client::AuthorizationServiceClient::new(ch.clone())
        .who_am_i(authed(token, tpb::WhoAmIRequest {}))
        .await
        .expect("who am i")
        .into_inner()
        .token
}

/// Waits (bounded) until `token` no longer authenticates anywhere in the
/// process (the auth cache of the tests lives one second).
pub(crate) async fn until_refused(ch: &Channel, token: &str) -> tonic::Code {
    let mut code = tonic::Code::Ok;
    for _ in 0..40 {
        code = who_am_i(ch, token).await;
        if code != tonic::Code::Ok {
            return code;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    code
}
