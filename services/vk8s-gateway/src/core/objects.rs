//! Writing Kubernetes objects: create, update, the four patch types, the
//! scale subresource and deletion, each in one transaction that locks the
//! object, computes the new state with the API server's rules and appends
//! the change.

use manifold_db::Scope;
use manifold_kube_model::field_error::FieldError;
use manifold_kube_model::kinds::ResourceKind;
use manifold_kube_model::patch::{self, ApplyError, PatchError, PatchType};
use manifold_kube_model::validate::{
    self, FieldValidation, Operation, ValidationError, ValidationRequest, round_trip,
};
use serde_json::Value;
use uuid::Uuid;

use super::Core;
use crate::domain::object::{
    comparable, finalizers, is_deleting, mark_deleting, merge_update, meta_str, name_or_generate,
    now_rfc3339, prepare_create, resource_version, to_scale,
};
use crate::domain::{ObjectKey, Part, VirtualCluster};
use crate::error::{GatewayError, Invalid, Target};
use crate::storage::objects;

/// How a write is carried out.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// `dryRun=All`: run everything, store nothing.
    pub dry_run: bool,
    pub field_manager: String,
    pub field_validation: FieldValidation,
    /// Server-side apply: take over conflicting fields.
    pub force: bool,
    /// The strictest site of the placement, for pod-bearing kinds
    /// (`None`: placed nowhere, or no site registry wired).
    pub policy: Option<super::policy::SitePolicy>,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    /// `Warning` header texts.
    pub warnings: Vec<String>,
    /// The object did not exist before (201 rather than 200).
    pub created: bool,
}

/// A patch request body and its type.
#[derive(Debug, Clone)]
pub struct PatchBody {
    pub patch_type: PatchType,
    pub body: Value,
}

/// What a scale write carries.
#[derive(Debug, Clone)]
pub enum ScaleInput {
    Replace(Value),
    Patch(PatchBody),
}

/// DeleteOptions that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Gone; the object's last state.
    Removed(Value),
    /// Marked with a deletionTimestamp; waits for its finalizers.
    Pending(Value),
}

/// What a transaction body decided to write.
enum Outcome {
    Create(Value, Vec<String>),
    Update(Value, Vec<String>),
}

pub fn object_key(kind: &'static ResourceKind, vc: &VirtualCluster, name: &str) -> ObjectKey {
    ObjectKey {
        group: kind.group,
        kind: kind.kind,
        namespace: vc.name.namespace.clone(),
        name: name.to_owned(),
    }
}

pub fn target(kind: &ResourceKind, name: &str) -> Target {
    Target::object(kind.group, kind.plural, name)
}

pub fn validation_error(e: ValidationError) -> GatewayError {
    match e {
        ValidationError::BadRequest { message } => GatewayError::BadRequest(message),
        ValidationError::Invalid {
            group,
            kind,
            qualified_kind,
            name,
            causes,
        } => GatewayError::Invalid(Invalid {
            group,
            kind,
            qualified_kind,
            name,
            causes,
        }),
    }
}

fn patch_error(e: PatchError) -> GatewayError {
    match e {
        PatchError::Malformed(m) => GatewayError::BadRequest(m),
        PatchError::Unprocessable(m) => GatewayError::Unprocessable(m),
        PatchError::TooLarge(m) => GatewayError::LimitExceeded(m),
    }
}

fn apply_error(e: ApplyError) -> GatewayError {
    match e {
        ApplyError::Conflicts(c) => GatewayError::ApplyConflict(c),
        ApplyError::Invalid(m) => GatewayError::BadRequest(m),
    }
}

fn writable(kind: &ResourceKind) -> Result<(), GatewayError> {
    if kind.tenant_writable {
        Ok(())
    } else {
        Err(GatewayError::MethodNotAllowed(format!(
            "{} are read-only in a virtual cluster: they come from the sites",
            kind.qualified_resource()
        )))
    }
}

fn validate(
    kind: &'static ResourceKind,
    namespace: &str,
    name: Option<&str>,
    operation: Operation,
    field_validation: FieldValidation,
    body: &Value,
) -> Result<validate::Validated, GatewayError> {
    let req = ValidationRequest {
        kind,
        namespace: kind.namespaced.then_some(namespace),
        name,
        operation,
        field_validation,
    };
    validate::validate_object(&req, body).map_err(validation_error)
}

