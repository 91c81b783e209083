//! Test harness: a fresh database and Redis prefix per test, the engine on port 0 in a runtime of
//! its own (so a test can kill it abruptly), and the Graph API and LLM stand-ins.

pub mod mock_llm;

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

use velochat::auth::AuthConfig;
use velochat::clock::OffsetClock;
use velochat::engine::{Engine, EngineConfig, LlmConfig};
use velochat::graph_stub::{GraphStandIn, RecordedSend};
use velochat::recovery::RecoveryConfig;
use velochat::secret::Secret;
use velochat::simulate::{Customer, WebhookClient};
use velochat::store::{self, tenants};
use velochat_actors::conversation::ConversationConfig;
use velochat_actors::sender::SenderConfig;

pub use mock_llm::MockLlm;

pub const APP_SECRET: &str = "test-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const JWT_SECRET: &str = "test-jwt-secret-of-at-least-32-characters";
const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Options a test may change before the engine starts.
pub struct Options {
    pub use_llm: bool,
    pub llm_timeout: Duration,
    pub reply_debounce: Duration,
    /// Staff inactivity after which a taken-over conversation returns to the AI.
    pub human_idle: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            use_llm: true,
            llm_timeout: Duration::from_secs(10),
            reply_debounce: Duration::from_millis(150),
            human_idle: Duration::from_secs(1800),
        }
    }
}

/// One test's world.
pub struct TestEnv {
    pub database_url: String,
    pub redis_prefix: String,
    pub pool: PgPool,
    pub graph: GraphStandIn,
    pub llm: MockLlm,
    pub tenant_id: Uuid,
    pub phone_number_id: String,
    pub options: Options,
    /// The clock staff tokens are checked against; tests advance it.
    pub clock: OffsetClock,
    engine: Option<EngineThread>,
}

impl TestEnv {
    /// Creates the database, the tenant and the stand-ins, and starts the engine.
    pub async fn start() -> TestEnv {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestEnv {
        // Logs show with --nocapture and RUST_LOG, for example RUST_LOG=velochat=debug.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let suffix = Uuid::new_v4().simple().to_string();
        let database_url = format!("{SERVER_URL}/velochat_test_{}", &suffix[..12]);
        store::migrate(&database_url)
            .await
            .expect("migrations apply");
        let pool = store::connect(&database_url)
            .await
            .expect("database reachable");
        let phone_number_id = "106540352242922".to_string();
        let tenant_id = create_tenant(&pool, "Sai Motors", &phone_number_id, "+919876500001").await;

        let mut env = TestEnv {
            database_url,
            redis_prefix: format!("velochat-test-{}", &suffix[..12]),
            pool,
            graph: GraphStandIn::start().await.expect("graph stand-in starts"),
            llm: MockLlm::start().await.expect("mock LLM starts"),
            tenant_id,
            phone_number_id,
            options,
            clock: OffsetClock::default(),
            engine: None,
        };
        env.llm
            .set_reply("The Jupiter ZX is Rs 87,500 on-road in Aurangabad.");
        env.start_engine().await;
        env
    }

    /// Starts (or restarts) the engine against the same database and Redis prefix.
    pub async fn start_engine(&mut self) {
        assert!(self.engine.is_none(), "the engine is already running");
        self.engine = Some(EngineThread::start(self.config()).await);
    }

    /// Stops the engine abruptly, as a crash would: every task is dropped mid-flight.
    pub fn kill_engine(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.kill();
        }
    }

    pub fn engine_url(&self) -> String {
        format!(
            "http://{}",
            self.engine.as_ref().expect("engine running").addr
        )
    }

    pub fn webhook(&self) -> WebhookClient {
        WebhookClient::new(&self.engine_url(), APP_SECRET)
    }

    pub fn customer(&self, wa_id: &str) -> Customer {
        Customer {
            phone_number_id: self.phone_number_id.clone(),
            display_phone: "+919876500001".to_string(),
            wa_id: wa_id.to_string(),
            name: "Asha Patil".to_string(),
        }
    }

    /// Posts a signed webhook and asserts the 200.
    pub async fn post_ok(&self, body: &Value) {
        let status = self.webhook().post(body).await.expect("webhook request");
        assert_eq!(status.as_u16(), 200, "webhook answer");
    }

