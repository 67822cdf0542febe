//! `mfctl virtual-site`: label selectors over sites, per namespace; a vK8s is
//! placed on the sites its virtual sites match.

use manifold_proto::sites::v1 as spb;
use serde_json::{Value, json};

use super::util::{PAGE_SIZE, collect_pages, mask, require_changes};
use crate::{
    Ctx, names,
    error::Result,
    output::{self, Render},
};

const COLLECTION: &str = "virtualSites";

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Create a virtual site: `all-edges` (with --tenant, -n) or a full name.
    Create {
        name: String,
        /// Label selector over site labels, e.g. `env=edge`.
        #[arg(short = 'l', long)]
        selector: String,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Show one.
    Get {
        name: String,
    },
    /// The virtual sites of the namespace (-n, --tenant or the context's).
    List {
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Change fields (read, edit, write back with the etag).
    Update {
        name: String,
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        etag: Option<String>,
    },
    /// Delete one.
    Delete {
        name: String,
        #[arg(long)]
        etag: Option<String>,
    },
    /// The sites the selector matches now.
    Resolve {
        name: String,
    },
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let format = ctx.format();
    match args.command {
        Sub::Create {
            name,
            selector,
            display_name,
        } => {
            let (parent, id) = match names::split_create(&name, COLLECTION) {
                Some(p) => p,
                None => (ctx.namespace_parent()?, name),
            };
            let vs = ctx
                .conn()
                .await?
                .virtual_sites()
                .create_virtual_site(spb::CreateVirtualSiteRequest {
                    parent,
                    virtual_site_id: id,
                    virtual_site: Some(spb::VirtualSite {
                        site_selector: selector,
                        display_name: display_name.unwrap_or_default(),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner();
            output::print_one(format, &VirtualSite(vs))
        }
        Sub::Get { name } => {
            let name = names::in_namespace(ctx, COLLECTION, &name)?;
            let vs = ctx
                .conn()
                .await?
                .virtual_sites()
                .get_virtual_site(spb::GetVirtualSiteRequest { name })
                .await?
                .into_inner();
            output::print_one(format, &VirtualSite(vs))
        }
        Sub::List { limit } => {
            let parent = ctx.namespace_parent()?;
            let client = ctx.conn().await?.virtual_sites();
            let all = collect_pages(limit, |page_token| {
                let mut client = client.clone();
                let request = spb::ListVirtualSitesRequest {
                    parent: parent.clone(),
                    page_size: PAGE_SIZE,
                    page_token,
                };
                async move {
                    let r = client.list_virtual_sites(request).await?.into_inner();
                    Ok((r.virtual_sites.into_iter().map(VirtualSite).collect(), r.next_page_token))
                }
            })
            .await?;
            output::print_list(format, &all)
        }
        Sub::Update {
            name,
            selector,
            display_name,
            etag,
        } => {
            let name = names::in_namespace(ctx, COLLECTION, &name)?;
            let mut client = ctx.conn().await?.virtual_sites();
            let mut vs = client
                .get_virtual_site(spb::GetVirtualSiteRequest { name })
                .await?
                .into_inner();
            let mut paths = Vec::new();
            if let Some(s) = selector {
                vs.site_selector = s;
                paths.push("site_selector");
            }
            if let Some(d) = display_name {
                vs.display_name = d;
                paths.push("display_name");
            }
            require_changes(&paths, "--selector, --display-name")?;
            if let Some(e) = etag {
                vs.etag = e;
            }
            let vs = client
                .update_virtual_site(spb::UpdateVirtualSiteRequest {
                    virtual_site: Some(vs),
                    update_mask: mask(paths),
                })
                .await?
                .into_inner();
            output::print_one(format, &VirtualSite(vs))
        }
        Sub::Delete { name, etag } => {
            let name = names::in_namespace(ctx, COLLECTION, &name)?;
            ctx.conn()
                .await?
                .virtual_sites()
                .delete_virtual_site(spb::DeleteVirtualSiteRequest {
                    name: name.clone(),
                    etag: etag.unwrap_or_default(),
                })
                .await?;
            output::deleted(format, &name)
        }
        Sub::Resolve { name } => {
            let name = names::in_namespace(ctx, COLLECTION, &name)?;
            let r = ctx
                .conn()
                .await?
                .virtual_sites()
                .resolve_virtual_site(spb::ResolveVirtualSiteRequest { name: name.clone() })
                .await?
                .into_inner();
            match format {
                output::Format::Table | output::Format::Name => {
                    r.sites.iter().for_each(|s| outln!("{s}"));
                    Ok(())
                }
                _ => output::print_value(
                    format,
                    &json!({ "name": name, "sites": r.sites, "revision": r.revision }),
                ),
            }
        }
    }
}

pub struct VirtualSite(pub spb::VirtualSite);

impl Render for VirtualSite {
    const COLUMNS: &'static [&'static str] = &["NAME", "NAMESPACE", "SELECTOR", "DISPLAY NAME", "AGE"];

    fn row(&self) -> Vec<String> {
        let v = &self.0;
        vec![
            output::short(&v.name),
            v.name.split("/virtualSites/").next().unwrap_or_default().to_owned(),
            v.site_selector.clone(),
            output::or_none(&v.display_name),
            output::age(&v.create_time),
        ]
    }

    fn to_json(&self) -> Value {
        let v = &self.0;
        json!({
            "name": v.name,
            "uid": v.uid,
            "displayName": v.display_name,
            "siteSelector": v.site_selector,
            "createTime": output::ts_json(&v.create_time),
            "updateTime": output::ts_json(&v.update_time),
            "etag": v.etag,
        })
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }
}
