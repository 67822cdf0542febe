//! Data sources: `manifold_site` (one site), `manifold_sites` (by label
//! selector) and `manifold_kubeconfig` (for a vK8s; sensitive).

use manifold_proto::{sites::v1 as spb, vk8s::v1 as vpb};

use crate::client::Client;
use crate::diag::Diag;
use crate::framework::DataSource;
use crate::resources::sites_public::{site_obj, state_name};
use crate::resources::{api, found, matches_shape, ts};
use crate::schema::{Attr, Schema};
use crate::value::{Obj, ObjExt, Type, Value};

pub fn all() -> Vec<Box<dyn DataSource>> {
    vec![
        Box::new(SiteData),
        Box::new(SitesData),
        Box::new(KubeconfigData),
    ]
}

fn site_attrs() -> Vec<Attr> {
    vec![
        Attr::computed("display_name", Type::String, "Human-readable name."),
        Attr::computed("location", Type::String, "Where it is."),
        Attr::computed("provider_kind", Type::String, "CLOUD_REGION, POP or EDGE."),
        Attr::computed("labels", Type::map(Type::String), "Labels."),
        Attr::computed(
            "pod_security",
            Type::String,
            "Pod Security level: PRIVILEGED, BASELINE or RESTRICTED.",
        ),
        Attr::computed(
            "owner",
            Type::String,
            "`tenants/{t}` for a tenant-owned site.",
        ),
        Attr::computed(
            "state",
            Type::String,
            "REGISTERED, ONLINE, OFFLINE or DECOMMISSIONED.",
        ),
        Attr::computed("uid", Type::String, "Stable unique id."),
        Attr::computed("create_time", Type::String, "RFC 3339."),
    ]
}

// -------------------------------------------------------------- one site

pub struct SiteData;

#[tonic::async_trait]
impl DataSource for SiteData {
    fn type_name(&self) -> &'static str {
        "manifold_site"
    }

    fn schema(&self) -> Schema {
        let mut attrs = vec![
            Attr::optional_computed("name", Type::String, "`sites/{site}`; set this or site_id."),
            Attr::optional_computed(
                "site_id",
                Type::String,
                "The site id, e.g. `pa2-par`; set this or name.",
            ),
            Attr::computed("id", Type::String, "Same as name."),
        ];
        attrs.extend(site_attrs());
        Schema::new("One site, by name or id.", attrs)
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let (n, i) = (config.val("name"), config.val("site_id"));
        if n.is_null() && i.is_null() {
            return vec![Diag::attr(
                "site_id",
                "Missing site",
                "Set site_id (e.g. \"pa2-par\") or name (e.g. \"sites/pa2-par\").",
            )];
        }
        if !n.is_null() && !i.is_null() {
            return vec![Diag::attr(
                "name",
                "Conflicting arguments",
                "Set name or site_id, not both.",
            )];
        }
        Vec::new()
    }

    async fn read(&self, c: &Client, config: &Obj) -> Result<Obj, Diag> {
        let name = config
            .opt_str("name")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sites/{}", config.string("site_id")));
        let s = found(
            "GetSite",
            c.sites()
                .get_site(c.req(spb::GetSiteRequest { name: name.clone() }))
                .await,
        )?
        .ok_or_else(|| {
            Diag::error(
                "Site not found",
                format!("{name} does not exist or is not visible to this token."),
            )
        })?;
        let mut o = site_obj(&s);
        // A data source reports what is there: no labels is `{}`.
        o.insert("labels".into(), Value::string_map(&s.labels));
        Ok(o)
    }
}

// ------------------------------------------------------ sites by selector

pub struct SitesData;

fn site_object_type() -> Type {
    Type::Object(vec![
        ("name", Type::String),
        ("site_id", Type::String),
        ("display_name", Type::String),
        ("location", Type::String),
        ("provider_kind", Type::String),
        ("labels", Type::map(Type::String)),
        ("owner", Type::String),
        ("state", Type::String),
    ])
}

