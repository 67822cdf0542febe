//! The gRPC adapter: `manifold.audit.v1.AuditService`.

use manifold_auth::Permission;
use manifold_db::Db;
use manifold_proto::audit::v1 as pb;
use tonic::{Request, Response, Status};

use crate::AuditError;
use crate::domain::{Cursor, Parent, Query, non_empty, page_size};
use crate::store::{self, StoredEvent};

pub struct AuditApi {
    pub db: Db,
}

fn timestamp(
    ts: Option<prost_types::Timestamp>,
    field: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, AuditError> {
    ts.map(|ts| {
        chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(u32::MAX))
            .ok_or_else(|| AuditError::invalid(field, "not a valid timestamp"))
    })
    .transpose()
}

impl TryFrom<pb::ListAuditEventsRequest> for Query {
    type Error = AuditError;

    fn try_from(r: pb::ListAuditEventsRequest) -> Result<Self, AuditError> {
        let source = match pb::Source::try_from(r.source) {
            Ok(pb::Source::Unspecified) => None,
            Ok(pb::Source::Grpc) => Some("grpc"),
            Ok(pb::Source::Kubernetes) => Some("kubernetes"),
            Err(_) => return Err(AuditError::invalid("source", "unknown source")),
        };
        let success = match pb::Outcome::try_from(r.result) {
            Ok(pb::Outcome::Unspecified) => None,
            Ok(pb::Outcome::Success) => Some(true),
            Ok(pb::Outcome::Failure) => Some(false),
            Err(_) => return Err(AuditError::invalid("result", "unknown result")),
        };
        Ok(Query {
            parent: Parent::parse(&r.parent)?,
            page_size: page_size(r.page_size)?,
            after: non_empty(r.page_token)
                .map(|t| Cursor::decode(&t))
                .transpose()?,
            since: timestamp(r.since, "since")?,
            until: timestamp(r.until, "until")?,
            actor: non_empty(r.actor),
            method: non_empty(r.method),
            source,
            success,
            code: non_empty(r.code),
        })
    }
}

fn to_proto(e: StoredEvent) -> pb::AuditEvent {
    let actor_kind = match e.actor_kind.as_str() {
        "user" => pb::ActorKind::User,
        "site" => pb::ActorKind::Site,
        "anonymous" => pb::ActorKind::Anonymous,
        _ => pb::ActorKind::Unspecified,
    };
    let source = match e.source.as_str() {
        "grpc" => pb::Source::Grpc,
        "kubernetes" => pb::Source::Kubernetes,
        _ => pb::Source::Unspecified,
    };
    let (name, tenant) = match &e.tenant {
        Some(t) => (
            format!("tenants/{t}/auditEvents/{}", e.id),
            format!("tenants/{t}"),
        ),
        None => (format!("auditEvents/{}", e.id), String::new()),
    };
    pb::AuditEvent {
        name,
        time: Some(prost_types::Timestamp {
            seconds: e.time.timestamp(),
            nanos: e.time.timestamp_subsec_nanos() as i32,
        }),
        tenant,
        actor: e.actor,
        actor_kind: actor_kind.into(),
        source: source.into(),
        method: e.method,
        resource: e.resource,
        http_method: e.http_method,
        path: e.path,
        code: e.code,
        success: e.success,
        message: e.message,
        request_id: e.request_id,
        trace_id: e.trace_id,
    }
}

impl AuditApi {
    async fn list(&self, query: Query) -> Result<pb::ListAuditEventsResponse, AuditError> {
        let mut events = manifold_db::transaction!(
            self.db,
            "audit_list",
            manifold_db::Scope::System,
            AuditError,
            |tx| {
                store::scope_to(tx, &query.parent).await?;
                Ok(store::list(tx, &query).await?)
            }
        )?;
        let more = events.len() > query.page_size as usize;
        events.truncate(query.page_size as usize);
        let next_page_token = match events.last() {
            Some(last) if more => Cursor {
                time: last.time,
                id: last.id,
            }
            .encode(),
            _ => String::new(),
        };
        Ok(pb::ListAuditEventsResponse {
            audit_events: events.into_iter().map(to_proto).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let principal = manifold_auth::principal(&request)?;
        let query = Query::try_from(request.into_inner())?;
        // Tenant-admins read their tenant's trail; system-admins read all.
        // Another tenant's trail is NOT_FOUND, as everywhere.
        principal
            .check(Permission::Admin, &query.parent.resource())
            .map_err(AuditError::from)?;
        Ok(Response::new(self.list(query).await?))
    }
}