    fn config(&self) -> EngineConfig {
        EngineConfig {
            database_url: self.database_url.clone(),
            redis_url: REDIS_URL.to_string(),
            redis_prefix: self.redis_prefix.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            app_secret: Secret::new(APP_SECRET),
            verify_token: Secret::new(VERIFY_TOKEN),
            graph_api_base: self.graph.base_url(),
            graph_timeout: Duration::from_secs(5),
            llm: LlmConfig {
                api_key: self.options.use_llm.then(|| Secret::new("test-llm-key")),
                base_url: Some(self.llm.base_url()),
                model: "test-model".to_string(),
                timeout: self.options.llm_timeout,
            },
            shards: 4,
            conversation: ConversationConfig {
                idle_timeout: Duration::from_secs(30),
                reply_debounce: self.options.reply_debounce,
            },
            sender: SenderConfig {
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_secs(1),
                ..SenderConfig::default()
            },
            recovery: RecoveryConfig {
                interval: Duration::from_millis(500),
                event_grace: Duration::from_secs(2),
                confirm_window: Duration::from_secs(3),
                human_idle: self.options.human_idle,
            },
            auth: AuthConfig {
                jwt_secret: Secret::new(JWT_SECRET),
                access_ttl: chrono::Duration::minutes(15),
                refresh_ttl: chrono::Duration::hours(12),
                clock: Arc::new(self.clock.clone()),
            },
        }
    }

    /// Waits until `check` holds, polling; panics with `what` after `timeout`.
    pub async fn eventually<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for exactly `count` accepted sends, then makes sure no more arrive for `settle`.
    pub async fn expect_sent(&self, count: usize, settle: Duration) -> Vec<RecordedSend> {
        let sent = self
            .graph
            .wait_for_sent(count, Duration::from_secs(20))
            .await;
        assert_eq!(
            sent.len(),
            count,
            "sends at the Graph API stand-in: {:#?}",
            bodies(&sent)
        );
        tokio::time::sleep(settle).await;
        let sent = self.graph.sent();
        assert_eq!(
            sent.len(),
            count,
            "sends after settling: {:#?}",
            bodies(&sent)
        );
        sent
    }

    /// Returns a count from the database, run as the platform role.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }

    /// Stops the engine and drops the database and Redis keys.
    pub async fn finish(mut self) {
        if let Some(engine) = self.engine.take() {
            engine.stop();
        }
        self.pool.close().await;
        let _ = velochat::demo::drop_database(&self.database_url).await;
        let _ = velochat::demo::delete_keys(REDIS_URL, &self.redis_prefix).await;
    }
}

pub fn bodies(sent: &[RecordedSend]) -> Vec<String> {
    sent.iter()
        .map(|s| s.body.clone().unwrap_or_default())
        .collect()
}

/// Registers a tenant and returns its id.
pub async fn create_tenant(
    pool: &PgPool,
    name: &str,
    phone_number_id: &str,
    display: &str,
) -> Uuid {
    let tenant = tenants::NewTenant {
        name: name.to_string(),
        timezone: "Asia/Kolkata".to_string(),
        phone_number_id: phone_number_id.to_string(),
        display_phone: display.to_string(),
        access_token: format!("token-{phone_number_id}"),
        profile: serde_json::json!({ "dealership": name }),
    };
    tenants::create(pool, &tenant)
        .await
        .expect("tenant created")
}

/// Sets a number's send rate.
pub async fn set_rate(pool: &PgPool, phone_number_id: &str, per_second: i32) {
    sqlx::query("UPDATE whatsapp_numbers SET messages_per_second = $2 WHERE phone_number_id = $1")
        .bind(phone_number_id)
        .bind(per_second)
        .execute(pool)
        .await
        .unwrap();
}

/// An engine running on a runtime of its own thread.
struct EngineThread {
    addr: std::net::SocketAddr,
    control: Option<std::sync::mpsc::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EngineThread {
    async fn start(config: EngineConfig) -> EngineThread {
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let (control_tx, control_rx) = std::sync::mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("engine runtime");
            let engine = match runtime.block_on(Engine::start(config)) {
                Ok(engine) => engine,
                Err(error) => {
                    let _ = addr_tx.send(Err(format!("{error:#}")));
                    return;
                }
            };
            let _ = addr_tx.send(Ok(engine.addr));
            // `true` requests a graceful stop, `false` (or a dropped sender) for a crash.
            let graceful = control_rx.recv().unwrap_or(false);
            if graceful {
                runtime.block_on(engine.shutdown());
            } else {
                drop(engine);
            }
            runtime.shutdown_background();
        });
        let addr = addr_rx
            .await
            .expect("engine thread")
            .expect("engine starts");
        EngineThread {
            addr,
            control: Some(control_tx),
            thread: Some(thread),
        }
    }

    fn kill(mut self) {
        self.finish(false);
    }

    fn stop(mut self) {
        self.finish(true);
    }

    fn finish(&mut self, graceful: bool) {
        if let Some(control) = self.control.take() {
            let _ = control.send(graceful);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// Returns a Meta timestamp `offset` seconds after a base an hour ago, inside the 24-hour
/// service window.
pub fn ts(offset: i64) -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| chrono::Utc::now().timestamp() - 3600) + offset
}
