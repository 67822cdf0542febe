//! The provider's own configuration (endpoint, CA bundle, token, timeout,
//! each with an environment variable fallback) and the authenticated gRPC
//! client to Manifold it produces.

use std::time::Duration;

use manifold_proto::{sites::v1 as sites, tenancy::v1 as tenancy, vk8s::v1 as vk8s};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::diag::Diag;
use crate::schema::{Attr, Schema};
use crate::value::{Obj, ObjExt, Type, Value};

pub const ENV_ENDPOINT: &str = "MANIFOLD_ENDPOINT";
pub const ENV_CA_FILE: &str = "MANIFOLD_CA_FILE";
pub const ENV_TOKEN: &str = "MANIFOLD_TOKEN";
pub const ENV_TIMEOUT: &str = "MANIFOLD_TIMEOUT";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

pub fn provider_schema() -> Schema {
    Schema::new(
        "Manifold: tenants, namespaces, sites, virtual sites and virtual Kubernetes clusters.",
        vec![
            Attr::optional(
                "endpoint",
                Type::String,
                "gRPC endpoint of the control plane, e.g. `https://manifold.example.com:7443` (a bare host:port means https). Default: $MANIFOLD_ENDPOINT.",
            ),
            Attr::optional(
                "ca_file",
                Type::String,
                "Path of the PEM CA bundle that signed the server certificate. Default: $MANIFOLD_CA_FILE.",
            ),
            Attr::optional(
                "ca_pem",
                Type::String,
                "The PEM CA bundle itself, instead of ca_file.",
            ),
            Attr::optional(
                "token",
                Type::String,
                "API token (`mft_…`) sent as bearer. Default: $MANIFOLD_TOKEN.",
            )
            .sensitive(),
            Attr::optional(
                "timeout",
                Type::String,
                "Upper bound of each API call, e.g. `30s`, `2m`. Default: $MANIFOLD_TIMEOUT or 60s.",
            ),
        ],
    )
}

/// `30s`, `2m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return None,
        };
    }
    Some(total)
}

/// Static checks of the provider block (values may still be unknown).
pub fn validate_config(config: &Obj) -> Vec<Diag> {
    let mut diags = Vec::new();
    if let Some(t) = config.opt_str("timeout")
        && parse_duration(t).is_none_or(|d| d.is_zero())
    {
        diags.push(Diag::attr(
            "timeout",
            "Invalid timeout",
            format!("{t:?} is not a duration; write e.g. \"30s\", \"2m\" or \"1h\"."),
        ));
    }
    if config.opt_str("ca_file").is_some() && config.opt_str("ca_pem").is_some() {
        diags.push(Diag::attr(
            "ca_pem",
            "Conflicting CA settings",
            "Set ca_file or ca_pem, not both.",
        ));
    }
    diags
}

/// Configured setting, else the environment variable, else None.
fn setting(config: &Obj, name: &str, env: &str) -> Result<Option<String>, Diag> {
    match config.val(name) {
        Value::Unknown => Err(Diag::attr(
            name,
            format!("{name} is not known yet"),
            "The provider needs its configuration before planning; do not derive it from resources created in the same run.",
        )),
        Value::String(s) if !s.is_empty() => Ok(Some(s.clone())),
        _ => Ok(std::env::var(env).ok().filter(|v| !v.is_empty())),
    }
}

/// An authenticated connection to the control plane.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: String,
    endpoint: String,
    pub timeout: Duration,
}

