//! `manifold_virtual_k8s` over `manifold.vk8s.v1`.

use manifold_proto::vk8s::v1 as pb;

use super::{api, check_id, check_name, deleted, found, mask, named, split_name, ts};
use crate::client::Client;
use crate::diag::Diag;
use crate::framework::{CreateError, Resource};
use crate::schema::{Attr, Schema};
use crate::value::{Obj, ObjExt, Type, Value};

pub struct VirtualK8s;

fn vc_obj(v: &pb::VirtualCluster) -> Obj {
    let mut o = named(&v.name);
    if let Some((parent, id)) = split_name(&v.name, "virtualClusters") {
        o.insert("parent".into(), Value::str(parent));
        o.insert("virtual_k8s_id".into(), Value::str(id));
    }
    o.insert("display_name".into(), Value::str_or_null(&v.display_name));
    o.insert("labels".into(), Value::string_map_or_null(&v.labels));
    o.insert(
        "virtual_sites".into(),
        Value::string_list_or_null(&v.virtual_sites),
    );
    o.insert("server_url".into(), Value::str(&v.server_url));
    o.insert("uid".into(), Value::str(&v.uid));
    o.insert("create_time".into(), ts(v.create_time.as_ref()));
    o
}

fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The API answers full names; keep the user's short ids when they name the
/// same virtual sites in the same order.
fn keep_spelling(api: &mut Obj, prior: &Obj) {
    let (a, p) = (
        api.string_list("virtual_sites"),
        prior.string_list("virtual_sites"),
    );
    if a.len() == p.len()
        && a.iter().zip(&p).all(|(x, y)| short(x) == short(y))
        && let Some(v) = prior.get("virtual_sites")
    {
        api.insert("virtual_sites".into(), v.clone());
    }
}

#[tonic::async_trait]
impl Resource for VirtualK8s {
    fn type_name(&self) -> &'static str {
        "manifold_virtual_k8s"
    }

    fn schema(&self) -> Schema {
        let [id, name] = super::id_attrs();
        Schema::new(
            "A virtual Kubernetes cluster (vK8s) in a namespace, placed on virtual sites. Read a kubeconfig for it with the `manifold_kubeconfig` data source.",
            vec![
                id,
                name,
                Attr::required(
                    "parent",
                    Type::String,
                    "The namespace, `tenants/{t}/namespaces/{n}`.",
                )
                .force_new(),
                Attr::required("virtual_k8s_id", Type::String, "DNS label, e.g. `demo`.")
                    .force_new(),
                Attr::optional("display_name", Type::String, "Human-readable name."),
                Attr::optional("labels", Type::map(Type::String), "Labels."),
                Attr::optional(
                    "virtual_sites",
                    Type::list(Type::String),
                    "Virtual sites of the same namespace (names or short ids) the workloads are replicated to.",
                ),
                Attr::computed(
                    "server_url",
                    Type::String,
                    "The Kubernetes API URL of the vK8s.",
                ),
                Attr::computed("uid", Type::String, "Stable unique id."),
                Attr::computed("create_time", Type::String, "RFC 3339."),
            ],
        )
    }

    fn validate(&self, config: &Obj) -> Vec<Diag> {
        let mut d = Vec::new();
        check_name(config, "parent", &["tenants", "namespaces"], &mut d);
        check_id(config, "virtual_k8s_id", &mut d);
        d
    }

    async fn create(&self, c: &Client, p: &Obj) -> Result<Obj, CreateError> {
        let v = api(
            "CreateVirtualCluster",
            c.clusters()
                .create_virtual_cluster(c.req(pb::CreateVirtualClusterRequest {
                    parent: p.string("parent"),
                    virtual_cluster_id: p.string("virtual_k8s_id"),
                    virtual_cluster: Some(pb::VirtualCluster {
                        display_name: p.string("display_name"),
                        labels: p.string_map("labels"),
                        virtual_sites: p.string_list("virtual_sites"),
                        ..Default::default()
                    }),
                }))
                .await,
        )?;
        Ok(vc_obj(&v))
    }

    async fn read(&self, c: &Client, s: &Obj) -> Result<Option<Obj>, Diag> {
        let v = found(
            "GetVirtualCluster",
            c.clusters()
                .get_virtual_cluster(c.req(pb::GetVirtualClusterRequest {
                    name: s.string("name"),
                }))
                .await,
        )?;
        Ok(v.as_ref().map(|v| {
            let mut o = vc_obj(v);
            keep_spelling(&mut o, s);
            o
        }))
    }

    async fn update(&self, c: &Client, prior: &Obj, p: &Obj) -> Result<Obj, Diag> {
        let m = mask(prior, p, &["display_name", "labels", "virtual_sites"]);
        if m.paths.is_empty() {
            return Ok(Obj::new());
        }
        let v = api(
            "UpdateVirtualCluster",
            c.clusters()
                .update_virtual_cluster(c.req(pb::UpdateVirtualClusterRequest {
                    virtual_cluster: Some(pb::VirtualCluster {
                        name: prior.string("name"),
                        display_name: p.string("display_name"),
                        labels: p.string_map("labels"),
                        virtual_sites: p.string_list("virtual_sites"),
                        ..Default::default()
                    }),
                    update_mask: Some(m),
                }))
                .await,
        )?;
        Ok(vc_obj(&v))
    }

    async fn delete(&self, c: &Client, s: &Obj) -> Result<(), Diag> {
        deleted(
            "DeleteVirtualCluster",
            c.clusters()
                .delete_virtual_cluster(c.req(pb::DeleteVirtualClusterRequest {
                    name: s.string("name"),
                    etag: String::new(),
                }))
                .await,
        )
    }
}
