//! `mfctl tenant`: tenants (system-admins create and delete them).

use manifold_proto::tenancy::v1 as tpb;
use serde_json::{Value, json};

use super::util::{PAGE_SIZE, collect_pages, edit_labels, mask, require_changes};
use crate::{
    Ctx, names,
    error::Result,
    output::{self, Render, parse_label},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Create a tenant: ID is a DNS label (lowercase letters, digits, '-').
    Create {
        id: String,
        #[arg(long)]
        display_name: Option<String>,
        /// KEY=VALUE, repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Show one.
    Get {
        name: String,
    },
    /// List them (every page).
    List {
        /// Stop after this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Change the display name, labels or state (state needs system-admin).
    Update {
        name: String,
        #[arg(long)]
        display_name: Option<String>,
        /// KEY=VALUE to add or replace, repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// KEY to remove, repeatable.
        #[arg(long = "remove-label")]
        remove_labels: Vec<String>,
        #[arg(long, value_enum)]
        state: Option<State>,
        /// Only if the tenant still has this etag (default: the one just read).
        #[arg(long)]
        etag: Option<String>,
    },
    /// Delete a tenant; refused while it has namespaces unless --force.
    Delete {
        name: String,
        /// Also delete everything the tenant owns.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        etag: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum State {
    Active,
    Suspended,
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let conn = ctx.conn().await?;
    let mut client = conn.tenants();
    let format = ctx.format();
    match args.command {
        Sub::Create {
            id,
            display_name,
            labels,
        } => {
            let t = client
                .create_tenant(tpb::CreateTenantRequest {
                    tenant_id: names::strip("tenants/", &id),
                    tenant: Some(tpb::Tenant {
                        display_name: display_name.unwrap_or_default(),
                        labels: labels.into_iter().collect(),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner();
            output::print_one(format, &Tenant(t))
        }
        Sub::Get { name } => {
            let t = client
                .get_tenant(tpb::GetTenantRequest {
                    name: names::tenant(&name),
                })
                .await?
                .into_inner();
            output::print_one(format, &Tenant(t))
        }
        Sub::List { limit } => {
            let all = collect_pages(limit, |page_token| {
                let mut client = client.clone();
                let request = tpb::ListTenantsRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                };
                async move {
                    let r = client.list_tenants(request).await?.into_inner();
                    Ok((r.tenants.into_iter().map(Tenant).collect(), r.next_page_token))
                }
            })
            .await?;
            output::print_list(format, &all)
        }
        Sub::Update {
            name,
            display_name,
            labels,
            remove_labels,
            state,
            etag,
        } => {
            let mut t = client
                .get_tenant(tpb::GetTenantRequest {
                    name: names::tenant(&name),
                })
                .await?
                .into_inner();
            let mut paths = Vec::new();
            if let Some(d) = display_name {
                t.display_name = d;
                paths.push("display_name");
            }
            if !labels.is_empty() || !remove_labels.is_empty() {
                edit_labels(&mut t.labels, &labels, &remove_labels);
                paths.push("labels");
            }
            if let Some(s) = state {
                t.state = match s {
                    State::Active => tpb::tenant::State::Active,
                    State::Suspended => tpb::tenant::State::Suspended,
                } as i32;
                paths.push("state");
            }
            require_changes(&paths, "--display-name, --label, --remove-label, --state")?;
            if let Some(e) = etag {
                t.etag = e;
            }
            let t = client
                .update_tenant(tpb::UpdateTenantRequest {
                    tenant: Some(t),
                    update_mask: mask(paths),
                })
                .await?
                .into_inner();
            output::print_one(format, &Tenant(t))
        }
        Sub::Delete { name, force, etag } => {
            let name = names::tenant(&name);
            client
                .delete_tenant(tpb::DeleteTenantRequest {
                    name: name.clone(),
                    force,
                    etag: etag.unwrap_or_default(),
                })
                .await?;
            output::deleted(format, &name)
        }
    }
}

pub struct Tenant(pub tpb::Tenant);

impl Render for Tenant {
    const COLUMNS: &'static [&'static str] = &["NAME", "DISPLAY NAME", "STATE", "LABELS", "AGE"];

    fn row(&self) -> Vec<String> {
        let t = &self.0;
        vec![
            output::short(&t.name),
            output::or_none(&t.display_name),
            output::enum_lower(t.state().as_str_name()),
            output::labels_cell(&t.labels),
            output::age(&t.create_time),
        ]
    }

    fn to_json(&self) -> Value {
        let t = &self.0;
        json!({
            "name": t.name,
            "uid": t.uid,
            "displayName": t.display_name,
            "labels": output::labels_json(&t.labels),
            "state": t.state().as_str_name(),
            "createTime": output::ts_json(&t.create_time),
            "updateTime": output::ts_json(&t.update_time),
            "etag": t.etag,
        })
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }
}
