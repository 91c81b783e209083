//! PostgreSQL storage.
//!
//! Tenant data is read and written only inside [`tenant_tx`] transactions, which switch to the
//! `velochat_app` role and set the tenant, so row-level security filters every statement even
//! when the engine connects as a superuser. The few platform-wide queries (routing a webhook to
//! its tenant, the recovery sweep) run as the connecting role, which must bypass row-level
//! security (a superuser, or the schema owner with BYPASSRLS).

pub mod conversations;
pub mod inbound;
pub mod outbox;
pub mod staff;
pub mod tenants;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A transaction scoped to one tenant.
pub type TenantTx = Transaction<'static, Postgres>;

/// Opens a connection pool, failing fast with the address when PostgreSQL cannot be reached.
pub async fn connect(database_url: &str) -> anyhow::Result<PgPool> {
    // One direct connection first: a pool that cannot connect reports only that it timed out,
    // while this reports why (refused, unknown database, authentication).
    let options = PgConnectOptions::from_str(database_url)
        .with_context(|| "DATABASE_URL is not a valid PostgreSQL URL")?;
    let probe = tokio::time::timeout(Duration::from_secs(5), options.connect()).await;
    match probe {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
        }
        Ok(Err(error)) => {
            return Err(anyhow::Error::new(error)).with_context(|| {
                format!(
                    "could not connect to PostgreSQL at {}",
                    describe_url(database_url)
                )
            });
        }
        Err(_) => anyhow::bail!(
            "could not connect to PostgreSQL at {}: timed out",
            describe_url(database_url)
        ),
    }

    let options = PgConnectOptions::from_str(database_url)
        .with_context(|| "DATABASE_URL is not a valid PostgreSQL URL")?
        .disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .with_context(|| {
            format!(
                "could not connect to PostgreSQL at {}",
                describe_url(database_url)
            )
        })
}

/// Creates the database named in `database_url` if it does not exist, then applies migrations.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    create_database_if_missing(database_url).await?;
    let pool = connect(database_url).await?;
    MIGRATOR
        .run(&pool)
        .await
        .context("applying migrations failed")?;
    pool.close().await;
    Ok(())
}

/// Creates the database named in `database_url` through the server's `postgres` database.
pub async fn create_database_if_missing(database_url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(database_url)
        .with_context(|| "DATABASE_URL is not a valid PostgreSQL URL")?;
    let name = options.get_database().unwrap_or("postgres").to_string();
    let mut admin = options
        .database("postgres")
        .connect()
        .await
        .with_context(|| {
            format!(
                "could not connect to PostgreSQL at {}",
                describe_url(database_url)
            )
        })?;

    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(error) = admin.execute(statement.as_str()).await {
            // Another process may have created it in the meantime.
            let duplicate =
                error.as_database_error().and_then(|e| e.code()).as_deref() == Some("42P04");
            if !duplicate {
                return Err(error).with_context(|| format!("could not create database {name}"));
            }
        }
    }
    Ok(())
}

/// Begins a transaction in which only `tenant_id`'s rows are visible.
pub async fn tenant_tx(pool: &PgPool, tenant_id: Uuid) -> sqlx::Result<TenantTx> {
    let mut tx = pool.begin().await?;
    // Both settings are transaction-local, so the pooled connection returns to its own role.
    sqlx::query("SELECT set_config('role', 'velochat_app', true), set_config('velochat.tenant_id', $1, true)")
        .bind(tenant_id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Returns the URL without its password, for messages.
pub fn describe_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// Returns whether an error is a unique-constraint violation.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|e| e.code()).as_deref() == Some("23505")
}
