//! `RegistrationService`: the agent-facing calls. The server's auth layer
//! lets them through without a bearer token (see `PUBLIC_PATHS`), so each
//! handler authenticates its own credential: the registration token, the
//! mTLS client certificate, or (status reports) a system-admin bearer token.

use std::sync::Arc;

use chrono::Utc;
use manifold_auth::Permission;
use manifold_proto::sites::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert;
use crate::core::{
    Core,
    registration::{Issued, Reporter},
};
use crate::domain::*;
use crate::error::SiteError;

pub struct Registration(pub Arc<Core>);

/// Most heartbeats in one `ReportSiteHeartbeats` call.
const MAX_HEARTBEATS: usize = 20_000;

/// The leaf of the client certificate chain the TLS handshake verified.
fn client_cert<T>(request: &Request<T>) -> Option<Vec<u8>> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
}

fn require_client_cert<T>(request: &Request<T>) -> Result<Vec<u8>, SiteError> {
    client_cert(request).ok_or_else(|| {
        SiteError::Unauthenticated(
            "a client certificate issued by this registry is required (register first)".into(),
        )
    })
}

fn issued(i: Issued) -> (String, String, Option<prost_types::Timestamp>) {
    (
        i.certificate_pem,
        i.ca_bundle_pem,
        Some(convert::ts(i.expire_time)),
    )
}

impl Registration {
    /// Who reports: a system-admin by bearer token (when one is sent), else
    /// the site by its client certificate.
    async fn reporter<T>(&self, request: &Request<T>) -> Result<Reporter, SiteError> {
        if request.metadata().contains_key("authorization") {
            let token = manifold_auth::bearer_from_metadata(request.metadata())?;
            let p = self.0.tenancy.authenticate(token).await?;
            p.check(Permission::Admin, "")?;
            return Ok(Reporter::Operator);
        }
        let der = require_client_cert(request)?;
        let verified = self.0.verify_site_certificate(&der).await?;
        Ok(Reporter::Site(verified.site))
    }
}

#[tonic::async_trait]
impl pb::registration_service_server::RegistrationService for Registration {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = request.into_inner();
        let site = parse_site_name("site", &req.site)?;
        if req.registration_token.is_empty() {
            return Err(SiteError::invalid(
                "registration_token",
                "required: the token from CreateRegistrationToken",
            )
            .into());
        }
        if req.agent_version.len() > 128 {
            return Err(SiteError::invalid("agent_version", "at most 128 characters").into());
        }
        let i = self
            .0
            .register(
                &site,
                &req.registration_token,
                &req.csr_pem,
                &req.agent_version,
            )
            .await?;
        let (certificate_pem, ca_bundle_pem, expire_time) = issued(i);
        Ok(Response::new(pb::RegisterResponse {
            certificate_pem,
            ca_bundle_pem,
            expire_time,
        }))
    }

    async fn renew_certificate(
        &self,
        request: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::RenewCertificateResponse>, Status> {
        let der = require_client_cert(&request)?;
        let i = self.0.renew(&der, &request.get_ref().csr_pem).await?;
        let (certificate_pem, ca_bundle_pem, expire_time) = issued(i);
        Ok(Response::new(pb::RenewCertificateResponse {
            certificate_pem,
            ca_bundle_pem,
            expire_time,
        }))
    }

    async fn report_site_status(
        &self,
        request: Request<pb::ReportSiteStatusRequest>,
    ) -> Result<Response<pb::Site>, Status> {
        let reporter = self.reporter(&request).await?;
        let req = request.into_inner();
        let site = parse_site_name("site", &req.site)?;
        let report = StatusReport {
            site,
            state: convert::state_from_proto("state", req.state)?,
            state_message: req.state_message,
            agent_version: req.agent_version,
            nodes: req
                .nodes
                .into_iter()
                .map(convert::node_from_proto)
                .collect(),
            heartbeat_time: match &req.heartbeat_time {
                Some(t) => convert::from_ts("heartbeat_time", t)?,
                None => Utc::now(),
            },
        };
        if report.agent_version.len() > 128 {
            return Err(SiteError::invalid("agent_version", "at most 128 characters").into());
        }
        let rec = self.0.report_status(&reporter, report).await?;
        Ok(Response::new(convert::site(rec)))
    }

    async fn report_site_heartbeats(
        &self,
        request: Request<pb::ReportSiteHeartbeatsRequest>,
    ) -> Result<Response<pb::ReportSiteHeartbeatsResponse>, Status> {
        // Only a service holding every site's streams reports for many
        // sites: a bearer token with Admin on everything, never a site.
        if !request.metadata().contains_key("authorization") {
            return Err(SiteError::Unauthenticated(
                "ReportSiteHeartbeats needs an operator (service) bearer token".into(),
            )
            .into());
        }
        self.reporter(&request).await?;
        let req = request.into_inner();
        if req.heartbeats.len() > MAX_HEARTBEATS {
            return Err(SiteError::invalid(
                "heartbeats",
                format!("at most {MAX_HEARTBEATS} per call; send several calls"),
            )
            .into());
        }
        let mut beats = Vec::with_capacity(req.heartbeats.len());
        for (i, h) in req.heartbeats.iter().enumerate() {
            let site = parse_site_name(&format!("heartbeats[{i}].site"), &h.site)?;
            let time = match &h.heartbeat_time {
                Some(t) => convert::from_ts(&format!("heartbeats[{i}].heartbeat_time"), t)?,
                None => Utc::now(),
            };
            beats.push((site, time));
        }
        let (live, not_live) = self.0.report_heartbeats(beats).await?;
        Ok(Response::new(pb::ReportSiteHeartbeatsResponse {
            live: i32::try_from(live).unwrap_or(i32::MAX),
            not_live: not_live.iter().map(|s| site_name(s)).collect(),
        }))
    }

    async fn check_certificate(
        &self,
        request: Request<pb::CheckCertificateRequest>,
    ) -> Result<Response<pb::CheckCertificateResponse>, Status> {
        let (site, verdict) = self
            .0
            .check_certificate(&request.get_ref().certificate_pem)
            .await?;
        Ok(Response::new(match verdict {
            Ok(v) => pb::CheckCertificateResponse {
                site: site_name(&site),
                valid: true,
                reason: String::new(),
                expire_time: Some(convert::ts(v.expire_time)),
                pod_security: convert::pod_security(v.pod_security).into(),
            },
            Err(reason) => pb::CheckCertificateResponse {
                site: site_name(&site),
                valid: false,
                reason,
                expire_time: None,
                pod_security: pb::PodSecurityLevel::Unspecified.into(),
            },
        }))
    }
}
