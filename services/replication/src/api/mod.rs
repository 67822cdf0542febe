//! `ReplicationService`: the observed state of the sites, for the vK8s
//! gateway. Every call is authorized against the caller's own principal
//! (the gateway forwards the end user's token): Read on the virtual
//! cluster, Write for DeletePod, system-admin for ListSessions.

mod logs;
pub mod pod_hub;
pub mod status_watch;
mod watch;

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use manifold_auth::{Permission, principal};
use manifold_db::Scope;
use manifold_proto::replication::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::Shared;
use crate::domain::{ObjectKey, SiteId, VkName, status::StoredPod};
use crate::error::ReplicationError;
use crate::storage::{self, COMMANDS_CHANNEL};
use crate::upstream::convert::{to_struct, ts};

pub struct Api(pub Arc<Shared>);

/// Events returned by one ListEvents (the newest).
const MAX_EVENTS: i64 = 1_000;

type PodStream = Pin<Box<dyn Stream<Item = Result<pb::PodEvent, Status>> + Send>>;
type LogStream = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, Status>> + Send>>;

pub fn pod_proto(p: &StoredPod) -> pb::Pod {
    pb::Pod {
        virtual_cluster: p.pod.virtual_cluster.clone(),
        namespace: p.pod.namespace.clone(),
        name: p.pod.name.clone(),
        site: p.site.clone(),
        node: p.pod.node.clone(),
        phase: p.pod.phase.clone(),
        pod_ip: p.pod.pod_ip.clone(),
        restarts: p.pod.restarts,
        owner_kind: p.pod.owner_kind.clone(),
        owner_name: p.pod.owner_name.clone(),
        object: to_struct(&p.pod.object),
        site_offline: p.site_offline,
    }
}

/// One site's stored node list as API nodes, by name; entries without a
/// name are skipped.
fn site_nodes(row: &storage::sites::SiteNodes) -> Vec<pb::SiteNode> {
    let mut nodes: Vec<pb::SiteNode> = row
        .nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let name = n.get("name")?.as_str().filter(|s| !s.is_empty())?;
            Some(pb::SiteNode {
                site: row.site.clone(),
                name: name.to_owned(),
                ready: n.get("ready").and_then(serde_json::Value::as_bool) == Some(true),
                site_offline: row.offline,
                last_heartbeat_time: row.last_heartbeat_time.map(ts),
            })
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

/// A command for the replica that holds a site's stream.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Command {
    pub site: String,
    pub virtual_cluster: String,
    pub namespace: String,
    pub pod: String,
}

impl Command {
    pub fn message(&self) -> pb::ControlMessage {
        pb::ControlMessage {
            msg: Some(pb::control_message::Msg::DeletePod(pb::DeletePodCommand {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                virtual_cluster: self.virtual_cluster.clone(),
            })),
        }
    }
}

