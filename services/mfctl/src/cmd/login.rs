//! `mfctl login`: saves a context (endpoint, CA file, token, default tenant
//! and namespace) after checking the token with `WhoAmI`.

use std::path::PathBuf;

use manifold_proto::tenancy::v1 as tpb;

use crate::{
    Ctx,
    client::{Conn, normalize_endpoint},
    config::{self, Config, Context},
    error::{Error, Exit, Result},
    names,
};

/// The context is named by the global `--context` (default: the current
/// context, else `default`); `--tenant` and `-n` become its defaults.
#[derive(clap::Args)]
pub struct Args {
    /// gRPC endpoint: HOST:PORT or https://HOST:PORT.
    #[arg(long, env = config::ENV_ENDPOINT)]
    endpoint: Option<String>,
    /// CA bundle that signed the server's certificate (`.manifold/ca.crt`).
    #[arg(long, env = config::ENV_CA_FILE)]
    ca_file: Option<PathBuf>,
    /// Bearer token (prefer --token-file or MANIFOLD_TOKEN: arguments are
    /// visible in `ps`).
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the token from this file (`-` for stdin), e.g. `.manifold/admin.token`.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Save without calling the control plane.
    #[arg(long)]
    no_verify: bool,
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let path = ctx.config_path()?;
    let mut cfg = Config::load(&path)?;
    let name = ctx
        .globals
        .context
        .clone()
        .or_else(|| cfg.current_context.clone())
        .unwrap_or_else(|| "default".into());
    let existing = cfg.context(&name).cloned().unwrap_or_default();

    let endpoint = args
        .endpoint
        .map(|e| normalize_endpoint(&e, &format!("--endpoint / {}", config::ENV_ENDPOINT)))
        .transpose()?
        .or_else(|| Some(existing.endpoint.clone()).filter(|e| !e.is_empty()))
        .ok_or_else(|| {
            Error::usage(
                "no endpoint given",
                Some(format!(
                    "pass --endpoint HOST:PORT (127.0.0.1:7443 under `make run`) or set {}",
                    config::ENV_ENDPOINT
                )),
            )
        })?;
    let ca_file = match args.ca_file {
        Some(p) => Some(std::path::absolute(&p).map_err(|e| {
            Error::usage(format!("CA file {}: {e}", p.display()), None)
        })?),
        None => existing.ca_file.clone(),
    };
    let token = match (args.token, args.token_file) {
        (Some(t), _) => Some(t),
        (None, Some(file)) => Some(read_token(&file)?),
        // Read here rather than through clap's `env`, which would make
        // MANIFOLD_TOKEN conflict with an explicit --token-file.
        (None, None) => std::env::var(config::ENV_TOKEN)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| existing.token.clone()),
    }
    .map(|t| t.trim().to_owned())
    .filter(|t| !t.is_empty())
    .ok_or_else(|| Error::Local {
        exit: Exit::Auth,
        message: "no token given".into(),
        hint: Some(format!(
            "pass --token-file FILE (`.manifold/admin.token` under `make run`) or set {}",
            config::ENV_TOKEN
        )),
    })?;

    let context = Context {
        name: name.clone(),
        endpoint,
        ca_file,
        token: Some(token),
        tenant: match &ctx.globals.tenant {
            Some(t) => names::tenant_id(t),
            None => existing.tenant.as_deref().and_then(names::tenant_id),
        },
        namespace: ctx
            .globals
            .namespace
            .clone()
            .or(existing.namespace)
            .filter(|n| !n.is_empty()),
    };

    let who = if args.no_verify {
        None
    } else {
        let resolved = config::Resolved {
            context: Some(name.clone()),
            endpoint: context.endpoint.clone(),
            ca_file: context.ca_file.clone(),
            token: context.token.clone(),
            tenant: None,
            namespace: None,
            from_env: vec![],
        };
        let conn = Conn::open(&resolved, ctx.globals.timeout).await?;
        let p = conn
            .authz()
            .who_am_i(tpb::WhoAmIRequest {})
            .await?
            .into_inner();
        Some(p)
    };

    let endpoint = context.endpoint.clone();
    cfg.upsert(context);
    cfg.current_context = Some(name.clone());
    cfg.save(&path)?;
    match who {
        Some(p) => outln!(
            "Logged in to {endpoint} as {}{}; context {name:?} saved in {}.",
            p.user,
            if p.tenant.is_empty() {
                String::new()
            } else {
                format!(" (tenant {})", p.tenant)
            },
            path.display()
        ),
        None => outln!(
            "Context {name:?} for {endpoint} saved in {} (not verified).",
            path.display()
        ),
    }
    Ok(())
}

fn read_token(file: &std::path::Path) -> Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(file).map_err(|e| {
        Error::usage(
            format!("cannot read the token file {}: {e}", file.display()),
            Some("pass the file the token was saved in (e.g. .manifold/admin.token)".into()),
        )
    })
}
