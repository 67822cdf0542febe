//! StreamLogs: a LogRequest to the agent holding the pod, its LogChunks
//! streamed back. Only the replica holding the site's stream can serve it;
//! elsewhere the call fails with UNAVAILABLE naming that replica.

use std::{sync::Arc, time::Duration};

use manifold_db::Scope;
use manifold_proto::replication::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::LogStream;
use crate::Shared;
use crate::domain::status::StoredPod;
use crate::error::ReplicationError;
use crate::storage;

fn cancel(request_id: &str) -> pb::ControlMessage {
    pb::ControlMessage {
        msg: Some(pb::control_message::Msg::LogRequest(pb::LogRequest {
            request_id: request_id.to_owned(),
            cancel: true,
            ..Default::default()
        })),
    }
}

/// Marks a call one replica forwarded to another (never forwarded again).
pub const FORWARDED: &str = "x-manifold-forwarded";

/// How a StreamLogs call reached this replica.
pub struct Caller {
    /// The caller's bearer token (forwarded with the call).
    pub bearer: Option<String>,
    /// Another replica forwarded it here.
    pub forwarded: bool,
}

pub async fn start(
    shared: &Arc<Shared>,
    pod: StoredPod,
    r: pb::StreamLogsRequest,
    caller: Caller,
) -> Result<LogStream, ReplicationError> {
    let site = pod.site.clone();
    let Some(handle) = shared.sessions.get(&site) else {
        let s = site.clone();
        let holder = manifold_db::transaction!(
            shared.db,
            "replication_log_holder",
            Scope::System,
            ReplicationError,
            |tx| { Ok(storage::sites::holder(tx, &s).await?) }
        )?;
        return match holder {
            Some(h) => match (&h.url, caller.forwarded) {
                (Some(url), false) if shared.config.advertise_url.as_ref() != Some(url) => {
                    forward(shared, url, caller.bearer, r, &site).await
                }
                _ => Err(ReplicationError::Unavailable(format!(
                    "the agent of sites/{site} is connected to replica {}, which this replica \
                     cannot reach; retry (streams move between replicas)",
                    h.replica
                ))),
            },
            None => Err(ReplicationError::Unavailable(format!(
                "sites/{site} is not connected; its logs cannot be read now"
            ))),
        };
    };
    let (id, mut chunks) = shared.logs.open(&site);
    let request = pb::ControlMessage {
        msg: Some(pb::control_message::Msg::LogRequest(pb::LogRequest {
            request_id: id.clone(),
            namespace: pod.pod.namespace.clone(),
            pod: pod.pod.name.clone(),
            container: r.container,
            follow: r.follow,
            tail_lines: r.tail_lines,
            timestamps: r.timestamps,
            virtual_cluster: pod.pod.virtual_cluster.clone(),
            cancel: false,
        })),
    };
    let sent = tokio::time::timeout(Duration::from_secs(10), handle.commands.send(request)).await;
    if !matches!(sent, Ok(Ok(()))) {
        shared.logs.close(&id);
        return Err(ReplicationError::Unavailable(format!(
            "sites/{site} did not take the log request; retry"
        )));
    }
    let (tx, rx) = mpsc::channel(16);
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                chunk = chunks.recv() => match chunk {
                    Some(Ok(c)) => {
                        let eof = c.eof;
                        if !c.data.is_empty() && tx.send(Ok(c)).await.is_err() {
                            let _ = handle.commands.try_send(cancel(&id));
                            break;
                        }
                        if eof {
                            break;
                        }
                    }
                    Some(Err(status)) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                    None => break,
                },
                _ = tx.closed() => {
                    let _ = handle.commands.try_send(cancel(&id));
                    break;
                }
            }
        }
        shared.logs.close(&id);
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Passes the call to the replica holding the site's stream.
async fn forward(
    shared: &Shared,
    url: &str,
    bearer: Option<String>,
    mut r: pb::StreamLogsRequest,
    site: &str,
) -> Result<LogStream, ReplicationError> {
    let unreachable = |e: String| {
        ReplicationError::Unavailable(format!(
            "the replica holding sites/{site} ({url}) is unreachable: {e}"
        ))
    };
    let ca = shared
        .config
        .peer_ca_pem
        .as_ref()
        .ok_or_else(|| unreachable("no CA configured to trust other replicas".into()))?;
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(|e| unreachable(e.to_string()))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    r.site = site.to_owned();
    let mut request = tonic::Request::new(r);
    if let Some(b) = bearer
        && let Ok(v) = format!("Bearer {b}").parse()
    {
        request.metadata_mut().insert("authorization", v);
    }
    request
        .metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    let stream = pb::replication_service_client::ReplicationServiceClient::new(channel)
        .stream_logs(request)
        .await
        .map_err(ReplicationError::Forwarded)?
        .into_inner();
    Ok(Box::pin(stream))
}
