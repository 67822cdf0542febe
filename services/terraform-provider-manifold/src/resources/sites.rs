//! `manifold_site` and `manifold_virtual_site` over `manifold.sites.v1`.

use manifold_proto::sites::v1 as pb;

use super::{api, check_id, check_name, deleted, found, mask, named, split_name, ts};
use crate::client::Client;
use crate::diag::Diag;
use crate::framework::{CreateError, Resource};
use crate::schema::{Attr, Schema};
use crate::value::{Obj, ObjExt, Type, Value};

pub(crate) const PROVIDER_KINDS: &[&str] = &["CLOUD_REGION", "POP", "EDGE"];

pub(crate) fn provider_kind_name(k: i32) -> Value {
    match pb::site::ProviderKind::try_from(k) {
        Ok(pb::site::ProviderKind::Unspecified) | Err(_) => Value::Null,
        Ok(k) => Value::str(k.as_str_name()),
    }
}

pub(crate) const POD_SECURITY_LEVELS: &[&str] = &["PRIVILEGED", "BASELINE", "RESTRICTED"];

pub(crate) fn pod_security_name(l: i32) -> Value {
    match pb::PodSecurityLevel::try_from(l) {
        Ok(pb::PodSecurityLevel::Unspecified) | Err(_) => Value::Null,
        Ok(l) => Value::str(l.as_str_name()),
    }
}

pub(crate) fn state_name(s: i32) -> &'static str {
    pb::site::State::try_from(s)
        .unwrap_or_default()
        .as_str_name()
}

pub(crate) fn site_obj(s: &pb::Site) -> Obj {
    let mut o = named(&s.name);
    o.insert(
        "site_id".into(),
        Value::str(s.name.strip_prefix("sites/").unwrap_or(&s.name)),
    );
    o.insert("display_name".into(), Value::str_or_null(&s.display_name));
    o.insert("location".into(), Value::str_or_null(&s.location));
    o.insert("provider_kind".into(), provider_kind_name(s.provider_kind));
    o.insert("labels".into(), Value::string_map_or_null(&s.labels));
    o.insert("pod_security".into(), pod_security_name(s.pod_security));
    o.insert("owner".into(), Value::str_or_null(&s.owner));
    o.insert("state".into(), Value::str(state_name(s.state)));
    o.insert("uid".into(), Value::str(&s.uid));
    o.insert("create_time".into(), ts(s.create_time.as_ref()));
    o
}

fn site_proto(p: &Obj, name: String) -> pb::Site {
    pb::Site {
        name,
        display_name: p.string("display_name"),
        location: p.string("location"),
        provider_kind: p
            .opt_str("provider_kind")
            .and_then(pb::site::ProviderKind::from_str_name)
            .unwrap_or_default() as i32,
        labels: p.string_map("labels"),
        pod_security: p
            .opt_str("pod_security")
            .and_then(pb::PodSecurityLevel::from_str_name)
            .unwrap_or_default() as i32,
        owner: p.string("owner"),
        ..Default::default()
    }
}

// -------------------------------------------------------------------- site

/// Site ids follow the server's rule (`manifold_pki::validate_site_name`),
/// which is wider than the DNS label other ids use.
fn check_site_id(config: &Obj, diags: &mut Vec<Diag>) {
    if let Some(v) = config.opt_str("site_id")
        && manifold_pki::validate_site_name(v).is_err()
    {
        diags.push(Diag::attr(
            "site_id",
            "Invalid site_id",
            format!(
                "{v:?} is not a valid site id: use 1-253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. \"pa2-par\")."
            ),
        ));
    }
}

pub struct Site;

