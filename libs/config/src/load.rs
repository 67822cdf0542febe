//! Assembling the layers into [`Settings`].

use std::collections::HashMap;
use std::path::Path;

use config::{Config, Environment, File, FileFormat};

use crate::{ConfigError, Settings};

/// Prefix of the environment variables read (`MANIFOLD__GRPC__LISTEN`).
pub const ENV_PREFIX: &str = "MANIFOLD";
/// Separator between prefix, sections and keys in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// Loads and validates the settings: defaults, then `file` (if given; it must exist), then
/// the process environment.
pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
    load_with(file, &[])
}

/// Like [`load`], then applies `overrides` (dotted keys such as `grpc.listen`) on top of
/// everything; for CLI flags and tests.
pub fn load_with(
    file: Option<&Path>,
    overrides: &[(&str, String)],
) -> Result<Settings, ConfigError> {
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load_from(file, overrides, &env)
}

/// Like [`load_with`], with the environment given explicitly instead of read from the
/// process (so tests never touch process-global state).
pub fn load_from(
    file: Option<&Path>,
    overrides: &[(&str, String)],
    env: &HashMap<String, String>,
) -> Result<Settings, ConfigError> {
    let mut builder = Config::builder();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }

    let prefixed: HashMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .ignore_empty(true)
            .source(Some(prefixed.into_iter().collect())),
    );

    // The conventional DATABASE_URL (sqlx, Heroku-style) sits above the file; the namespaced
    // variable wins when both are set.
    let namespaced_url = env
        .get("MANIFOLD__DATABASE__URL")
        .is_some_and(|v| !v.is_empty());
    if let Some(url) = env.get("DATABASE_URL").filter(|v| !v.is_empty())
        && !namespaced_url
    {
        builder = builder
            .set_override("database.url", url.as_str())
            .map_err(ConfigError::from_config)?;
    }

    for (key, value) in overrides {
        builder = builder
            .set_override(*key, value.as_str())
            .map_err(|e| ConfigError::invalid(*key, e.to_string()))?;
    }

    let settings: Settings = builder
        .build()
        .map_err(|e| match (file, e) {
            (Some(path), config::ConfigError::FileParse { cause, .. }) => ConfigError::File {
                path: path.to_owned(),
                message: cause.to_string(),
            },
            (_, e) => ConfigError::from_config(e),
        })?
        .try_deserialize()
        .map_err(ConfigError::from_config)?;
    settings.validate()?;
    Ok(settings)
}
