//! `mfctl user`: system users (`users/{u}`) and tenant users
//! (`tenants/{t}/users/{u}`, chosen by --tenant or the context's tenant).

use manifold_proto::tenancy::v1 as tpb;
use serde_json::{Value, json};

use super::util::{PAGE_SIZE, collect_pages};
use crate::{
    Ctx, names,
    error::Result,
    output::{self, Render},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Create a user: `alice` (a tenant user when a tenant is set, else a
    /// system user), `users/alice` or `tenants/acme/users/alice`.
    Create {
        name: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Show one.
    Get {
        name: String,
    },
    /// The tenant's users (with a tenant set), else the system users.
    List {
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete one.
    Delete {
        name: String,
    },
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let format = ctx.format();
    match args.command {
        Sub::Create {
            name,
            email,
            display_name,
        } => {
            let full = names::user(ctx, &name);
            let (parent, id) = names::split_create(&full, "users")
                .unwrap_or_else(|| (String::new(), names::strip("users/", &full)));
            let u = ctx
                .conn()
                .await?
                .users()
                .create_user(tpb::CreateUserRequest {
                    parent,
                    user_id: id,
                    user: Some(tpb::User {
                        email: email.unwrap_or_default(),
                        display_name: display_name.unwrap_or_default(),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner();
            output::print_one(format, &User(u))
        }
        Sub::Get { name } => {
            let name = names::user(ctx, &name);
            let u = ctx
                .conn()
                .await?
                .users()
                .get_user(tpb::GetUserRequest { name })
                .await?
                .into_inner();
            output::print_one(format, &User(u))
        }
        Sub::List { limit } => {
            let parent = ctx.tenant_opt().map(|t| names::tenant(&t)).unwrap_or_default();
            let client = ctx.conn().await?.users();
            let all = collect_pages(limit, |page_token| {
                let mut client = client.clone();
                let request = tpb::ListUsersRequest {
                    parent: parent.clone(),
                    page_size: PAGE_SIZE,
                    page_token,
                };
                async move {
                    let r = client.list_users(request).await?.into_inner();
                    Ok((r.users.into_iter().map(User).collect(), r.next_page_token))
                }
            })
            .await?;
            output::print_list(format, &all)
        }
        Sub::Delete { name } => {
            let name = names::user(ctx, &name);
            ctx.conn()
                .await?
                .users()
                .delete_user(tpb::DeleteUserRequest { name: name.clone() })
                .await?;
            output::deleted(format, &name)
        }
    }
}

pub struct User(pub tpb::User);

impl Render for User {
    const COLUMNS: &'static [&'static str] = &["NAME", "EMAIL", "DISPLAY NAME", "AGE"];

    fn row(&self) -> Vec<String> {
        let u = &self.0;
        vec![
            u.name.clone(),
            output::or_none(&u.email),
            output::or_none(&u.display_name),
            output::age(&u.create_time),
        ]
    }

    fn to_json(&self) -> Value {
        let u = &self.0;
        json!({
            "name": u.name,
            "uid": u.uid,
            "displayName": u.display_name,
            "email": u.email,
            "createTime": output::ts_json(&u.create_time),
            "etag": u.etag,
        })
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }
}
