//! The system under load: a throwaway database with one dealership, the Graph API stand-in and
//! an engine, all in this process and on 127.0.0.1.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use velochat::engine::{Engine, EngineConfig, LlmConfig};
use velochat::graph_stub::GraphStandIn;
use velochat::recovery::RecoveryConfig;
use velochat::secret::Secret;
use velochat::simulate::{Customer, WebhookClient};
use velochat::store::{self, tenants};
use velochat_actors::conversation::ConversationConfig;
use velochat_actors::sender::SenderConfig;

use crate::options::Options;

const APP_SECRET: &str = "bench-app-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";
const DISPLAY_PHONE: &str = "+919876500001";

/// First names and surnames that customer profile names are made of.
const FIRST_NAMES: [&str; 6] = ["Asha", "Rahul", "Priya", "Vikram", "Sneha", "Imran"];
const SURNAMES: [&str; 5] = ["Patil", "Deshmukh", "Kulkarni", "Shaikh", "Jadhav"];

/// The database and Redis key prefix of one run, which no other run uses.
pub struct Names {
    pub database_name: String,
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
}

impl Names {
    /// Derives fresh names from a random id. The database goes on the server of `server_url`.
    pub fn new(server_url: &str, redis_url: &str) -> anyhow::Result<Names> {
        let run_id = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let mut url = url::Url::parse(server_url)
            .with_context(|| format!("invalid DATABASE_URL {}", store::describe_url(server_url)))?;
        let database_name = format!("velochat_bench_{run_id}");
        url.set_path(&format!("/{database_name}"));
        Ok(Names {
            database_name,
            database_url: url.to_string(),
            redis_url: redis_url.to_string(),
            redis_prefix: format!("velochat-bench-{run_id}"),
        })
    }

    /// Drops the database and deletes the Redis keys. Failures are printed, not returned,
    /// because cleanup runs after the figures and must not hide them.
    pub async fn remove(&self) {
        match velochat::demo::drop_database(&self.database_url).await {
            Ok(()) => println!("dropped database {}", self.database_name),
            Err(error) => eprintln!(
                "warning: could not drop database {}: {error:#}. Drop it with \
                 `DROP DATABASE {} WITH (FORCE)`.",
                self.database_name, self.database_name
            ),
        }
        match velochat::demo::delete_keys(&self.redis_url, &self.redis_prefix).await {
            Ok(()) => println!("deleted Redis keys {}:*", self.redis_prefix),
            Err(error) => eprintln!(
                "warning: could not delete Redis keys {}:*: {error:#}",
                self.redis_prefix
            ),
        }
    }
}

/// A running engine with its stand-in and a connection pool for the load generator's queries.
pub struct World {
    pub engine: Engine,
    pub graph: GraphStandIn,
    /// A pool of its own, so that the load generator's queries do not take the engine's
    /// connections.
    pub pool: PgPool,
    /// One client for every webhook, so that connections are reused as Meta reuses them.
    pub webhook: WebhookClient,
    pub postgres_version: String,
}

impl World {
    /// Creates and migrates the database, registers the dealership with the requested send
    /// rate, and starts the stand-in and the engine.
    pub async fn start(names: &Names, options: &Options) -> anyhow::Result<World> {
        store::migrate(&names.database_url).await?;
        let pool = store::connect(&names.database_url).await?;
        ensure_bypasses_row_security(&pool).await?;
        tenants::create(&pool, &dealership())
            .await
            .context("registering the dealership failed")?;
        sqlx::query(
            "UPDATE whatsapp_numbers SET messages_per_second = $2 WHERE phone_number_id = $1",
        )
        .bind(PHONE_NUMBER_ID)
        .bind(options.messages_per_second)
        .execute(&pool)
        .await
        .context("setting the number's send rate failed")?;
        let postgres_version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&pool)
            .await
            .context("reading the PostgreSQL version failed")?;

