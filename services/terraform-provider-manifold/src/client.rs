//! The provider's own configuration (endpoint, CA bundle, token, timeout,
//! each with an environment variable fallback) and the authenticated gRPC
//! client to Manifold it produces.

use std::time::Duration;

use manifold_proto::{sites::v1 as sites, tenancy::v1 as tenancy, vk8s::v1 as vk8s};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::diag::Diag;
use crate::schema::{Attr, Schema};
use crate::value::{Obj, ObjExt, Type, Value};

pub const ENV_ENDPOINT: &str = "MANIFOLD_ENDPOINT";
pub const ENV_CA_FILE: &str = "MANIFOLD_CA_FILE";
pub const ENV_CA_PEM: &str = "MANIFOLD_CA_PEM";
pub const ENV_TOKEN: &str = "MANIFOLD_TOKEN";
pub const ENV_TIMEOUT: &str = "MANIFOLD_TIMEOUT";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest accepted timeout (gRPC cannot carry arbitrary deadlines anyway).
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

pub fn provider_schema() -> Schema {
    Schema::new(
        "Manifold: tenants, namespaces, sites, virtual sites and virtual Kubernetes clusters.",
        vec![
            Attr::optional(
                "endpoint",
                Type::String,
                "gRPC endpoint of the control plane, e.g. `https://manifold.example.com:7443` (a bare host:port means https; http:// is refused, the token never travels in cleartext). Default: $MANIFOLD_ENDPOINT.",
            ),
            Attr::optional(
                "ca_file",
                Type::String,
                "Path of the PEM CA bundle that signed the server certificate. Default: $MANIFOLD_CA_PEM (the bundle itself), else $MANIFOLD_CA_FILE.",
            ),
            Attr::optional(
                "ca_pem",
                Type::String,
                "The PEM CA bundle itself, instead of ca_file. Configured ca_pem or ca_file win over both environment variables.",
            ),
            Attr::optional(
                "token",
                Type::String,
                "API token (`mft_…`) sent as bearer; surrounding whitespace (e.g. the newline `file()` keeps) is ignored. Default: $MANIFOLD_TOKEN.",
            )
            .sensitive(),
            Attr::optional(
                "timeout",
                Type::String,
                "Upper bound of each API call, e.g. `30s`, `2m`; at most 24h. Default: $MANIFOLD_TIMEOUT or 60s.",
            ),
        ],
    )
}

/// `30s`, `2m`, `1h30m`, `500ms`. None when malformed or too large for a
/// `Duration`.
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
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
    }
    Some(total)
}

/// A timeout setting: a positive duration up to `MAX_TIMEOUT`.
fn parse_timeout(t: &str) -> Result<Duration, Diag> {
    match parse_duration(t) {
        Some(d) if d.is_zero() => Err(Diag::attr(
            "timeout",
            "Invalid timeout",
            format!("{t:?} is zero; write e.g. \"30s\", \"2m\" or \"1h\"."),
        )),
        Some(d) if d <= MAX_TIMEOUT => Ok(d),
        Some(_) => Err(too_long(t)),
        // Well-formed but overflowing: too long rather than malformed.
        None if t.trim().bytes().all(|b| b.is_ascii_alphanumeric())
            && t.trim().starts_with(|c: char| c.is_ascii_digit())
            && t.trim().ends_with(['s', 'm', 'h']) =>
        {
            Err(too_long(t))
        }
        None => Err(Diag::attr(
            "timeout",
            "Invalid timeout",
            format!("{t:?} is not a duration; write e.g. \"30s\", \"2m\" or \"1h\"."),
        )),
    }
}

fn too_long(t: &str) -> Diag {
    Diag::attr(
        "timeout",
        "Invalid timeout",
        format!("{t:?} is too long; the timeout may be at most 24h."),
    )
}

