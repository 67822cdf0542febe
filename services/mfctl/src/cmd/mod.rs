//! The command tree: one module per resource group, each exposing
//! `Args` (clap) and `async fn run(Args, &mut Ctx)`. Adding a group is one new
//! file plus one line in the `commands!` list below.

use crate::{Ctx, error::Result};

macro_rules! commands {
    ($( $(#[$meta:meta])* $variant:ident => $module:ident, )*) => {
        $( pub mod $module; )*

        #[derive(clap::Subcommand)]
        pub enum Command {
            $( $(#[$meta])* $variant($module::Args), )*
        }

        impl Command {
            pub async fn run(self, ctx: &mut Ctx) -> Result<()> {
                match self {
                    $( Command::$variant(args) => $module::run(args, ctx).await, )*
                }
            }

            /// The group's command name (`virtual-site`), for error hints.
            pub fn group(&self) -> String {
                match self {
                    $( Command::$variant(_) => stringify!($module).replace('_', "-"), )*
                }
            }
        }
    };
}

commands! {
    /// Save an endpoint, CA file and token as a context (checked with WhoAmI).
    Login => login,
    /// List, switch and edit contexts.
    Context => context,
    /// Show who the current token belongs to.
    Whoami => whoami,
    /// Tenants (system-admin).
    Tenant => tenant,
    /// Namespaces of a tenant.
    #[command(alias = "ns")]
    Namespace => namespace,
    /// Users (system users, or a tenant's users with --tenant).
    User => user,
    /// Role bindings: who holds which role where.
    #[command(alias = "rb")]
    RoleBinding => role_binding,
    /// API tokens of a user (the secret is shown once, at creation).
    Token => token,
    /// Physical sites, their registration tokens and their live status.
    Site => site,
    /// Virtual sites: label selectors over sites, per namespace.
    #[command(alias = "vs")]
    VirtualSite => virtual_site,
    /// Virtual Kubernetes clusters and their kubeconfigs.
    Vk8s => vk8s,
    /// The audit log: who changed what, when, and how it ended.
    Audit => audit,
    /// Print a shell completion script (e.g. `mfctl completion bash > /etc/bash_completion.d/mfctl`).
    Completion => completion,
}

/// Helpers shared by the resource modules.
pub(crate) mod util {
    use std::collections::HashMap;

    /// Applies `--label k=v` (add or replace) and `--remove-label k`.
    pub fn edit_labels(
        labels: &mut HashMap<String, String>,
        set: &[(String, String)],
        remove: &[String],
    ) {
        for k in remove {
            labels.remove(k);
        }
        for (k, v) in set {
            labels.insert(k.clone(), v.clone());
        }
    }

    /// Follows `next_page_token` from the first page until the last, or until
    /// `limit` items are in; `page(token)` fetches one page as (items, next token).
    pub async fn collect_pages<T, Fut>(
        limit: Option<usize>,
        mut page: impl FnMut(String) -> Fut,
    ) -> crate::error::Result<Vec<T>>
    where
        Fut: std::future::Future<Output = crate::error::Result<(Vec<T>, String)>>,
    {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let (items, next) = page(page_token).await?;
            all.extend(items);
            page_token = next;
            if page_token.is_empty() || limit.is_some_and(|l| all.len() >= l) {
                break;
            }
        }
        all.truncate(limit.unwrap_or(usize::MAX));
        Ok(all)
    }

    /// A field mask of the given paths.
    pub fn mask(paths: Vec<&str>) -> Option<prost_types::FieldMask> {
        Some(prost_types::FieldMask {
            paths: paths.into_iter().map(str::to_owned).collect(),
        })
    }

    /// Fails with a usage error when an update would change nothing.
    pub fn require_changes(paths: &[&str], flags: &str) -> crate::error::Result<()> {
        if paths.is_empty() {
            return Err(crate::error::Error::usage(
                "nothing to update",
                Some(format!("pass at least one of {flags}")),
            ));
        }
        Ok(())
    }

    pub const PAGE_SIZE: i32 = 200;
}
