//! `mfctl site`: physical sites (provider-owned or a tenant's own), their
//! one-time registration tokens, and their live status (state, heartbeat,
//! agent version, nodes, and what replication has sent but not yet seen
//! acknowledged).

use std::collections::HashMap;

use manifold_proto::{replication::v1 as rpb, sites::v1 as spb};
use serde_json::{Value, json};
use tonic::Code;

use super::util::{PAGE_SIZE, collect_pages, edit_labels, mask, require_changes};
use crate::{
    Ctx, names,
    client::Conn,
    error::Result,
    output::{self, Format, Render, parse_duration, parse_label},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Create a site (starts REGISTERED: known, no agent yet).
    Create {
        id: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        location: Option<String>,
        #[arg(long, value_enum)]
        provider_kind: Option<ProviderKind>,
        /// KEY=VALUE, repeatable (virtual sites select on these).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Make it a tenant's own site (`acme` or `tenants/acme`); default provider-owned.
        #[arg(long)]
        owner: Option<String>,
        /// Pod Security Standard workloads placed here must meet (default baseline).
        #[arg(long, value_enum)]
        pod_security: Option<PodSecurity>,
    },
    /// Show one.
    Get {
        name: String,
    },
    /// List them (every page).
    List {
        /// Label selector, e.g. `env=edge,region in (eu,us)`.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Include decommissioned sites.
        #[arg(long)]
        show_decommissioned: bool,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Change display name, location, provider kind, labels or Pod Security level.
    Update {
        name: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        location: Option<String>,
        #[arg(long, value_enum)]
        provider_kind: Option<ProviderKind>,
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(long = "remove-label")]
        remove_labels: Vec<String>,
        /// Pod Security Standard workloads placed here must meet.
        #[arg(long, value_enum)]
        pod_security: Option<PodSecurity>,
        #[arg(long)]
        etag: Option<String>,
    },
    /// Decommission a site (terminal; the name stays taken).
    Delete {
        name: String,
        #[arg(long)]
        etag: Option<String>,
    },
    /// Mint a one-time token an agent exchanges for its certificate; prints
    /// only the token (expiry on stderr; everything with -o json).
    RegistrationToken {
        site: String,
        /// Lifetime, e.g. 15m or 2h (default one hour).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Live status: state, last heartbeat, agent version, nodes and objects
    /// pending acknowledgement (the last needs system-admin).
    Status {
        /// Sites to show (default: every site that is not decommissioned).
        sites: Vec<String>,
        #[arg(short = 'l', long)]
        selector: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProviderKind {
    CloudRegion,
    Pop,
    Edge,
}

impl From<ProviderKind> for spb::site::ProviderKind {
    fn from(k: ProviderKind) -> Self {
        match k {
            ProviderKind::CloudRegion => spb::site::ProviderKind::CloudRegion,
            ProviderKind::Pop => spb::site::ProviderKind::Pop,
            ProviderKind::Edge => spb::site::ProviderKind::Edge,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PodSecurity {
    Privileged,
    Baseline,
    Restricted,
}

impl From<PodSecurity> for spb::PodSecurityLevel {
    fn from(l: PodSecurity) -> Self {
        match l {
            PodSecurity::Privileged => spb::PodSecurityLevel::Privileged,
            PodSecurity::Baseline => spb::PodSecurityLevel::Baseline,
            PodSecurity::Restricted => spb::PodSecurityLevel::Restricted,
        }
    }
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let format = ctx.format();
    let conn = ctx.conn().await?;
    let mut client = conn.sites();
    match args.command {
        Sub::Create {
            id,
            display_name,
            location,
            provider_kind,
            labels,
            owner,
            pod_security,
        } => {
            let s = client
                .create_site(spb::CreateSiteRequest {
                    site_id: names::strip("sites/", &id),
                    site: Some(spb::Site {
                        display_name: display_name.unwrap_or_default(),
                        location: location.unwrap_or_default(),
                        provider_kind: provider_kind
                            .map_or(0, |k| spb::site::ProviderKind::from(k) as i32),
                        labels: labels.into_iter().collect(),
                        owner: owner.map(|o| names::tenant(&o)).unwrap_or_default(),
                        pod_security: pod_security
                            .map_or(0, |l| spb::PodSecurityLevel::from(l) as i32),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner();
            output::print_one(format, &Site(s))
        }
        Sub::Get { name } => {
            let s = client
                .get_site(spb::GetSiteRequest {
                    name: names::site(&name),
                })
                .await?
                .into_inner();
            output::print_one(format, &Site(s))
        }
        Sub::List {
            selector,
            show_decommissioned,
            limit,
        } => {
            let all = list(&conn, selector, show_decommissioned, limit).await?;
            output::print_list(format, &all.into_iter().map(Site).collect::<Vec<_>>())
        }
        Sub::Update {
            name,
            display_name,
            location,
            provider_kind,
            labels,
            remove_labels,
            pod_security,
            etag,
        } => {
            let mut s = client
                .get_site(spb::GetSiteRequest {
                    name: names::site(&name),
                })
                .await?
                .into_inner();
            let mut paths = Vec::new();
            if let Some(d) = display_name {
                s.display_name = d;
                paths.push("display_name");
            }
            if let Some(l) = location {
                s.location = l;
                paths.push("location");
            }
            if let Some(k) = provider_kind {
                s.provider_kind = spb::site::ProviderKind::from(k) as i32;
                paths.push("provider_kind");
            }
            if !labels.is_empty() || !remove_labels.is_empty() {
                edit_labels(&mut s.labels, &labels, &remove_labels);
                paths.push("labels");
            }
            if let Some(l) = pod_security {
                s.pod_security = spb::PodSecurityLevel::from(l) as i32;
                paths.push("pod_security");
            }
            require_changes(
                &paths,
                "--display-name, --location, --provider-kind, --label, --remove-label, --pod-security",
            )?;
            if let Some(e) = etag {
                s.etag = e;
            }
            let s = client
                .update_site(spb::UpdateSiteRequest {
                    site: Some(s),
                    update_mask: mask(paths),
                })
                .await?
                .into_inner();
            output::print_one(format, &Site(s))
        }
        Sub::Delete { name, etag } => {
            let name = names::site(&name);
            client
                .delete_site(spb::DeleteSiteRequest {
                    name: name.clone(),
                    etag: etag.unwrap_or_default(),
                })
                .await?;
            output::deleted(format, &name)
        }
        Sub::RegistrationToken { site, ttl } => {
            let t = client
                .create_registration_token(spb::CreateRegistrationTokenRequest {
                    site: names::site(&site),
                    ttl_seconds: ttl.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                })
                .await?
                .into_inner();
            match format {
                Format::Table | Format::Name => {
                    outln!("{}", t.token);
                    eprintln!(
                        "registration token for {} expires {}; it works once",
                        t.site,
                        output::until(&t.expire_time)
                    );
                    Ok(())
                }
                _ => output::print_value(
                    format,
                    &json!({
                        "site": t.site,
                        "token": t.token,
                        "expireTime": output::ts_json(&t.expire_time),
                    }),
                ),
            }
        }
        Sub::Status { sites, selector } => {
            let sites = if sites.is_empty() {
                list(&conn, selector, false, None).await?
            } else {
                let mut out = Vec::new();
                for s in sites {
                    out.push(
                        client
                            .get_site(spb::GetSiteRequest {
                                name: names::site(&s),
                            })
                            .await?
                            .into_inner(),
                    );
                }
                out
            };
            let sessions = sessions(&conn).await?;
            let rows: Vec<Status> = sites
                .into_iter()
                .map(|site| Status {
                    session: sessions
                        .as_ref()
                        .map(|m| m.get(&site.name).cloned()),
                    site,
                })
                .collect();
            output::print_list(format, &rows)
        }
    }
}

async fn list(
    conn: &Conn,
    selector: Option<String>,
    show_decommissioned: bool,
    limit: Option<usize>,
) -> Result<Vec<spb::Site>> {
    let client = conn.sites();
    let all = collect_pages(limit, |page_token| {
        let mut client = client.clone();
        let request = spb::ListSitesRequest {
            page_size: PAGE_SIZE,
            page_token,
            label_selector: selector.clone().unwrap_or_default(),
            show_decommissioned,
        };
        async move {
            let r = client.list_sites(request).await?.into_inner();
            Ok((r.sites, r.next_page_token))
        }
    })
    .await?;
    Ok(all)
}

/// Replication sessions by site name; `None` when the caller may not see them
/// (ListSessions is for system administrators) or the service is not served.
async fn sessions(conn: &Conn) -> Result<Option<HashMap<String, rpb::Session>>> {
    match conn
        .replication()
        .list_sessions(rpb::ListSessionsRequest {})
        .await
    {
        Ok(r) => Ok(Some(
            r.into_inner()
                .sessions
                .into_iter()
                .map(|s| (s.site.clone(), s))
                .collect(),
        )),
        Err(s)
            if matches!(
                s.code(),
                Code::PermissionDenied | Code::NotFound | Code::Unimplemented
            ) =>
        {
            Ok(None)
        }
        Err(s) => Err(s.into()),
    }
}

fn state(site: &spb::Site) -> String {
    output::enum_lower(site.state().as_str_name())
}

fn nodes_cell(site: &spb::Site) -> String {
    let ready = site.nodes.iter().filter(|n| n.ready).count();
    format!("{ready}/{}", site.nodes.len())
}

fn nodes_json(site: &spb::Site) -> Value {
    Value::Array(
        site.nodes
            .iter()
            .map(|n| {
                json!({
                    "name": n.name,
                    "ready": n.ready,
                    "cpuCapacity": n.cpu_capacity,
                    "memoryCapacity": n.memory_capacity,
                    "podCapacity": n.pod_capacity,
                    "labels": output::labels_json(&n.labels),
                })
            })
            .collect(),
    )
}

pub struct Site(pub spb::Site);

impl Render for Site {
    const COLUMNS: &'static [&'static str] =
        &["NAME", "STATE", "KIND", "LOCATION", "OWNER", "POD SECURITY", "NODES", "LABELS", "AGE"];

    fn row(&self) -> Vec<String> {
        let s = &self.0;
        vec![
            output::short(&s.name),
            state(s),
            match s.provider_kind() {
                spb::site::ProviderKind::Unspecified => "<none>".into(),
                k => output::enum_lower(k.as_str_name()),
            },
            output::or_none(&s.location),
            if s.owner.is_empty() {
                "provider".into()
            } else {
                s.owner.clone()
            },
            match s.pod_security() {
                spb::PodSecurityLevel::Unspecified => "<none>".into(),
                l => output::enum_lower(l.as_str_name()),
            },
            nodes_cell(s),
            output::labels_cell(&s.labels),
            output::age(&s.create_time),
        ]
    }

    fn to_json(&self) -> Value {
        let s = &self.0;
        json!({
            "name": s.name,
            "uid": s.uid,
            "displayName": s.display_name,
            "location": s.location,
            "providerKind": s.provider_kind().as_str_name(),
            "labels": output::labels_json(&s.labels),
            "podSecurity": s.pod_security().as_str_name(),
            "owner": s.owner,
            "state": s.state().as_str_name(),
            "lastHeartbeatTime": output::ts_json(&s.last_heartbeat_time),
            "agentVersion": s.agent_version,
            "nodes": nodes_json(s),
            "createTime": output::ts_json(&s.create_time),
            "updateTime": output::ts_json(&s.update_time),
            "registerTime": output::ts_json(&s.register_time),
            "decommissionTime": output::ts_json(&s.decommission_time),
            "etag": s.etag,
        })
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }
}

/// A site joined with its replication session.
struct Status {
    site: spb::Site,
    /// Outer `None`: sessions not visible to the caller; inner: no session.
    session: Option<Option<rpb::Session>>,
}

impl Render for Status {
    const COLUMNS: &'static [&'static str] =
        &["NAME", "STATE", "LAST HEARTBEAT", "AGENT", "NODES", "PENDING", "ACKED"];

    fn row(&self) -> Vec<String> {
        let s = &self.site;
        let (pending, acked) = match &self.session {
            None => ("?".into(), "?".into()),
            Some(None) => ("-".into(), "-".into()),
            Some(Some(x)) => (x.pending.to_string(), x.last_acked_revision.to_string()),
        };
        vec![
            output::short(&s.name),
            state(s),
            output::ago(&s.last_heartbeat_time),
            output::or_none(&s.agent_version),
            nodes_cell(s),
            pending,
            acked,
        ]
    }

    fn to_json(&self) -> Value {
        let s = &self.site;
        let session = match &self.session {
            Some(Some(x)) => json!({
                "replica": x.replica,
                "lastAckedRevision": x.last_acked_revision,
                "pending": x.pending,
                "connectTime": output::ts_json(&x.connect_time),
                "lastHeartbeatTime": output::ts_json(&x.last_heartbeat_time),
            }),
            _ => Value::Null,
        };
        json!({
            "name": s.name,
            "state": s.state().as_str_name(),
            "online": s.state() == spb::site::State::Online,
            "lastHeartbeatTime": output::ts_json(&s.last_heartbeat_time),
            "agentVersion": s.agent_version,
            "nodes": {
                "ready": s.nodes.iter().filter(|n| n.ready).count(),
                "total": s.nodes.len(),
                "items": nodes_json(s),
            },
            "pending": match &self.session {
                Some(Some(x)) => json!(x.pending),
                Some(None) => json!(0),
                None => Value::Null,
            },
            "session": session,
        })
    }

    fn name(&self) -> String {
        self.site.name.clone()
    }
}
