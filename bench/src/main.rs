//! `webhook-load`: a load generator that runs a velochat engine in-process against a throwaway
//! database, posts signed WhatsApp webhooks to it, and measures how fast webhooks are accepted
//! and how long replies take to reach the Graph API stand-in.
//!
//! The engine, the stand-in and the load generator share one Tokio runtime and so the same
//! CPUs. The figures are those of the whole system on one machine, not of the engine alone.

mod breakdown;
mod latency;
mod log_count;
mod machine;
mod options;
mod stats;
mod throughput;
mod world;

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::log_count::LogCounts;
use crate::options::Options;
use crate::stats::millis;
use crate::world::{Names, World};

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    let logs = init_tracing();
    match run(&options, &logs).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error at the level RUST_LOG sets (warnings by default), and counts every
/// warning and error whatever that level is, for the summary at the end.
fn init_tracing() -> LogCounts {
    let counts = LogCounts::default();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter),
        )
        .with(counts.clone().with_filter(LevelFilter::WARN))
        .init();
    counts
}

async fn run(options: &Options, logs: &LogCounts) -> anyhow::Result<()> {
    println!("velochat webhook-load");
    machine::print_facts();
    let names = Names::new(&options.database_url, &options.redis_url)?;
    let deadline = Instant::now() + options.timeout();

    let outcome = drive(&names, options, deadline).await;

    // The summary comes before the cleanup, so that it counts only what the run logged.
    logs.print_summary();
    println!("load average at the end: {}", machine::load_average());
    println!();
    names.remove().await;
    outcome
}

/// Starts the engine, runs the phases and stops the engine, also when the phases time out or
/// are interrupted.
async fn drive(names: &Names, options: &Options, deadline: Instant) -> anyhow::Result<()> {
    let world = bounded(deadline, options, World::start(names, options)).await??;
    print_setup(names, options, &world);

    let phases = bounded(deadline, options, run_phases(&world, options, deadline)).await;
    println!();
    breakdown::print_outbox(&world.pool).await;
    world.stop().await;
    let problems = phases?;
    anyhow::ensure!(
        problems.is_empty(),
        "the engine did not handle all the load: {}",
        problems.join("; ")
    );
    Ok(())
}

fn print_setup(names: &Names, options: &Options, world: &World) {
    println!("setup");
    println!("  PostgreSQL:            {}", world.postgres_version);
    println!("  database:              {}", names.database_name);
    println!("  Redis key prefix:      {}", names.redis_prefix);
    println!("  engine listening on:   {}", world.engine.addr);
    println!("  shards:                {}", options.shards);
    println!(
        "  reply debounce:        {}",
        millis(options.reply_debounce())
    );
    println!(
        "  send rate of number:   {} messages per second",
        options.messages_per_second
    );
    println!("  responder:             offline (no LLM)");
    println!("  run timeout:           {} s", options.timeout_secs);
}

/// Runs both phases and returns the engine's shortfalls, which are empty when it accepted every
/// webhook and replied to every message in time.
async fn run_phases(world: &World, options: &Options, deadline: Instant) -> Vec<String> {
    let mut problems = Vec::new();
    let started = Instant::now();
    let not_accepted = throughput::run(
        world,
        options.webhooks,
        options.customers,
        options.concurrency,
    )
    .await;
    if not_accepted > 0 {
        problems.push(format!("{not_accepted} phase 1 webhooks were not accepted"));
    }
    let drain_deadline = (Instant::now() + Duration::from_secs(options.drain_secs)).min(deadline);
    if !throughput::wait_for_drain(world, started, drain_deadline).await {
        problems.push(format!(
            "the engine did not process every phase 1 message and send every reply within {} s",
            options.drain_secs
        ));
    }
    breakdown::print_stages(&world.pool, throughput::WAMID_PREFIX).await;

    if options.latency_customers == 0 {
        println!("\nphase 2: skipped (--latency-customers 0)");
        return problems;
    }
    let pace = latency::Pace {
        customers: options.latency_customers,
        per_second: options.latency_rate,
        reply_wait: Duration::from_secs(options.reply_wait_secs),
        reply_debounce: options.reply_debounce(),
    };
    let (not_accepted, without_reply) = latency::run(world, &pace, deadline).await;
    if not_accepted > 0 {
        problems.push(format!("{not_accepted} phase 2 webhooks were not accepted"));
    }
    if without_reply > 0 {
        problems.push(format!(
            "{without_reply} phase 2 messages got no reply within {} s",
            options.reply_wait_secs
        ));
    }
    breakdown::print_stages(&world.pool, latency::WAMID_PREFIX).await;
    problems
}

/// Runs `work` until it finishes, `deadline` passes or Ctrl-C is pressed, whichever comes first.
async fn bounded<T>(
    deadline: Instant,
    options: &Options,
    work: impl Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::select! {
        finished = tokio::time::timeout_at(deadline.into(), work) => finished.map_err(|_| {
            anyhow::anyhow!(
                "the run timed out after {} s; raise --timeout-secs or lower the load",
                options.timeout_secs
            )
        }),
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    }
}
