//! Layered settings for every Manifold process: built-in defaults, then an optional TOML
//! file, then `MANIFOLD__SECTION__KEY` environment variables (and `DATABASE_URL`), then
//! explicit overrides (CLI flags, tests). Secrets never print.
#![forbid(unsafe_code)]

mod error;
mod load;
mod settings;
mod validate;

#[cfg(test)]
mod tests;

pub use error::ConfigError;
pub use load::{ENV_PREFIX, ENV_SEPARATOR, load, load_from, load_with};
pub use secrecy::{ExposeSecret, SecretString};
pub use settings::{
    Admin, Auth, Database, Encryption, Grpc, KubeApi, LogFormat, SERVICES, Serve, Settings, Sites,
    Telemetry, Tls, Upstream, Vk8s,
};
