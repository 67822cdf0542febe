//! Audit of gRPC calls: every mutating call that reaches a `GrpcServer` becomes
//! one [`AuditRecord`] (who, what, when, how it ended), handed to the process's
//! [`AuditSink`].
//!
//! "Mutating" is decided by the method name (`Create*`, `Update*`, `Delete*`,
//! `Revoke*`, `Register`, `Renew*`, ..., plus `GetKubeconfig`, which mints a
//! token), for unary methods only. Two layers cooperate:
//! - [`AuditLayer`] sits outside authentication, so calls refused there
//!   (UNAUTHENTICATED) are recorded too; it sees the final status in the
//!   response headers or trailers and emits the record.
//! - [`AuditCaptureLayer`] sits inside authentication and copies the caller's
//!   principal, and the resource name the request carries, into a slot the
//!   outer layer reads. The resource name is read from the protobuf request by
//!   field number (resolved from the descriptor set once): a `name`, a `parent`
//!   (plus the new id for creates), or the `name` of the message being updated.
//!   Nothing else of the body is kept.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use manifold_auth::Principal;
use manifold_telemetry::audit::{ActorKind, AuditSource, current_trace_id, truncate_message};
use manifold_telemetry::{AuditRecord, AuditSink, grpc_code_name};
use prost::Message;
use tonic::Code;
use tonic::codegen::Bytes;
use tower::{Layer, Service};

/// Verbs (method-name prefixes) of calls that change state.
const MUTATING_VERBS: &[&str] = &[
    "Create", "Update", "Delete", "Revoke", "Register", "Renew", "Suspend", "Resume", "Set",
    "Apply", "Patch", "Cancel", "Rotate",
];

/// Methods that change state although their verb says otherwise.
const ALSO_MUTATING: &[&str] = &["GetKubeconfig"];

/// Request bodies above this are not buffered for their resource name
/// (tonic's own default decoding limit).
const MAX_BUFFERED_BODY: usize = 4 * 1024 * 1024 + 5;

/// The method name's verb, when it is one of [`MUTATING_VERBS`], and the rest.
fn split_verb(method: &str) -> Option<(&str, &str)> {
    MUTATING_VERBS.iter().find_map(|verb| {
        let rest = method.strip_prefix(verb)?;
        (rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase()))
            .then_some((*verb, rest))
    })
}

/// Whether calls of `method` (the bare name, `CreateNamespace`) are audited.
pub fn is_mutating(method: &str) -> bool {
    ALSO_MUTATING.contains(&method) || split_verb(method).is_some()
}

/// Where in a request message the resource name may be, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Candidate {
    /// A string field holding a resource name.
    Field(u32),
    /// `parent` (if any) + `/{collection}/` + the new id field: creates.
    NewId {
        parent: Option<u32>,
        id: u32,
        collection: String,
    },
    /// The `name` of a message-typed field (the resource being updated).
    Nested { field: u32, name: u32 },
}

#[derive(Debug, Default)]
struct MethodPlan {
    candidates: Vec<Candidate>,
}

/// Audited methods by path (`/pkg.Service/Method`), with where their resource
/// name is. Built once from [`manifold_proto::FILE_DESCRIPTOR_SET`].
#[derive(Debug, Default)]
pub struct AuditPlans {
    methods: HashMap<String, MethodPlan>,
}

fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn lower_camel(camel: &str) -> String {
    let mut chars = camel.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

impl AuditPlans {
    /// The plans of every mutating unary method in `manifold_proto`.
    pub fn from_descriptors() -> Self {
        let Ok(set) = prost_types::FileDescriptorSet::decode(manifold_proto::FILE_DESCRIPTOR_SET)
        else {
            return Self::default();
        };
        let mut messages = HashMap::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                messages.insert(format!(".{package}.{}", message.name()), message);
            }
        }
        let string_field = |message: &prost_types::DescriptorProto, name: &str| {
            message
                .field
                .iter()
                .find(|f| {
                    f.name() == name
                        && f.r#type() == prost_types::field_descriptor_proto::Type::String
                })
                .map(|f| f.number() as u32)
        };
        let mut methods = HashMap::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let name = method.name();
                    if !is_mutating(name) || method.client_streaming() || method.server_streaming()
                    {
                        continue;
                    }
                    let path = format!("/{}.{}/{name}", file.package(), service.name());
                    let mut plan = MethodPlan::default();
                    if let Some(input) = messages.get(method.input_type()) {
                        let (verb, noun) = split_verb(name).unwrap_or(("", ""));
                        if let Some(n) = string_field(input, "name") {
                            plan.candidates.push(Candidate::Field(n));
                        }
                        let parent = string_field(input, "parent");
                        if verb == "Create"
                            && !noun.is_empty()
                            && let Some(id) =
                                string_field(input, &format!("{}_id", snake_case(noun)))
                        {
                            plan.candidates.push(Candidate::NewId {
                                parent,
                                id,
                                collection: format!("{}s", lower_camel(noun)),
                            });
                        }
                        if let Some(n) = parent {
                            plan.candidates.push(Candidate::Field(n));
                        }
                        for field in &input.field {
                            if field.r#type() != prost_types::field_descriptor_proto::Type::Message
                            {
                                continue;
                            }
                            if let Some(inner) = messages.get(field.type_name())
                                && let Some(n) = string_field(inner, "name")
                            {
                                plan.candidates.push(Candidate::Nested {
                                    field: field.number() as u32,
                                    name: n,
                                });
                            }
                        }
                        for other in ["virtual_cluster", "site"] {
                            if let Some(n) = string_field(input, other) {
                                plan.candidates.push(Candidate::Field(n));
                            }
                        }
                    }
                    methods.insert(path, plan);
                }
            }
        }
        Self { methods }
    }

    /// Whether the call at `path` is audited.
    pub fn is_audited(&self, path: &str) -> bool {
        self.methods.contains_key(path)
    }

    /// The resource name a request (one gRPC frame) names, or empty.
    fn resource(&self, path: &str, frame: &[u8]) -> String {
        let Some(plan) = self.methods.get(path) else {
            return String::new();
        };
        // Compressed messages are not inspected.
        let Some(message) = grpc_message(frame) else {
            return String::new();
        };
        let field = |number: u32| string_at(message, number);
        for candidate in &plan.candidates {
            let found = match candidate {
                Candidate::Field(n) => field(*n).filter(|v| v.contains('/')),
                Candidate::NewId {
                    parent,
                    id,
                    collection,
                } => field(*id).filter(|id| !id.is_empty()).map(|id| {
                    match parent.and_then(field).filter(|p| !p.is_empty()) {
                        Some(parent) => format!("{parent}/{collection}/{id}"),
                        None => format!("{collection}/{id}"),
                    }
                }),
                Candidate::Nested { field: f, name } => bytes_at(message, *f)
                    .and_then(|inner| string_at(inner, *name))
                    .filter(|v| v.contains('/')),
            };
            if let Some(found) = found {
                return found;
            }
        }
        String::new()
    }
}

/// The message of an uncompressed gRPC frame.
fn grpc_message(frame: &[u8]) -> Option<&[u8]> {
    let (&compressed, rest) = frame.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    rest.get(4..4 + len)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The last length-delimited value of field `number` (protobuf: last one wins).
fn bytes_at(mut buf: &[u8], number: u32) -> Option<&[u8]> {
    let mut found = None;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(&mut buf)?;
            }
            1 => buf = buf.get(8..)?,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let value = buf.get(..len)?;
                buf = &buf[len..];
                if field == u64::from(number) {
                    found = Some(value);
                }
            }
            5 => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    found
}

fn string_at(buf: &[u8], number: u32) -> Option<String> {
    bytes_at(buf, number).and_then(|b| std::str::from_utf8(b).ok().map(str::to_owned))
}

/// What the inner layer learned about a call, for the outer one.
#[derive(Default)]
struct Captured {
    principal: Option<Arc<Principal>>,
    resource: String,
}

#[derive(Clone, Default)]
struct Slot(Arc<Mutex<Captured>>);

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The outer audit layer; see the module documentation.
#[derive(Clone)]
pub struct AuditLayer {
    sink: AuditSink,
    plans: Arc<AuditPlans>,
}

