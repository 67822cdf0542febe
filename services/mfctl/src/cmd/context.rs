//! `mfctl context`: the contexts saved by `login`, which one is current, and
//! their default tenant and namespace. Tokens are never printed.

use serde_json::{Value, json};

use crate::{
    Ctx,
    config::{self, Config},
    error::{Error, Result},
    names,
    output::{self, Format, Render},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// List the saved contexts (`*` marks the current one).
    List,
    /// Show what the next command would use, after MANIFOLD_* overrides.
    Current,
    /// Make NAME the current context.
    Use { name: String },
    /// Set the default --tenant / -n of the current (or --context) context;
    /// an empty value clears it.
    Set,
    /// Delete a context.
    Delete { name: String },
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let path = ctx.config_path()?;
    let mut cfg = Config::load(&path)?;
    match args.command {
        Sub::List => {
            let rows: Vec<Row> = cfg
                .contexts
                .iter()
                .map(|c| Row {
                    current: cfg.current_context.as_deref() == Some(c.name.as_str()),
                    context: c.clone(),
                })
                .collect();
            output::print_list(ctx.format(), &rows)
        }
        Sub::Current => {
            let r = ctx.settings()?.clone();
            let value = json!({
                "context": r.context,
                "endpoint": r.endpoint,
                "caFile": r.ca_file.as_ref().map(|p| p.display().to_string()),
                "tokenSet": r.token.is_some(),
                "tenant": r.tenant,
                "namespace": r.namespace,
                "fromEnvironment": r.from_env,
            });
            if ctx.format() == Format::Table || ctx.format() == Format::Name {
                outln!("context:   {}", r.context.as_deref().unwrap_or("<none>"));
                outln!("endpoint:  {}", r.endpoint);
                outln!(
                    "ca-file:   {}",
                    r.ca_file.map_or("<none>".into(), |p| p.display().to_string())
                );
                outln!("token:     {}", if r.token.is_some() { "set" } else { "<none>" });
                outln!("tenant:    {}", r.tenant.as_deref().unwrap_or("<none>"));
                outln!("namespace: {}", r.namespace.as_deref().unwrap_or("<none>"));
                if !r.from_env.is_empty() {
                    outln!("from env:  {}", r.from_env.join(", "));
                }
                Ok(())
            } else {
                output::print_value(ctx.format(), &value)
            }
        }
        Sub::Use { name } => {
            if cfg.context(&name).is_none() {
                return Err(unknown(&cfg, &name, &path));
            }
            cfg.current_context = Some(name.clone());
            cfg.save(&path)?;
            outln!("Switched to context {name:?}.");
            Ok(())
        }
        Sub::Set => {
            let name = ctx
                .globals
                .context
                .clone()
                .or_else(|| cfg.current_context.clone())
                .ok_or_else(|| {
                    Error::usage(
                        "no current context",
                        Some("run `mfctl login` first, or pass --context NAME".into()),
                    )
                })?;
            if ctx.globals.tenant.is_none() && ctx.globals.namespace.is_none() {
                return Err(Error::usage(
                    "nothing to set",
                    Some("pass --tenant TENANT and/or -n NAMESPACE".into()),
                ));
            }
            let Some(mut c) = cfg.context(&name).cloned() else {
                return Err(unknown(&cfg, &name, &path));
            };
            if let Some(t) = &ctx.globals.tenant {
                c.tenant = names::tenant_id(t);
            }
            if let Some(n) = &ctx.globals.namespace {
                c.namespace = Some(n.clone()).filter(|n| !n.is_empty());
            }
            cfg.upsert(c);
            cfg.save(&path)?;
            outln!("Context {name:?} updated.");
            Ok(())
        }
        Sub::Delete { name } => {
            if cfg.context(&name).is_none() {
                return Err(unknown(&cfg, &name, &path));
            }
            cfg.contexts.retain(|c| c.name != name);
            if cfg.current_context.as_deref() == Some(name.as_str()) {
                cfg.current_context = None;
            }
            cfg.save(&path)?;
            outln!("Context {name:?} deleted.");
            Ok(())
        }
    }
}

fn unknown(cfg: &Config, name: &str, path: &std::path::Path) -> Error {
    let known: Vec<&str> = cfg.contexts.iter().map(|c| c.name.as_str()).collect();
    // A configuration error (2), as with `--context NAME`: exit code 3 is
    // reserved for the API's NOT_FOUND.
    Error::usage(
        format!("no context named {name:?} in {}", path.display()),
        Some(if known.is_empty() {
            "create one with `mfctl login --context NAME`".into()
        } else {
            format!("known contexts: {}", known.join(", "))
        }),
    )
}

struct Row {
    current: bool,
    context: config::Context,
}

impl Render for Row {
    const COLUMNS: &'static [&'static str] =
        &["CURRENT", "NAME", "ENDPOINT", "TENANT", "NAMESPACE"];

    fn row(&self) -> Vec<String> {
        let c = &self.context;
        vec![
            if self.current { "*" } else { "" }.into(),
            c.name.clone(),
            c.endpoint.clone(),
            c.tenant
                .as_deref()
                .and_then(names::tenant_id)
                .unwrap_or_default(),
            c.namespace.clone().unwrap_or_default(),
        ]
    }

    fn to_json(&self) -> Value {
        let c = &self.context;
        json!({
            "name": c.name,
            "current": self.current,
            "endpoint": c.endpoint,
            "caFile": c.ca_file.as_ref().map(|p| p.display().to_string()),
            "tokenSet": c.token.is_some(),
            "tenant": c.tenant.as_deref().and_then(names::tenant_id),
            "namespace": c.namespace,
        })
    }

    fn name(&self) -> String {
        self.context.name.clone()
    }
}
