//! `mfctl token`: API tokens of a user. `create` prints the secret (once: only
//! its hash is stored); `delete` revokes.

use manifold_proto::tenancy::v1 as tpb;
use serde_json::{Value, json};

use super::util::{PAGE_SIZE, collect_pages};
use crate::{
    Ctx, names,
    error::{Error, Result},
    output::{self, Format, Render, parse_duration},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Mint a token for USER; prints only the secret (details on stderr;
    /// everything with -o json).
    Create {
        /// `alice` (in --tenant), `users/ops` or `tenants/acme/users/alice`.
        user: String,
        /// Lifetime, e.g. 24h or 30d (server default 90 days, at most a year).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Limit the token to a resource-name prefix, e.g. tenants/acme/namespaces/shop.
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Get a token by full name (`.../users/alice/tokens/ID`), or ID with --user.
    Get {
        name: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// The tokens of USER (metadata only).
    List {
        user: String,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Revoke a token (it stops working at once).
    #[command(alias = "revoke")]
    Delete {
        name: String,
        #[arg(long)]
        user: Option<String>,
    },
}

fn token_name(ctx: &mut Ctx, name: &str, user: Option<&str>) -> Result<String> {
    if name.contains("/tokens/") {
        return Ok(name.to_owned());
    }
    let Some(user) = user else {
        return Err(Error::usage(
            format!("{name:?} is not a full token name"),
            Some("pass the full name (`tenants/T/users/U/tokens/ID`) or --user USER".into()),
        ));
    };
    Ok(format!("{}/tokens/{name}", names::user(ctx, user)))
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let format = ctx.format();
    match args.command {
        Sub::Create {
            user,
            ttl,
            scope,
            display_name,
        } => {
            let parent = names::user(ctx, &user);
            let r = ctx
                .conn()
                .await?
                .tokens()
                .create_api_token(tpb::CreateApiTokenRequest {
                    parent,
                    token: Some(tpb::ApiToken {
                        display_name: display_name.unwrap_or_default(),
                        scope: scope.unwrap_or_default(),
                        ..Default::default()
                    }),
                    ttl: ttl.map(|d| prost_types::Duration {
                        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                })
                .await?
                .into_inner();
            let token = r.token.unwrap_or_default();
            match format {
                Format::Table | Format::Name => {
                    outln!("{}", r.secret);
                    eprintln!(
                        "token {} expires {}; the secret above is shown only once",
                        token.name,
                        output::until(&token.expire_time)
                    );
                    Ok(())
                }
                _ => {
                    let mut v = json_token(&token);
                    v["secret"] = json!(r.secret);
                    output::print_value(format, &v)
                }
            }
        }
        Sub::Get { name, user } => {
            let name = token_name(ctx, &name, user.as_deref())?;
            let t = ctx
                .conn()
                .await?
                .tokens()
                .get_api_token(tpb::GetApiTokenRequest { name })
                .await?
                .into_inner();
            output::print_one(format, &Token(t))
        }
        Sub::List { user, limit } => {
            let parent = names::user(ctx, &user);
            let client = ctx.conn().await?.tokens();
            let all = collect_pages(limit, |page_token| {
                let mut client = client.clone();
                let request = tpb::ListApiTokensRequest {
                    parent: parent.clone(),
                    page_size: PAGE_SIZE,
                    page_token,
                };
                async move {
                    let r = client.list_api_tokens(request).await?.into_inner();
                    Ok((r.tokens.into_iter().map(Token).collect(), r.next_page_token))
                }
            })
            .await?;
            output::print_list(format, &all)
        }
        Sub::Delete { name, user } => {
            let name = token_name(ctx, &name, user.as_deref())?;
            let t = ctx
                .conn()
                .await?
                .tokens()
                .revoke_api_token(tpb::RevokeApiTokenRequest { name })
                .await?
                .into_inner();
            match format {
                Format::Table => {
                    outln!("{} revoked", t.name);
                    Ok(())
                }
                _ => output::print_one(format, &Token(t)),
            }
        }
    }
}

fn json_token(t: &tpb::ApiToken) -> Value {
    json!({
        "name": t.name,
        "displayName": t.display_name,
        "scope": t.scope,
        "state": t.state().as_str_name(),
        "createTime": output::ts_json(&t.create_time),
        "expireTime": output::ts_json(&t.expire_time),
        "revokeTime": output::ts_json(&t.revoke_time),
    })
}

pub struct Token(pub tpb::ApiToken);

impl Render for Token {
    const COLUMNS: &'static [&'static str] =
        &["NAME", "STATE", "SCOPE", "DISPLAY NAME", "EXPIRES", "AGE"];

    fn row(&self) -> Vec<String> {
        let t = &self.0;
        vec![
            t.name.clone(),
            output::enum_lower(t.state().as_str_name()),
            output::or_none(&t.scope),
            output::or_none(&t.display_name),
            output::until(&t.expire_time),
            output::age(&t.create_time),
        ]
    }

    fn to_json(&self) -> Value {
        json_token(&self.0)
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }
}
