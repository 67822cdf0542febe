//! The reference scenario `make run` sets up on every start, idempotently:
//! tenant `acme`, namespace `shop`, vK8s `demo`, and its kubeconfig in the
//! data directory. Everything goes through the public gRPC API with the
//! bootstrap operator token, exactly as a user would do it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use manifold_proto::{sites::v1 as sites, tenancy::v1 as tenancy, vk8s::v1 as vk8s};
use tonic::{Code, transport::Channel};

pub const TENANT: &str = "acme";
pub const NAMESPACE: &str = "shop";
pub const VK8S: &str = "demo";
pub const VIRTUAL_SITE: &str = "all-edges";

fn authed<T>(token: &str, message: T) -> Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(r)
}

/// Ok when created or already there.
fn created<T>(result: Result<tonic::Response<T>, tonic::Status>, what: &str) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        Err(s) => Err(anyhow::anyhow!("creating {what}: {}", s.message())),
    }
}

/// Creates the scenario and returns the kubeconfig path.
pub async fn ensure(channel: Channel, admin_token: &str, data_dir: &Path) -> Result<PathBuf> {
    let mut tenants = tenancy::tenant_service_client::TenantServiceClient::new(channel.clone());
    let mut namespaces =
        tenancy::namespace_service_client::NamespaceServiceClient::new(channel.clone());
    let mut clusters =
        vk8s::virtual_cluster_service_client::VirtualClusterServiceClient::new(channel.clone());
    let mut virtual_sites =
        sites::virtual_site_service_client::VirtualSiteServiceClient::new(channel.clone());
    let mut authz = tenancy::authorization_service_client::AuthorizationServiceClient::new(channel);

    created(
        tenants
            .create_tenant(authed(
                admin_token,
                tenancy::CreateTenantRequest {
                    tenant_id: TENANT.into(),
                    tenant: Some(tenancy::Tenant {
                        display_name: "Acme Corp".into(),
                        ..Default::default()
                    }),
                },
            )?)
            .await,
        "tenant acme",
    )?;
    created(
        namespaces
            .create_namespace(authed(
                admin_token,
                tenancy::CreateNamespaceRequest {
                    parent: format!("tenants/{TENANT}"),
                    namespace_id: NAMESPACE.into(),
                    namespace: None,
                },
            )?)
            .await,
        "namespace shop",
    )?;
    let parent = format!("tenants/{TENANT}/namespaces/{NAMESPACE}");
    created(
        virtual_sites
            .create_virtual_site(authed(
                admin_token,
                sites::CreateVirtualSiteRequest {
                    parent: parent.clone(),
                    virtual_site_id: VIRTUAL_SITE.into(),
                    virtual_site: Some(sites::VirtualSite {
                        display_name: "Every edge site".into(),
                        site_selector: "env=edge".into(),
                        ..Default::default()
                    }),
                },
            )?)
            .await,
        "virtual site all-edges",
    )?;
    let vk8s_name = format!("{parent}/virtualClusters/{VK8S}");
    let spans = vec![format!("{parent}/virtualSites/{VIRTUAL_SITE}")];
    let create = clusters
        .create_virtual_cluster(authed(
            admin_token,
            vk8s::CreateVirtualClusterRequest {
                parent: parent.clone(),
                virtual_cluster_id: VK8S.into(),
                virtual_cluster: Some(vk8s::VirtualCluster {
                    display_name: "Reference scenario".into(),
                    virtual_sites: spans.clone(),
                    ..Default::default()
                }),
            },
        )?)
        .await;
    match create {
        Ok(_) => {}
        Err(s) if s.code() == Code::AlreadyExists => {
            // Keep an existing demo attached to all-edges.
            clusters
                .update_virtual_cluster(authed(
                    admin_token,
                    vk8s::UpdateVirtualClusterRequest {
                        virtual_cluster: Some(vk8s::VirtualCluster {
                            name: vk8s_name.clone(),
                            virtual_sites: spans,
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["virtual_sites".into()],
                        }),
                    },
                )?)
                .await
                .context("attaching vK8s demo to all-edges")?;
        }
        Err(s) => anyhow::bail!("creating vK8s demo: {}", s.message()),
    }

    // Keep a kubeconfig whose token still works; mint one otherwise.
    let path = data_dir.join("demo.kubeconfig");
    if let Some(token) = existing_token(&path)
        && authz
            .who_am_i(authed(&token, tenancy::WhoAmIRequest {})?)
            .await
            .is_ok()
    {
        return Ok(path);
    }
    let kubeconfig = clusters
        .get_kubeconfig(authed(
            admin_token,
            vk8s::GetKubeconfigRequest {
                name: vk8s_name,
                ttl_seconds: 0,
            },
        )?)
        .await
        .context("GetKubeconfig for vK8s demo")?
        .into_inner();
    write_private(&path, &kubeconfig.kubeconfig)?;
    Ok(path)
}

/// The bearer token in a kubeconfig this module wrote.
fn existing_token(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().trim_matches('"').to_owned())
        .filter(|t| !t.is_empty())
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
