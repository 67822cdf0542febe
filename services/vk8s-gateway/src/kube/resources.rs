//! Collections, objects and their `status`/`scale` subresources: the verb
//! a request means, who may use it, and the core operation behind it.

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode, header};
use manifold_auth::Permission;
use manifold_kube_model::PatchType;
use manifold_kube_model::kinds::{self, ResourceKind, Verb};
use manifold_kube_model::table::{self, TableOptions};
use serde_json::{Value, json};

use super::negotiate::{self, Output};
use super::path::ResourcePath;
use super::response::{
    delete_success, json_response, object_response, set_table_version, single, with_warnings,
};
use super::{Ctx, events, namespaces, nodes, pods, read_body, secrets, watch};
use crate::core::list::{ContinueToken, ListFrom, ListOptions};
use crate::core::objects::{DeleteOptions, Deleted, PatchBody, ScaleInput, WriteOptions};
use crate::domain::Part;
use crate::error::{GatewayError, Target};

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    List,
    Watch,
    Create,
    DeleteCollection,
    Get,
    Update,
    Patch,
    Delete,
}

impl Action {
    fn verb(self) -> Verb {
        match self {
            Action::List => Verb::List,
            Action::Watch => Verb::Watch,
            Action::Create => Verb::Create,
            Action::DeleteCollection => Verb::DeleteCollection,
            Action::Get => Verb::Get,
            Action::Update => Verb::Update,
            Action::Patch => Verb::Patch,
            Action::Delete => Verb::Delete,
        }
    }

    fn permission(self) -> Permission {
        match self {
            Action::List | Action::Watch | Action::Get => Permission::Read,
            _ => Permission::Write,
        }
    }
}

fn method_not_allowed() -> GatewayError {
    GatewayError::MethodNotAllowed(
        "the server does not allow this method on the requested resource".into(),
    )
}

fn action(ctx: &Ctx, named: bool) -> Result<Action, GatewayError> {
    Ok(match (&ctx.method, named) {
        (&Method::GET, false) if ctx.query.flag("watch")? => Action::Watch,
        (&Method::GET, false) => Action::List,
        (&Method::POST, false) => Action::Create,
        (&Method::DELETE, false) => Action::DeleteCollection,
        (&Method::GET, true) => Action::Get,
        (&Method::PUT, true) => Action::Update,
        (&Method::PATCH, true) => Action::Patch,
        (&Method::DELETE, true) => Action::Delete,
        _ => return Err(method_not_allowed()),
    })
}

/// Kubernetes' wording for a refused verb.
fn forbidden(
    ctx: &Ctx,
    kind: &ResourceKind,
    verb: Verb,
    name: Option<&str>,
    sub: Option<&str>,
) -> GatewayError {
    let resource = match sub {
        Some(s) => format!("{}/{s}", kind.plural),
        None => kind.plural.to_owned(),
    };
    let what = match name {
        Some(n) => format!("{} {n:?}", kind.qualified_resource()),
        None => kind.qualified_resource(),
    };
    GatewayError::Forbidden(format!(
        "{what} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
        ctx.principal.user,
        verb.as_str(),
        kind.group,
        ctx.vc.name.namespace
    ))
}

fn authorize(
    ctx: &Ctx,
    kind: &ResourceKind,
    act: Action,
    name: Option<&str>,
    sub: Option<&str>,
) -> Result<(), GatewayError> {
    ctx.principal
        .check(act.permission(), &ctx.vc.name.resource_name())
        .map(|_| ())
        .map_err(|_| forbidden(ctx, kind, act.verb(), name, sub))
}

