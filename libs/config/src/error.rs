//! The configuration error: every variant that concerns a value names its key.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{key} is not set: {hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("configuration error: {0}")]
    Other(String),
}

impl ConfigError {
    /// The dotted key (`grpc.listen`) the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Missing { key, .. } => Some(key),
            Self::Invalid { key, .. } => Some(key),
            Self::File { .. } | Self::Other(_) => None,
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Converts the `config` crate's error, keeping the key it names.
    pub(crate) fn from_config(err: config::ConfigError) -> Self {
        use config::ConfigError as E;
        match err {
            E::Type {
                key: Some(key),
                unexpected,
                expected,
                ..
            } => Self::invalid(key, format!("expected {expected}, found {unexpected}")),
            E::At {
                key: Some(key),
                error,
                ..
            } => {
                let message = error.to_string();
                match unknown_field(&message) {
                    Some((field, expected)) => Self::invalid(format!("{key}.{field}"), expected),
                    None => Self::invalid(key, message),
                }
            }
            E::NotFound(key) => Self::invalid(key, "missing"),
            E::Message(message) => match unknown_field(&message) {
                Some((field, expected)) => Self::invalid(field, expected),
                None => Self::Other(message),
            },
            other => Self::Other(other.to_string()),
        }
    }
}

/// serde reports an unknown field as a bare message ("unknown field `x`, expected ...");
/// recover the field name and phrase the rest as the reason.
fn unknown_field(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest.trim_start_matches(',').trim();
    Some((field.to_owned(), format!("unknown key ({expected})")))
}
