//! The service core shared by every registry gRPC service: storage, the
//! tenancy client, the CA, and the rules about who sees and manages what.
//! Handlers call these functions with domain types only.

pub mod cleanup;
pub mod registration;
pub mod sites;
pub mod virtual_sites;
pub mod watch;

use std::{sync::Arc, time::Duration};

use manifold_auth::{Permission, Principal};
use manifold_db::{Db, Scope};
use manifold_pki::Ca;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::SiteError;
use crate::store::Visible;
use crate::tenancy::TenancyClient;

/// Tunables of the registry.
#[derive(Debug, Clone)]
pub struct SiteRegistryOptions {
    /// Lifetime of agent certificates (registration and renewal).
    pub certificate_validity: Duration,
    /// Registration token lifetime when the request names none.
    pub default_token_ttl: Duration,
    /// The longest registration token lifetime granted.
    pub max_token_ttl: Duration,
    /// Placement watchers recompute at least this often, whatever the
    /// notifications said (a lost notification costs at most this much delay).
    pub placement_recheck: Duration,
    /// How long a tenant name → uid answer of tenancy is reused.
    pub tenant_cache_ttl: Duration,
    /// How long a bearer token resolved through tenancy (status reports by
    /// operators) is reused; bounds how long a revoked token keeps working.
    pub auth_cache_ttl: Duration,
    /// How long a renewed agent certificate stays valid after its renewal
    /// (the stream it carries switches to the new one meanwhile).
    pub renewal_grace: Duration,
    /// Ends open placement watches, so a graceful shutdown can drain.
    pub shutdown: CancellationToken,
}

impl Default for SiteRegistryOptions {
    fn default() -> Self {
        Self {
            certificate_validity: Duration::from_secs(30 * 24 * 3600),
            default_token_ttl: Duration::from_secs(3600),
            max_token_ttl: Duration::from_secs(7 * 24 * 3600),
            placement_recheck: Duration::from_secs(30),
            tenant_cache_ttl: Duration::from_secs(60),
            auth_cache_ttl: Duration::from_secs(5),
            renewal_grace: Duration::from_secs(300),
            shutdown: CancellationToken::new(),
        }
    }
}

/// An authenticated caller of the bearer-token services.
#[derive(Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    /// The caller's bearer secret, forwarded to tenancy.
    pub token: String,
}

/// Everything the handlers share.
pub struct Core {
    pub db: Db,
    pub tenancy: TenancyClient,
    pub ca: Option<Arc<Ca>>,
    pub ca_pem: String,
    pub options: SiteRegistryOptions,
    pub hub: watch::Hub,
}

impl Core {
    pub fn new(
        db: Db,
        tenancy: TenancyClient,
        ca: Option<Arc<Ca>>,
        ca_pem: String,
        options: SiteRegistryOptions,
    ) -> Arc<Self> {
        Arc::new(Self {
            hub: watch::Hub::new(db.clone(), options.shutdown.clone()),
            db,
            tenancy,
            ca,
            ca_pem,
            options,
        })
    }

    /// Which sites `caller` may read, and the narrowest transaction scope that
    /// covers them: system-admins with an unscoped token read every site;
    /// anyone else the provider sites plus the private sites of the tenants
    /// they can read.
    pub async fn visibility(&self, caller: &Caller) -> Result<(Visible, Scope), SiteError> {
        let p = &caller.principal;
        if p.grant("") == Some(Permission::Admin) {
            return Ok((Visible::All, Scope::System));
        }
        // A scoped token (an operator's too) sees the tenants its scope
        // and bindings reach, never every tenant.
        let tenants = p.readable_tenants();
        let mut uids = Vec::with_capacity(tenants.len());
        for t in &tenants {
            match self.tenancy.tenant_uid(t, &caller.token).await {
                Ok(id) => uids.push(id),
                // Gone (or hidden) since the token was issued: nothing to see there.
                Err(SiteError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let scope = match uids.as_slice() {
            // A scope naming no tenant: row-level security shows provider sites only.
            [] => Scope::Tenant(Uuid::nil()),
            [one] => Scope::Tenant(*one),
            _ => Scope::System,
        };
        Ok((Visible::Tenants(uids), scope))
    }
}
