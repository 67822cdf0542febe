//! Semantic checks beyond what deserialization catches.

use secrecy::ExposeSecret;

use crate::{ConfigError, Settings};

impl Settings {
    /// Checks the settings; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }

        let url = self.database.url.expose_secret().trim();
        if url.is_empty() {
            return Err(ConfigError::Missing {
                key: "database.url",
                hint: "set DATABASE_URL or MANIFOLD__DATABASE__URL",
            });
        }
        // Never echo the URL: it usually carries a password.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid(
                "database.url",
                "must be a postgres:// or postgresql:// URL",
            ));
        }
        if self.database.max_connections < 1 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if self.database.connect_timeout_secs < 1 {
            return Err(ConfigError::invalid(
                "database.connect_timeout_secs",
                "must be at least 1",
            ));
        }

        https_url("grpc.public_endpoint", &self.grpc.public_endpoint)?;
        https_url("kube_api.public_url", &self.kube_api.public_url)?;

        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "tls.key_file",
                    "must be set when tls.cert_file is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "tls.cert_file",
                    "must be set when tls.key_file is set",
                ));
            }
            (None, None) if self.tls.server_names.is_empty() => {
                return Err(ConfigError::invalid(
                    "tls.server_names",
                    "must name at least one host when no tls.cert_file is given",
                ));
            }
            _ => {}
        }
        if self.tls.server_names.iter().any(|n| n.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "tls.server_names",
                "must not contain empty names",
            ));
        }

        if self.telemetry.log_filter.trim().is_empty() {
            return Err(ConfigError::invalid(
                "telemetry.log_filter",
                "must not be empty (e.g. \"info\")",
            ));
        }
        if self.vk8s.log_retention_revisions < 1 {
            return Err(ConfigError::invalid(
                "vk8s.log_retention_revisions",
                "must be at least 1",
            ));
        }
        if self.vk8s.compaction_interval_secs < 1 {
            return Err(ConfigError::invalid(
                "vk8s.compaction_interval_secs",
                "must be at least 1",
            ));
        }
        if self.vk8s.max_objects < 1 {
            return Err(ConfigError::invalid(
                "vk8s.max_objects",
                "must be at least 1",
            ));
        }
        if self.vk8s.max_pods_per_site < 0 {
            return Err(ConfigError::invalid(
                "vk8s.max_pods_per_site",
                "must not be negative",
            ));
        }
        if self.vk8s.max_bytes < 1 {
            return Err(ConfigError::invalid("vk8s.max_bytes", "must be at least 1"));
        }
        if self.vk8s.max_watches_per_principal < 1 {
            return Err(ConfigError::invalid(
                "vk8s.max_watches_per_principal",
                "must be at least 1",
            ));
        }
        if self.sites.heartbeat_timeout_secs < 1 {
            return Err(ConfigError::invalid(
                "sites.heartbeat_timeout_secs",
                "must be at least 1",
            ));
        }
        if !(1..=60).contains(&self.auth.stream_recheck_secs) {
            return Err(ConfigError::invalid(
                "auth.stream_recheck_secs",
                "must be between 1 and 60: open streams of a revoked or expired token end within it",
            ));
        }
        if !(1..=300).contains(&self.sites.certificate_recheck_secs) {
            return Err(ConfigError::invalid(
                "sites.certificate_recheck_secs",
                "must be between 1 and 300: a revoked agent certificate's stream ends within it",
            ));
        }
        if self.sites.renewal_grace_secs > 3600 {
            return Err(ConfigError::invalid(
                "sites.renewal_grace_secs",
                "must be at most 3600: a renewed certificate must not stay valid for long",
            ));
        }
        if self.serve.services.is_empty() {
            return Err(ConfigError::invalid(
                "serve.services",
                format!("must name at least one of {}", crate::SERVICES.join(", ")),
            ));
        }
        if let Some(unknown) = self
            .serve
            .services
            .iter()
            .find(|s| !crate::SERVICES.contains(&s.as_str()))
        {
            return Err(ConfigError::invalid(
                "serve.services",
                format!(
                    "unknown service {unknown:?}; choose from {}",
                    crate::SERVICES.join(", ")
                ),
            ));
        }
        if !self.serve.advertise_url.trim().is_empty() {
            https_url("serve.advertise_url", self.serve.advertise_url.trim())?;
        }
        for service in crate::SERVICES {
            if let Some(url) = self.upstream.url(service) {
                https_url(&format!("upstream.{service}"), url)?;
            }
        }
        for (i, path) in self.encryption.key_files.iter().enumerate() {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    format!("encryption.key_files[{i}]"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

fn https_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match value.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            format!("must be an https:// URL, got {value:?}"),
        )),
    }
}
