//! `mfctl whoami`: the principal behind the configured token.

use manifold_proto::tenancy::v1 as tpb;
use serde_json::{Value, json};

use crate::{
    Ctx,
    error::Result,
    output::{self, Render},
};

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_: Args, ctx: &mut Ctx) -> Result<()> {
    let conn = ctx.conn().await?;
    let p = conn.authz().who_am_i(tpb::WhoAmIRequest {}).await?.into_inner();
    output::print_one(ctx.format(), &Principal(p))
}

struct Principal(tpb::Principal);

impl Render for Principal {
    const COLUMNS: &'static [&'static str] = &["USER", "TENANT", "ROLES", "TOKEN EXPIRES"];

    fn row(&self) -> Vec<String> {
        let p = &self.0;
        let roles: Vec<String> = p
            .role_bindings
            .iter()
            .map(|b| crate::cmd::role_binding::role_label(b.role))
            .collect();
        vec![
            p.user.clone(),
            output::or_none(&p.tenant),
            output::or_none(&roles.join(",")),
            output::until(&p.token_expire_time),
        ]
    }

    fn to_json(&self) -> Value {
        let p = &self.0;
        json!({
            "user": p.user,
            "tenant": p.tenant,
            "roleBindings": p.role_bindings.iter().map(crate::cmd::role_binding::json).collect::<Vec<_>>(),
            "token": p.token,
            "tokenScope": p.token_scope,
            "tokenExpireTime": output::ts_json(&p.token_expire_time),
        })
    }

    fn name(&self) -> String {
        self.0.user.clone()
    }
}
