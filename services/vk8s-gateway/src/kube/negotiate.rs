//! Content negotiation: which representation a response takes (JSON, YAML
//! or a `meta.k8s.io` Table) and how a request body is decoded.

use manifold_kube_model::IncludeObject;
use serde_json::Value;

use crate::error::GatewayError;

/// The representation of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// A Table, in `meta.k8s.io/{version}`.
    Table {
        version: &'static str,
        include: IncludeObject,
    },
}

const ACCEPTED: &str = "application/json, application/yaml";

/// Picks the first acceptable media range of `Accept` in the client's
/// order. Tables only where the endpoint can produce one.
pub fn output(
    accept: Option<&str>,
    allow_table: bool,
    include: IncludeObject,
) -> Result<Output, GatewayError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut as_, mut g, mut v, mut q) = (None, None, None, 1.0f32);
        for p in parts {
            let Some((k, val)) = p.split_once('=') else {
                continue;
            };
            let val = val.trim().trim_matches('"');
            match k.trim() {
                "as" => as_ = Some(val.to_owned()),
                "g" => g = Some(val.to_owned()),
                "v" => v = Some(val.to_owned()),
                "q" => q = val.parse().unwrap_or(0.0),
                _ => {}
            }
        }
        if q <= 0.0 {
            continue;
        }
        match (media.as_str(), as_.as_deref()) {
            ("application/json", Some("Table"))
                if allow_table && g.as_deref() == Some("meta.k8s.io") =>
            {
                match v.as_deref() {
                    Some("v1") => {
                        return Ok(Output::Table {
                            version: "v1",
                            include,
                        });
                    }
                    Some("v1beta1") => {
                        return Ok(Output::Table {
                            version: "v1beta1",
                            include,
                        });
                    }
                    _ => continue,
                }
            }
            ("application/json" | "*/*" | "application/*", None) => return Ok(Output::Json),
            ("application/yaml", None) => return Ok(Output::Yaml),
            _ => continue,
        }
    }
    Err(GatewayError::NotAcceptable(format!(
        "only the following media types are accepted: {ACCEPTED}"
    )))
}

/// Decodes a JSON or YAML request body (by Content-Type; JSON when absent).
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, GatewayError> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        "" | "application/json" | "*/*" => decode_json(body),
        "application/yaml" | "application/x-yaml" | "text/yaml" => decode_yaml(body),
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode(body),
        other => Err(GatewayError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format ({other}) - accepted media types include: {ACCEPTED}"
        ))),
    }
}

pub fn decode_json(body: &[u8]) -> Result<Value, GatewayError> {
    serde_json::from_slice(body).map_err(|e| {
        GatewayError::BadRequest(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}

/// YAML (a superset of JSON), as server-side apply bodies are. Aliases are
/// expanded under a budget proportional to the body (see [`super::yaml`]), so
/// an alias bomb is a 413, not a gigabyte.
pub fn decode_yaml(body: &[u8]) -> Result<Value, GatewayError> {
    super::yaml::decode(body, super::yaml::budget_for(body.len())).map_err(|e| match e {
        super::yaml::YamlError::TooLarge { limit } => GatewayError::LimitExceeded(format!(
            "Request entity too large: the YAML document, with its aliases expanded, exceeds the limit of {limit} bytes (64 KiB + 4 x the body size); do not reference one anchor many times"
        )),
        super::yaml::YamlError::Syntax(e) => GatewayError::BadRequest(format!(
            "the body of the request could not be decoded as YAML: {e}"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn accept_headers() {
        let inc = IncludeObject::Metadata;
        assert_eq!(output(None, true, inc).unwrap(), Output::Json);
        assert_eq!(
            output(Some(KUBECTL_TABLE), true, inc).unwrap(),
            Output::Table {
                version: "v1",
                include: inc
            }
        );
        assert_eq!(
            output(Some(KUBECTL_TABLE), false, inc).unwrap(),
            Output::Json
        );
        assert_eq!(
            output(
                Some("application/vnd.kubernetes.protobuf, application/json"),
                true,
                inc
            )
            .unwrap(),
            Output::Json
        );
        assert_eq!(
            output(Some("application/yaml"), true, inc).unwrap(),
            Output::Yaml
        );
        assert!(matches!(
            output(Some("application/vnd.kubernetes.protobuf"), true, inc),
            Err(GatewayError::NotAcceptable(_))
        ));
    }

    #[test]
    fn bodies() {
        assert_eq!(decode_body(None, b"{\"a\":1}").unwrap()["a"], 1);
        assert_eq!(
            decode_body(Some("application/yaml"), b"a: 1").unwrap()["a"],
            1
        );
        assert!(matches!(
            decode_body(Some("application/cbor"), b""),
            Err(GatewayError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            decode_json(b"{"),
            Err(GatewayError::BadRequest(_))
        ));
    }
}
