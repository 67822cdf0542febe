//! The one way services reach Postgres: connecting (waiting for the server and
//! creating the database when missing), embedded migrations, and `Db::tx`, the
//! transaction helper that scopes row-level security to a tenant, retries
//! serialization failures and records per-operation latency.
#![forbid(unsafe_code)]

mod connect;
pub mod deletions;
mod error;
mod metrics;

use std::time::Instant;

use sqlx::{PgPool, Postgres, Transaction};

pub use connect::{ConnectOptions, connect, create_database, migrate, run_migrations_on};
pub use error::{DbError, is_unique_violation};
pub use metrics::DbMetrics;
pub use sqlx;

/// A transaction handed to storage functions; the helper commits it.
pub type Tx = Transaction<'static, Postgres>;

/// Which tenant's rows a transaction may see. Enforced by Postgres row-level
/// security policies that read the `manifold.tenant` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Rows of every tenant: system-level operations and authentication.
    System,
    /// Rows of one tenant only.
    Tenant(uuid::Uuid),
}

impl Scope {
    fn setting(&self) -> String {
        match self {
            Scope::System => "*".to_owned(),
            Scope::Tenant(id) => id.to_string(),
        }
    }
}

const MAX_ATTEMPTS: u32 = 5;

/// Limits the rest of the current transaction on `conn` to `scope`'s rows
/// (row-level security reads this setting). Used by [`Db::begin`], and to
/// narrow or widen a transaction once it has found the tenant it works on.
pub async fn set_scope(conn: &mut sqlx::PgConnection, scope: Scope) -> Result<(), DbError> {
    sqlx::query("SELECT set_config('manifold.tenant', $1, true)")
        .bind(scope.setting())
        .execute(conn)
        .await?;
    Ok(())
}

/// Owner of a service's pool.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    metrics: DbMetrics,
}

impl Db {
    pub fn new(pool: PgPool, metrics: DbMetrics) -> Self {
        Self { pool, metrics }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Opens a transaction limited to `scope`'s rows. Prefer [`transaction!`],
    /// which also commits, retries and records latency.
    pub async fn begin(&self, scope: Scope) -> Result<Tx, DbError> {
        let mut tx = self.pool.begin().await?;
        set_scope(&mut tx, scope).await?;
        Ok(tx)
    }

    #[doc(hidden)]
    pub fn observe(&self, op: &'static str, ok: bool, started: Instant) {
        self.metrics.observe(op, ok, started.elapsed());
    }
}

/// Errors that may carry a retryable storage failure.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}

impl Retryable for DbError {
    fn is_retryable(&self) -> bool {
        DbError::is_retryable(self)
    }
}

#[doc(hidden)]
pub const MAX_TX_ATTEMPTS: u32 = MAX_ATTEMPTS;

/// Runs a block in a transaction scoped to a tenant (or the system) and
/// commits it: `transaction!(db, "op", scope, ErrorType, |tx| { ... })` where the block
/// evaluates to `Result<T, E>` with `E: From<DbError> + Retryable`.
/// Serialization failures and deadlocks run the block again (all of its
/// effects were rolled back); the latency of `op` is recorded.
///
/// A macro rather than a closure-taking method: the block borrows freely from
/// the caller and the resulting future stays `Send` for tonic handlers.
#[macro_export]
macro_rules! transaction {
    ($db:expr, $op:expr, $scope:expr, $err:ty, |$tx:ident| $body:block) => {{
        let __db: &$crate::Db = &$db;
        let __started = ::std::time::Instant::now();
        let mut __attempt: u32 = 0;
        loop {
            __attempt += 1;
            let __result: ::std::result::Result<_, $err> = match __db.begin($scope).await {
                Err(e) => Err(e.into()),
                Ok(mut __t) => {
                    let $tx = &mut __t;
                    let __body: ::std::result::Result<_, $err> = async { $body }.await;
                    match __body {
                        Ok(v) => match __t.commit().await {
                            Ok(()) => Ok(v),
                            Err(e) => Err($crate::DbError::from(e).into()),
                        },
                        Err(e) => Err(e),
                    }
                }
            };
            match __result {
                Err(ref e)
                    if $crate::Retryable::is_retryable(e)
                        && __attempt < $crate::MAX_TX_ATTEMPTS =>
                {
                    ::tokio::time::sleep(::std::time::Duration::from_millis(
                        5 * u64::from(__attempt),
                    ))
                    .await;
                }
                other => {
                    __db.observe($op, other.is_ok(), __started);
                    break other;
                }
            }
        }
    }};
}
