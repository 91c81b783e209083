//! The command line. Every option can also be set through the environment variable its help names.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use velochat_actors::conversation::ConversationConfig;
use velochat_actors::sender::SenderConfig;

use std::sync::Arc;

use crate::auth::AuthConfig;
use crate::clock::SystemClock;
use crate::engine::{EngineConfig, LlmConfig};
use crate::recovery::RecoveryConfig;
use crate::secret::Secret;
use crate::whatsapp::DEFAULT_GRAPH_API_BASE;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/velochat";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// velochat: WhatsApp conversations between vehicle dealerships and their customers.
#[derive(Debug, Parser)]
#[command(name = "velochat", version, about)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, env = "VELOCHAT_LOG_JSON", global = true)]
    pub log_json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if it is missing and apply the migrations.
    Migrate(DatabaseArgs),
    /// Manage dealerships.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage staff accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Run the engine: webhook, actors, senders and recovery.
    Serve(Box<ServeArgs>),
    /// Play a scripted customer conversation through a throwaway engine and print it.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL; the role must bypass row-level security (a superuser or the schema owner
    /// with BYPASSRLS).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a staff account, printing its id. The password is read from standard input
    /// (--password-stdin) or VELOCHAT_USER_PASSWORD.
    Create(crate::user_cli::UserCreateArgs),
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Register a dealership and its WhatsApp number, printing the tenant id.
    Create(TenantCreateArgs),
}

#[derive(Debug, Args)]
pub struct TenantCreateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The dealership's name, shown in automated messages.
    #[arg(long, env = "VELOCHAT_TENANT_NAME")]
    pub name: String,
    /// Meta's phone number id of the dealership's WhatsApp number.
    #[arg(long, env = "VELOCHAT_PHONE_NUMBER_ID")]
    pub phone_number_id: String,
    /// The number in international form, such as +919876500001.
    #[arg(long, env = "VELOCHAT_DISPLAY_PHONE")]
    pub display_phone: String,
    /// The Cloud API access token of the number. Stored, never logged.
    #[arg(long, env = "VELOCHAT_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Secret,
    /// IANA time zone of the dealership.
    #[arg(long, env = "VELOCHAT_TIMEZONE", default_value = "Asia/Kolkata")]
    pub timezone: String,
    /// JSON file with the dealership profile (models and prices, test rides, hours, address)
    /// that auto-replies draw on.
    #[arg(long, env = "VELOCHAT_PROFILE_FILE")]
    pub profile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Redis URL.
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,
    /// Prefix of every Redis key.
    #[arg(long, env = "VELOCHAT_REDIS_PREFIX", default_value = "velochat")]
    pub redis_prefix: String,
    /// Address the HTTP server listens on.
    #[arg(long, env = "VELOCHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The Meta app secret that signs webhooks (X-Hub-Signature-256).
    #[arg(long, env = "WHATSAPP_APP_SECRET", hide_env_values = true)]
    pub app_secret: Secret,
    /// The token Meta echoes when verifying the webhook subscription.
    #[arg(long, env = "WHATSAPP_VERIFY_TOKEN", hide_env_values = true)]
    pub verify_token: Secret,
    /// Graph API base URL, version included.
    #[arg(long, env = "WHATSAPP_API_BASE", default_value = DEFAULT_GRAPH_API_BASE)]
    pub graph_api_base: String,
    /// Timeout of one Graph API send, in seconds.
    #[arg(long, env = "WHATSAPP_API_TIMEOUT_SECS", default_value_t = 15)]
    pub graph_timeout_secs: u64,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub staff: StaffArgs,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

#[derive(Debug, Args)]
pub struct StaffArgs {
    /// Key that signs staff access tokens (HS256), at least 32 characters.
    #[arg(long, env = "VELOCHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Secret,
    /// Lifetime of a staff refresh token, in hours.
    #[arg(long, env = "VELOCHAT_REFRESH_TTL_HOURS", default_value_t = 720)]
    pub refresh_ttl_hours: i64,
    /// Seconds without staff activity after which a taken-over conversation returns to the AI.
    #[arg(long, env = "VELOCHAT_HUMAN_IDLE_SECS", default_value_t = 1800)]
    pub human_idle_secs: u64,
}

