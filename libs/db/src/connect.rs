//! Connecting: wait for the server, create the database when it is missing,
//! apply the embedded migrations, and drop privileges to the role that
//! row-level security applies to.

use std::{str::FromStr, time::Duration};

use sqlx::{
    Connection, Executor, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::DbError;

/// The role every pooled connection switches to, so row-level security holds
/// even when the configured login is a superuser or owns the tables.
pub const APP_ROLE: &str = "manifold_app";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub max_connections: u32,
    /// How long to keep retrying while the server is not up yet.
    pub wait: Duration,
}

/// Connects (retrying while the server starts), creates the database when it
/// does not exist, applies migrations and returns a pool whose connections run
/// as [`APP_ROLE`].
pub async fn connect(opts: &ConnectOptions) -> Result<PgPool, DbError> {
    let connect_opts = PgConnectOptions::from_str(&opts.url).map_err(DbError::Other)?;
    let deadline = tokio::time::Instant::now() + opts.wait;
    let mut delay = Duration::from_millis(100);
    loop {
        match try_prepare(&connect_opts).await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < deadline && is_transient(&e) => {
                tracing::info!(error = %e, "waiting for the database");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
    PgPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _meta| Box::pin(async move { assume_app_role(conn).await }))
        .connect_with(connect_opts)
        .await
        .map_err(DbError::from)
}

fn is_transient(e: &DbError) -> bool {
    matches!(e, DbError::Unavailable(_))
        || matches!(e, DbError::Other(sqlx::Error::Io(_)))
        || matches!(e, DbError::Other(sqlx::Error::Database(d)) if d.code().as_deref() == Some("57P03"))
}

async fn try_prepare(opts: &PgConnectOptions) -> Result<(), DbError> {
    create_database(opts).await?;
    let mut conn = PgConnection::connect_with(opts).await?;
    run_migrations_on(&mut conn).await
}

/// Applies the embedded migrations on one connection (as the login role, which
/// owns the schemas).
pub async fn run_migrations_on(conn: &mut PgConnection) -> Result<(), DbError> {
    MIGRATOR.run(conn).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => DbError::from(e),
        other => DbError::Unavailable(other.to_string()),
    })
}

/// Applies migrations through a pool's connection after resetting its role.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let mut conn = pool.acquire().await?;
    conn.execute("RESET ROLE").await?;
    let result = run_migrations_on(&mut conn).await;
    assume_app_role(&mut conn).await?;
    result
}

/// Creates the database named in `opts` when it does not exist yet, through
/// the server's `postgres` maintenance database.
pub async fn create_database(opts: &PgConnectOptions) -> Result<(), DbError> {
    let Some(name) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    if name == "postgres" {
        return Ok(());
    }
    match PgConnection::connect_with(opts).await {
        Ok(conn) => {
            let _ = conn.close().await;
            return Ok(());
        }
        // 3D000: invalid_catalog_name, i.e. the database does not exist.
        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("3D000") => {}
        Err(e) => return Err(e.into()),
    }
    let mut admin = PgConnection::connect_with(&opts.clone().database("postgres")).await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .execute(&mut admin)
        .await
    {
        Ok(_) => Ok(()),
        // Another process created it first.
        Err(sqlx::Error::Database(d)) if matches!(d.code().as_deref(), Some("42P04" | "23505")) => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn assume_app_role(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let member: bool = sqlx::query_scalar(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) \
         THEN pg_has_role(current_user, $1, 'MEMBER') ELSE false END",
    )
    .bind(APP_ROLE)
    .fetch_one(&mut *conn)
    .await?;
    if member {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET ROLE {APP_ROLE}")))
            .execute(&mut *conn)
            .await?;
    } else {
        tracing::warn!(
            role = APP_ROLE,
            "login role is not a member of the application role; row-level security relies on FORCE ROW LEVEL SECURITY alone"
        );
    }
    Ok(())
}