impl AuditLayer {
    pub fn new(sink: AuditSink, plans: Arc<AuditPlans>) -> Self {
        Self { sink, plans }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    layer: AuditLayer,
}

fn status_of(headers: &http::HeaderMap) -> Option<(Code, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((Code::from_i32(code), message))
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn site_of<B>(request: &http::Request<B>) -> Option<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    let site = manifold_pki::site_from_cert_der(certs.first()?.as_ref())?;
    Some(format!("sites/{site}"))
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuditService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<AuditBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        if !self.layer.sink.is_enabled() || !self.layer.plans.is_audited(path) {
            let future = self.inner.call(request);
            return Box::pin(async move {
                Ok(future.await?.map(|inner| AuditBody {
                    inner,
                    recorder: None,
                }))
            });
        }
        let method = path.trim_start_matches('/').to_owned();
        let slot = Slot::default();
        request.extensions_mut().insert(slot.clone());
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let mut recorder = Recorder {
            sink: self.layer.sink.clone(),
            slot,
            time: SystemTime::now(),
            method,
            site: site_of(&request),
            request_id: header("x-request-id"),
            trace_id: current_trace_id().unwrap_or_default(),
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => {
                    let recorder = match status_of(response.headers()) {
                        Some((code, message)) => {
                            recorder.finish(code, message);
                            None
                        }
                        None => Some(recorder),
                    };
                    Ok(response.map(|inner| AuditBody { inner, recorder }))
                }
                Err(error) => {
                    recorder.finish(Code::Unknown, "the server failed the call".into());
                    Err(error)
                }
            }
        })
    }
}

struct Recorder {
    sink: AuditSink,
    slot: Slot,
    time: SystemTime,
    method: String,
    site: Option<String>,
    request_id: String,
    trace_id: String,
}

impl Recorder {
    fn finish(&mut self, code: Code, message: String) {
        let captured = std::mem::take(&mut *self.slot.lock());
        let resource_tenant = manifold_auth::tenant_of(&captured.resource)
            .and_then(|t| t.strip_prefix("tenants/"))
            .filter(|t| *t != "-")
            .map(str::to_owned);
        let (actor, actor_kind, tenant) = match (&captured.principal, &self.site) {
            // A tenant's user only ever acts within its tenant: its calls are
            // that tenant's events (also attempts on other tenants).
            (Some(p), _) => (
                p.user.clone(),
                ActorKind::User,
                p.tenant.clone().or(resource_tenant),
            ),
            (None, Some(site)) => (site.clone(), ActorKind::Site, None),
            // Unauthenticated attempts are system-level events.
            (None, None) => (String::new(), ActorKind::Anonymous, None),
        };
        let success = code == Code::Ok;
        self.sink.record(AuditRecord {
            time: self.time,
            tenant,
            actor,
            actor_kind,
            source: AuditSource::Grpc,
            method: std::mem::take(&mut self.method),
            resource: captured.resource,
            http_method: String::new(),
            path: String::new(),
            code: grpc_code_name(code).to_owned(),
            success,
            message: if success {
                String::new()
            } else {
                truncate_message(&message)
            },
            request_id: std::mem::take(&mut self.request_id),
            trace_id: std::mem::take(&mut self.trace_id),
        });
    }
}

/// The response body of [`AuditService`]: records the call when its status
/// arrives in the trailers (or the body ends or is dropped).
pub struct AuditBody<B> {
    inner: B,
    recorder: Option<Recorder>,
}

impl<B> AuditBody<B> {
    fn finish(&mut self, code: Code, message: String) {
        if let Some(mut recorder) = self.recorder.take() {
            recorder.finish(code, message);
        }
    }
}

impl<B: Body + Unpin> Body for AuditBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let (code, message) = status_of(trailers).unwrap_or((Code::Ok, String::new()));
                    this.finish(code, message);
                }
            }
            Some(Err(_)) => this.finish(Code::Unknown, "response stream failed".into()),
            None => this.finish(Code::Ok, String::new()),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for AuditBody<B> {
    fn drop(&mut self) {
        // Dropped before its status: the client went away.
        self.finish(Code::Cancelled, "the client cancelled the call".into());
    }
}

/// The inner audit layer; see the module documentation.
#[derive(Clone)]
pub struct AuditCaptureLayer {
    plans: Arc<AuditPlans>,
}

impl AuditCaptureLayer {
    pub fn new(plans: Arc<AuditPlans>) -> Self {
        Self { plans }
    }
}

