//! Managing virtual clusters: the rules behind `VirtualClusterService`
//! (who may do what, what tenancy must confirm) over the storage functions.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use manifold_auth::{Permission, Principal};
use manifold_db::Scope;

use super::Core;
use crate::domain::{
    ClusterName, ClusterUpdate, NamespaceRef, NewCluster, VirtualCluster, kubeconfig,
};
use crate::error::{GatewayError, Target};
use crate::storage::{clusters, objects};

/// The caller of an operation: who it is and the bearer it presented (to
/// forward to tenancy).
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub token: &'a str,
}

/// The fields of a create request, already validated.
pub struct CreateCluster {
    pub parent: NamespaceRef,
    pub id: String,
    pub display_name: String,
    pub labels: std::collections::HashMap<String, String>,
    pub virtual_sites: Vec<String>,
}

/// A generated kubeconfig.
pub struct Kubeconfig {
    pub yaml: String,
    pub expire_time: Option<DateTime<Utc>>,
}

/// The longest token lifetime tenancy grants.
const MAX_KUBECONFIG_TTL: Duration = Duration::from_secs(365 * 86_400);

impl Core {
    fn not_found(name: &ClusterName) -> GatewayError {
        GatewayError::NotFound(Target::named(name.resource_name()))
    }

    /// Reads a cluster the caller may read (`needed` decides what else it
    /// must be allowed).
    async fn load_cluster(
        &self,
        caller: &Caller<'_>,
        name: &ClusterName,
        needed: Permission,
    ) -> Result<VirtualCluster, GatewayError> {
        caller
            .principal
            .check(Permission::Read, &name.resource_name())?;
        let tenant_id = self.tenancy.tenant_uid(&name.tenant, caller.token).await?;
        let vc = manifold_db::transaction!(
            self.db,
            "get_virtual_cluster",
            Scope::Tenant(tenant_id),
            GatewayError,
            |tx| { Ok(clusters::get(tx, name).await?) }
        )?
        .ok_or_else(|| Self::not_found(name))?;
        if needed > Permission::Read {
            caller.principal.check(needed, &name.parent().name())?;
        }
        Ok(vc)
    }

    pub async fn create_cluster(
        &self,
        caller: &Caller<'_>,
        req: CreateCluster,
    ) -> Result<VirtualCluster, GatewayError> {
        let name = ClusterName::new(&req.parent, &req.id);
        caller
            .principal
            .check(Permission::Admin, &req.parent.name())?;
        let tenant_id = self
            .tenancy
            .tenant_uid(&req.parent.tenant, caller.token)
            .await?;
        self.tenancy
            .check_namespace(&req.parent, caller.token)
            .await?;
        let new = NewCluster {
            name,
            tenant_id,
            display_name: req.display_name,
            labels: req.labels,
            virtual_sites: req.virtual_sites,
        };
        let vc = manifold_db::transaction!(
            self.db,
            "create_virtual_cluster",
            Scope::Tenant(tenant_id),
            GatewayError,
            |tx| { clusters::insert(tx, &new).await }
        )?;
        tracing::info!(vcluster = %vc.name, "virtual cluster created");
        Ok(vc)
    }

    pub async fn get_cluster(
        &self,
        caller: &Caller<'_>,
        name: &ClusterName,
    ) -> Result<VirtualCluster, GatewayError> {
        self.load_cluster(caller, name, Permission::Read).await
    }

    /// A page of the clusters in `parent` (or, with namespace `-`, in every
    /// namespace of the tenant the caller can read), after `after`
    /// (`namespace/name`).
    pub async fn list_clusters(
        &self,
        caller: &Caller<'_>,
        parent: &NamespaceRef,
        after: &str,
        limit: i64,
    ) -> Result<(Vec<VirtualCluster>, Option<String>), GatewayError> {
        let scope_name = if parent.is_wildcard() {
            parent.tenant_name()
        } else {
            parent.name()
        };
        caller.principal.check(Permission::Read, &scope_name)?;
        let tenant_id = self
            .tenancy
            .tenant_uid(&parent.tenant, caller.token)
            .await?;
        let namespace = (!parent.is_wildcard()).then_some(parent.namespace.as_str());
        let mut out = Vec::new();
        let mut cursor = after.to_owned();
        // Filtering by visibility may drop rows; read on until the page is full.
        loop {
            let rows = manifold_db::transaction!(
                self.db,
                "list_virtual_clusters",
                Scope::Tenant(tenant_id),
                GatewayError,
                |tx| {
                    Ok(clusters::list(tx, &parent.tenant, namespace, &cursor, limit + 1).await?)
                }
            )?;
            let exhausted = (rows.len() as i64) <= limit;
            for vc in rows {
                cursor = format!("{}/{}", vc.name.namespace, vc.name.name);
                if caller.principal.grant(&vc.name.resource_name()).is_some() {
                    out.push(vc);
                    if out.len() as i64 == limit {
                        let next = (!exhausted).then(|| cursor.clone());
                        return Ok((out, next));
                    }
                }
            }
            if exhausted {
                return Ok((out, None));
            }
        }
    }