/// Drops what the typed model does not know, as decoding into Go types does.
fn prune(kind: &ResourceKind, object: Value) -> Result<Value, GatewayError> {
    match round_trip(kind.kind, &object) {
        None => Ok(object),
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(GatewayError::BadRequest(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            kind.kind, kind.version, kind.kind
        ))),
    }
}

/// 409 when the body names a resourceVersion or uid other than the stored one.
fn check_preconditions(
    kind: &ResourceKind,
    name: &str,
    body: &Value,
    old: &Value,
) -> Result<(), GatewayError> {
    if let Some(rv) = resource_version(body)
        && Some(rv) != resource_version(old)
    {
        return Err(GatewayError::modified(target(kind, name)));
    }
    if let Some(uid) = meta_str(body, "uid").filter(|u| !u.is_empty())
        && Some(uid) != meta_str(old, "uid")
    {
        return Err(GatewayError::Conflict {
            target: target(kind, name),
            message: format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(old, "uid").unwrap_or_default()
            ),
        });
    }
    Ok(())
}

fn subresource_name(part: Part) -> Option<&'static str> {
    match part {
        Part::Main => None,
        Part::Status => Some("status"),
    }
}

/// A new object from a server-side apply configuration.
fn apply_create(
    kind: &'static ResourceKind,
    vc: &VirtualCluster,
    name: &str,
    config: &Value,
    opts: &WriteOptions,
    now: &str,
) -> Result<Outcome, GatewayError> {
    let applied =
        patch::apply(None, config, &opts.field_manager, opts.force, now).map_err(apply_error)?;
    let managed = applied.pointer("/metadata/managedFields").cloned();
    let validated = validate(
        kind,
        &vc.name.namespace,
        Some(name),
        Operation::Create,
        opts.field_validation,
        &applied,
    )?;
    let mut obj = validated.object;
    prepare_create(kind, &mut obj, Uuid::new_v4(), now);
    if let (Some(m), Some(meta)) = (
        managed,
        obj.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        meta.insert("managedFields".into(), m);
    }
    Ok(Outcome::Create(prune(kind, obj)?, validated.warnings))
}

impl Core {
    /// The data key a write of `kind` seals with (`None` for kinds stored
    /// in plain). Taken before the transaction: it may call the key
    /// provider, which must not happen while the revision counter is held.
    pub async fn data_key(
        &self,
        kind: &ResourceKind,
    ) -> Result<Option<std::sync::Arc<crate::encryption::DataKey>>, GatewayError> {
        if !crate::encryption::encrypted_kind(kind.group, kind.kind) {
            return Ok(None);
        }
        Ok(Some(self.config.encryption.data_key().await?))
    }

