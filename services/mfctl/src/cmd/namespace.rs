//! `mfctl namespace`: a tenant's namespaces (isolation boundaries with their
//! own role bindings). Display name and labels change in place.

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
    /// Create a namespace: `shop` (with --tenant) or `tenants/acme/namespaces/shop`.
    Create {
        name: String,
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
    /// The namespaces of --tenant (or the context's tenant).
    List {
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Change the display name or labels in place.
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
        /// Only if the namespace still has this etag (default: the one just read).
        #[arg(long)]
        etag: Option<String>,
    },
    /// Delete one.
    Delete {
        name: String,
        #[arg(long)]
        etag: Option<String>,
    },
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let format = ctx.format();
    match args.command {
        Sub::Create {
            name,
            display_name,
            labels,
        } => {
            let (parent, id) = match names::split_create(&name, "namespaces") {
                Some(p) => p,
                None => (names::tenant(&ctx.tenant()?), name),
            };
            let ns = ctx
                .conn()
                .await?
                .namespaces()
                .create_namespace(tpb::CreateNamespaceRequest {
                    parent,
                    namespace_id: id,
                    namespace: Some(tpb::Namespace {
                        display_name: display_name.unwrap_or_default(),
                        labels: labels.into_iter().collect(),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner();
            output::print_one(format, &Namespace(ns))
        }
        Sub::Get { name } => {
            let name = names::namespace(ctx, &name)?;
            let ns = ctx
                .conn()
                .await?
                .namespaces()
                .get_namespace(tpb::GetNamespaceRequest { name })
                .await?
                .into_inner();
            output::print_one(format, &Namespace(ns))
        }
        Sub::List { limit } => {
            let parent = names::tenant(&ctx.tenant()?);
            let client = ctx.conn().await?.namespaces();
            let all = collect_pages(limit, |page_token| {
                let mut client = client.clone();
                let request = tpb::ListNamespacesRequest {
                    parent: parent.clone(),
                    page_size: PAGE_SIZE,
                    page_token,
                };
                async move {
                    let r = client.list_namespaces(request).await?.into_inner();
                    Ok((r.namespaces.into_iter().map(Namespace).collect(), r.next_page_token))
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
            etag,
        } => {
            let name = names::namespace(ctx, &name)?;
            let mut client = ctx.conn().await?.namespaces();
            let mut ns = client
                .get_namespace(tpb::GetNamespaceRequest { name })
                .await?
                .into_inner();
            let mut paths = Vec::new();
            if let Some(d) = display_name {
                ns.display_name = d;
                paths.push("display_name");
            }
            if !labels.is_empty() || !remove_labels.is_empty() {
                edit_labels(&mut ns.labels, &labels, &remove_labels);
                paths.push("labels");
            }
            require_changes(&paths, "--display-name, --label, --remove-label")?;
            if let Some(e) = etag {
                ns.etag = e;
            }
            let ns = client
                .update_namespace(tpb::UpdateNamespaceRequest {
                    namespace: Some(ns),
                    update_mask: mask(paths),
                })
                .await?
                .into_inner();
            output::print_one(format, &Namespace(ns))
        }
        Sub::Delete { name, etag } => {
            let name = names::namespace(ctx, &name)?;
            ctx.conn()
                .await?
                .namespaces()
                .delete_namespace(tpb::DeleteNamespaceRequest {
                    name: name.clone(),
                    etag: etag.unwrap_or_default(),
                })
                .await?;
            output::deleted(format, &name)
        }
    }
}

pub struct Namespace(pub tpb::Namespace);

impl Render for Namespace {
    const COLUMNS: &'static [&'static str] = &["NAME", "TENANT", "DISPLAY NAME", "LABELS", "AGE"];

    fn row(&self) -> Vec<String> {
        let n = &self.0;
        let tenant = n.name.split('/').nth(1).unwrap_or_default().to_owned();
        vec![
            output::short(&n.name),
            tenant,
            output::or_none(&n.display_name),
            output::labels_cell(&n.labels),
            output::age(&n.create_time),
        ]
    }

    fn to_json(&self) -> Value {
        let n = &self.0;
        json!({
            "name": n.name,
            "uid": n.uid,
            "displayName": n.display_name,
            "labels": output::labels_json(&n.labels),
            "createTime": output::ts_json(&n.create_time),
            "etag": n.etag,
        })
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }
}
