//! The latency phase: new customers each send one message at a fixed pace, and each reply is
//! timed from the webhook post to the Graph API stand-in receiving the send.
//!
//! One message per customer keeps Meta's pair limit out of the figure. The engine paces sends
//! to one customer to about one per 6 seconds after a burst of 5, so a later reply to a
//! customer of the throughput phase would wait for pacing, not for the engine.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use velochat::simulate::meta_bytes;

use crate::machine::{print_cpu_since, CpuSample};
use crate::stats::{millis, seconds, Percentiles};
use crate::throughput::{question, unix_now, utc_now};
use crate::world::{customer, World};

/// Customer series of the latency phase, which makes their numbers start with 917.
pub const SERIES: u8 = 7;
/// Prefix of the WhatsApp message ids of this phase, which the database breakdown selects by.
pub const WAMID_PREFIX: &str = "wamid.BENCH.L";

/// One posted webhook of this phase.
struct Post {
    wa_id: String,
    posted: Instant,
    /// The HTTP status, or the error when the request got no response.
    status: Result<u16, String>,
    response_time: Duration,
}

/// Settings of the latency phase.
pub struct Pace {
    pub customers: u64,
    pub per_second: u64,
    pub reply_wait: Duration,
    pub reply_debounce: Duration,
}

/// Posts one message from each of `pace.customers` new customers at `pace.per_second`, waits
/// for the replies until `pace.reply_wait` after the last response or `deadline`, and prints
/// the webhook-to-send latency. Returns how many posts were not accepted and how many
/// accepted ones got no reply.
pub async fn run(world: &World, pace: &Pace, deadline: Instant) -> (u64, u64) {
    println!(
        "\nphase 2: webhook to send ({} new customers, one message each, {} per second)",
        pace.customers, pace.per_second
    );
    println!("  started at:            {}", utc_now());
    println!(
        "  reply debounce:        {} (included in every latency below)",
        millis(pace.reply_debounce)
    );

    let cpu = CpuSample::take();
    let posts = post_paced(world, pace).await;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for post in &posts {
        let key = match &post.status {
            Ok(code) => code.to_string(),
            Err(error) => format!("no response ({error})"),
        };
        *statuses.entry(key).or_default() += 1;
    }
    println!("  webhook responses:     {statuses:?}");
    let response_times = posts.iter().map(|post| post.response_time).collect();
    if let Some(responses) = Percentiles::of(response_times) {
        println!("  webhook response time: {}", responses.line());
    }

    let expected: HashMap<&str, Instant> = posts
        .iter()
        .filter(|post| post.status == Ok(200))
        .map(|post| (post.wa_id.as_str(), post.posted))
        .collect();
    let reply_deadline = (Instant::now() + pace.reply_wait).min(deadline);
    let (first_sends, sends_per_customer) =
        wait_for_replies(world, &expected, reply_deadline).await;

    print_cpu_since(&cpu);

    let latencies: Vec<Duration> = first_sends
        .iter()
        .map(|(wa_id, received_at)| received_at.saturating_duration_since(expected[wa_id]))
        .collect();
    println!(
        "  replies arrived:       {} of {} accepted webhooks",
        latencies.len(),
        expected.len()
    );
    let repeated = sends_per_customer
        .values()
        .filter(|&&count| count > 1)
        .count();
    if repeated > 0 {
        println!("  customers with more than one send: {repeated}");
    }
    let without_reply = (expected.len() - latencies.len()) as u64;
    match Percentiles::of(latencies) {
        Some(latency) => println!("  webhook to send:       {}", latency.line()),
        None => println!("  webhook to send:       no replies"),
    }
    let not_accepted = (posts.len() - expected.len()) as u64;
    (not_accepted, without_reply)
}

/// Posts one webhook per customer on a fixed schedule. Each post runs in its own task, so a
/// slow response does not delay the next post.
async fn post_paced(world: &World, pace: &Pace) -> Vec<Post> {
    let interval = Duration::from_secs_f64(1.0 / pace.per_second as f64);
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..pace.customers {
        tokio::time::sleep_until(started + interval.mul_f64(index as f64)).await;
        let webhook = world.webhook.clone();
        let customer = customer(SERIES, index);
        let body = customer.text(
            &format!("{WAMID_PREFIX}{index:010}"),
            unix_now(),
            question(index),
        );
        tasks.spawn(async move {
            let bytes = meta_bytes(&body);
            let posted = Instant::now();
            let status = webhook
                .post_bytes(bytes)
                .await
                .map(|status| status.as_u16())
                .map_err(|error| format!("{error:#}"));
            Post {
                wa_id: customer.wa_id,
                posted,
                status,
                response_time: posted.elapsed(),
            }
        });
    }
    let posting_time = started.elapsed();
    let mut posts = Vec::with_capacity(pace.customers as usize);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(post) => posts.push(post),
            Err(error) => eprintln!("warning: a posting task failed: {error}"),
        }
    }
    println!("  posting time:          {}", seconds(posting_time));
    posts
}

/// Waits until every customer in `expected` has a send at the stand-in, or until `deadline`.
/// Returns when each customer's first send arrived and how many sends each customer got.
async fn wait_for_replies<'a>(
    world: &World,
    expected: &HashMap<&'a str, Instant>,
    deadline: Instant,
) -> (HashMap<&'a str, Instant>, HashMap<&'a str, u64>) {
    loop {
        let sent = world.graph.sent();
        let mut first_sends: HashMap<&str, Instant> = HashMap::new();
        let mut sends_per_customer: HashMap<&str, u64> = HashMap::new();
        for send in &sent {
            let Some((&wa_id, _)) = expected.get_key_value(send.to.as_str()) else {
                continue;
            };
            *sends_per_customer.entry(wa_id).or_default() += 1;
            first_sends
                .entry(wa_id)
                .and_modify(|first| *first = (*first).min(send.received_at))
                .or_insert(send.received_at);
        }
        let now = Instant::now();
        if first_sends.len() == expected.len() || now >= deadline {
            return (first_sends, sends_per_customer);
        }
        // Wakes up at the next recorded send or at the deadline, whichever comes first.
        world
            .graph
            .wait_for_sent(sent.len() + 1, deadline - now)
            .await;
    }
}