pub async fn handle(ctx: &Ctx, rp: ResourcePath, body: Body) -> Result<Response, GatewayError> {
    let kind =
        kinds::by_resource(&rp.group, &rp.version, &rp.resource).ok_or(GatewayError::NoRoute)?;
    if kind.kind == "Namespace" {
        return namespaces::handle(
            ctx,
            kind,
            rp.name.as_deref(),
            rp.subresource.as_deref(),
            body,
        )
        .await;
    }
    if kind.kind == "Node" {
        if rp.namespace.is_some() {
            return Err(GatewayError::NoRoute);
        }
        return nodes::handle(ctx, kind, rp.name.as_deref(), rp.subresource.as_deref()).await;
    }
    let act = action(ctx, rp.name.is_some())?;
    match rp.namespace.as_deref() {
        Some(ns) if ns != ctx.vc.name.namespace => {
            return Err(GatewayError::NotFound(Target::object("", "namespaces", ns)));
        }
        // Cluster-wide paths of namespaced kinds only list and watch.
        None if !matches!(act, Action::List | Action::Watch) => return Err(GatewayError::NoRoute),
        _ => {}
    }
    let name = rp.name.as_deref();
    if let Some(sub) = rp.subresource.as_deref() {
        let name = name.ok_or(GatewayError::NoRoute)?;
        return subresource(ctx, kind, name, sub, act, body).await;
    }
    if !kind.supports(act.verb()) {
        return Err(method_not_allowed());
    }
    authorize(ctx, kind, act, name, None)?;
    // Viewers list Secrets without their values and may not get one.
    let hide_data = secrets::hides_data(ctx, kind);
    if hide_data && act == Action::Get {
        return Err(forbidden(ctx, kind, Verb::Get, name, None));
    }
    if kind.kind == "Pod" && ctx.core.replication.get().is_some() {
        return match (act, name) {
            (Action::List, _) => pods::list(ctx, kind, output(ctx, true)?).await,
            (Action::Watch, _) => pods::watch(ctx, kind).await,
            (Action::Get, Some(n)) => pods::get(ctx, kind, n, output(ctx, true)?).await,
            (Action::Delete, Some(n)) => pods::delete(ctx, kind, n, body).await,
            _ => Err(method_not_allowed()),
        };
    }
    if kind.kind == "Event" && ctx.core.replication.get().is_some() {
        return match (act, name) {
            (Action::List, _) => events::list(ctx, kind, output(ctx, true)?).await,
            (Action::Get, Some(n)) => events::get(ctx, kind, n, output(ctx, true)?).await,
            // Watches of Events see what the object store holds (nothing the
            // sites report yet).
            (Action::Watch, _) => watch::handle(ctx, kind, false).await,
            _ => Err(method_not_allowed()),
        };
    }
    match (act, name) {
        (Action::List, _) => list(ctx, kind, hide_data).await,
        (Action::Watch, _) => watch::handle(ctx, kind, hide_data).await,
        (Action::Create, _) => create(ctx, kind, body).await,
        (Action::DeleteCollection, _) => delete_collection(ctx, kind, body).await,
        (Action::Get, Some(n)) => get(ctx, kind, n).await,
        (Action::Update, Some(n)) => update(ctx, kind, n, Part::Main, body).await,
        (Action::Patch, Some(n)) => patch(ctx, kind, n, Part::Main, body).await,
        (Action::Delete, Some(n)) => delete(ctx, kind, n, body).await,
        _ => Err(GatewayError::NoRoute),
    }
}

fn output(ctx: &Ctx, allow_table: bool) -> Result<Output, GatewayError> {
    negotiate::output(
        ctx.header(header::ACCEPT),
        allow_table,
        ctx.query.include_object()?,
    )
}

fn write_options(ctx: &Ctx) -> Result<WriteOptions, GatewayError> {
    Ok(WriteOptions {
        dry_run: ctx.query.dry_run()?,
        field_manager: ctx.query.field_manager(ctx.header(header::USER_AGENT)),
        field_validation: ctx.query.field_validation()?,
        force: ctx.query.flag("force")?,
        policy: None,
    })
}

/// Write options with the placement's policy for pod-bearing kinds: the
/// strictest site the vK8s's virtual sites resolve to now.
async fn write_options_for(
    ctx: &Ctx,
    kind: &'static ResourceKind,
) -> Result<WriteOptions, GatewayError> {
    let mut opts = write_options(ctx)?;
    if crate::core::policy::needs_policy(kind)
        && let Some(sites) = ctx.core.sites.get()
    {
        opts.policy = sites.strictest(&ctx.vc.virtual_sites, ctx.token()?).await?;
    }
    Ok(opts)
}

async fn get(ctx: &Ctx, kind: &'static ResourceKind, name: &str) -> Result<Response, GatewayError> {
    let out = output(ctx, true)?;
    let mut object = ctx.core.get_object(&ctx.vc, kind, name).await?;
    ctx.core
        .observe(&ctx.vc, kind, &mut object, ctx.token()?)
        .await?;
    Ok(single(StatusCode::OK, out, kind.kind, &object))
}

