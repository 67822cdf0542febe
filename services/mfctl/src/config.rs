//! The config file (contexts: endpoint, CA file, token, default tenant and
//! namespace), written with mode 0600 because it holds tokens, and the
//! `MANIFOLD_*` environment variables that override the current context.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Exit, Result};

pub const ENV_ENDPOINT: &str = "MANIFOLD_ENDPOINT";
pub const ENV_CA_FILE: &str = "MANIFOLD_CA_FILE";
pub const ENV_TOKEN: &str = "MANIFOLD_TOKEN";
pub const ENV_CONFIG: &str = "MFCTL_CONFIG";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Context {
    pub name: String,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Default `--tenant` for commands in this context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Default `--namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Where the config lives: `--config`, `MFCTL_CONFIG`, then the XDG location.
pub fn default_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_CONFIG).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(x).join("mfctl/config.yaml"));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config/mfctl/config.yaml")),
        None => Err(Error::usage(
            "cannot locate the config file: neither HOME nor XDG_CONFIG_HOME is set",
            Some(format!("pass --config FILE or set {ENV_CONFIG}")),
        )),
    }
}

impl Config {
    /// Reads the file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(Error::failure(format!("reading {}: {e}", path.display())));
            }
        };
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: {} holds tokens but is readable by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            );
        }
        serde_yaml_ng::from_str(&text).map_err(|e| Error::Local {
            exit: Exit::Usage,
            message: format!("{} is not a valid mfctl config: {e}", path.display()),
            hint: Some("fix or delete the file, then run `mfctl login` again".into()),
        })
    }

    /// Writes the file atomically with mode 0600 (its directory 0700 when
    /// created here).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_yaml_ng::to_string(self)
            .map_err(|e| Error::failure(format!("encoding the config: {e}")))?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir
            && !dir.exists()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::failure(format!("creating {}: {e}", dir.display())))?;
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config.yaml".into());
        let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            // The mode given to open() is filtered by the umask; 0600 is what we mean.
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::failure(format!("writing {}: {e}", path.display()))
        })
    }

    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// Adds or replaces the context of the same name.
    pub fn upsert(&mut self, context: Context) {
        match self.contexts.iter_mut().find(|c| c.name == context.name) {
            Some(c) => *c = context,
            None => self.contexts.push(context),
        }
    }
}

/// What one command connects with: the selected context with the
/// environment variables applied on top.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The context name, or `None` when only environment variables were used.
    pub context: Option<String>,
    pub endpoint: String,
    pub ca_file: Option<PathBuf>,
    pub token: Option<String>,
    pub tenant: Option<String>,
    pub namespace: Option<String>,
    /// Which settings came from the environment (for `context current`).
    pub from_env: Vec<&'static str>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Picks `--context` or the current context and applies the environment.
pub fn resolve(config: &Config, path: &Path, wanted: Option<&str>) -> Result<Resolved> {
    let name = wanted
        .map(str::to_owned)
        .or_else(|| config.current_context.clone());
    let base = match &name {
        Some(n) => Some(config.context(n).cloned().ok_or_else(|| {
            let known: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
            Error::usage(
                format!("no context named {n:?} in {}", path.display()),
                Some(if known.is_empty() {
                    "create one with `mfctl login --context NAME ...`".to_owned()
                } else {
                    format!("known contexts: {}", known.join(", "))
                }),
            )
        })?),
        None => None,
    };
    let mut from_env = Vec::new();
    let mut pick = |var: &'static str, current: Option<String>| match env(var) {
        Some(v) => {
            from_env.push(var);
            Some(v)
        }
        None => current,
    };
    let endpoint = pick(ENV_ENDPOINT, base.as_ref().map(|c| c.endpoint.clone()));
    let ca_file = pick(
        ENV_CA_FILE,
        base.as_ref()
            .and_then(|c| c.ca_file.as_ref())
            .map(|p| p.display().to_string()),
    );
    let token = pick(ENV_TOKEN, base.as_ref().and_then(|c| c.token.clone()));
    let Some(endpoint) = endpoint else {
        return Err(Error::usage(
            format!("not logged in: {} has no current context", path.display()),
            Some(format!(
                "run `mfctl login --endpoint HOST:PORT --ca-file CA --token-file FILE`, \
                 or set {ENV_ENDPOINT}, {ENV_CA_FILE} and {ENV_TOKEN}"
            )),
        ));
    };
    Ok(Resolved {
        context: base.as_ref().map(|c| c.name.clone()),
        endpoint,
        ca_file: ca_file.map(PathBuf::from),
        token,
        // Saved raw by older versions: `tenants/acme` means `acme`.
        tenant: base
            .as_ref()
            .and_then(|c| c.tenant.as_deref())
            .and_then(crate::names::tenant_id),
        namespace: base.as_ref().and_then(|c| c.namespace.clone()),
        from_env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.yaml");
        let mut c = Config::default();
        c.upsert(Context {
            name: "a".into(),
            endpoint: "https://127.0.0.1:7443".into(),
            token: Some("secret".into()),
            ..Default::default()
        });
        c.current_context = Some("a".into());
        c.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Config::load(&path).unwrap();
        assert_eq!(back.contexts, c.contexts);
        assert_eq!(back.current_context.as_deref(), Some("a"));
    }

    #[test]
    fn saved_full_tenant_names_resolve_to_short_ids() {
        let mut c = Config::default();
        c.upsert(Context {
            name: "a".into(),
            endpoint: "127.0.0.1:7443".into(),
            tenant: Some("tenants/acme".into()),
            ..Default::default()
        });
        let r = resolve(&c, Path::new("config.yaml"), Some("a")).unwrap();
        assert_eq!(r.tenant.as_deref(), Some("acme"));
    }
}