        let graph = GraphStandIn::start().await?;
        let engine = Engine::start(engine_config(names, options, &graph.base_url())).await?;
        let webhook = WebhookClient::new(&format!("http://{}", engine.addr), APP_SECRET);
        Ok(World {
            engine,
            graph,
            pool,
            webhook,
            postgres_version,
        })
    }

    /// Shuts the engine down gracefully, then the stand-in, and closes the pool.
    pub async fn stop(self) {
        self.engine.shutdown().await;
        self.graph.shutdown().await;
        self.pool.close().await;
    }
}

/// Fails unless the connecting role bypasses row-level security. The engine's platform-wide
/// queries need that, and without it the backlog counts of the drain wait would see no rows
/// and report the engine drained at once.
async fn ensure_bypasses_row_security(pool: &PgPool) -> anyhow::Result<()> {
    let (role, bypasses): (String, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await
    .context("reading the role's attributes failed")?;
    anyhow::ensure!(
        bypasses,
        "the PostgreSQL role {role} does not bypass row-level security. Connect as a superuser, \
         or grant it BYPASSRLS (ALTER ROLE {role} BYPASSRLS)."
    );
    Ok(())
}

/// Builds a customer of the dealership. `series` keeps the customers of different phases
/// apart, and `index` numbers customers within one series.
pub fn customer(series: u8, index: u64) -> Customer {
    let first = FIRST_NAMES[(index % FIRST_NAMES.len() as u64) as usize];
    let surname = SURNAMES[(index / FIRST_NAMES.len() as u64 % SURNAMES.len() as u64) as usize];
    Customer {
        phone_number_id: PHONE_NUMBER_ID.to_string(),
        display_phone: DISPLAY_PHONE.to_string(),
        // Indian mobile numbers in wa_id form: 91, then ten digits.
        wa_id: format!("91{series}{index:09}"),
        name: format!("{first} {surname}"),
    }
}

fn dealership() -> tenants::NewTenant {
    tenants::NewTenant {
        name: "Sai Motors".to_string(),
        timezone: "Asia/Kolkata".to_string(),
        phone_number_id: PHONE_NUMBER_ID.to_string(),
        display_phone: DISPLAY_PHONE.to_string(),
        access_token: "bench-access-token".to_string(),
        profile: velochat::demo::demo_profile(),
    }
}

fn engine_config(names: &Names, options: &Options, graph_base: &str) -> EngineConfig {
    EngineConfig {
        database_url: names.database_url.clone(),
        redis_url: names.redis_url.clone(),
        redis_prefix: names.redis_prefix.clone(),
        listen: "127.0.0.1:0".parse().expect("a valid address"),
        app_secret: Secret::new(APP_SECRET),
        verify_token: Secret::new("bench-verify-token"),
        graph_api_base: graph_base.to_string(),
        graph_timeout: Duration::from_secs(15),
        // Without an API key the engine replies with the offline keyword responder, so the
        // figures measure the engine rather than an LLM provider.
        llm: LlmConfig {
            api_key: None,
            base_url: None,
            model: "offline".to_string(),
            timeout: Duration::from_secs(20),
        },
        shards: options.shards,
        conversation: ConversationConfig {
            idle_timeout: Duration::from_secs(300),
            reply_debounce: options.reply_debounce(),
        },
        // The per-second rate comes from the number's row, and pacing per customer and retries
        // keep the production defaults.
        sender: SenderConfig::default(),
        recovery: RecoveryConfig::default(),
        // The staff API is not exercised here; the key only has to be long enough.
        auth: velochat::auth::AuthConfig {
            jwt_secret: velochat::secret::Secret::new("bench-jwt-secret-".repeat(4)),
            access_ttl: chrono::Duration::minutes(15),
            refresh_ttl: chrono::Duration::hours(1),
            clock: std::sync::Arc::new(velochat::clock::SystemClock),
        },
    }
}
