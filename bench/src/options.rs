//! Command-line options. Each one can also be set through the environment variable its help
//! names.

use std::time::Duration;

use clap::Parser;

/// Drives an in-process velochat engine with signed WhatsApp webhooks and reports how fast it
/// accepts them and how long replies take to reach the Graph API stand-in.
///
/// The run creates a throwaway database and Redis key prefix, and removes both when it ends.
/// All traffic stays on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "webhook-load", version, about)]
pub struct Options {
    /// PostgreSQL server URL. The run creates its own database `velochat_bench_<random>` on this
    /// server and drops it afterwards, so any database name in the URL is ignored.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub database_url: String,

    /// Redis URL. The run uses keys under its own prefix and deletes them afterwards.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Number of webhooks posted in the throughput phase, one text message each.
    #[arg(long, env = "VELOCHAT_BENCH_WEBHOOKS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhooks: u64,

    /// Number of distinct customers the throughput phase's messages come from, in turn.
    #[arg(long, env = "VELOCHAT_BENCH_CUSTOMERS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub customers: u64,

    /// Number of webhook requests the throughput phase keeps in flight at once.
    #[arg(long, env = "VELOCHAT_BENCH_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,

    /// Number of new customers in the latency phase, each sending one message. 0 skips the
    /// phase.
    #[arg(long, env = "VELOCHAT_BENCH_LATENCY_CUSTOMERS", default_value_t = 200)]
    pub latency_customers: u64,

    /// Webhooks per second posted in the latency phase, at a fixed pace whatever the engine's
    /// response time.
    #[arg(long, env = "VELOCHAT_BENCH_LATENCY_RATE", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub latency_rate: u64,

    /// Seconds the latency phase waits for missing replies after its last webhook.
    #[arg(long, env = "VELOCHAT_BENCH_REPLY_WAIT_SECS", default_value_t = 30)]
    pub reply_wait_secs: u64,

    /// Seconds to wait after the throughput phase for the engine to process every message and
    /// send every reply, before the latency phase starts.
    #[arg(long, env = "VELOCHAT_BENCH_DRAIN_SECS", default_value_t = 120)]
    pub drain_secs: u64,

    /// Milliseconds the engine waits for further messages from a customer before it replies.
    /// This wait is part of every webhook-to-send latency.
    #[arg(long, env = "VELOCHAT_REPLY_DEBOUNCE_MS", default_value_t = 50)]
    pub reply_debounce_ms: u64,

    /// Number of virtual shards (Redis streams) of the engine.
    #[arg(long, env = "VELOCHAT_SHARDS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: u32,

    /// Send rate of the business number in messages per second, written to
    /// `whatsapp_numbers.messages_per_second` (the schema allows 1 to 1000).
    #[arg(long, env = "VELOCHAT_BENCH_MESSAGES_PER_SECOND", default_value_t = 1000,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub messages_per_second: i32,

    /// Seconds after which the whole run stops, cleans up and exits with an error.
    #[arg(long, env = "VELOCHAT_BENCH_TIMEOUT_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

impl Options {
    pub fn reply_debounce(&self) -> Duration {
        Duration::from_millis(self.reply_debounce_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}