#[tonic::async_trait]
impl Resource for Site {
    fn type_name(&self) -> &'static str {
        "manifold_site"
    }

    fn schema(&self) -> Schema {
        let [id, name] = super::id_attrs();
        Schema::new(
            "A physical site (Kubernetes cluster) and the one-time registration token its agent uses to join. Destroying decommissions the site; its name stays taken.",
            vec![
                id,
                name,
                Attr::required(
                    "site_id",
                    Type::String,
                    "Global id, e.g. `pa2-par` or `par.edge.1`: 1-253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit. Never reusable once taken.",
                )
                .force_new(),
                Attr::optional("display_name", Type::String, "Human-readable name."),
                Attr::optional("location", Type::String, "Where it is, free text."),
                Attr::optional("provider_kind", Type::String, "CLOUD_REGION, POP or EDGE."),
                Attr::optional(
                    "labels",
                    Type::map(Type::String),
                    "Labels virtual sites select on, e.g. `{ env = \"edge\" }`.",
                ),
                Attr::optional_computed(
                    "pod_security",
                    Type::String,
                    "Pod Security Standard workloads placed here must meet: PRIVILEGED, BASELINE or RESTRICTED; default BASELINE.",
                ),
                Attr::optional(
                    "owner",
                    Type::String,
                    "`tenants/{t}` for a tenant-owned site; unset for a provider site.",
                )
                .force_new(),
                Attr::optional(
                    "registration_token_ttl_seconds",
                    Type::Number,
                    "Lifetime of the registration token minted at creation; default one hour.",
                ),
                Attr::computed(
                    "registration_token",
                    Type::String,
                    "One-time token for the site agent (`manifold-site-agent`).",
                )
                .sensitive(),
                Attr::computed("registration_token_expire_time", Type::String, "RFC 3339."),
                Attr::computed("state", Type::String, "REGISTERED, ONLINE or OFFLINE."),
                Attr::computed("uid", Type::String, "Stable unique id."),
                Attr::computed("create_time", Type::String, "RFC 3339."),
            ],
        )
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let mut d = Vec::new();
        check_site_id(config, &mut d);
        check_name(config, "owner", &["tenants"], &mut d);
        if let Some(k) = config.opt_str("provider_kind")
            && !PROVIDER_KINDS.contains(&k)
        {
            d.push(Diag::attr(
                "provider_kind",
                "Invalid provider_kind",
                format!(
                    "{k:?} is not a provider kind; use one of {}.",
                    PROVIDER_KINDS.join(", ")
                ),
            ));
        }
        if let Some(l) = config.opt_str("pod_security")
            && !POD_SECURITY_LEVELS.contains(&l)
        {
            d.push(Diag::attr(
                "pod_security",
                "Invalid pod_security",
                format!(
                    "{l:?} is not a Pod Security level; use one of {}.",
                    POD_SECURITY_LEVELS.join(", ")
                ),
            ));
        }
        d
    }

    async fn create(&self, c: &Client, p: &Obj) -> Result<Obj, CreateError> {
        let site_id = p.string("site_id");
        let s = api(
            "CreateSite",
            c.sites()
                .create_site(c.req(pb::CreateSiteRequest {
                    site_id: site_id.clone(),
                    site: Some(site_proto(p, String::new())),
                }))
                .await,
        )?;
        let mut o = site_obj(&s);
        let token = api(
            "CreateRegistrationToken",
            c.sites()
                .create_registration_token(c.req(pb::CreateRegistrationTokenRequest {
                    site: s.name.clone(),
                    ttl_seconds: p.int("registration_token_ttl_seconds").unwrap_or(0),
                }))
                .await,
        );
        match token {
            Ok(t) => {
                o.insert("registration_token".into(), Value::str(t.token));
                o.insert(
                    "registration_token_expire_time".into(),
                    ts(t.expire_time.as_ref()),
                );
                Ok(o)
            }
            Err(d) => {
                // The site exists and its id can never be used again (deleting
                // only decommissions it): keep it in the state, which Terraform
                // marks tainted, rather than decommission it and make every
                // retry fail with ALREADY_EXISTS.
                let name = s.name.clone();
                let id = name.strip_prefix("sites/").unwrap_or(&name).to_owned();
                Err(CreateError {
                    diag: Diag {
                        detail: format!(
                            "{}\n\nThe site {name} was created but has no registration token. \
                             It is kept in the state (tainted). Replacing it cannot work: a \
                             decommissioned site's id stays taken. Run `terraform untaint` on \
                             this resource and mint a token for the agent with \
                             `mfctl site registration-token {id}`, or pick a new site_id.",
                            d.detail
                        ),
                        ..d
                    },
                    partial: Some(o),
                })
            }
        }
    }

    async fn read(&self, c: &Client, s: &Obj) -> Result<Option<Obj>, Diag> {
        let site = found(
            "GetSite",
            c.sites()
                .get_site(c.req(pb::GetSiteRequest {
                    name: s.string("name"),
                }))
                .await,
        )?;
        match site {
            Some(x) if x.state == pb::site::State::Decommissioned as i32 => {
                Err(decommissioned(&x.name))
            }
            x => Ok(x.as_ref().map(site_obj)),
        }
    }

    async fn update(&self, c: &Client, prior: &Obj, p: &Obj) -> Result<Obj, Diag> {
        let m = mask(
            prior,
            p,
            &[
                "display_name",
                "location",
                "provider_kind",
                "labels",
                "pod_security",
            ],
        );
        if m.paths.is_empty() {
            return Ok(Obj::new());
        }
        let s = api(
            "UpdateSite",
            c.sites()
                .update_site(c.req(pb::UpdateSiteRequest {
                    site: Some(site_proto(p, prior.string("name"))),
                    update_mask: Some(m),
                }))
                .await,
        )?;
        Ok(site_obj(&s))
    }

    async fn delete(&self, c: &Client, s: &Obj) -> Result<(), Diag> {
        deleted(
            "DeleteSite",
            c.sites()
                .delete_site(c.req(pb::DeleteSiteRequest {
                    name: s.string("name"),
                    etag: String::new(),
                }))
                .await,
        )
    }

    fn import_state(&self, id: &str) -> Result<Obj, Diag> {
        let name = if id.contains('/') {
            id.to_owned()
        } else {
            format!("sites/{id}")
        };
        Ok(named(&name))
    }
}

