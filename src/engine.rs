//! Wiring: starts the store, dispatch, actors, recovery sweep and HTTP server as one engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, ActorRef};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use velochat_actors::conversation::ConversationConfig;
use velochat_actors::sender::SenderConfig;
use velochat_actors::supervisor::{Supervisor, SupervisorArgs, SupervisorMsg};

use crate::auth::AuthConfig;
use crate::backend::ServiceBackend;
use crate::dispatch::Dispatcher;
use crate::http::{self, AppState};
use crate::llm::Responder;
use crate::recovery::{self, RecoveryConfig};
use crate::secret::Secret;
use crate::store;
use crate::whatsapp::GraphClient;

/// How long shutdown waits for actors to stop and for sends in flight to be recorded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Waits until no outbox row is mid-send, so that Meta's responses are recorded before the pool
/// closes; a row left sending would wait for the confirm window after the next start.
async fn wait_for_sends_in_flight(pool: &sqlx::PgPool) {
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while tokio::time::Instant::now() < deadline {
        let sending: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'sending'")
                .fetch_one(pool)
                .await;
        if !matches!(sending, Ok(count) if count > 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    warn!("shutting down with sends still in flight; the recovery sweep resolves them");
}

/// The LLM provider settings; without an API key the offline responder answers.
#[derive(Clone, Debug)]
pub struct LlmConfig {
    pub api_key: Option<Secret>,
    pub base_url: Option<String>,
    pub model: String,
    pub timeout: Duration,
}

/// Everything an engine needs to run.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub database_url: String,
    pub redis_url: String,
    /// Prefix of every Redis key, so that several deployments can share one Redis.
    pub redis_prefix: String,
    pub listen: SocketAddr,
    pub app_secret: Secret,
    pub verify_token: Secret,
    pub graph_api_base: String,
    pub graph_timeout: Duration,
    pub llm: LlmConfig,
    /// Number of virtual shards. Fixed for a deployment: changing it moves conversations.
    pub shards: u32,
    pub conversation: ConversationConfig,
    pub sender: SenderConfig,
    pub recovery: RecoveryConfig,
    /// Token settings of the staff API.
    pub auth: AuthConfig,
}

/// A running engine.
pub struct Engine {
    /// The address the HTTP server listens on.
    pub addr: SocketAddr,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    supervisor: ActorRef<SupervisorMsg>,
    pool: sqlx::PgPool,
}

impl Engine {
    /// Connects to PostgreSQL and Redis, applies migrations, and starts every part.
    pub async fn start(config: EngineConfig) -> anyhow::Result<Engine> {
        anyhow::ensure!(config.shards > 0, "the shard count must be at least 1");
        let pool = store::connect(&config.database_url).await?;
        store::MIGRATOR
            .run(&pool)
            .await
            .context("applying migrations failed")?;
        let dispatcher =
            Dispatcher::connect(&config.redis_url, &config.redis_prefix, config.shards).await?;

        let responder = Responder::from_settings(
            config.llm.api_key.as_ref().map(Secret::expose),
            config.llm.base_url.as_deref(),
            &config.llm.model,
            config.llm.timeout,
        )?;
        let backend = Arc::new(ServiceBackend {
            pool: pool.clone(),
            dispatcher: dispatcher.clone(),
            responder: Arc::new(responder),
            graph: GraphClient::new(&config.graph_api_base, config.graph_timeout)?,
            sender_defaults: config.sender.clone(),
        });
        let (supervisor, _) = Actor::spawn(
            None,
            Supervisor::<ServiceBackend>::default(),
            SupervisorArgs {
                backend,
                conversation: config.conversation.clone(),
            },
        )
        .await
        .context("could not start the supervisor")?;

        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        dispatcher.spawn_readers(supervisor.clone(), stop.clone(), &mut tasks);
        tasks.spawn(recovery::run(
            pool.clone(),
            supervisor.clone(),
            config.recovery.clone(),
            stop.clone(),
        ));

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("could not listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let app = http::router(AppState {
            pool: pool.clone(),
            dispatcher,
            app_secret: Arc::new(config.app_secret.clone()),
            verify_token: Arc::new(config.verify_token.clone()),
            auth: Arc::new(config.auth.clone()),
            supervisor: supervisor.clone(),
            stop: stop.clone(),
        });
        let server_stop = stop.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { server_stop.cancelled().await })
                .await;
            if let Err(error) = served {
                error!(%error, "HTTP server failed");
            }
        });

        info!(%addr, shards = config.shards, "velochat engine started");
        Ok(Engine {
            addr,
            stop,
            tasks,
            supervisor,
            pool,
        })
    }

    /// Returns the engine's connection pool.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    /// Returns the supervisor, for routing staff actions.
    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        &self.supervisor
    }

    /// Stops accepting webhooks, stops the readers and actors, and waits for them.
    ///
    /// Work in progress is not lost: unacknowledged stream entries, unprocessed events and
    /// queued outbox rows are picked up by the next start.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("HTTP connections or readers did not finish in time; closing them");
            self.tasks.abort_all();
        }
        if let Err(error) = self
            .supervisor
            .stop_and_wait(Some("shutdown".to_string()), Some(SHUTDOWN_GRACE))
            .await
        {
            warn!(%error, "actors did not stop in time");
        }
        wait_for_sends_in_flight(&self.pool).await;
        self.pool.close().await;
        info!("velochat engine stopped");
    }
}
