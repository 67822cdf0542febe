//! `mfctl vk8s`: virtual Kubernetes clusters and their kubeconfigs.

use manifold_proto::vk8s::v1 as vpb;
use serde_json::{Value, json};

use super::util::{PAGE_SIZE, collect_pages, edit_labels, mask, require_changes};
use crate::{
    Ctx, names,
    error::Result,
    output::{self, Format, Render, parse_duration, parse_label},
};

const COLLECTION: &str = "virtualClusters";

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Create a vK8s: `demo` (with --tenant, -n) or a full name.
    Create {
        name: String,
        /// Virtual sites (short ids in the same namespace), comma-separated or repeated.
        #[arg(long = "virtual-site", value_delimiter = ',')]
        virtual_sites: Vec<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Show one.
    Get {
        name: String,
    },
    /// List them (every page).
    List {
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Change display name, labels, or the virtual sites (the whole list).
    Update {
        name: String,
        /// Replaces the list; comma-separated or repeated.
        #[arg(long = "virtual-site", value_delimiter = ',')]
        virtual_sites: Option<Vec<String>>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(long = "remove-label")]
        remove_labels: Vec<String>,
        #[arg(long)]
        etag: Option<String>,
    },
    /// Delete one.
    Delete {
        name: String,
        #[arg(long)]
        etag: Option<String>,
    },
    /// Print a kubeconfig with a fresh namespace-scoped token:
    /// `mfctl vk8s kubeconfig demo > demo.kubeconfig`.
    Kubeconfig {
        name: String,
        /// Token lifetime, e.g. 24h (default 30 days).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
    },
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let format = ctx.format();
    match args.command {
        Sub::Create {
            name,
            virtual_sites,
            display_name,
            labels,
        } => {
            let (parent, id) = match names::split_create(&name, COLLECTION) {
                Some(p) => p,
                None => (ctx.namespace_parent()?, name),
            };
            let v = ctx
                .conn()
                .await?
                .virtual_clusters()
                .create_virtual_cluster(vpb::CreateVirtualClusterRequest {
                    parent,
                    virtual_cluster_id: id,
                    virtual_cluster: Some(vpb::VirtualCluster {
                        virtual_sites,
                        display_name: display_name.unwrap_or_default(),
                        labels: labels.into_iter().collect(),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner();
            output::print_one(format, &VirtualCluster(v))
        }
        Sub::Get { name } => {
            let name = names::in_namespace(ctx, COLLECTION, &name)?;
            let v = ctx
                .conn()
                .await?
                .virtual_clusters()
                .get_virtual_cluster(vpb::GetVirtualClusterRequest { name })
                .await?
                .into_inner();
            output::print_one(format, &VirtualCluster(v))
        }
        Sub::List { limit } => {
            let parent = ctx.namespace_parent()?;
            let client = ctx.conn().await?.virtual_clusters();
            let all = collect_pages(limit, |page_token| {
                let mut client = client.clone();
                let request = vpb::ListVirtualClustersRequest {
                    parent: parent.clone(),
                    page_size: PAGE_SIZE,
                    page_token,
                };
                async move {
                    let r = client.list_virtual_clusters(request).await?.into_inner();
                    Ok((r.virtual_clusters.into_iter().map(VirtualCluster).collect(), r.next_page_token))
                }
            })
            .await?;
            output::print_list(format, &all)
        }
        Sub::Update {
            name,
            virtual_sites,
            display_name,
            labels,
            remove_labels,
            etag,
        } => {
            let name = names::in_namespace(ctx, COLLECTION, &name)?;
            let mut client = ctx.conn().await?.virtual_clusters();
            let mut v = client
                .get_virtual_cluster(vpb::GetVirtualClusterRequest { name })
                .await?
                .into_inner();
            let mut paths = Vec::new();
            if let Some(d) = display_name {
                v.display_name = d;
                paths.push("display_name");
            }
            if !labels.is_empty() || !remove_labels.is_empty() {
                edit_labels(&mut v.labels, &labels, &remove_labels);
                paths.push("labels");
            }
            if let Some(vs) = virtual_sites {
                v.virtual_sites = vs.into_iter().filter(|s| !s.is_empty()).collect();
                paths.push("virtual_sites");
            }
            require_changes(
                &paths,
                "--display-name, --label, --remove-label, --virtual-site",
            )?;
            if let Some(e) = etag {
                v.etag = e;
            }
            let v = client
                .update_virtual_cluster(vpb::UpdateVirtualClusterRequest {
                    virtual_cluster: Some(v),
                    update_mask: mask(paths),
                })
                .await?
                .into_inner();
            output::print_one(format, &VirtualCluster(v))
        }
        Sub::Delete { name, etag } => {
            let name = names::in_namespace(ctx, COLLECTION, &name)?;
            ctx.conn()
                .await?
                .virtual_clusters()
                .delete_virtual_cluster(vpb::DeleteVirtualClusterRequest {
                    name: name.clone(),
                    etag: etag.unwrap_or_default(),
                })
                .await?;
            output::deleted(format, &name)
        }
        Sub::Kubeconfig { name, ttl } => {
            let name = names::in_namespace(ctx, COLLECTION, &name)?;
            let k = ctx
                .conn()
                .await?
                .virtual_clusters()
                .get_kubeconfig(vpb::GetKubeconfigRequest {
                    name,
                    ttl_seconds: ttl.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                })
                .await?
                .into_inner();
            match format {
                Format::Table | Format::Name | Format::Yaml => {
                    out!("{}", k.kubeconfig);
                    if !k.kubeconfig.ends_with('\n') {
                        outln!();
                    }
                    Ok(())
                }
                Format::Json => output::print_value(
                    format,
                    &json!({
                        "kubeconfig": k.kubeconfig,
                        "expireTime": output::ts_json(&k.expire_time),
                    }),
                ),
            }
        }
    }
}

pub struct VirtualCluster(pub vpb::VirtualCluster);

impl Render for VirtualCluster {
    const COLUMNS: &'static [&'static str] =
        &["NAME", "NAMESPACE", "VIRTUAL SITES", "SERVER", "AGE"];

    fn row(&self) -> Vec<String> {
        let v = &self.0;
        let sites: Vec<String> = v.virtual_sites.iter().map(|s| output::short(s)).collect();
        vec![
            output::short(&v.name),
            v.name
                .split("/virtualClusters/")
                .next()
                .unwrap_or_default()
                .to_owned(),
            output::or_none(&sites.join(",")),
            v.server_url.clone(),
            output::age(&v.create_time),
        ]
    }

    fn to_json(&self) -> Value {
        let v = &self.0;
        json!({
            "name": v.name,
            "uid": v.uid,
            "displayName": v.display_name,
            "labels": output::labels_json(&v.labels),
            "virtualSites": v.virtual_sites,
            "serverUrl": v.server_url,
            "createTime": output::ts_json(&v.create_time),
            "updateTime": output::ts_json(&v.update_time),
            "etag": v.etag,
        })
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }
}