impl Client {
    pub fn from_config(config: &Obj) -> Result<Client, Diag> {
        let endpoint = setting(config, "endpoint", ENV_ENDPOINT)?.ok_or_else(|| {
            Diag::attr(
                "endpoint",
                "Missing Manifold endpoint",
                format!("Set endpoint in the provider block or ${ENV_ENDPOINT}."),
            )
        })?;
        let token = setting(config, "token", ENV_TOKEN)?.ok_or_else(|| {
            Diag::attr(
                "token",
                "Missing Manifold API token",
                format!("Set token in the provider block or ${ENV_TOKEN}."),
            )
        })?;
        let timeout = match setting(config, "timeout", ENV_TIMEOUT)? {
            Some(t) => parse_duration(&t).filter(|d| !d.is_zero()).ok_or_else(|| {
                Diag::attr(
                    "timeout",
                    "Invalid timeout",
                    format!("{t:?} is not a duration; write e.g. \"30s\"."),
                )
            })?,
            None => DEFAULT_TIMEOUT,
        };
        let ca_pem = match setting(config, "ca_pem", "MANIFOLD_CA_PEM")? {
            Some(pem) => Some(pem),
            None => match setting(config, "ca_file", ENV_CA_FILE)? {
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                    Diag::attr(
                        "ca_file",
                        "Cannot read the CA bundle",
                        format!("{path}: {e}"),
                    )
                })?),
                None => None,
            },
        };
        let url = if endpoint.contains("://") {
            endpoint.clone()
        } else {
            format!("https://{endpoint}")
        };
        let bad_endpoint = |e: &dyn std::fmt::Display| {
            Diag::attr("endpoint", "Invalid endpoint", format!("{endpoint}: {e}"))
        };
        let mut ep = Endpoint::from_shared(url.clone())
            .map_err(|e| bad_endpoint(&e))?
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .timeout(timeout);
        if url.starts_with("https://") {
            let pem = ca_pem.ok_or_else(|| {
                Diag::attr(
                    "ca_file",
                    "Missing CA bundle",
                    format!(
                        "An https endpoint needs the CA that signed the server certificate: set ca_file (or ${ENV_CA_FILE}) or ca_pem."
                    ),
                )
            })?;
            ep = ep
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
                .map_err(|e| bad_endpoint(&e))?;
        }
        Ok(Client {
            channel: ep.connect_lazy(),
            token,
            endpoint,
            timeout,
        })
    }

    /// Runs one provider operation (which may make several calls) within the
    /// timeout. tonic's own deadlines do not cover a connection that hangs in
    /// its TLS handshake, so this is the bound users can rely on.
    pub async fn bounded<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = Result<T, Diag>>,
    ) -> Result<T, Diag> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(Diag::error(
                format!("{what} timed out"),
                format!(
                    "No answer from {} within {:?} (the provider's timeout; raise it with `timeout` or $MANIFOLD_TIMEOUT).",
                    self.endpoint, self.timeout
                ),
            )),
        }
    }

    /// `message` with the bearer token and this call's deadline.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        if let Ok(v) = format!("Bearer {}", self.token).parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r.set_timeout(self.timeout);
        r
    }

    pub fn tenants(&self) -> tenancy::tenant_service_client::TenantServiceClient<Channel> {
        tenancy::tenant_service_client::TenantServiceClient::new(self.channel.clone())
    }

    pub fn namespaces(&self) -> tenancy::namespace_service_client::NamespaceServiceClient<Channel> {
        tenancy::namespace_service_client::NamespaceServiceClient::new(self.channel.clone())
    }

    pub fn users(&self) -> tenancy::user_service_client::UserServiceClient<Channel> {
        tenancy::user_service_client::UserServiceClient::new(self.channel.clone())
    }

    pub fn role_bindings(
        &self,
    ) -> tenancy::role_binding_service_client::RoleBindingServiceClient<Channel> {
        tenancy::role_binding_service_client::RoleBindingServiceClient::new(self.channel.clone())
    }

    pub fn api_tokens(&self) -> tenancy::api_token_service_client::ApiTokenServiceClient<Channel> {
        tenancy::api_token_service_client::ApiTokenServiceClient::new(self.channel.clone())
    }

    pub fn sites(&self) -> sites::site_service_client::SiteServiceClient<Channel> {
        sites::site_service_client::SiteServiceClient::new(self.channel.clone())
    }

    pub fn virtual_sites(
        &self,
    ) -> sites::virtual_site_service_client::VirtualSiteServiceClient<Channel> {
        sites::virtual_site_service_client::VirtualSiteServiceClient::new(self.channel.clone())
    }

    pub fn clusters(
        &self,
    ) -> vk8s::virtual_cluster_service_client::VirtualClusterServiceClient<Channel> {
        vk8s::virtual_cluster_service_client::VirtualClusterServiceClient::new(self.channel.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("soon"), None);
    }
}