    /// Runs `decide` on the locked current object and stores what it
    /// returns: insert, update, a deletion that finalizers no longer hold
    /// up, or nothing when the object would not change.
    #[allow(clippy::too_many_arguments)]
    async fn write<F>(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        name: &str,
        dry_run: bool,
        op: &'static str,
        policy: Option<&super::policy::SitePolicy>,
        decide: F,
    ) -> Result<Written, GatewayError>
    where
        F: Fn(Option<&Value>) -> Result<Outcome, GatewayError> + Send + Sync,
    {
        let key = object_key(kind, vc, name);
        let target = target(kind, name);
        let dek = self.data_key(kind).await?;
        let dek = dek.as_deref();
        let enc = &*self.config.encryption;
        let quota = self.config.quota;
        let written = manifold_db::transaction!(
            self.db,
            op,
            Scope::Tenant(vc.tenant_id),
            GatewayError,
            |tx| {
                let old = objects::lock(tx, enc, vc, &key).await?;
                let outcome = decide(old.as_ref())?;
                let candidate = match &outcome {
                    Outcome::Create(o, _) | Outcome::Update(o, _) => o,
                };
                check_policy(kind, name, old.as_ref(), candidate, policy)?;
                match outcome {
                    Outcome::Create(mut obj, warnings) => {
                        if old.is_some() {
                            return Err(GatewayError::AlreadyExists(target.clone()));
                        }
                        if !dry_run {
                            objects::insert(tx, dek, vc, &key, &target, &mut obj).await?;
                            quota.check_after_write(tx, vc, &target, true, 0).await?;
                            let pods = super::quota::pods_of(kind.group, kind.kind, &obj);
                            quota.check_pods_after_write(tx, vc, &target, pods).await?;
                        }
                        Ok(Written {
                            object: obj,
                            warnings,
                            created: true,
                        })
                    }
                    Outcome::Update(mut new, warnings) => {
                        let old = old.ok_or_else(|| GatewayError::NotFound(target.clone()))?;
                        if comparable(&new) == comparable(&old) {
                            return Ok(Written {
                                object: old,
                                warnings,
                                created: false,
                            });
                        }
                        if dry_run {
                            return Ok(Written {
                                object: new,
                                warnings,
                                created: false,
                            });
                        }
                        if is_deleting(&new) && finalizers(&new).is_empty() {
                            let last = objects::delete(tx, enc, dek, vc, &key, &new, true).await?;
                            return Ok(Written {
                                object: last,
                                warnings,
                                created: false,
                            });
                        }
                        let grown = json_len(&new) - json_len(&old);
                        let more_pods = super::quota::pods_of(kind.group, kind.kind, &new)
                            - super::quota::pods_of(kind.group, kind.kind, &old);
                        objects::update(tx, dek, vc, &key, &old, &mut new).await?;
                        quota
                            .check_after_write(tx, vc, &target, false, grown)
                            .await?;
                        quota
                            .check_pods_after_write(tx, vc, &target, more_pods)
                            .await?;
                        Ok(Written {
                            object: new,
                            warnings,
                            created: false,
                        })
                    }
                }
            }
        )?;
        if !dry_run {
            self.hub.wake();
        }
        Ok(written)
    }

    pub async fn get_object(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        name: &str,
    ) -> Result<Value, GatewayError> {
        let key = object_key(kind, vc, name);
        let enc = &*self.config.encryption;
        manifold_db::transaction!(
            self.db,
            "get_object",
            Scope::Tenant(vc.tenant_id),
            GatewayError,
            |tx| { objects::get(tx, enc, vc, &key).await }
        )?
        .ok_or_else(|| GatewayError::NotFound(target(kind, name)))
    }