impl<S> Layer<S> for AuditCaptureLayer {
    type Service = AuditCaptureService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditCaptureService {
            inner,
            plans: self.plans.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuditCaptureService<S> {
    inner: S,
    plans: Arc<AuditPlans>,
}

impl<S, RB> Service<http::Request<tonic::body::Body>> for AuditCaptureService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<RB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let Some(slot) = request.extensions().get::<Slot>().cloned() else {
            return Box::pin(self.inner.call(request));
        };
        slot.lock().principal = request.extensions().get::<Arc<Principal>>().cloned();
        // Take the service that was driven to readiness, leave a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let plans = self.plans.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match http_body_util::Limited::new(body, MAX_BUFFERED_BODY)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let status = if error.is::<http_body_util::LengthLimitError>() {
                        tonic::Status::resource_exhausted("request message too large")
                    } else {
                        tonic::Status::cancelled(format!("reading the request: {error}"))
                    };
                    return Ok(status.into_http());
                }
            };
            slot.lock().resource = plans.resource(parts.uri.path(), &bytes);
            let body = tonic::body::Body::new(http_body_util::Full::<Bytes>::new(bytes));
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &impl Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn mutating_is_decided_by_the_verb() {
        assert!(is_mutating("CreateNamespace"));
        assert!(is_mutating("Register"));
        assert!(is_mutating("RevokeApiToken"));
        assert!(is_mutating("GetKubeconfig"));
        assert!(!is_mutating("GetTenant"));
        assert!(!is_mutating("ListAuditEvents"));
        assert!(!is_mutating("Authorize"));
        assert!(!is_mutating("ReportSiteStatus"));
        assert!(!is_mutating("Settle"));
    }

    #[test]
    fn resource_names_come_from_the_request() {
        use manifold_proto::{sites::v1 as s, tenancy::v1 as t, vk8s::v1 as v};
        let plans = AuditPlans::from_descriptors();
        assert!(plans.is_audited("/manifold.tenancy.v1.NamespaceService/CreateNamespace"));
        assert!(!plans.is_audited("/manifold.tenancy.v1.NamespaceService/GetNamespace"));
        assert!(!plans.is_audited("/manifold.replication.v1.SiteSync/Connect"));
        let create_ns = t::CreateNamespaceRequest {
            parent: "tenants/acme".into(),
            namespace_id: "shop".into(),
            ..Default::default()
        };
        assert_eq!(
            plans.resource(
                "/manifold.tenancy.v1.NamespaceService/CreateNamespace",
                &frame(&create_ns)
            ),
            "tenants/acme/namespaces/shop"
        );
        let create_tenant = t::CreateTenantRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        };
        assert_eq!(
            plans.resource(
                "/manifold.tenancy.v1.TenantService/CreateTenant",
                &frame(&create_tenant)
            ),
            "tenants/acme"
        );
        let update = t::UpdateTenantRequest {
            tenant: Some(t::Tenant {
                name: "tenants/acme".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            plans.resource(
                "/manifold.tenancy.v1.TenantService/UpdateTenant",
                &frame(&update)
            ),
            "tenants/acme"
        );
        let delete = v::DeleteVirtualClusterRequest {
            name: "tenants/a/namespaces/b/virtualClusters/c".into(),
            ..Default::default()
        };
        assert_eq!(
            plans.resource(
                "/manifold.vk8s.v1.VirtualClusterService/DeleteVirtualCluster",
                &frame(&delete)
            ),
            "tenants/a/namespaces/b/virtualClusters/c"
        );
        let register = s::RegisterRequest {
            site: "sites/pa2".into(),
            registration_token: "secret".into(),
            ..Default::default()
        };
        let found = plans.resource(
            "/manifold.sites.v1.RegistrationService/Register",
            &frame(&register),
        );
        assert_eq!(found, "sites/pa2");
        // Garbage and compressed frames name nothing.
        assert_eq!(
            plans.resource(
                "/manifold.sites.v1.RegistrationService/Register",
                &[1, 0, 0, 0, 1, 7]
            ),
            ""
        );
        assert_eq!(
            plans.resource(
                "/manifold.sites.v1.RegistrationService/Register",
                &[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]
            ),
            ""
        );
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b%25c"), "a b%c");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }
}