#[tonic::async_trait]
impl DataSource for SitesData {
    fn type_name(&self) -> &'static str {
        "manifold_sites"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "The sites a label selector matches (all visible sites without one), ordered by name.",
            vec![
                Attr::optional(
                    "label_selector",
                    Type::String,
                    "Kubernetes label selector, e.g. `env=edge,region in (eu,us)`.",
                ),
                Attr::computed("id", Type::String, "The selector used."),
                Attr::computed(
                    "names",
                    Type::list(Type::String),
                    "Site names, `sites/{site}`.",
                ),
                Attr::computed("sites", Type::list(site_object_type()), "The sites."),
            ],
        )
    }

    async fn read(&self, c: &Client, config: &Obj) -> Result<Obj, Diag> {
        let selector = config.string("label_selector");
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let r = api(
                "ListSites",
                c.sites()
                    .list_sites(c.req(spb::ListSitesRequest {
                        page_size: 500,
                        page_token: page_token.clone(),
                        label_selector: selector.clone(),
                        show_decommissioned: false,
                    }))
                    .await,
            )?;
            all.extend(r.sites);
            if r.next_page_token.is_empty() {
                break;
            }
            page_token = r.next_page_token;
        }
        let mut o = Obj::new();
        o.insert("id".into(), Value::str(&selector));
        o.insert(
            "names".into(),
            Value::List(all.iter().map(|s| Value::str(&s.name)).collect()),
        );
        o.insert(
            "sites".into(),
            Value::List(
                all.iter()
                    .map(|s| {
                        let full = site_obj(s);
                        let mut e: Obj = [
                            "name",
                            "site_id",
                            "display_name",
                            "location",
                            "provider_kind",
                            "labels",
                            "owner",
                        ]
                        .iter()
                        .map(|k| ((*k).to_owned(), full.val(k).clone()))
                        .collect();
                        e.insert("labels".into(), Value::string_map(&s.labels));
                        e.insert("state".into(), Value::str(state_name(s.state)));
                        Value::Map(e)
                    })
                    .collect(),
            ),
        );
        Ok(o)
    }
}

// -------------------------------------------------------------- kubeconfig

pub struct KubeconfigData;

#[tonic::async_trait]
impl DataSource for KubeconfigData {
    fn type_name(&self) -> &'static str {
        "manifold_kubeconfig"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "A kubeconfig for a vK8s with a fresh namespace-scoped token of the provider's user. Every read (each plan, refresh and apply) mints a new token, valid until ttl_seconds runs out: keep it short.",
            vec![
                Attr::required(
                    "virtual_k8s",
                    Type::String,
                    "The vK8s, `tenants/{t}/namespaces/{n}/virtualClusters/{v}` (a `manifold_virtual_k8s`'s `name`).",
                ),
                Attr::optional(
                    "ttl_seconds",
                    Type::Number,
                    "Token lifetime in seconds; default 30 days. Every read mints another token, so prefer e.g. 3600.",
                ),
                Attr::computed("id", Type::String, "Same as virtual_k8s."),
                Attr::computed("kubeconfig", Type::String, "The kubeconfig YAML.").sensitive(),
                Attr::computed(
                    "expire_time",
                    Type::String,
                    "When the token expires, RFC 3339.",
                ),
            ],
        )
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let mut d = Vec::new();
        if let Some(v) = config.opt_str("virtual_k8s")
            && !matches_shape(v, &["tenants", "namespaces", "virtualClusters"])
        {
            d.push(Diag::attr(
                "virtual_k8s",
                "Invalid virtual_k8s",
                format!("{v:?} is not a vK8s name: use tenants/{{t}}/namespaces/{{n}}/virtualClusters/{{v}}."),
            ));
        }
        if config.int("ttl_seconds").is_some_and(|t| t <= 0) {
            d.push(Diag::attr(
                "ttl_seconds",
                "Invalid ttl_seconds",
                "The lifetime must be positive.",
            ));
        }
        d
    }

    async fn read(&self, c: &Client, config: &Obj) -> Result<Obj, Diag> {
        let name = config.string("virtual_k8s");
        let k = api(
            "GetKubeconfig",
            c.clusters()
                .get_kubeconfig(c.req(vpb::GetKubeconfigRequest {
                    name: name.clone(),
                    ttl_seconds: config.int("ttl_seconds").unwrap_or(0),
                }))
                .await,
        )?;
        let mut o = Obj::new();
        o.insert("id".into(), Value::str(name));
        o.insert("kubeconfig".into(), Value::str(k.kubeconfig));
        o.insert("expire_time".into(), ts(k.expire_time.as_ref()));
        Ok(o)
    }
}