    pub async fn create_object(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, GatewayError> {
        writable(kind)?;
        let name = name_or_generate(&mut body).unwrap_or_default();
        let validated = validate(
            kind,
            &vc.name.namespace,
            None,
            Operation::Create,
            opts.field_validation,
            &body,
        )?;
        let now = now_rfc3339();
        let mut obj = validated.object;
        prepare_create(kind, &mut obj, Uuid::new_v4(), &now);
        let obj = prune(kind, obj)?;
        let obj = patch::record_update(None, &obj, &opts.field_manager, &now);
        let warnings = validated.warnings;
        let policy = opts.policy.as_ref();
        self.write(
            vc,
            kind,
            &name,
            opts.dry_run,
            "create_object",
            policy,
            move |_| Ok(Outcome::Create(obj.clone(), warnings.clone())),
        )
        .await
    }

    /// PUT of the object (`part` Main) or of its status.
    pub async fn update_object(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        name: &str,
        body: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Written, GatewayError> {
        if part == Part::Main {
            writable(kind)?;
        }
        let validated = validate(
            kind,
            &vc.name.namespace,
            Some(name),
            Operation::Update,
            opts.field_validation,
            &body,
        )?;
        let now = now_rfc3339();
        let policy = opts.policy.as_ref();
        self.write(
            vc,
            kind,
            name,
            opts.dry_run,
            "update_object",
            policy,
            |old| {
                let old = old.ok_or_else(|| GatewayError::NotFound(target(kind, name)))?;
                check_preconditions(kind, name, &body, old)?;
                let new = prune(kind, merge_update(kind, old, &validated.object, part))?;
                if part == Part::Main {
                    validate::check_update(kind, name, old, &new).map_err(validation_error)?;
                }
                let new = patch::record_update_subresource(
                    Some(old),
                    &new,
                    &opts.field_manager,
                    subresource_name(part),
                    &now,
                );
                Ok(Outcome::Update(new, validated.warnings.clone()))
            },
        )
        .await
    }

    /// PATCH of the object or its status; server-side apply may create.
    pub async fn patch_object(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        name: &str,
        patch_body: &PatchBody,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Written, GatewayError> {
        if part == Part::Main {
            writable(kind)?;
        }
        let is_apply = patch_body.patch_type == PatchType::Apply;
        if is_apply && part != Part::Main {
            return Err(GatewayError::UnsupportedMediaType(
                "server-side apply is supported on the main resource only".into(),
            ));
        }
        if is_apply && opts.field_manager.is_empty() {
            return Err(GatewayError::Unprocessable(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
            ));
        }
        let now = now_rfc3339();
        let ns = vc.name.namespace.clone();
        let policy = opts.policy.as_ref();
        self.write(
            vc,
            kind,
            name,
            opts.dry_run,
            "patch_object",
            policy,
            |old| {
                let Some(old) = old else {
                    if is_apply {
                        return apply_create(kind, vc, name, &patch_body.body, opts, &now);
                    }
                    return Err(GatewayError::NotFound(target(kind, name)));
                };
                let patched = if is_apply {
                    check_preconditions(kind, name, &patch_body.body, old)?;
                    patch::apply(
                        Some(old),
                        &patch_body.body,
                        &opts.field_manager,
                        opts.force,
                        &now,
                    )
                    .map_err(apply_error)?
                } else {
                    patch::apply_patch(patch_body.patch_type, kind.kind, old, &patch_body.body)
                        .map_err(patch_error)?
                };
                let validated = validate(
                    kind,
                    &ns,
                    Some(name),
                    Operation::Update,
                    opts.field_validation,
                    &patched,
                )?;
                check_preconditions(kind, name, &validated.object, old)?;
                let mut new = prune(kind, merge_update(kind, old, &validated.object, part))?;
                if part == Part::Main {
                    validate::check_update(kind, name, old, &new).map_err(validation_error)?;
                }
                if !is_apply {
                    new = patch::record_update_subresource(
                        Some(old),
                        &new,
                        &opts.field_manager,
                        subresource_name(part),
                        &now,
                    );
                }
                Ok(Outcome::Update(new, validated.warnings))
            },
        )
        .await
    }

    pub async fn get_scale(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        name: &str,
    ) -> Result<Value, GatewayError> {
        Ok(to_scale(&self.get_object(vc, kind, name).await?))
    }

    /// PUT or PATCH of `…/scale`; answers with the new Scale.
    pub async fn write_scale(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        name: &str,
        input: &ScaleInput,
        opts: &WriteOptions,
    ) -> Result<Value, GatewayError> {
        let now = now_rfc3339();
        let written = self
            .write(vc, kind, name, opts.dry_run, "scale_object", None, |old| {
                let old = old.ok_or_else(|| GatewayError::NotFound(target(kind, name)))?;
                let current = to_scale(old);
                let scale = match input {
                    ScaleInput::Replace(body) => body.clone(),
                    ScaleInput::Patch(p) => {
                        patch::apply_patch(p.patch_type, "Scale", &current, &p.body)
                            .map_err(patch_error)?
                    }
                };
                check_preconditions(kind, name, &scale, old)?;
                let replicas = scale_replicas(name, &scale)?;
                let mut new = old.clone();
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("replicas".into(), replicas.into());
                }
                let new = merge_update(kind, old, &new, Part::Main);
                let new = patch::record_update_subresource(
                    Some(old),
                    &new,
                    &opts.field_manager,
                    Some("scale"),
                    &now,
                );
                Ok(Outcome::Update(new, Vec::new()))
            })
            .await?;
        Ok(to_scale(&written.object))
    }

    /// Deletes an object, or marks it for deletion while finalizers remain.
    pub async fn delete_object(
        &self,
        vc: &VirtualCluster,
        kind: &'static ResourceKind,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, GatewayError> {
        let key = object_key(kind, vc, name);
        let target = target(kind, name);
        let dek = self.data_key(kind).await?;
        let dek = dek.as_deref();
        let enc = &*self.config.encryption;
        let deleted = manifold_db::transaction!(
            self.db,
            "delete_object",
            Scope::Tenant(vc.tenant_id),
            GatewayError,
            |tx| {
                let old = match objects::lock(tx, enc, vc, &key).await {
                    // A Secret whose key is gone can still be deleted: its
                    // identity is all a deletion needs (its finalizers,
                    // sealed with the rest, are unknown and not waited for).
                    Err(GatewayError::Encryption(e)) if e.is_permanent() => {
                        tracing::warn!(error = %e, "deleting an object that does not decrypt");
                        objects::lock_stub(tx, vc, &key).await?
                    }
                    other => other?,
                }
                .ok_or_else(|| GatewayError::NotFound(target.clone()))?;
                check_delete_preconditions(&target, opts, &old)?;
                if !finalizers(&old).is_empty() {
                    if is_deleting(&old) || opts.dry_run {
                        return Ok(Deleted::Pending(old));
                    }
                    let mut new = old.clone();
                    mark_deleting(&mut new, &now_rfc3339());
                    objects::update(tx, dek, vc, &key, &old, &mut new).await?;
                    return Ok(Deleted::Pending(new));
                }
                if opts.dry_run {
                    return Ok(Deleted::Removed(old));
                }
                Ok(Deleted::Removed(
                    objects::delete(tx, enc, dek, vc, &key, &old, true).await?,
                ))
            }
        )?;
        if !opts.dry_run {
            self.hub.wake();
        }
        Ok(deleted)
    }
}

fn json_len(v: &Value) -> i64 {
    serde_json::to_vec(v).map_or(0, |b| b.len() as i64)
}

/// The workload and Service rules of the placement, on what a write is
/// about to store (`old`: the stored object, if any).
fn check_policy(
    kind: &'static ResourceKind,
    name: &str,
    old: Option<&Value>,
    new: &Value,
    policy: Option<&super::policy::SitePolicy>,
) -> Result<(), GatewayError> {
    use super::policy;
    let service_changed = old.is_none_or(|o| {
        manifold_kube_model::podsecurity::forbidden_service_fields(o)
            != manifold_kube_model::podsecurity::forbidden_service_fields(new)
    });
    if service_changed {
        policy::check_service(kind, name, new)?;
    }
    if let Some(p) = policy
        && policy::needs_policy(kind)
        && policy::template_changed(kind, old, new)
    {
        let v = policy::violations(kind, new, p);
        if !v.is_empty() {
            return Err(policy::forbidden(kind, name, p, &v));
        }
    }
    Ok(())
}

fn check_delete_preconditions(
    target: &Target,
    opts: &DeleteOptions,
    old: &Value,
) -> Result<(), GatewayError> {
    if let Some(uid) = opts.precondition_uid.as_deref()
        && Some(uid) != meta_str(old, "uid")
    {
        return Err(GatewayError::Conflict {
            target: target.clone(),
            message: format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(old, "uid").unwrap_or_default()
            ),
        });
    }
    if let Some(rv) = opts.precondition_resource_version.as_deref()
        && Some(rv) != resource_version(old)
    {
        return Err(GatewayError::Conflict {
            target: target.clone(),
            message: format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                resource_version(old).unwrap_or_default()
            ),
        });
    }
    Ok(())
}

/// `spec.replicas` of a Scale body: a non-negative integer (absent means 0).
fn scale_replicas(name: &str, scale: &Value) -> Result<i64, GatewayError> {
    let value = scale
        .pointer("/spec/replicas")
        .cloned()
        .unwrap_or(Value::from(0));
    match value.as_i64() {
        Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(n),
        _ => Err(GatewayError::Invalid(Invalid {
            group: "autoscaling".into(),
            kind: "Scale".into(),
            qualified_kind: "Scale.autoscaling".into(),
            name: name.to_owned(),
            causes: vec![FieldError::invalid(
                "spec.replicas",
                &value,
                "must be greater than or equal to 0",
            )],
        })),
    }
}
