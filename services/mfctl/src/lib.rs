//! mfctl: a command-line client over Manifold's gRPC API for operators and
//! tenants. One module per resource group under `cmd/`; this file owns the
//! global flags, the per-invocation context (config, connection, defaults)
//! and the process exit code.
#![forbid(unsafe_code)]

/// `println!` to stdout that ends the process quietly when the reader has gone
/// (`mfctl tenant list | head -1`) instead of panicking.
macro_rules! outln {
    () => {
        $crate::output::emit("\n")
    };
    ($($t:tt)*) => {
        $crate::output::emit(&format!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` with the same broken-pipe handling as [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {
        $crate::output::emit(&format!($($t)*))
    };
}

pub mod client;
pub mod cmd;
pub mod config;
pub mod error;
pub mod names;
pub mod output;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{CommandFactory as _, Parser};

use crate::{
    client::Conn,
    config::{Config, Resolved},
    error::{Error, Exit, Result},
    output::Format,
};

#[derive(Parser)]
#[command(
    name = "mfctl",
    version,
    about = "Manage Manifold: tenants, namespaces, sites, virtual sites, virtual clusters, tokens",
    after_help = error::EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: cmd::Command,
}

/// Flags accepted by every command.
#[derive(clap::Args, Clone, Debug)]
pub struct Globals {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Use this context instead of the current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Config file [default: $MFCTL_CONFIG, else $XDG_CONFIG_HOME/mfctl/config.yaml,
    /// else ~/.config/mfctl/config.yaml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Tenant for names given as short ids (default: the context's tenant).
    #[arg(long, global = true, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Namespace for names given as short ids (default: the context's namespace).
    #[arg(short, long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Bound on connecting and on each call, e.g. 30s or 2m.
    #[arg(long, global = true, value_parser = output::parse_duration, default_value = "30s")]
    pub timeout: Duration,
}

/// One invocation's state: flags, then the config and the connection, both
/// loaded on first use (so `mfctl completion` needs neither).
pub struct Ctx {
    pub globals: Globals,
    resolved: Option<Resolved>,
    conn: Option<Conn>,
}

impl Ctx {
    pub fn new(globals: Globals) -> Ctx {
        Ctx {
            globals,
            resolved: None,
            conn: None,
        }
    }

    pub fn format(&self) -> Format {
        self.globals.output
    }

    pub fn config_path(&self) -> Result<PathBuf> {
        match &self.globals.config {
            Some(p) => Ok(p.clone()),
            None => config::default_path(),
        }
    }

    /// The selected context with `MANIFOLD_*` applied.
    pub fn settings(&mut self) -> Result<&Resolved> {
        if self.resolved.is_none() {
            let path = self.config_path()?;
            let cfg = Config::load(&path)?;
            self.resolved = Some(config::resolve(
                &cfg,
                &path,
                self.globals.context.as_deref(),
            )?);
        }
        Ok(self.resolved.as_ref().expect("set above"))
    }

    /// The connection, opened on first use; fails with exit code 4 when no
    /// token is configured.
    pub async fn conn(&mut self) -> Result<Conn> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let timeout = self.globals.timeout;
        let settings = self.settings()?.clone();
        if settings.token.is_none() {
            return Err(Error::Local {
                exit: Exit::Auth,
                message: "no token configured".into(),
                hint: Some(format!(
                    "run `mfctl login --token-file FILE` or set {}",
                    config::ENV_TOKEN
                )),
            });
        }
        let conn = Conn::open(&settings, timeout).await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// The endpoint in use, for error hints.
    pub fn endpoint(&self) -> Option<String> {
        self.conn
            .as_ref()
            .map(|c| c.endpoint.clone())
            .or_else(|| self.resolved.as_ref().map(|r| r.endpoint.clone()))
    }

    /// `--tenant`, else the context's default tenant, as a short id (`acme`,
    /// whether given as `acme` or `tenants/acme`).
    pub fn tenant(&mut self) -> Result<String> {
        if let Some(t) = self.globals.tenant.as_deref().and_then(names::tenant_id) {
            return Ok(t);
        }
        let t = self
            .settings()?
            .tenant
            .as_deref()
            .and_then(names::tenant_id);
        t.ok_or_else(|| {
            Error::usage(
                "which tenant? the name is a short id and no tenant is set",
                Some(
                    "pass --tenant TENANT, use a full name (tenants/T/...), or set a default \
                     with `mfctl context set --tenant TENANT`"
                        .to_owned(),
                ),
            )
        })
    }

    /// The tenant if one is known (flag or context), without failing.
    pub fn tenant_opt(&mut self) -> Option<String> {
        self.tenant().ok()
    }

    /// `tenants/{t}/namespaces/{n}` from the flags or the context defaults.
    pub fn namespace_parent(&mut self) -> Result<String> {
        let ns = match &self.globals.namespace {
            Some(n) => Some(n.clone()),
            None => self.settings()?.namespace.clone(),
        };
        match ns {
            Some(n) if n.starts_with("tenants/") => Ok(n),
            Some(n) => Ok(format!("tenants/{}/namespaces/{n}", self.tenant()?)),
            None => Err(Error::usage(
                "which namespace? the name is a short id and no namespace is set",
                Some(
                    "pass -n NAMESPACE (and --tenant TENANT), use a full name \
                     (tenants/T/namespaces/N/...), or set defaults with \
                     `mfctl context set --tenant T --namespace N`"
                        .to_owned(),
                ),
            )),
        }
    }

    /// The namespace parent if one is known, without failing.
    pub fn namespace_parent_opt(&mut self) -> Option<String> {
        let explicit = self.globals.namespace.is_some();
        let has_default = self.settings().ok().is_some_and(|s| s.namespace.is_some());
        if explicit || has_default {
            self.namespace_parent().ok()
        } else {
            None
        }
    }
}

/// Runs the CLI with the process's arguments and environment.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    let group = cli.command.group();
    let mut ctx = Ctx::new(cli.globals);
    match runtime.block_on(cli.command.run(&mut ctx)) {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            eprint!("{}", e.render(Some(&group), ctx.endpoint().as_deref()));
            e.exit().into()
        }
    }
}

/// The clap command tree (for completions and tests).
pub fn command() -> clap::Command {
    Cli::command()
}
