//! `velochat demo`: a scripted customer conversation through a throwaway engine.
//!
//! It creates its own database and Redis prefix, registers a demo dealership, starts the engine
//! with the local Graph API stand-in, posts signed webhooks to the real HTTP endpoint, prints what
//! the engine sent and when, and removes everything it created.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor};
use velochat_actors::conversation::ConversationConfig;
use velochat_actors::sender::SenderConfig;

use crate::auth::AuthConfig;
use crate::cli::DemoArgs;
use crate::clock::SystemClock;
use crate::engine::{Engine, EngineConfig, LlmConfig};
use crate::graph_stub::GraphStandIn;
use crate::recovery::RecoveryConfig;
use crate::secret::Secret;
use crate::simulate::{Customer, WebhookClient};
use crate::store::{self, tenants};

const APP_SECRET: &str = "demo-app-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";
const DISPLAY_PHONE: &str = "+919876500001";
/// How long the demo waits after a message that should get no reply: longer than the reply
/// debounce plus a send.
const SETTLE: Duration = Duration::from_millis(1500);

/// One scripted customer message and what the engine should do with it.
struct Step {
    /// Reuses the previous message's WhatsApp id, as Meta does when it redelivers.
    redelivery: bool,
    text: &'static str,
    expected_sends: usize,
    note: &'static str,
}

const SCRIPT: &[Step] = &[
    Step {
        redelivery: false,
        text: "Namaste",
        expected_sends: 1,
        note: "greeting",
    },
    Step {
        redelivery: false,
        text: "What is the on-road price of the Jupiter?",
        expected_sends: 1,
        note: "price question",
    },
    Step {
        redelivery: false,
        text: "Can I book a test ride this Sunday?",
        expected_sends: 1,
        note: "test-ride question",
    },
    Step {
        redelivery: true,
        text: "Can I book a test ride this Sunday?",
        expected_sends: 0,
        note: "the same message delivered twice",
    },
    Step {
        redelivery: false,
        text: "STOP",
        expected_sends: 1,
        note: "opt-out",
    },
    Step {
        redelivery: false,
        text: "Is the offer still on?",
        expected_sends: 0,
        note: "after STOP",
    },
    Step {
        redelivery: false,
        text: "START",
        expected_sends: 1,
        note: "opt-in",
    },
];

/// Runs the demo and prints its transcript.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let database_url = throwaway_database_url(&args.database_url)?;
    check_postgres(&args.database_url).await?;
    check_redis(&args.redis_url).await?;

    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let prefix = format!("velochat-demo-{suffix}");
    let database_url = database_url.replace("{suffix}", suffix);
    let result = play(&database_url, &args.redis_url, &prefix).await;

    cleanup(&database_url, &args.redis_url, &prefix).await;
    result
}

async fn play(database_url: &str, redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    store::migrate(database_url).await?;
    let pool = store::connect(database_url).await?;
    tenants::create(&pool, &demo_tenant()).await?;
    pool.close().await;

    let graph = GraphStandIn::start().await?;
    let engine = Engine::start(demo_config(
        database_url,
        redis_url,
        prefix,
        &graph.base_url(),
    ))
    .await?;
    let webhook = WebhookClient::new(&format!("http://{}", engine.addr), APP_SECRET);
    let customer = Customer {
        phone_number_id: PHONE_NUMBER_ID.to_string(),
        display_phone: DISPLAY_PHONE.to_string(),
        wa_id: "919812300045".to_string(),
        name: "Asha Patil".to_string(),
    };

    println!("velochat demo: Asha writes to Sai Motors on WhatsApp\n");
    let started = Instant::now();
    let mut expected = 0;
    let mut wamid = String::new();
    let mut timestamp = chrono::Utc::now().timestamp();
    for (index, step) in SCRIPT.iter().enumerate() {
        if !step.redelivery {
            wamid = format!("wamid.DEMO{index:04}");
            timestamp += 1;
        }
        let body = customer.text(&wamid, timestamp, step.text);
        let posted = Instant::now();
        let status = webhook
            .post(&body)
            .await
            .context("posting the webhook failed")?;
        println!(
            "{:>7}  Asha     > {}   [{}; webhook answered {} in {} ms]",
            elapsed(started),
            step.text,
            step.note,
            status.as_u16(),
            posted.elapsed().as_millis()
        );

        expected += step.expected_sends;
        let sent = if step.expected_sends == 0 {
            // Give the engine time to do the wrong thing, so that "nothing sent" means something.
            tokio::time::sleep(SETTLE).await;
            graph.sent()
        } else {
            graph.wait_for_sent(expected, Duration::from_secs(10)).await
        };
        let newly_sent = sent.len().saturating_sub(expected - step.expected_sends);
        for send in sent.iter().skip(expected - step.expected_sends) {
            let at = send.received_at.duration_since(started);
            let after = send.received_at.duration_since(posted);
            println!(
                "{:>6.1}s  Sai Motors > {}   [sent {} ms after the webhook]",
                at.as_secs_f64(),
                send.body
                    .as_deref()
                    .unwrap_or("")
                    .replace('\n', "\n                      "),
                after.as_millis()
            );
        }
        if newly_sent == 0 {
            println!("{:>7}  (nothing sent)", "");
        }
        anyhow::ensure!(
            sent.len() == expected,
            "expected {expected} messages sent by now, the Graph API stand-in received {}",
            sent.len()
        );
    }

    println!(
        "\n{} messages sent through the Graph API stand-in, each marked as automated.",
        expected
    );
    engine.shutdown().await;
    Ok(())
}