#[derive(Debug, Args)]
pub struct LlmArgs {
    /// API key of an OpenAI-compatible provider; without it the built-in offline responder replies.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<Secret>,
    /// Base URL of the OpenAI-compatible API, such as http://127.0.0.1:11434/v1 for a local server.
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// Chat model name.
    #[arg(long, env = "OPENAI_MODEL", default_value = "gpt-4o-mini")]
    pub openai_model: String,
    /// Seconds to wait for a reply before the holding message is sent instead.
    #[arg(long, env = "OPENAI_TIMEOUT_SECS", default_value_t = 20)]
    pub openai_timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct TuningArgs {
    /// Number of virtual shards; fixed for a deployment, since changing it moves conversations.
    #[arg(long, env = "VELOCHAT_SHARDS", default_value_t = 256)]
    pub shards: u32,
    /// Seconds without events after which a conversation actor stops.
    #[arg(long, env = "VELOCHAT_IDLE_SECS", default_value_t = 300)]
    pub idle_secs: u64,
    /// Milliseconds to wait for further customer messages before generating one reply to all.
    #[arg(long, env = "VELOCHAT_REPLY_DEBOUNCE_MS", default_value_t = 1500)]
    pub reply_debounce_ms: u64,
    /// Seconds between recovery sweeps.
    #[arg(long, env = "VELOCHAT_SWEEP_SECS", default_value_t = 10)]
    pub sweep_secs: u64,
    /// Seconds a send cut off mid-call waits for a status webhook before it is retried.
    #[arg(long, env = "VELOCHAT_CONFIRM_WINDOW_SECS", default_value_t = 120)]
    pub confirm_window_secs: u64,
    /// Seconds between messages to one customer (Meta's pair rate limit is about one per 6 s).
    #[arg(long, env = "VELOCHAT_PAIR_PERIOD_SECS", default_value_t = 6)]
    pub pair_period_secs: u64,
    /// Messages to one customer allowed in a short burst.
    #[arg(long, env = "VELOCHAT_PAIR_BURST", default_value_t = 5)]
    pub pair_burst: u32,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// PostgreSQL server URL; the demo creates and drops its own database there.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Redis URL; the demo uses keys under its own prefix and deletes them afterwards.
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,
}

impl ServeArgs {
    /// Builds the engine configuration these options describe.
    pub fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let tuning = &self.tuning;
        anyhow::ensure!(tuning.shards > 0, "VELOCHAT_SHARDS must be at least 1");
        let pair_burst = NonZeroU32::new(tuning.pair_burst)
            .ok_or_else(|| anyhow::anyhow!("VELOCHAT_PAIR_BURST must be at least 1"))?;
        anyhow::ensure!(
            self.staff.jwt_secret.expose().len() >= 32,
            "VELOCHAT_JWT_SECRET must be at least 32 characters"
        );
        anyhow::ensure!(
            self.staff.refresh_ttl_hours > 0,
            "VELOCHAT_REFRESH_TTL_HOURS must be at least 1"
        );
        anyhow::ensure!(
            tuning.pair_period_secs > 0,
            "VELOCHAT_PAIR_PERIOD_SECS must be at least 1"
        );
        Ok(EngineConfig {
            database_url: self.database.database_url.clone(),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            listen: self.listen,
            app_secret: self.app_secret.clone(),
            verify_token: self.verify_token.clone(),
            graph_api_base: self.graph_api_base.clone(),
            graph_timeout: Duration::from_secs(self.graph_timeout_secs),
            llm: LlmConfig {
                api_key: self
                    .llm
                    .openai_api_key
                    .clone()
                    .filter(|key| !key.expose().is_empty()),
                base_url: self
                    .llm
                    .openai_base_url
                    .clone()
                    .filter(|url| !url.is_empty()),
                model: self.llm.openai_model.clone(),
                timeout: Duration::from_secs(self.llm.openai_timeout_secs),
            },
            shards: tuning.shards,
            conversation: ConversationConfig {
                idle_timeout: Duration::from_secs(tuning.idle_secs),
                reply_debounce: Duration::from_millis(tuning.reply_debounce_ms),
            },
            sender: SenderConfig {
                pair_period: Duration::from_secs(tuning.pair_period_secs),
                pair_burst,
                ..SenderConfig::default()
            },
            recovery: RecoveryConfig {
                interval: Duration::from_secs(tuning.sweep_secs.max(1)),
                confirm_window: Duration::from_secs(tuning.confirm_window_secs),
                human_idle: Duration::from_secs(self.staff.human_idle_secs),
                ..RecoveryConfig::default()
            },
            auth: AuthConfig {
                jwt_secret: self.staff.jwt_secret.clone(),
                access_ttl: chrono::Duration::minutes(15),
                refresh_ttl: chrono::Duration::hours(self.staff.refresh_ttl_hours),
                clock: Arc::new(SystemClock),
            },
        })
    }
}