/// Static checks of the provider block (values may still be unknown).
pub fn validate_config(config: &Obj) -> Vec<Diag> {
    let mut diags = Vec::new();
    if let Some(t) = config.opt_str("timeout")
        && let Err(d) = parse_timeout(t)
    {
        diags.push(d);
    }
    if let Some(e) = config.opt_str("endpoint")
        && let Err(d) = endpoint_url(e)
    {
        diags.push(d);
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
    Ok(configured(config, name)?.or_else(|| env_var(env)))
}

/// The setting as configured in the provider block.
fn configured(config: &Obj, name: &str) -> Result<Option<String>, Diag> {
    match config.val(name) {
        Value::Unknown => Err(Diag::attr(
            name,
            format!("{name} is not known yet"),
            "The provider needs its configuration before planning; do not derive it from resources created in the same run.",
        )),
        Value::String(s) if !s.is_empty() => Ok(Some(s.clone())),
        _ => Ok(None),
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The CA bundle: the provider block wins over the environment; in each,
/// the PEM itself over a file. `env` looks up environment variables.
fn ca_bundle(config: &Obj, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, Diag> {
    let read = |path: String| {
        std::fs::read_to_string(&path).map(Some).map_err(|e| {
            Diag::attr(
                "ca_file",
                "Cannot read the CA bundle",
                format!("{path}: {e}"),
            )
        })
    };
    match (
        configured(config, "ca_pem")?,
        configured(config, "ca_file")?,
    ) {
        (Some(pem), _) => Ok(Some(pem)),
        (None, Some(path)) => read(path),
        (None, None) => match (env(ENV_CA_PEM), env(ENV_CA_FILE)) {
            (Some(pem), _) => Ok(Some(pem)),
            (None, Some(path)) => read(path),
            (None, None) => Ok(None),
        },
    }
}

/// The URL to dial: https only (a bare host:port means https), since every
/// call carries the token.
fn endpoint_url(endpoint: &str) -> Result<String, Diag> {
    match endpoint.split_once("://") {
        None => Ok(format!("https://{endpoint}")),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => Ok(endpoint.to_owned()),
        Some((scheme, _)) => Err(Diag::attr(
            "endpoint",
            "Insecure or unsupported endpoint",
            format!(
                "{endpoint}: the provider only speaks https ({scheme}:// given); the API token must never travel in cleartext. Use https:// with ca_file."
            ),
        )),
    }
}

/// `authorization: Bearer …` for `token` (trimmed: `file("admin.token")`
/// keeps the trailing newline).
fn bearer(token: &str) -> Result<MetadataValue<Ascii>, Diag> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Diag::attr(
            "token",
            "Missing Manifold API token",
            format!("The token is empty. Set token in the provider block or ${ENV_TOKEN}."),
        ));
    }
    let invalid = || {
        Diag::attr(
            "token",
            "Invalid Manifold API token",
            format!(
                "The token (from the provider block or ${ENV_TOKEN}) contains characters that cannot be sent in a header (spaces, control characters, non-ASCII, inner line breaks); Manifold tokens look like `mft_…`."
            ),
        )
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    let mut v: MetadataValue<Ascii> = format!("Bearer {token}").parse().map_err(|_| invalid())?;
    v.set_sensitive(true);
    Ok(v)
}

/// An authenticated connection to the control plane.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    authorization: MetadataValue<Ascii>,
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
        let authorization = bearer(&token)?;
        let timeout = match setting(config, "timeout", ENV_TIMEOUT)? {
            Some(t) => parse_timeout(&t)?,
            None => DEFAULT_TIMEOUT,
        };
        let ca_pem = ca_bundle(config, env_var)?;
        let url = endpoint_url(&endpoint)?;
        let bad_endpoint = |e: &dyn std::fmt::Display| {
            Diag::attr("endpoint", "Invalid endpoint", format!("{endpoint}: {e}"))
        };
        let mut ep = Endpoint::from_shared(url.clone())
            .map_err(|e| bad_endpoint(&e))?
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .timeout(timeout);
        let pem = ca_pem.ok_or_else(|| {
            Diag::attr(
                "ca_file",
                "Missing CA bundle",
                format!(
                    "An https endpoint needs the CA that signed the server certificate: set ca_file or ca_pem (or ${ENV_CA_FILE} / ${ENV_CA_PEM})."
                ),
            )
        })?;
        ep = ep
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .map_err(|e| bad_endpoint(&e))?;
        Ok(Client {
            channel: ep.connect_lazy(),
            authorization,
            endpoint,
            timeout,
        })
    }

    /// Runs one provider operation (which may make several calls) within the
    /// timeout. tonic's own deadlines do not cover a connection that hangs in
    /// its TLS handshake, so this is the bound users can rely on.
    pub async fn bounded<T, E: From<Diag>>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(E::from(Diag::error(
                format!("{what} timed out"),
                format!(
                    "No answer from {} within {:?} (the provider's timeout; raise it with `timeout` or $MANIFOLD_TIMEOUT).",
                    self.endpoint, self.timeout
                ),
            ))),
        }
    }

    /// `message` with the bearer token and this call's deadline.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut()
            .insert("authorization", self.authorization.clone());
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
        // Overflow is "not a duration", never a panic.
        assert_eq!(parse_duration("18446744073709551615h"), None);
        assert_eq!(parse_duration("5124095576030432h"), None);
        assert_eq!(parse_duration("18446744073709551615s1s"), None);
    }

    fn diag_attr(r: Result<impl std::fmt::Debug, Diag>) -> (String, String) {
        let d = r.expect_err("an error");
        (d.attribute.unwrap_or_default(), d.detail)
    }

    #[test]
    fn timeouts_are_bounded_and_name_the_attribute() {
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timeout("24h").unwrap(), MAX_TIMEOUT);
        let (attr, detail) = diag_attr(parse_timeout("25h"));
        assert_eq!(attr, "timeout");
        assert!(detail.contains("at most 24h"), "{detail}");
        let (attr, detail) = diag_attr(parse_timeout("18446744073709551615h"));
        assert_eq!(attr, "timeout");
        assert!(detail.contains("too long"), "{detail}");
        let (attr, detail) = diag_attr(parse_timeout("0s"));
        assert_eq!(attr, "timeout");
        assert!(detail.contains("zero"), "{detail}");
        let (_, detail) = diag_attr(parse_timeout("soon"));
        assert!(detail.contains("not a duration"), "{detail}");
        let mut config = Obj::new();
        config.insert("timeout".into(), Value::str("99999999999999999999h"));
        let diags = validate_config(&config);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].attribute.as_deref(), Some("timeout"));
    }

    #[test]
    fn tokens_are_trimmed_and_bad_ones_named() {
        let v = bearer("mft_abc\n").unwrap();
        assert_eq!(v.to_str().unwrap(), "Bearer mft_abc");
        assert!(v.is_sensitive());
        let (attr, detail) = diag_attr(bearer("mft_a\nb"));
        assert_eq!(attr, "token");
        assert!(detail.contains("cannot be sent"), "{detail}");
        let (attr, _) = diag_attr(bearer("mft_é"));
        assert_eq!(attr, "token");
        let (attr, _) = diag_attr(bearer(" \n"));
        assert_eq!(attr, "token");
    }

    #[test]
    fn only_https_endpoints() {
        assert_eq!(endpoint_url("h:7443").unwrap(), "https://h:7443");
        assert_eq!(endpoint_url("https://h:7443").unwrap(), "https://h:7443");
        for e in ["http://h:7443", "HTTP://h", "grpc://h:1"] {
            let (attr, detail) = diag_attr(endpoint_url(e));
            assert_eq!(attr, "endpoint");
            assert!(detail.contains("cleartext"), "{detail}");
        }
        let mut config = Obj::new();
        config.insert("endpoint".into(), Value::str("http://h:7443"));
        assert_eq!(
            validate_config(&config)[0].attribute.as_deref(),
            Some("endpoint")
        );
    }

    #[test]
    fn configured_ca_wins_over_the_environment() {
        let file = std::env::temp_dir().join(format!("manifold-ca-{}.pem", std::process::id()));
        std::fs::write(&file, "from the file").unwrap();
        let env = |k: &str| {
            [
                (ENV_CA_PEM, "from $MANIFOLD_CA_PEM"),
                (ENV_CA_FILE, "/nonexistent"),
            ]
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
        };
        let mut config = Obj::new();
        config.insert("ca_file".into(), Value::str(file.display().to_string()));
        let from_file = ca_bundle(&config, env);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(from_file.unwrap().as_deref(), Some("from the file"));
        config.insert("ca_file".into(), Value::Null);
        config.insert("ca_pem".into(), Value::str("inline"));
        assert_eq!(ca_bundle(&config, env).unwrap().as_deref(), Some("inline"));
        assert_eq!(
            ca_bundle(&Obj::new(), env).unwrap().as_deref(),
            Some("from $MANIFOLD_CA_PEM")
        );
        assert_eq!(ca_bundle(&Obj::new(), |_| None).unwrap(), None);
    }
}
