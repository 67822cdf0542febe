//! The TLS channel to the control plane and the bearer-token interceptor every
//! client shares.

use std::time::Duration;

use tonic::{
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::{
    config::{ENV_CA_FILE, ENV_ENDPOINT, ENV_TOKEN, Resolved},
    error::{Error, Result},
};

/// `host:port` → `https://host:port`; `https://host:port` kept. Any other
/// scheme is refused: the control plane only speaks TLS, and the bearer token
/// must never be sent in cleartext. `source` names where the value came from
/// (a flag, an environment variable, a context) for the error.
pub fn normalize_endpoint(endpoint: &str, source: &str) -> Result<String> {
    let e = endpoint.trim().trim_end_matches('/');
    let Some((scheme, rest)) = e.split_once("://") else {
        return Ok(format!("https://{e}"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(format!("https://{rest}")),
        "http" => Err(Error::usage(
            format!(
                "refusing the cleartext endpoint {e:?} from {source}: the control plane only \
                 speaks TLS, and the bearer token must never be sent unencrypted"
            ),
            Some(format!("use https://{rest} (or just {rest}) in {source}")),
        )),
        other => Err(Error::usage(
            format!("unsupported scheme {other:?} in the endpoint {e:?} from {source}"),
            Some(format!("use https://{rest} (or just {rest}) in {source}")),
        )),
    }
}

/// Where `settings.endpoint` came from, for errors.
fn endpoint_source(settings: &Resolved) -> String {
    if settings.from_env.contains(&ENV_ENDPOINT) {
        ENV_ENDPOINT.to_owned()
    } else {
        match &settings.context {
            Some(c) => format!(
                "the endpoint of context {c:?} (set it with `mfctl --context {c} login --endpoint`) \
                 or {ENV_ENDPOINT}"
            ),
            None => format!("--endpoint / {ENV_ENDPOINT}"),
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Svc = InterceptedService<Channel, Bearer>;

/// A connected channel plus the credentials to use on it.
#[derive(Clone)]
pub struct Conn {
    pub channel: Channel,
    pub bearer: Bearer,
    pub endpoint: String,
}

impl Conn {
    /// Connects (TLS trusting only the configured CA file) within `timeout`
    /// (TCP connect, TLS and HTTP/2 handshakes together), which also bounds
    /// every call made on the channel.
    pub async fn open(settings: &Resolved, timeout: Duration) -> Result<Conn> {
        let url = normalize_endpoint(&settings.endpoint, &endpoint_source(settings))?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| {
                Error::usage(
                    format!("invalid endpoint {:?}: {e}", settings.endpoint),
                    Some("use HOST:PORT or https://HOST:PORT".to_owned()),
                )
            })?
            .connect_timeout(timeout)
            .timeout(timeout);
        let Some(ca_file) = &settings.ca_file else {
            return Err(Error::usage(
                format!("no CA file to verify {url} with"),
                Some(format!(
                    "pass the control plane's CA bundle (`.manifold/ca.crt` under `make run`) \
                     with `mfctl login --ca-file FILE` or {ENV_CA_FILE}"
                )),
            ));
        };
        let pem = std::fs::read(ca_file).map_err(|e| {
            Error::usage(
                format!("cannot read the CA file {}: {e}", ca_file.display()),
                Some(format!(
                    "point --ca-file / {ENV_CA_FILE} at the control plane's CA bundle"
                )),
            )
        })?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::usage(
                format!("the CA file {} holds no PEM certificate", ca_file.display()),
                Some(format!(
                    "point --ca-file / {ENV_CA_FILE} at the control plane's CA bundle \
                     (`.manifold/ca.crt` under `make run`)"
                )),
            ));
        }
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::usage(format!("TLS settings: {e}"), None))?;
        // `connect_timeout` bounds only the TCP connect: a server that accepts
        // and never answers would stall the TLS/HTTP/2 handshake forever.
        let connected = tokio::time::timeout(timeout, endpoint.connect())
            .await
            .map_err(|_| Error::Connect {
                endpoint: url.clone(),
                cause: format!(
                    "the server did not complete the handshake within {timeout:?} (--timeout)"
                ),
            })?;
        let channel = connected.map_err(|e| {
            let mut cause = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let text = s.to_string();
                if !cause.contains(&text) {
                    cause = format!("{cause}: {text}");
                }
                source = s.source();
            }
            Error::Connect {
                endpoint: url.clone(),
                cause,
            }
        })?;
        let bearer = match &settings.token {
            Some(t) => Some(format!("Bearer {}", t.trim()).parse().map_err(|_| {
                Error::usage(
                    "the token contains characters not allowed in a header",
                    Some(format!(
                        "check {ENV_TOKEN} or log in again with `mfctl login --token-file FILE`"
                    )),
                )
            })?),
            None => None,
        };
        Ok(Conn {
            channel,
            bearer: Bearer(bearer),
            endpoint: url,
        })
    }

    pub fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.bearer.clone())
    }
}

macro_rules! clients {
    ($( $fn:ident => $path:path ),* $(,)?) => {
        impl Conn {
            $(
                pub fn $fn(&self) -> $path {
                    <$path>::new(self.svc())
                }
            )*
        }
    };
}

use manifold_proto::{
    replication::v1 as rpb, sites::v1 as spb, tenancy::v1 as tpb, vk8s::v1 as vpb,
};

clients! {
    tenants => tpb::tenant_service_client::TenantServiceClient<Svc>,
    namespaces => tpb::namespace_service_client::NamespaceServiceClient<Svc>,
    users => tpb::user_service_client::UserServiceClient<Svc>,
    role_bindings => tpb::role_binding_service_client::RoleBindingServiceClient<Svc>,
    tokens => tpb::api_token_service_client::ApiTokenServiceClient<Svc>,
    authz => tpb::authorization_service_client::AuthorizationServiceClient<Svc>,
    sites => spb::site_service_client::SiteServiceClient<Svc>,
    virtual_sites => spb::virtual_site_service_client::VirtualSiteServiceClient<Svc>,
    virtual_clusters => vpb::virtual_cluster_service_client::VirtualClusterServiceClient<Svc>,
    replication => rpb::replication_service_client::ReplicationServiceClient<Svc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_default_to_https() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:7443", "--endpoint").unwrap(),
            "https://127.0.0.1:7443"
        );
        assert_eq!(
            normalize_endpoint("HTTPS://h:1/", "--endpoint").unwrap(),
            "https://h:1"
        );
    }

    #[test]
    fn cleartext_endpoints_are_refused() {
        for e in ["http://h:1", "HTTP://h:1/"] {
            let err = normalize_endpoint(e, "MANIFOLD_ENDPOINT").unwrap_err();
            assert_eq!(err.exit(), crate::error::Exit::Usage);
            let text = err.render(None, None);
            assert!(text.contains("cleartext"), "{text}");
            assert!(text.contains("MANIFOLD_ENDPOINT"), "{text}");
            assert!(text.contains("use https://h:1"), "{text}");
        }
        let err = normalize_endpoint("grpc://h:1", "--endpoint").unwrap_err();
        assert!(err.render(None, None).contains("--endpoint"));
    }
}