    pub async fn update_cluster(
        &self,
        caller: &Caller<'_>,
        name: &ClusterName,
        update: ClusterUpdate,
    ) -> Result<VirtualCluster, GatewayError> {
        let current = self.load_cluster(caller, name, Permission::Admin).await?;
        if update
            .expected_version
            .is_some_and(|v| v != current.version)
        {
            return Err(clusters::aborted(name));
        }
        // A new placement may hold a stricter site: every stored workload
        // must meet it, or the change is refused (the workloads are locked
        // while the placement changes, so none slips in between).
        let policy = match (&update.virtual_sites, self.sites.get()) {
            (Some(vs), Some(sites)) if *vs != current.virtual_sites => {
                sites.strictest(vs, caller.token).await?
            }
            _ => None,
        };
        let enc = &*self.config.encryption;
        let vc = manifold_db::transaction!(
            self.db,
            "update_virtual_cluster",
            Scope::Tenant(current.tenant_id),
            GatewayError,
            |tx| {
                if let Some(p) = &policy {
                    for (key, obj) in crate::storage::objects::lock_all(tx, enc, &current).await? {
                        let Some(kind) =
                            manifold_kube_model::kinds::by_group_kind(key.group, key.kind)
                        else {
                            continue;
                        };
                        if !super::policy::needs_policy(kind) {
                            continue;
                        }
                        let v = super::policy::violations(kind, &obj, p);
                        if !v.is_empty() {
                            return Err(super::policy::placement_refused(kind, &key.name, p, &v));
                        }
                    }
                }
                clusters::update(tx, &current, &update).await
            }
        )?;
        self.clusters.invalidate(name).await;
        Ok(vc)
    }

    /// Deletes a cluster and every object in it; each object leaves a
    /// DELETED change so the sites drop it too.
    pub async fn delete_cluster(
        &self,
        caller: &Caller<'_>,
        name: &ClusterName,
        expected_version: Option<i64>,
    ) -> Result<(), GatewayError> {
        let current = self.load_cluster(caller, name, Permission::Admin).await?;
        if expected_version.is_some_and(|v| v != current.version) {
            return Err(clusters::aborted(name));
        }
        let enc = &*self.config.encryption;
        let dek = enc.data_key().await?;
        manifold_db::transaction!(
            self.db,
            "delete_virtual_cluster",
            Scope::Tenant(current.tenant_id),
            GatewayError,
            |tx| {
                match clusters::lock(tx, current.id).await? {
                    None => return Err(Self::not_found(name)),
                    Some(v) if expected_version.is_some_and(|e| e != v) => {
                        return Err(clusters::aborted(name));
                    }
                    Some(_) => {}
                }
                objects::delete_all(tx, enc, Some(&*dek), &current).await?;
                clusters::delete(tx, current.id).await?;
                Ok(())
            }
        )?;
        self.clusters.invalidate(name).await;
        self.hub.wake();
        tracing::info!(vcluster = %name, "virtual cluster deleted");
        Ok(())
    }

    /// A kubeconfig with a fresh token for the caller, limited to the
    /// cluster's namespace (or to the caller's own scope, when that is
    /// narrower). `ttl` None: the configured default. Tenancy mints the
    /// token with the caller's own token, so it never outlives that token
    /// (its expiry is capped there) and dies with it when it is revoked.
    pub async fn kubeconfig(
        &self,
        caller: &Caller<'_>,
        name: &ClusterName,
        ttl: Option<Duration>,
    ) -> Result<Kubeconfig, GatewayError> {
        let vc = self.load_cluster(caller, name, Permission::Read).await?;
        let ttl = ttl.unwrap_or(self.config.kubeconfig_ttl);
        if ttl.is_zero() || ttl > MAX_KUBECONFIG_TTL {
            return Err(GatewayError::invalid_argument(
                "ttl_seconds",
                "must be between 1 second and 365 days (0 means the default)",
            ));
        }
        let namespace = vc.name.parent().name();
        let own = caller.principal.token_scope.as_str();
        let scope = if !own.is_empty() && manifold_auth::is_under(own, &namespace) {
            own.to_owned()
        } else {
            namespace
        };
        let minted = self
            .tenancy
            .create_token(
                &caller.principal.user,
                &scope,
                &format!("kubeconfig for {}", vc.name),
                ttl,
                caller.token,
            )
            .await?;
        let yaml = kubeconfig::render(
            &vc.name,
            &self.config.public_url,
            &self.config.ca_pem,
            &caller.principal.user,
            &minted.secret,
        );
        Ok(Kubeconfig {
            yaml,
            expire_time: minted.expire_time,
        })
    }

    /// The cluster a Kubernetes API request addresses, for a caller that
    /// may read it. Cached briefly: every kubectl call resolves it.
    pub async fn resolve_cluster(
        &self,
        caller: &Caller<'_>,
        name: &ClusterName,
    ) -> Result<Arc<VirtualCluster>, GatewayError> {
        caller
            .principal
            .check(Permission::Read, &name.resource_name())?;
        if let Some(vc) = self.clusters.get(name).await {
            return Ok(vc);
        }
        let vc = Arc::new(self.load_cluster(caller, name, Permission::Read).await?);
        self.clusters.insert(name.clone(), vc.clone()).await;
        Ok(vc)
    }
}