/// Refreshing a site decommissioned outside Terraform. Dropping it from the
/// state would plan a create that can never succeed (the id stays taken), so
/// say so instead.
fn decommissioned(name: &str) -> Diag {
    Diag::attr(
        "site_id",
        "Site decommissioned outside Terraform",
        format!(
            "{name} was decommissioned, and a site id cannot be reused: it cannot be created \
             again. Give this resource a new site_id, or drop it from the configuration and run \
             `terraform state rm` on it."
        ),
    )
}

// ------------------------------------------------------------ virtual site

pub struct VirtualSite;

fn vs_obj(v: &pb::VirtualSite) -> Obj {
    let mut o = named(&v.name);
    if let Some((parent, id)) = split_name(&v.name, "virtualSites") {
        o.insert("parent".into(), Value::str(parent));
        o.insert("virtual_site_id".into(), Value::str(id));
    }
    o.insert("display_name".into(), Value::str_or_null(&v.display_name));
    o.insert("site_selector".into(), Value::str(&v.site_selector));
    o.insert("uid".into(), Value::str(&v.uid));
    o.insert("create_time".into(), ts(v.create_time.as_ref()));
    o
}

#[tonic::async_trait]
impl Resource for VirtualSite {
    fn type_name(&self) -> &'static str {
        "manifold_virtual_site"
    }

    fn schema(&self) -> Schema {
        let [id, name] = super::id_attrs();
        Schema::new(
            "A virtual site: a label selector over sites, in a namespace. vK8s are placed on virtual sites.",
            vec![
                id,
                name,
                Attr::required(
                    "parent",
                    Type::String,
                    "The namespace, `tenants/{t}/namespaces/{n}`.",
                )
                .force_new(),
                Attr::required(
                    "virtual_site_id",
                    Type::String,
                    "DNS label, e.g. `all-edges`.",
                )
                .force_new(),
                Attr::optional("display_name", Type::String, "Human-readable name."),
                Attr::required(
                    "site_selector",
                    Type::String,
                    "Kubernetes label selector over site labels, e.g. `env=edge`.",
                ),
                Attr::computed("uid", Type::String, "Stable unique id."),
                Attr::computed("create_time", Type::String, "RFC 3339."),
            ],
        )
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let mut d = Vec::new();
        check_name(config, "parent", &["tenants", "namespaces"], &mut d);
        check_id(config, "virtual_site_id", &mut d);
        if config
            .opt_str("site_selector")
            .is_some_and(|s| s.trim().is_empty())
        {
            d.push(Diag::attr(
                "site_selector",
                "Empty site_selector",
                "A virtual site needs a label selector, e.g. \"env=edge\".",
            ));
        }
        d
    }

    async fn create(&self, c: &Client, p: &Obj) -> Result<Obj, CreateError> {
        let v = api(
            "CreateVirtualSite",
            c.virtual_sites()
                .create_virtual_site(c.req(pb::CreateVirtualSiteRequest {
                    parent: p.string("parent"),
                    virtual_site_id: p.string("virtual_site_id"),
                    virtual_site: Some(pb::VirtualSite {
                        display_name: p.string("display_name"),
                        site_selector: p.string("site_selector"),
                        ..Default::default()
                    }),
                }))
                .await,
        )?;
        Ok(vs_obj(&v))
    }

    async fn read(&self, c: &Client, s: &Obj) -> Result<Option<Obj>, Diag> {
        let v = found(
            "GetVirtualSite",
            c.virtual_sites()
                .get_virtual_site(c.req(pb::GetVirtualSiteRequest {
                    name: s.string("name"),
                }))
                .await,
        )?;
        let mut o = v.as_ref().map(vs_obj);
        // The server may store the selector in a canonical spelling; keep the
        // user's when it is the same selector.
        if let (Some(o), Some(prior)) = (o.as_mut(), s.opt_str("site_selector"))
            && o.opt_str("site_selector").map(squash) == Some(squash(prior))
        {
            o.insert("site_selector".into(), Value::str(prior));
        }
        Ok(o)
    }

    async fn update(&self, c: &Client, prior: &Obj, p: &Obj) -> Result<Obj, Diag> {
        let m = mask(prior, p, &["display_name", "site_selector"]);
        if m.paths.is_empty() {
            return Ok(Obj::new());
        }
        let v = api(
            "UpdateVirtualSite",
            c.virtual_sites()
                .update_virtual_site(c.req(pb::UpdateVirtualSiteRequest {
                    virtual_site: Some(pb::VirtualSite {
                        name: prior.string("name"),
                        display_name: p.string("display_name"),
                        site_selector: p.string("site_selector"),
                        ..Default::default()
                    }),
                    update_mask: Some(m),
                }))
                .await,
        )?;
        Ok(vs_obj(&v))
    }

    async fn delete(&self, c: &Client, s: &Obj) -> Result<(), Diag> {
        deleted(
            "DeleteVirtualSite",
            c.virtual_sites()
                .delete_virtual_site(c.req(pb::DeleteVirtualSiteRequest {
                    name: s.string("name"),
                    etag: String::new(),
                }))
                .await,
        )
    }
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}
