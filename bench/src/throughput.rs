//! The throughput phase: many customers' messages posted as fast as a fixed number of
//! concurrent requests allows, then a wait until the engine has processed them all and sent
//! every reply.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;
use tokio::task::JoinSet;
use velochat::simulate::{meta_bytes, WebhookClient};

use crate::machine::{print_cpu_since, CpuSample};
use crate::stats::{per_second, seconds, Percentiles};
use crate::world::{customer, World};

/// Customer series of the throughput phase, which makes their numbers start with 918.
pub const SERIES: u8 = 8;
/// Prefix of the WhatsApp message ids of this phase, which the database breakdown selects by.
pub const WAMID_PREFIX: &str = "wamid.BENCH.T";

/// Messages the customers send, in turn: questions the offline responder replies to from the
/// dealership profile, one of them in Devanagari so that Meta's `\uXXXX` escaping is exercised.
const QUESTIONS: [&str; 7] = [
    "What is the on-road price of the Jupiter?",
    "Is there any offer on the Ntorq 125 this month?",
    "Can I book a test ride this Sunday?",
    "What are your showroom timings?",
    "Raider 125 ka on-road price kitna hai?",
    "Where is your showroom?",
    "ज्युपिटर की ऑन-रोड कीमत क्या है?",
];

/// How often the drain wait polls the database.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Returns the text of message number `index`.
pub fn question(index: u64) -> &'static str {
    QUESTIONS[(index % QUESTIONS.len() as u64) as usize]
}

/// Returns the current Unix time in seconds, as webhook timestamps carry it.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// Returns the current UTC time to the millisecond, to match the run's output with log lines.
pub fn utc_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Outcomes of the requests of one posting task.
#[derive(Default)]
struct Tally {
    accepted: u64,
    /// Responses other than 200, by status code.
    rejected: BTreeMap<u16, u64>,
    /// Requests that got no HTTP response at all.
    failed: u64,
    first_failure: Option<String>,
    /// Response time of every request that got an HTTP response, whatever its status.
    latencies: Vec<Duration>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.accepted += other.accepted;
        for (status, count) in other.rejected {
            *self.rejected.entry(status).or_default() += count;
        }
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies.extend(other.latencies);
    }
}

/// Posts `webhooks` messages from `customers` customers in turn, with `concurrency` requests
/// in flight, and prints the endpoint's responses and their times. Returns the number
/// of webhooks that were not accepted.
pub async fn run(world: &World, webhooks: u64, customers: u64, concurrency: u64) -> u64 {
    println!(
        "\nphase 1: throughput ({webhooks} webhooks from {} customers, {concurrency} in flight)",
        customers.min(webhooks)
    );
    println!("  started at:            {}", utc_now());
    let cpu = CpuSample::take();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for _ in 0..concurrency {
        tasks.spawn(post_until_done(
            world.webhook.clone(),
            Arc::clone(&next),
            webhooks,
            customers,
        ));
    }
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(tally) => total.merge(tally),
            Err(error) => eprintln!("warning: a posting task failed: {error}"),
        }
    }
    let wall = started.elapsed();

    let rejected: u64 = total.rejected.values().sum();
    println!("  accepted (200):        {}", total.accepted);
    println!(
        "  not accepted:          {} ({} other statuses {:?}, {} without a response)",
        rejected + total.failed,
        rejected,
        total.rejected,
        total.failed
    );
    if let Some(failure) = &total.first_failure {
        println!("  first request failure: {failure}");
    }
    println!("  wall time:             {}", seconds(wall));
    print_cpu_since(&cpu);
    println!(
        "  accepted per second:   {:.0}",
        per_second(total.accepted as usize, wall)
    );
    match Percentiles::of(total.latencies) {
        Some(latency) => println!("  webhook response time: {}", latency.line()),
        None => println!("  webhook response time: no responses"),
    }
    rejected + total.failed
}

async fn post_until_done(
    webhook: WebhookClient,
    next: Arc<AtomicU64>,
    webhooks: u64,
    customers: u64,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= webhooks {
            return tally;
        }
        let body = customer(SERIES, index % customers).text(
            &format!("{WAMID_PREFIX}{index:010}"),
            unix_now(),
            question(index),
        );
        // The body is built before the clock starts, so only the request is timed.
        let bytes = meta_bytes(&body);
        let posted = Instant::now();
        match webhook.post_bytes(bytes).await {
            Ok(status) => {
                tally.latencies.push(posted.elapsed());
                if status.as_u16() == 200 {
                    tally.accepted += 1;
                } else {
                    *tally.rejected.entry(status.as_u16()).or_default() += 1;
                }
            }
            Err(error) => {
                tally.failed += 1;
                if tally.first_failure.is_none() {
                    tally.first_failure = Some(format!("{error:#}"));
                }
            }
        }
    }
}

/// Work the engine has not finished, read from the database.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Backlog {
    unprocessed_events: i64,
    owed_replies: i64,
    unsent_outbox: i64,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.unprocessed_events == 0 && self.owed_replies == 0 && self.unsent_outbox == 0
    }
}

async fn backlog(pool: &PgPool) -> sqlx::Result<Backlog> {
    // The load generator connects as a role that bypasses row-level security, so these counts
    // cover every tenant.
    let (unprocessed_events, owed_replies, unsent_outbox): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM inbound_events WHERE processed_at IS NULL),
                (SELECT count(*) FROM conversations WHERE reply_owed_for IS NOT NULL),
                (SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending'))",
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        unprocessed_events,
        owed_replies,
        unsent_outbox,
    })
}

/// Waits until every stored message is processed and every reply sent, or until `deadline`,
/// and prints how long that took and how many replies reached the stand-in. Returns whether
/// the engine finished all its work in time.
pub async fn wait_for_drain(world: &World, phase_started: Instant, deadline: Instant) -> bool {
    println!(
        "\ndrain: waiting for the engine to process every phase 1 message and send every reply"
    );
    println!("  started at:            {}", utc_now());
    let cpu = CpuSample::take();
    let started = Instant::now();
    let mut last = Backlog::default();
    let drained = loop {
        match backlog(&world.pool).await {
            Ok(current) if current.is_empty() => break true,
            Ok(current) => last = current,
            Err(error) => eprintln!("warning: reading the engine's backlog failed: {error}"),
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    };
    if drained {
        println!("  drained after:         {}", seconds(started.elapsed()));
    } else {
        println!(
            "  NOT drained after {}: {} unprocessed events, {} owed replies, {} unsent outbox rows",
            seconds(started.elapsed()),
            last.unprocessed_events,
            last.owed_replies,
            last.unsent_outbox
        );
    }

    print_cpu_since(&cpu);

    let sent = world.graph.sent();
    let last_send = sent.iter().map(|send| send.received_at).max();
    println!("  replies sent:          {}", sent.len());
    if let Some(last_send) = last_send {
        let span = last_send.saturating_duration_since(phase_started);
        println!(
            "  last reply sent at:    {} after phase 1 started ({:.0} replies per second)",
            seconds(span),
            per_second(sent.len(), span)
        );
    }
    let rejected = world.graph.requests().len() - sent.len();
    if rejected > 0 {
        println!("  sends rejected by the stand-in: {rejected}");
    }
    if let Some(body) = sent.first().and_then(|send| send.body.as_deref()) {
        let first_line = body.lines().next().unwrap_or_default();
        println!("  first reply, line 1:   \"{first_line}\"");
    }
    drained
}
