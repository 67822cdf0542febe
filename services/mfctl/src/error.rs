//! The one error type of the CLI, its exit codes, and how it is printed: the
//! gRPC message, the `google.rpc` details, and a hint naming the fix.

use std::{fmt::Write as _, process::ExitCode};

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Exit codes scripts can rely on (documented in `mfctl --help` and the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// Anything not covered below (internal server errors, local I/O).
    Failure = 1,
    /// The command line, the configuration or the request is invalid
    /// (clap usage errors, `INVALID_ARGUMENT`, `OUT_OF_RANGE`).
    Usage = 2,
    /// The API returned `NOT_FOUND` (also what another tenant's resources look
    /// like). Local lookups (an unknown context) are [`Exit::Usage`].
    NotFound = 3,
    /// `UNAUTHENTICATED` or `PERMISSION_DENIED`, or no token configured.
    Auth = 4,
    /// `ALREADY_EXISTS`, `ABORTED` (etag mismatch) or `FAILED_PRECONDITION`.
    Conflict = 5,
    /// The control plane cannot be reached or is overloaded (`UNAVAILABLE`,
    /// `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `CANCELLED`, connection or
    /// TLS failures, no handshake within `--timeout`):
    /// retrying later may help.
    Unavailable = 6,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Text for `mfctl --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other failure (internal error, local I/O)
  2  invalid command line, configuration (e.g. an unknown context) or request
     (INVALID_ARGUMENT, OUT_OF_RANGE)
  3  not found: the API returned NOT_FOUND
  4  not authenticated or not allowed (UNAUTHENTICATED, PERMISSION_DENIED)
  5  conflict (ALREADY_EXISTS, ABORTED etag mismatch, FAILED_PRECONDITION)
  6  control plane unreachable or busy (connection/TLS failure, UNAVAILABLE,
     DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED)

Environment: MANIFOLD_ENDPOINT, MANIFOLD_CA_FILE and MANIFOLD_TOKEN override the
current context; MFCTL_CONFIG names the config file (default
$XDG_CONFIG_HOME/mfctl/config.yaml or ~/.config/mfctl/config.yaml).";

/// A failed command.
#[derive(Debug)]
pub enum Error {
    /// A local problem (arguments, configuration, files).
    Local {
        exit: Exit,
        message: String,
        hint: Option<String>,
    },
    /// The control plane answered with an error status.
    Status(Box<Status>),
    /// The control plane could not be reached at all.
    Connect { endpoint: String, cause: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(message: impl Into<String>, hint: impl Into<Option<String>>) -> Error {
        Error::Local {
            exit: Exit::Usage,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn failure(message: impl Into<String>) -> Error {
        Error::Local {
            exit: Exit::Failure,
            message: message.into(),
            hint: None,
        }
    }

    pub fn exit(&self) -> Exit {
        match self {
            Error::Local { exit, .. } => *exit,
            Error::Status(s) => exit_for(s.code()),
            Error::Connect { .. } => Exit::Unavailable,
        }
    }

    /// The text printed on stderr. `group` is the resource group of the
    /// command (e.g. `tenant`), used to suggest the next command.
    pub fn render(&self, group: Option<&str>, endpoint: Option<&str>) -> String {
        let mut out = String::new();
        match self {
            Error::Local { message, hint, .. } => {
                let _ = writeln!(out, "error: {message}");
                if let Some(h) = hint {
                    let _ = writeln!(out, "hint: {h}");
                }
            }
            Error::Connect { endpoint, cause } => {
                let _ = writeln!(out, "error: cannot reach {endpoint}: {cause}");
                let _ = writeln!(out, "hint: {}", connect_hint(cause));
            }
            Error::Status(status) => {
                render_status(&mut out, status);
                if let Some(h) = status_hint(status, group, endpoint) {
                    let _ = writeln!(out, "hint: {h}");
                }
            }
        }
        out
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Error {
        Error::Status(Box::new(s))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::failure(e.to_string())
    }
}

fn exit_for(code: Code) -> Exit {
    match code {
        Code::Ok => Exit::Ok,
        Code::InvalidArgument | Code::OutOfRange => Exit::Usage,
        Code::NotFound => Exit::NotFound,
        Code::Unauthenticated | Code::PermissionDenied => Exit::Auth,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => Exit::Conflict,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled => {
            Exit::Unavailable
        }
        Code::Unknown | Code::Internal | Code::DataLoss | Code::Unimplemented => Exit::Failure,
    }
}

/// `NOT_FOUND`-style upper-snake name of a code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn render_status(out: &mut String, status: &Status) {
    let mut message = status.message().to_owned();
    // Transport failures carry their cause in the source chain, not the message.
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = s.source();
    }
    let _ = writeln!(out, "error: {}: {message}", code_name(status.code()));
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            let _ = writeln!(out, "  field {}: {}", v.field, v.description);
        }
    }
    if let Some(pre) = status.get_details_precondition_failure() {
        for v in pre.violations {
            let _ = writeln!(
                out,
                "  precondition {} {}: {}",
                v.r#type, v.subject, v.description
            );
        }
    }
    if let Some(info) = status.get_details_resource_info()
        && !info.resource_name.is_empty()
    {
        let _ = writeln!(out, "  resource: {}", info.resource_name);
    }
}

fn status_hint(status: &Status, group: Option<&str>, endpoint: Option<&str>) -> Option<String> {
    let group = group.unwrap_or("<group>");
    let message = status.message().to_ascii_lowercase();
    Some(match status.code() {
        Code::InvalidArgument | Code::OutOfRange => {
            format!("correct the fields named above; `mfctl {group} --help` lists the flags")
        }
        Code::NotFound => format!(
            "check the name (and --tenant/--namespace) with `mfctl {group} list`; \
             another tenant's resources are reported as not found"
        ),
        Code::Unauthenticated => "the token is unknown, expired or revoked, or its tenant is \
             suspended: log in again with `mfctl login --token-file FILE` or set MANIFOLD_TOKEN"
            .to_owned(),
        Code::PermissionDenied => "your token may see this but not do it: ask a tenant-admin \
             for a role binding (`mfctl role-binding create`), or use another context \
             (`mfctl context use NAME`)"
            .to_owned(),
        Code::AlreadyExists => {
            format!("choose another id, or inspect the existing one with `mfctl {group} get NAME`")
        }
        Code::Aborted => format!(
            "it changed since it was read (etag mismatch): `mfctl {group} get NAME` and retry"
        ),
        Code::FailedPrecondition if message.contains("force") || group == "tenant" => {
            "delete what it still contains first, or pass --force to delete everything it owns"
                .to_owned()
        }
        Code::FailedPrecondition => {
            "the resource is not in a state that allows this; see the message above".to_owned()
        }
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            let at = endpoint.unwrap_or("the endpoint");
            if status_source_text(status).contains("certificate") {
                connect_hint("certificate")
            } else {
                format!(
                    "is the control plane running at {at}? check `mfctl context current` \
                     or MANIFOLD_ENDPOINT; raise --timeout on slow links"
                )
            }
        }
        Code::ResourceExhausted => "the control plane is busy; retry later".to_owned(),
        Code::Unimplemented => {
            "the control plane does not serve this call; is it an older version?".to_owned()
        }
        _ => return None,
    })
}

fn status_source_text(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn connect_hint(cause: &str) -> String {
    let c = cause.to_ascii_lowercase();
    if c.contains("did not complete the handshake") {
        "something accepted the connection but did not answer as the control plane: check \
         the endpoint with `mfctl context current` or MANIFOLD_ENDPOINT; raise --timeout on \
         slow links"
            .to_owned()
    } else if c.contains("certificate") || c.contains("tls") || c.contains("issuer") {
        "the server's certificate is not trusted: pass the control plane's CA bundle \
         (`.manifold/ca.crt` under `make run`) with `mfctl login --ca-file FILE` or \
         MANIFOLD_CA_FILE"
            .to_owned()
    } else {
        "is the control plane running there? check the endpoint with `mfctl context current` \
         or MANIFOLD_ENDPOINT (default of `make run`: 127.0.0.1:7443)"
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_documented_exits() {
        assert_eq!(exit_for(Code::NotFound) as u8, 3);
        assert_eq!(exit_for(Code::Unauthenticated) as u8, 4);
        assert_eq!(exit_for(Code::PermissionDenied) as u8, 4);
        assert_eq!(exit_for(Code::Aborted) as u8, 5);
        assert_eq!(exit_for(Code::InvalidArgument) as u8, 2);
        assert_eq!(exit_for(Code::Unavailable) as u8, 6);
        assert_eq!(exit_for(Code::ResourceExhausted) as u8, 6);
        assert_eq!(exit_for(Code::Cancelled) as u8, 6);
        assert_eq!(exit_for(Code::DeadlineExceeded) as u8, 6);
    }

    #[test]
    fn help_lists_every_code_mapped_to_unavailable() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Cancelled,
        ] {
            assert_eq!(exit_for(code), Exit::Unavailable);
            assert!(EXIT_CODES_HELP.contains(code_name(code)), "{code:?}");
        }
    }

    #[test]
    fn field_violations_are_printed() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "invalid tenant_id",
            tonic_types::ErrorDetails::with_bad_request_violation("tenant_id", "not a DNS label"),
        );
        let text = Error::from(status).render(Some("tenant"), None);
        assert!(
            text.contains("INVALID_ARGUMENT: invalid tenant_id"),
            "{text}"
        );
        assert!(text.contains("field tenant_id: not a DNS label"), "{text}");
        assert!(text.contains("mfctl tenant --help"), "{text}");
    }
}