fn elapsed(started: Instant) -> String {
    format!("{:.1}s", started.elapsed().as_secs_f64())
}

fn demo_tenant() -> tenants::NewTenant {
    tenants::NewTenant {
        name: "Sai Motors".to_string(),
        timezone: "Asia/Kolkata".to_string(),
        phone_number_id: PHONE_NUMBER_ID.to_string(),
        display_phone: DISPLAY_PHONE.to_string(),
        access_token: "demo-access-token".to_string(),
        profile: demo_profile(),
    }
}

/// The profile of the demo dealership, Sai Motors of Aurangabad.
pub fn demo_profile() -> serde_json::Value {
    json!({
            "dealership": "Sai Motors",
            "city": "Aurangabad",
            "greeting": "Namaste! Welcome to Sai Motors, your TVS dealer in Aurangabad.",
            "models": [
                { "name": "Jupiter ZX", "on_road_price": "Rs 87,500" },
                { "name": "Ntorq 125", "on_road_price": "Rs 1,02,300" },
                { "name": "Raider 125", "on_road_price": "Rs 1,05,900" }
            ],
            "test_ride": "Free test rides every day at the showroom; please bring your driving licence.",
                        "hours": "Mon-Sat 10:00-19:30, Sun 10:00-14:00",
            "address": "Plot 12, Jalna Road, Aurangabad"
    })
}

fn demo_config(
    database_url: &str,
    redis_url: &str,
    prefix: &str,
    graph_base: &str,
) -> EngineConfig {
    EngineConfig {
        database_url: database_url.to_string(),
        redis_url: redis_url.to_string(),
        redis_prefix: prefix.to_string(),
        listen: "127.0.0.1:0".parse().expect("a valid address"),
        app_secret: Secret::new(APP_SECRET),
        verify_token: Secret::new("demo-verify-token"),
        graph_api_base: graph_base.to_string(),
        graph_timeout: Duration::from_secs(5),
        llm: LlmConfig {
            api_key: None,
            base_url: None,
            model: "offline".to_string(),
            timeout: Duration::from_secs(5),
        },
        shards: 16,
        conversation: ConversationConfig {
            idle_timeout: Duration::from_secs(60),
            reply_debounce: Duration::from_millis(300),
        },
        sender: SenderConfig::default(),
        recovery: RecoveryConfig::default(),
        auth: AuthConfig {
            jwt_secret: Secret::new(
                uuid::Uuid::new_v4().to_string() + &uuid::Uuid::new_v4().to_string(),
            ),
            access_ttl: chrono::Duration::minutes(15),
            refresh_ttl: chrono::Duration::hours(1),
            clock: std::sync::Arc::new(SystemClock),
        },
    }
}

/// Returns the URL of a new database beside the one named in `database_url`, with `{suffix}`
/// to fill.
fn throwaway_database_url(database_url: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(database_url).context("DATABASE_URL is not a valid URL")?;
    url.set_path("/velochat_demo_{suffix}");
    Ok(url.to_string().replace("%7B", "{").replace("%7D", "}"))
}

async fn check_postgres(database_url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(database_url)?.database("postgres");
    let connected = tokio::time::timeout(Duration::from_secs(5), options.connect()).await;
    match connected {
        Ok(Ok(mut connection)) => {
            connection.execute("SELECT 1").await?;
            Ok(())
        }
        Ok(Err(error)) => Err(postgres_hint(database_url, &error.to_string())),
        Err(_) => Err(postgres_hint(database_url, "timed out")),
    }
}

fn postgres_hint(database_url: &str, error: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "PostgreSQL is not reachable at {} ({error}). Start it, for example with \
         `pg_ctlcluster 15 main start` or `docker compose up -d postgres`, or point DATABASE_URL \
         at a running server.",
        store::describe_url(database_url)
    )
}

async fn check_redis(redis_url: &str) -> anyhow::Result<()> {
    let hint = |error: &str| {
        anyhow::anyhow!(
            "Redis is not reachable at {} ({error}). Start it, for example with \
             `redis-server --daemonize yes` or `docker compose up -d redis`, or point REDIS_URL at \
             a running server.",
            store::describe_url(redis_url)
        )
    };
    let client = redis::Client::open(redis_url).map_err(|e| hint(&e.to_string()))?;
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await;
    let mut connection = match connected {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return Err(hint(&error.to_string())),
        Err(_) => return Err(hint("timed out")),
    };
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .map_err(|e| hint(&e.to_string()))?;
    Ok(())
}

/// Drops the demo database and deletes the demo's Redis keys; failures are reported, not fatal.
async fn cleanup(database_url: &str, redis_url: &str, prefix: &str) {
    if let Err(error) = drop_database(database_url).await {
        eprintln!("warning: could not drop the demo database: {error:#}");
    }
    if let Err(error) = delete_keys(redis_url, prefix).await {
        eprintln!("warning: could not delete the demo's Redis keys: {error:#}");
    }
}

/// Drops the database named in `database_url`, disconnecting its sessions.
pub async fn drop_database(database_url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(database_url)?;
    let name = options
        .get_database()
        .context("no database name")?
        .to_string();
    let mut admin = options.database("postgres").connect().await?;
    let statement = format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        name.replace('"', "\"\"")
    );
    admin.execute(statement.as_str()).await?;
    Ok(())
}

/// Deletes every Redis key under `prefix`.
pub async fn delete_keys(redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut connection)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut connection)
            .await?;
    }
    Ok(())
}