impl Api {
    /// Checks `needed` on the vK8s and returns its name and tenant uid.
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        field: &str,
        vk: &str,
        needed: Permission,
    ) -> Result<(VkName, Uuid), ReplicationError> {
        let vk = VkName::parse(field, vk)?;
        let p = principal(request)
            .map_err(|s| ReplicationError::Unauthenticated(s.message().into()))?;
        p.check(needed, &vk.resource_name())?;
        let tenant = self
            .0
            .upstream
            .tenant_uid(&vk.tenant)
            .await
            .map_err(|e| match e {
                ReplicationError::NotFound(_) => ReplicationError::NotFound(vk.resource_name()),
                other => other,
            })?;
        Ok((vk, tenant))
    }

    /// The one live pod a request names.
    async fn locate(
        &self,
        vk: &VkName,
        tenant: Uuid,
        namespace: &str,
        name: &str,
        site: &str,
    ) -> Result<StoredPod, ReplicationError> {
        if namespace.is_empty() {
            return Err(ReplicationError::invalid("namespace", "required"));
        }
        if name.is_empty() {
            return Err(ReplicationError::invalid(
                "name",
                "required: the pod's name",
            ));
        }
        let site = if site.is_empty() {
            None
        } else {
            Some(SiteId::parse("site", site)?)
        };
        let vk_name = vk.resource_name();
        let found = manifold_db::transaction!(
            self.0.db,
            "replication_find_pod",
            Scope::Tenant(tenant),
            ReplicationError,
            |tx| { Ok(storage::pods::find(tx, &vk_name, namespace, name).await?) }
        )?;
        let mut found: Vec<StoredPod> = found
            .into_iter()
            .filter(|p| site.as_ref().is_none_or(|s| s.as_str() == p.site))
            .collect();
        match found.len() {
            0 => Err(ReplicationError::NotFound(format!(
                "pod {namespace}/{name} in {vk_name}"
            ))),
            1 => Ok(found.remove(0)),
            _ => Err(ReplicationError::FailedPrecondition(format!(
                "pods named {namespace}/{name} run on sites {}; name the site",
                found
                    .iter()
                    .map(|p| p.site.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Sends a command to the agent of `site`, wherever its stream is.
    async fn command(&self, command: Command) -> Result<(), ReplicationError> {
        if let Some(h) = self.0.sessions.get(&command.site) {
            return tokio::time::timeout(
                Duration::from_secs(10),
                h.commands.send(command.message()),
            )
            .await
            .map_err(|_| {
                ReplicationError::Unavailable(format!("sites/{} is not keeping up", command.site))
            })?
            .map_err(|_| {
                ReplicationError::Unavailable(format!("sites/{} just disconnected", command.site))
            });
        }
        let site = command.site.clone();
        let payload = serde_json::to_string(&command)
            .map_err(|e| ReplicationError::Internal(e.to_string()))?;
        manifold_db::transaction!(
            self.0.db,
            "replication_command",
            Scope::System,
            ReplicationError,
            |tx| {
                if storage::sites::holder(tx, &site).await?.is_none() {
                    return Err(ReplicationError::Unavailable(format!(
                        "sites/{site} is not connected; try again when it is back"
                    )));
                }
                manifold_db::sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(COMMANDS_CHANNEL)
                    .bind(&payload)
                    .execute(&mut **tx)
                    .await
                    .map_err(manifold_db::DbError::from)?;
                Ok(())
            }
        )
    }
}

#[tonic::async_trait]
impl pb::replication_service_server::ReplicationService for Api {
    type WatchPodsStream = PodStream;
    type WatchObjectStatusStream = status_watch::StatusStream;
    type StreamLogsStream = LogStream;

    async fn list_pods(
        &self,
        request: Request<pb::ListPodsRequest>,
    ) -> Result<Response<pb::ListPodsResponse>, Status> {
        let (vk, tenant) = self
            .authorize(
                &request,
                "virtual_cluster",
                &request.get_ref().virtual_cluster,
                Permission::Read,
            )
            .await?;
        let name = vk.resource_name();
        let only = request.get_ref().name.as_str();
        let (pods, revision) = if only.is_empty() {
            manifold_db::transaction!(
                self.0.db,
                "replication_list_pods",
                Scope::Tenant(tenant),
                ReplicationError,
                |tx| { Ok(storage::pods::list(tx, &name).await?) }
            )?
        } else {
            let namespace = vk.namespace.as_str();
            manifold_db::transaction!(
                self.0.db,
                "replication_find_pods",
                Scope::Tenant(tenant),
                ReplicationError,
                |tx| {
                    let head = storage::pods::head(tx, &name).await?;
                    Ok((storage::pods::find(tx, &name, namespace, only).await?, head))
                }
            )?
        };
        Ok(Response::new(pb::ListPodsResponse {
            pods: pods.iter().map(pod_proto).collect(),
            revision,
        }))
    }

    async fn watch_pods(
        &self,
        request: Request<pb::WatchPodsRequest>,
    ) -> Result<Response<Self::WatchPodsStream>, Status> {
        let (vk, tenant) = self
            .authorize(
                &request,
                "virtual_cluster",
                &request.get_ref().virtual_cluster,
                Permission::Read,
            )
            .await?;
        let from = request.get_ref().from_revision;
        if from < 0 {
            return Err(ReplicationError::invalid("from_revision", "must not be negative").into());
        }
        let stream = watch::start(self.0.clone(), vk.resource_name(), tenant, from).await?;
        Ok(Response::new(stream))
    }

    async fn watch_object_status(
        &self,
        request: Request<pb::WatchObjectStatusRequest>,
    ) -> Result<Response<Self::WatchObjectStatusStream>, Status> {
        let (vk, tenant) = self
            .authorize(
                &request,
                "virtual_cluster",
                &request.get_ref().virtual_cluster,
                Permission::Read,
            )
            .await?;
        Ok(Response::new(status_watch::start(
            self.0.clone(),
            vk.resource_name(),
            tenant,
        )))
    }

    async fn get_object_status(
        &self,
        request: Request<pb::GetObjectStatusRequest>,
    ) -> Result<Response<pb::GetObjectStatusResponse>, Status> {
        let r = request
            .get_ref()
            .r#ref
            .clone()
            .ok_or_else(|| ReplicationError::invalid("ref", "required"))?;
        let (vk, tenant) = self
            .authorize(
                &request,
                "ref.virtual_cluster",
                &r.virtual_cluster,
                Permission::Read,
            )
            .await?;
        for (field, value) in [
            ("ref.kind", &r.kind),
            ("ref.name", &r.name),
            ("ref.api_version", &r.api_version),
        ] {
            if value.is_empty() {
                return Err(ReplicationError::invalid(field, "required").into());
            }
        }
        let key = ObjectKey {
            virtual_cluster: vk.resource_name(),
            api_version: r.api_version,
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
        };
        let rows = manifold_db::transaction!(
            self.0.db,
            "replication_object_status",
            Scope::Tenant(tenant),
            ReplicationError,
            |tx| { Ok(storage::objects::of_object(tx, &key).await?) }
        )?;
        // Which of those sites are offline: the sites table is the system's,
        // read for exactly the sites that hold a status of this object.
        let sites: Vec<String> = rows.iter().map(|(site, _, _)| site.clone()).collect();
        let offline = manifold_db::transaction!(
            self.0.db,
            "replication_object_status_sites",
            Scope::System,
            ReplicationError,
            |tx| { Ok(storage::sites::offline_among(tx, &sites).await?) }
        )?;
        Ok(Response::new(pb::GetObjectStatusResponse {
            statuses: status_watch::status_protos(rows, &offline),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        principal(&request)?
            .check(Permission::Read, "")
            .map_err(ReplicationError::from)?;
        let fresh = self.0.config.heartbeat_timeout.as_secs_f64();
        let rows = manifold_db::transaction!(
            self.0.db,
            "replication_list_sessions",
            Scope::System,
            ReplicationError,
            |tx| { Ok(storage::sites::sessions(tx, fresh).await?) }
        )?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: rows
                .into_iter()
                .map(|r| pb::Session {
                    site: format!("sites/{}", r.site),
                    replica: r.replica,
                    last_acked_revision: r.acked_revision,
                    pending: r.in_flight,
                    connect_time: r.connect_time.map(ts),
                    agent_version: r.agent_version,
                    last_heartbeat_time: r.last_heartbeat_time.map(ts),
                })
                .collect(),
        }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (vk, tenant) = self
            .authorize(
                &request,
                "virtual_cluster",
                &request.get_ref().virtual_cluster,
                Permission::Read,
            )
            .await?;
        let name = vk.resource_name();
        let namespace = Some(request.get_ref().namespace.as_str()).filter(|n| !n.is_empty());
        let rows = manifold_db::transaction!(
            self.0.db,
            "replication_list_events",
            Scope::Tenant(tenant),
            ReplicationError,
            |tx| { Ok(storage::events::list(tx, &name, namespace, MAX_EVENTS).await?) }
        )?;
        Ok(Response::new(pb::ListEventsResponse {
            events: rows
                .into_iter()
                .map(|(site, e, _)| pb::SiteEvent {
                    virtual_cluster: e.virtual_cluster,
                    object: to_struct(&e.object),
                    site,
                })
                .collect(),
        }))
    }

    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let (vk, _) = self
            .authorize(
                &request,
                "virtual_cluster",
                &request.get_ref().virtual_cluster,
                Permission::Read,
            )
            .await?;
        // The sites the vK8s spans, by this process's placement index.
        let name = vk.resource_name();
        let view = self.0.placement.current();
        let mut sites: Vec<String> = view
            .sites
            .iter()
            .filter(|(_, m)| m.contains_cluster(&name))
            .map(|(site, _)| site.clone())
            .collect();
        sites.sort();
        // The sites table is the system's; read for exactly those sites.
        let rows = manifold_db::transaction!(
            self.0.db,
            "replication_list_nodes",
            Scope::System,
            ReplicationError,
            |tx| { Ok(storage::sites::nodes_of(tx, &sites).await?) }
        )?;
        Ok(Response::new(pb::ListNodesResponse {
            nodes: rows.iter().flat_map(site_nodes).collect(),
        }))
    }

    async fn delete_pod(
        &self,
        request: Request<pb::DeletePodRequest>,
    ) -> Result<Response<pb::DeletePodResponse>, Status> {
        let (vk, tenant) = self
            .authorize(
                &request,
                "virtual_cluster",
                &request.get_ref().virtual_cluster,
                Permission::Write,
            )
            .await?;
        let r = request.get_ref();
        let pod = self
            .locate(&vk, tenant, &r.namespace, &r.name, &r.site)
            .await?;
        self.command(Command {
            site: pod.site,
            virtual_cluster: pod.pod.virtual_cluster,
            namespace: pod.pod.namespace,
            pod: pod.pod.name,
        })
        .await?;
        Ok(Response::new(pb::DeletePodResponse {}))
    }

    async fn stream_logs(
        &self,
        request: Request<pb::StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let (vk, tenant) = self
            .authorize(
                &request,
                "virtual_cluster",
                &request.get_ref().virtual_cluster,
                Permission::Read,
            )
            .await?;
        let caller = logs::Caller {
            bearer: manifold_auth::bearer_from_metadata(request.metadata())
                .ok()
                .map(str::to_owned),
            forwarded: request.metadata().contains_key(logs::FORWARDED),
        };
        let r = request.into_inner();
        if r.tail_lines < 0 {
            return Err(ReplicationError::invalid("tail_lines", "must not be negative").into());
        }
        let pod = self
            .locate(&vk, tenant, &r.namespace, &r.pod, &r.site)
            .await?;
        let stream = logs::start(&self.0, pod, r, caller).await?;
        Ok(Response::new(stream))
    }
}