/// Where a list reads from, from `resourceVersion`, `resourceVersionMatch`
/// and `continue`.
fn list_from(ctx: &Ctx) -> Result<ListFrom, GatewayError> {
    if let Some(token) = ctx.query.get("continue").filter(|c| !c.is_empty()) {
        return Ok(ListFrom::Continue(ContinueToken::decode(token)?));
    }
    let rv = ctx.query.get("resourceVersion").filter(|v| !v.is_empty());
    match (ctx.query.get("resourceVersionMatch"), rv) {
        (Some("Exact"), Some(rv)) => rv
            .parse()
            .map(ListFrom::Exact)
            .map_err(|_| GatewayError::BadRequest(format!("invalid resourceVersion {rv:?}"))),
        (Some("Exact"), None) => Err(GatewayError::BadRequest(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
        )),
        (None | Some("" | "NotOlderThan"), _) => Ok(ListFrom::Latest),
        (Some(other), _) => Err(GatewayError::BadRequest(format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

/// `hide_data`: a viewer's list of Secrets (see [`secrets`]).
async fn list(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    hide_data: bool,
) -> Result<Response, GatewayError> {
    let out = output(ctx, true)?;
    let opts = ListOptions {
        selectors: ctx.query.selectors()?,
        limit: ctx.query.limit()?,
        from: list_from(ctx)?,
    };
    let mut page = ctx.core.list_objects(&ctx.vc, kind, &opts).await?;
    for item in &mut page.items {
        ctx.core.observe(&ctx.vc, kind, item, ctx.token()?).await?;
    }
    let rv = page.resource_version.to_string();
    Ok(match out {
        Output::Table { version, include } => {
            let sites = crate::core::replication::site_count;
            let opts =
                TableOptions::new(include, chrono::Utc::now()).with_replica_multiplier(&sites);
            let mut t = table::list_table(
                kind.kind,
                &page.items,
                &rv,
                page.continue_token.as_deref(),
                &opts,
            );
            if hide_data {
                secrets::redact_table(&mut t);
            }
            set_table_version(&mut t, version);
            json_response(StatusCode::OK, &t)
        }
        other => {
            if hide_data {
                page.items.iter_mut().for_each(secrets::redact);
            }
            let mut metadata = json!({ "resourceVersion": rv });
            if let Some(c) = &page.continue_token {
                metadata["continue"] = c.clone().into();
            }
            let body = json!({
                "kind": kind.list_kind(),
                "apiVersion": kind.api_version(),
                "metadata": metadata,
                "items": page.items,
            });
            object_response(StatusCode::OK, other, &body)
        }
    })
}

async fn create(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    body: Body,
) -> Result<Response, GatewayError> {
    let out = output(ctx, false)?;
    let opts = write_options_for(ctx, kind).await?;
    let bytes = read_body(body).await?;
    let object = negotiate::decode_body(ctx.header(header::CONTENT_TYPE), &bytes)?;
    let written = ctx.core.create_object(&ctx.vc, kind, object, &opts).await?;
    Ok(with_warnings(
        object_response(StatusCode::CREATED, out, &written.object),
        &written.warnings,
    ))
}

async fn update(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: &str,
    part: Part,
    body: Body,
) -> Result<Response, GatewayError> {
    let out = output(ctx, false)?;
    let opts = write_options_for(ctx, kind).await?;
    let bytes = read_body(body).await?;
    let object = negotiate::decode_body(ctx.header(header::CONTENT_TYPE), &bytes)?;
    let mut written = ctx
        .core
        .update_object(&ctx.vc, kind, name, object, part, &opts)
        .await?;
    // Like a GET, the answer carries the sites' status: `kubectl diff`
    // compares a dry run's answer with the live object.
    ctx.core
        .observe(&ctx.vc, kind, &mut written.object, ctx.token()?)
        .await?;
    Ok(with_warnings(
        object_response(StatusCode::OK, out, &written.object),
        &written.warnings,
    ))
}

async fn patch_body(ctx: &Ctx, body: Body) -> Result<PatchBody, GatewayError> {
    let content_type = ctx.header(header::CONTENT_TYPE).unwrap_or_default();
    let patch_type = PatchType::from_content_type(content_type).ok_or_else(|| {
        GatewayError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            PatchType::SUPPORTED.join(", ")
        ))
    })?;
    let bytes = read_body(body).await?;
    let body = match patch_type {
        PatchType::Apply => negotiate::decode_yaml(&bytes)?,
        _ => negotiate::decode_json(&bytes)?,
    };
    Ok(PatchBody { patch_type, body })
}

async fn patch(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: &str,
    part: Part,
    body: Body,
) -> Result<Response, GatewayError> {
    let out = output(ctx, false)?;
    let mut opts = write_options_for(ctx, kind).await?;
    let patch = patch_body(ctx, body).await?;
    if patch.patch_type == PatchType::Apply {
        opts.field_manager = ctx
            .query
            .explicit_field_manager()
            .unwrap_or_default()
            .to_owned();
    } else if ctx.query.get("force").is_some() {
        return Err(GatewayError::BadRequest(
            "force: Forbidden: may not be specified for non-apply patch".into(),
        ));
    }
    let mut written = ctx
        .core
        .patch_object(&ctx.vc, kind, name, &patch, part, &opts)
        .await?;
    ctx.core
        .observe(&ctx.vc, kind, &mut written.object, ctx.token()?)
        .await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_warnings(
        object_response(status, out, &written.object),
        &written.warnings,
    ))
}

/// DeleteOptions from the body (when there is one) and the query.
async fn delete_options(ctx: &Ctx, body: Body) -> Result<DeleteOptions, GatewayError> {
    let bytes = read_body(body).await?;
    let options: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        negotiate::decode_body(ctx.header(header::CONTENT_TYPE), &bytes)?
    };
    let body_dry_run = options
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    let policy = options
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(ctx.query.get("propagationPolicy"));
    if let Some(p) = policy
        && !matches!(p, "Orphan" | "Background" | "Foreground")
    {
        return Err(GatewayError::Unprocessable(format!(
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    let text = |pointer: &str| {
        options
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(DeleteOptions {
        dry_run: body_dry_run || ctx.query.dry_run()?,
        precondition_uid: text("/preconditions/uid"),
        precondition_resource_version: text("/preconditions/resourceVersion"),
    })
}

async fn delete(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: &str,
    body: Body,
) -> Result<Response, GatewayError> {
    let out = output(ctx, false)?;
    let opts = delete_options(ctx, body).await?;
    // Nothing in a virtual cluster owns dependents, so every propagation
    // policy deletes at once unless finalizers hold the object.
    Ok(
        match ctx.core.delete_object(&ctx.vc, kind, name, &opts).await? {
            Deleted::Removed(last) => {
                let uid = last.pointer("/metadata/uid").and_then(Value::as_str);
                json_response(
                    StatusCode::OK,
                    &delete_success(kind.group, kind.plural, name, uid),
                )
            }
            Deleted::Pending(object) => object_response(StatusCode::ACCEPTED, out, &object),
        },
    )
}

async fn delete_collection(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    body: Body,
) -> Result<Response, GatewayError> {
    let out = output(ctx, false)?;
    let opts = delete_options(ctx, body).await?;
    let page = ctx
        .core
        .list_objects(
            &ctx.vc,
            kind,
            &ListOptions {
                selectors: ctx.query.selectors()?,
                limit: None,
                from: ListFrom::Latest,
            },
        )
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for object in page.items {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match ctx.core.delete_object(&ctx.vc, kind, name, &opts).await {
            Ok(Deleted::Removed(o) | Deleted::Pending(o)) => items.push(o),
            // Deleted meanwhile by someone else.
            Err(GatewayError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": kind.list_kind(),
        "apiVersion": kind.api_version(),
        "metadata": {},
        "items": items,
    });
    Ok(object_response(StatusCode::OK, out, &body))
}

async fn subresource(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: &str,
    sub: &str,
    act: Action,
    body: Body,
) -> Result<Response, GatewayError> {
    let Some(s) = kind.subresource(sub) else {
        return Err(GatewayError::NoRoute);
    };
    if !s.verbs.contains(&act.verb()) {
        return Err(method_not_allowed());
    }
    authorize(ctx, kind, act, Some(name), Some(sub))?;
    if secrets::hides_data(ctx, kind) {
        return Err(forbidden(ctx, kind, act.verb(), Some(name), Some(sub)));
    }
    match (sub, act) {
        ("status", Action::Get) => get(ctx, kind, name).await,
        ("log", Action::Get) if kind.kind == "Pod" && ctx.core.replication.get().is_some() => {
            pods::log(ctx, kind, name).await
        }
        ("status", Action::Update) => update(ctx, kind, name, Part::Status, body).await,
        ("status", Action::Patch) => patch(ctx, kind, name, Part::Status, body).await,
        ("scale", _) => scale(ctx, kind, name, act, body).await,
        // Logs and exec reach pods on sites; the object must exist first.
        _ => {
            ctx.core.get_object(&ctx.vc, kind, name).await?;
            Err(GatewayError::MethodNotAllowed(format!(
                "{}/{sub} is not available yet in a virtual cluster",
                kind.plural
            )))
        }
    }
}

async fn scale(
    ctx: &Ctx,
    kind: &'static ResourceKind,
    name: &str,
    act: Action,
    body: Body,
) -> Result<Response, GatewayError> {
    let out = output(ctx, false)?;
    let scale = match act {
        Action::Get => ctx.core.get_scale(&ctx.vc, kind, name).await?,
        Action::Update | Action::Patch => {
            let opts = write_options(ctx)?;
            let input = if act == Action::Update {
                let bytes = read_body(body).await?;
                ScaleInput::Replace(negotiate::decode_body(
                    ctx.header(header::CONTENT_TYPE),
                    &bytes,
                )?)
            } else {
                let patch = patch_body(ctx, body).await?;
                if patch.patch_type == PatchType::Apply {
                    return Err(GatewayError::UnsupportedMediaType(
                        "server-side apply is not supported on the scale subresource".into(),
                    ));
                }
                ScaleInput::Patch(patch)
            };
            ctx.core
                .write_scale(&ctx.vc, kind, name, &input, &opts)
                .await?
        }
        _ => return Err(method_not_allowed()),
    };
    Ok(object_response(StatusCode::OK, out, &scale))
}
