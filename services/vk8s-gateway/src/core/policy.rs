//! Workload policy on the sites a vK8s is placed on: the Pod Security level
//! of each site (from the site registry's `ResolveVirtualSite`), the check
//! of a pod-bearing object against the strictest of them, the check of
//! every stored workload when placement changes, and the Service fields a
//! tenant may never set.

use manifold_kube_model::field_error::FieldError;
use manifold_kube_model::kinds::ResourceKind;
use manifold_kube_model::podsecurity::{self, Level};
use manifold_proto::sites::v1 as spb;
use serde_json::Value;
use tonic::transport::Channel;

use crate::error::{GatewayError, Invalid, Target};

/// The site registry's virtual site API.
#[derive(Clone)]
pub struct SitesClient {
    channel: Channel,
}

/// The strictest site a vK8s is placed on (the first such site by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePolicy {
    /// The site id (`pa2-par`).
    pub site: String,
    pub level: Level,
}

impl SitesClient {
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }

    /// The strictest level over the sites `virtual_sites` resolve to now,
    /// asked with the caller's own token. `None`: placed nowhere. A
    /// virtual site that does not exist places nowhere; any other failure
    /// of the registry refuses the write (fail closed).
    pub async fn strictest(
        &self,
        virtual_sites: &[String],
        token: &str,
    ) -> Result<Option<SitePolicy>, GatewayError> {
        let mut client =
            spb::virtual_site_service_client::VirtualSiteServiceClient::new(self.channel.clone());
        let mut best: Option<SitePolicy> = None;
        for vs in virtual_sites {
            let request = super::replication::with_token(
                spb::ResolveVirtualSiteRequest { name: vs.clone() },
                token,
            )?;
            let resolved = match client.resolve_virtual_site(request).await {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => continue,
                Err(s) => return Err(GatewayError::Upstream(s)),
            };
            for site in resolved.resolved_sites {
                let level = match spb::PodSecurityLevel::try_from(site.pod_security) {
                    Ok(spb::PodSecurityLevel::Privileged) => Level::Privileged,
                    Ok(spb::PodSecurityLevel::Restricted) => Level::Restricted,
                    _ => Level::Baseline,
                };
                let id = site
                    .name
                    .strip_prefix("sites/")
                    .unwrap_or(&site.name)
                    .to_owned();
                let stricter = match &best {
                    None => true,
                    Some(b) => level > b.level || (level == b.level && id < b.site),
                };
                if stricter {
                    best = Some(SitePolicy { site: id, level });
                }
            }
        }
        Ok(best)
    }
}

/// Whether writes of `kind` need the placement's policy.
pub fn needs_policy(kind: &ResourceKind) -> bool {
    podsecurity::is_pod_bearing(kind.kind)
}

/// The violations of `object` at the policy's level (none for other kinds).
pub fn violations(
    kind: &ResourceKind,
    object: &Value,
    policy: &SitePolicy,
) -> Vec<podsecurity::Violation> {
    podsecurity::evaluate(policy.level, kind.kind, object)
}

/// 403 Forbidden as kube-apiserver's PodSecurity admission words it, with
/// the site and its level.
pub fn forbidden(
    kind: &ResourceKind,
    name: &str,
    policy: &SitePolicy,
    violations: &[podsecurity::Violation],
) -> GatewayError {
    let target = Target::object(kind.group, kind.plural, name);
    GatewayError::PolicyForbidden {
        message: format!(
            "{target} is forbidden: {} (site {:?} enforces Pod Security level {:?})",
            podsecurity::message(policy.level, violations),
            policy.site,
            policy.level.as_str()
        ),
        target,
    }
}

/// The pod template changed (or is new): only then is it checked, as
/// kube-apiserver's PodSecurity admission ignores updates that leave the
/// pod spec alone (so finalizers and labels of an old workload can still
/// be changed after its site became stricter).
pub fn template_changed(kind: &ResourceKind, old: Option<&Value>, new: &Value) -> bool {
    let Some(old) = old else { return true };
    podsecurity::pod_template(kind.kind, old) != podsecurity::pod_template(kind.kind, new)
}

/// Services may not carry `spec.externalIPs` (CVE-2020-8554: a tenant
/// could intercept traffic to any IP on a shared site) nor
/// `spec.loadBalancerIP` (a tenant could claim an address of the site's
/// pool): 422 naming each field.
pub fn check_service(kind: &ResourceKind, name: &str, object: &Value) -> Result<(), GatewayError> {
    if kind.kind != "Service" || !kind.group.is_empty() {
        return Ok(());
    }
    let bad = podsecurity::forbidden_service_fields(object);
    if bad.is_empty() {
        return Ok(());
    }
    let causes = bad
        .into_iter()
        .map(|(field, _)| {
            let why = if field.starts_with("spec.externalIPs") {
                "may not be set on a shared site (CVE-2020-8554); remove spec.externalIPs"
            } else {
                "may not be set on a shared site; remove spec.loadBalancerIP and let the site assign the address"
            };
            FieldError::forbidden(field, why)
        })
        .collect();
    Err(GatewayError::Invalid(Invalid {
        group: String::new(),
        kind: "Service".into(),
        qualified_kind: "Service".into(),
        name: name.to_owned(),
        causes,
    }))
}

/// FAILED_PRECONDITION for a placement change that a stored workload
/// violates: names the workload, the first field and the site.
pub fn placement_refused(
    kind: &ResourceKind,
    name: &str,
    policy: &SitePolicy,
    violations: &[podsecurity::Violation],
) -> GatewayError {
    let field = violations
        .first()
        .map(|v| podsecurity::violation_field(kind.kind, v))
        .unwrap_or_default();
    GatewayError::FailedPrecondition {
        subject: format!("{}/{name}", kind.qualified_resource()),
        field,
        message: format!(
            "{}/{name} {} on site {:?} (Pod Security level {:?}); change or delete the workload first",
            kind.qualified_resource(),
            podsecurity::message(policy.level, violations),
            policy.site,
            policy.level.as_str()
        ),
    }
}
