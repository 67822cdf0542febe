//! `mfctl role-binding`: who holds which role where. The scope (system, a
//! tenant, or a namespace) follows from the role unless --scope says otherwise.

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
    /// Bind a role to a user (ID optional: generated when omitted).
    Create {
        id: Option<String>,
        #[arg(long, value_enum)]
        role: Role,
        /// `alice` (in --tenant), `users/ops` or `tenants/acme/users/alice`.
        #[arg(long)]
        user: String,
    },
    /// Get a binding by full name, or by id within --scope.
    Get {
        name: String,
        #[arg(long, value_enum)]
        scope: Option<Scope>,
    },
    /// Bindings of one scope (default: namespace when -n is set, else tenant
    /// when --tenant is set, else system).
    List {
        #[arg(long, value_enum)]
        scope: Option<Scope>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete one.
    Delete {
        name: String,
        #[arg(long, value_enum)]
        scope: Option<Scope>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Role {
    SystemAdmin,
    TenantAdmin,
    NamespaceAdmin,
    NamespaceEditor,
    NamespaceViewer,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Scope {
    System,
    Tenant,
    Namespace,
}

/// The parent resource name of a scope.
fn parent(ctx: &mut Ctx, scope: Option<Scope>) -> Result<String> {
    let scope = match scope {
        Some(s) => s,
        None if ctx.namespace_parent_opt().is_some() => Scope::Namespace,
        None if ctx.tenant_opt().is_some() => Scope::Tenant,
        None => Scope::System,
    };
    Ok(match scope {
        Scope::System => String::new(),
        Scope::Tenant => names::tenant(&ctx.tenant()?),
        Scope::Namespace => ctx.namespace_parent()?,
    })
}

fn full_name(ctx: &mut Ctx, name: &str, scope: Option<Scope>) -> Result<String> {
    if name.contains('/') {
        return Ok(name.to_owned());
    }
    let p = parent(ctx, scope)?;
    Ok(if p.is_empty() {
        format!("roleBindings/{name}")
    } else {
        format!("{p}/roleBindings/{name}")
    })
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let format = ctx.format();
    match args.command {
        Sub::Create { id, role, user } => {
            let (parent, proto_role) = match role {
                Role::SystemAdmin => (String::new(), tpb::Role::SystemAdmin),
                Role::TenantAdmin => (names::tenant(&ctx.tenant()?), tpb::Role::TenantAdmin),
                Role::NamespaceAdmin => (ctx.namespace_parent()?, tpb::Role::NamespaceAdmin),
                Role::NamespaceEditor => (ctx.namespace_parent()?, tpb::Role::NamespaceEditor),
                Role::NamespaceViewer => (ctx.namespace_parent()?, tpb::Role::NamespaceViewer),
            };
            let user = names::user(ctx, &user);
            let b = ctx
                .conn()
                .await?
                .role_bindings()
                .create_role_binding(tpb::CreateRoleBindingRequest {
                    parent,
                    role_binding_id: id.unwrap_or_default(),
                    role_binding: Some(tpb::RoleBinding {
                        role: proto_role as i32,
                        user,
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner();
            output::print_one(format, &RoleBinding(b))
        }
        Sub::Get { name, scope } => {
            let name = full_name(ctx, &name, scope)?;
            let b = ctx
                .conn()
                .await?
                .role_bindings()
                .get_role_binding(tpb::GetRoleBindingRequest { name })
                .await?
                .into_inner();
            output::print_one(format, &RoleBinding(b))
        }
        Sub::List { scope, limit } => {
            let parent = parent(ctx, scope)?;
            let client = ctx.conn().await?.role_bindings();
            let all = collect_pages(limit, |page_token| {
                let mut client = client.clone();
                let request = tpb::ListRoleBindingsRequest {
                    parent: parent.clone(),
                    page_size: PAGE_SIZE,
                    page_token,
                };
                async move {
                    let r = client.list_role_bindings(request).await?.into_inner();
                    Ok((r.role_bindings.into_iter().map(RoleBinding).collect(), r.next_page_token))
                }
            })
            .await?;
            output::print_list(format, &all)
        }
        Sub::Delete { name, scope } => {
            let name = full_name(ctx, &name, scope)?;
            ctx.conn()
                .await?
                .role_bindings()
                .delete_role_binding(tpb::DeleteRoleBindingRequest { name: name.clone() })
                .await?;
            output::deleted(format, &name)
        }
    }
}

/// `namespace-editor` for a proto role number.
pub fn role_label(role: i32) -> String {
    tpb::Role::try_from(role).map_or_else(
        |_| role.to_string(),
        |r| output::enum_lower(r.as_str_name()),
    )
}

/// The proto3 JSON form of a binding.
pub fn json(b: &tpb::RoleBinding) -> Value {
    json!({
        "name": b.name,
        "role": tpb::Role::try_from(b.role).map_or_else(|_| b.role.to_string(), |r| r.as_str_name().to_owned()),
        "user": b.user,
        "createTime": output::ts_json(&b.create_time),
    })
}

pub struct RoleBinding(pub tpb::RoleBinding);

impl Render for RoleBinding {
    const COLUMNS: &'static [&'static str] = &["NAME", "ROLE", "USER", "AGE"];

    fn row(&self) -> Vec<String> {
        let b = &self.0;
        vec![
            b.name.clone(),
            role_label(b.role),
            b.user.clone(),
            output::age(&b.create_time),
        ]
    }

    fn to_json(&self) -> Value {
        json(&self.0)
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }
}
