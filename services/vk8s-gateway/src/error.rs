//! The gateway's one error type and its two renderings: a gRPC status (with
//! google.rpc details) and a Kubernetes `metav1.Status` object.

use manifold_db::DbError;
use manifold_kube_model::field_error::{FieldError, aggregate_message, causes_json};
use manifold_kube_model::patch::Conflict;
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// What an error is about: a Kubernetes object (`deployments.apps "web"`) or a
/// gRPC resource name (`resource` empty, `name` the full resource name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    /// The plural resource (`deployments`), empty for gRPC resources.
    pub resource: String,
    pub name: String,
}

impl Target {
    pub fn object(group: &str, resource: &str, name: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
            name: name.to_owned(),
        }
    }

    /// A gRPC resource by its full name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            group: String::new(),
            resource: String::new(),
            name: name.into(),
        }
    }

    /// `deployments.apps` / `configmaps`.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self) -> Value {
        json!({"name": self.name, "group": self.group, "kind": self.resource})
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.resource.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{} {:?}", self.qualified_resource(), self.name)
        }
    }
}

/// An object that failed validation (HTTP 422 Invalid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub group: String,
    pub kind: String,
    /// `Deployment.apps`.
    pub qualified_kind: String,
    pub name: String,
    pub causes: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A malformed gRPC request field.
    #[error("invalid {field}: {description}")]
    InvalidArgument { field: String, description: String },
    /// A request the Kubernetes API cannot use (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    #[error("{} {:?} is invalid: {}", .0.qualified_kind, .0.name, aggregate_message(&.0.causes))]
    Invalid(Invalid),
    /// A well-formed request that cannot be carried out on this object
    /// (HTTP 422 without field causes), e.g. a failing JSON patch `test`.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0} not found")]
    NotFound(Target),
    /// A Kubernetes URL that names nothing served here.
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("{0} already exists")]
    AlreadyExists(Target),
    /// Optimistic concurrency failed: a stale resourceVersion, a failed
    /// precondition, or an etag mismatch.
    #[error("Operation cannot be fulfilled on {target}: {message}")]
    Conflict { target: Target, message: String },
    /// Server-side apply found fields owned by other managers.
    #[error("{}", apply_conflict_message(.0))]
    ApplyConflict(Vec<Conflict>),
    /// A resourceVersion or continue token older than the compacted log.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    /// A body within the size limit that would grow beyond a bound once
    /// decoded or applied (YAML aliases, a patch result, too many patch
    /// operations); the message names the limit. HTTP 413.
    #[error("{0}")]
    LimitExceeded(String),
    /// The caller holds too much at once (open watches and streams); the
    /// message names the limit. HTTP 429, RESOURCE_EXHAUSTED.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Forbidden(String),
    /// A workload the placement's Pod Security level refuses (HTTP 403,
    /// worded as kube-apiserver's PodSecurity admission).
    #[error("{message}")]
    PolicyForbidden { target: Target, message: String },
    /// A change the stored state does not allow yet (gRPC
    /// FAILED_PRECONDITION with a PreconditionFailure naming `subject`).
    #[error("{message}")]
    FailedPrecondition {
        subject: String,
        field: String,
        message: String,
    },
    #[error(transparent)]
    Unauthenticated(#[from] manifold_auth::AuthError),
    /// A call to another service failed; its status is passed on.
    #[error("{0}")]
    Upstream(tonic::Status),
    #[error("storage: {0}")]
    Db(#[from] DbError),
    /// A sealed body does not open, or the key provider is unavailable.
    #[error(transparent)]
    Encryption(#[from] crate::encryption::EncryptionError),
    #[error("internal error: {0}")]
    Internal(String),
}

fn apply_conflict_message(conflicts: &[Conflict]) -> String {
    manifold_kube_model::patch::ApplyError::Conflicts(conflicts.to_vec()).to_string()
}

impl GatewayError {
    pub fn invalid_argument(field: &str, description: impl Into<String>) -> Self {
        GatewayError::InvalidArgument {
            field: field.to_owned(),
            description: description.into(),
        }
    }

    /// A stale resourceVersion on a write.
    pub fn modified(target: Target) -> Self {
        GatewayError::Conflict {
            target,
            message:
                "the object has been modified; please apply your changes to the latest version and try again"
                    .to_owned(),
        }
    }

    /// The HTTP status code of the Kubernetes rendering.
    pub fn http_code(&self) -> u16 {
        match self {
            GatewayError::InvalidArgument { .. } | GatewayError::BadRequest(_) => 400,
            GatewayError::Invalid(_) | GatewayError::Unprocessable(_) => 422,
            GatewayError::NotFound(_) | GatewayError::NoRoute => 404,
            GatewayError::AlreadyExists(_)
            | GatewayError::Conflict { .. }
            | GatewayError::ApplyConflict(_) => 409,
            GatewayError::Gone(_) => 410,
            GatewayError::MethodNotAllowed(_) => 405,
            GatewayError::NotAcceptable(_) => 406,
            GatewayError::UnsupportedMediaType(_) => 415,
            GatewayError::TooLarge(_) | GatewayError::LimitExceeded(_) => 413,
            GatewayError::Forbidden(_) | GatewayError::PolicyForbidden { .. } => 403,
            GatewayError::FailedPrecondition { .. } => 422,
            GatewayError::TooManyRequests(_)
            | GatewayError::Unauthenticated(manifold_auth::AuthError::Throttled(_)) => 429,
            GatewayError::Unauthenticated(manifold_auth::AuthError::Unavailable(_)) => 503,
            GatewayError::Unauthenticated(_) => 401,
            GatewayError::Upstream(s) => match s.code() {
                Code::NotFound => 404,
                Code::PermissionDenied => 403,
                Code::Unauthenticated => 401,
                Code::InvalidArgument => 400,
                Code::Unavailable => 503,
                Code::ResourceExhausted => 429,
                _ => 500,
            },
            GatewayError::Db(DbError::Unavailable(_))
            | GatewayError::Encryption(crate::encryption::EncryptionError::Unavailable(_)) => 503,
            GatewayError::Db(_) | GatewayError::Internal(_) | GatewayError::Encryption(_) => 500,
        }
    }

    fn reason(&self) -> &'static str {
        match self.http_code() {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            406 => "NotAcceptable",
            409 if matches!(self, GatewayError::AlreadyExists(_)) => "AlreadyExists",
            409 => "Conflict",
            410 => "Expired",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "InternalError",
        }
    }

    fn kube_message(&self) -> String {
        match self {
            GatewayError::Unauthenticated(
                manifold_auth::AuthError::Unavailable(_) | manifold_auth::AuthError::Throttled(_),
            ) => self.to_string(),
            GatewayError::Unauthenticated(_) => "Unauthorized".to_owned(),
            GatewayError::Upstream(s) => s.message().to_owned(),
            GatewayError::Db(e) => {
                tracing::error!(error = %e, "vk8s storage error");
                "an internal storage error occurred".to_owned()
            }
            GatewayError::Encryption(e) => {
                tracing::error!(error = %e, "vk8s encryption error");
                self.to_string()
            }
            _ => self.to_string(),
        }
    }

    /// The `metav1.Status` object the Kubernetes API answers with.
    pub fn to_kube_status(&self) -> Value {
        let code = self.http_code();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.kube_message(),
            "reason": self.reason(),
            "code": code,
        });
        let details = match self {
            GatewayError::NotFound(t) | GatewayError::AlreadyExists(t) => Some(t.details()),
            GatewayError::Conflict { target, .. } => Some(target.details()),
            GatewayError::PolicyForbidden { target, .. } => Some(target.details()),
            GatewayError::Invalid(i) => Some(json!({
                "name": i.name,
                "group": i.group,
                "kind": i.kind,
                "causes": causes_json(&i.causes),
            })),
            GatewayError::ApplyConflict(c) => Some(json!({
                "causes": c.iter().map(Conflict::to_cause).collect::<Vec<_>>(),
            })),
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

impl From<GatewayError> for tonic::Status {
    fn from(e: GatewayError) -> Self {
        let message = e.to_string();
        match e {
            GatewayError::InvalidArgument { field, description } => {
                tonic::Status::with_error_details(
                    Code::InvalidArgument,
                    message,
                    ErrorDetails::with_bad_request_violation(field, description),
                )
            }
            GatewayError::Invalid(i) => {
                let violations: Vec<FieldViolation> = i
                    .causes
                    .iter()
                    .map(|c| FieldViolation::new(c.field.clone(), c.message.clone()))
                    .collect();
                tonic::Status::with_error_details(
                    Code::InvalidArgument,
                    message,
                    ErrorDetails::with_bad_request(violations),
                )
            }
            GatewayError::BadRequest(_)
            | GatewayError::Unprocessable(_)
            | GatewayError::NotAcceptable(_)
            | GatewayError::UnsupportedMediaType(_)
            | GatewayError::TooLarge(_)
            | GatewayError::LimitExceeded(_) => tonic::Status::invalid_argument(message),
            GatewayError::NotFound(_) | GatewayError::NoRoute => tonic::Status::not_found(message),
            GatewayError::AlreadyExists(_) => tonic::Status::already_exists(message),
            GatewayError::Conflict { .. } | GatewayError::ApplyConflict(_) => {
                tonic::Status::aborted(message)
            }
            GatewayError::Gone(_) => tonic::Status::out_of_range(message),
            GatewayError::MethodNotAllowed(_) => tonic::Status::unimplemented(message),
            GatewayError::Forbidden(_) | GatewayError::PolicyForbidden { .. } => {
                tonic::Status::permission_denied(message)
            }
            GatewayError::FailedPrecondition { subject, field, .. } => {
                tonic::Status::with_error_details(
                    Code::FailedPrecondition,
                    message.clone(),
                    ErrorDetails::with_precondition_failure(vec![
                        tonic_types::PreconditionViolation::new("POD_SECURITY", subject, field),
                    ]),
                )
            }
            GatewayError::TooManyRequests(_) => tonic::Status::resource_exhausted(message),
            GatewayError::Unauthenticated(a) => a.into(),
            GatewayError::Upstream(s) => s,
            GatewayError::Db(DbError::Unavailable(m)) => {
                tonic::Status::unavailable(format!("database unavailable: {m}"))
            }
            GatewayError::Db(db) => {
                tracing::error!(error = %db, "vk8s storage error");
                tonic::Status::internal("internal storage error")
            }
            GatewayError::Internal(m) => {
                tracing::error!(error = %m, "vk8s internal error");
                tonic::Status::internal(message)
            }
            GatewayError::Encryption(crate::encryption::EncryptionError::Unavailable(_)) => {
                tonic::Status::unavailable(message)
            }
            GatewayError::Encryption(e) => {
                tracing::error!(error = %e, "vk8s encryption error");
                tonic::Status::internal(message)
            }
        }
    }
}

impl From<manifold_db::sqlx::Error> for GatewayError {
    fn from(e: manifold_db::sqlx::Error) -> Self {
        GatewayError::Db(e.into())
    }
}

impl From<manifold_auth::Denied> for GatewayError {
    fn from(d: manifold_auth::Denied) -> Self {
        match d {
            manifold_auth::Denied::NotFound(name) => GatewayError::NotFound(Target::named(name)),
            manifold_auth::Denied::PermissionDenied(m) => GatewayError::Forbidden(m),
        }
    }
}

impl manifold_db::Retryable for GatewayError {
    fn is_retryable(&self) -> bool {
        matches!(self, GatewayError::Db(e) if e.is_retryable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_statuses_carry_reason_code_and_details() {
        let e = GatewayError::NotFound(Target::object("apps", "deployments", "web"));
        let s = e.to_kube_status();
        assert_eq!(s["message"], r#"deployments.apps "web" not found"#);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "deployments");

        let e = GatewayError::modified(Target::object("", "configmaps", "c"));
        let s = e.to_kube_status();
        assert_eq!(s["reason"], "Conflict");
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .starts_with(r#"Operation cannot be fulfilled on configmaps "c": "#)
        );
        let e = GatewayError::AlreadyExists(Target::object("", "configmaps", "c"));
        assert_eq!(e.to_kube_status()["reason"], "AlreadyExists");
        let e = GatewayError::Unauthenticated(manifold_auth::AuthError::Missing);
        assert_eq!(e.to_kube_status()["code"], 401);
        assert_eq!(e.to_kube_status()["message"], "Unauthorized");
    }

    #[test]
    fn grpc_codes() {
        let s: tonic::Status = GatewayError::Gone("compacted".into()).into();
        assert_eq!(s.code(), Code::OutOfRange);
        let s: tonic::Status = GatewayError::invalid_argument("name", "bad").into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.get_details_bad_request().unwrap().field_violations[0].field,
            "name"
        );
        let s: tonic::Status = GatewayError::NotFound(Target::named("tenants/a")).into();
        assert_eq!(s.message(), "tenants/a not found");
    }
}
