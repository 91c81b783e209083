use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{backoff_delay, Deliver, DeliveryOutcome, Sender, SenderArgs, SenderConfig, SenderMsg};

/// Maximum time a test waits for the deliver calls it expects.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    outbox_id: Uuid,
    recipient: String,
}

/// Deliver fake that records each call and returns the outcomes scripted per outbox id,
/// then `Sent` once the script runs out.
#[derive(Default)]
struct FakeDeliver {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    recipients: HashMap<Uuid, String>,
    scripts: HashMap<Uuid, VecDeque<DeliveryOutcome>>,
    panicking_ids: HashSet<Uuid>,
    /// Calls to a gated recipient wait for one permit each.
    gates: HashMap<String, Arc<Semaphore>>,
    calls: Vec<Call>,
    in_flight: usize,
    max_in_flight: usize,
    in_flight_by_recipient: HashMap<String, usize>,
    overlapping_recipients: Vec<String>,
}

impl FakeDeliver {
    /// Registers a new outbox id for `recipient` and returns it.
    fn add(&self, recipient: &str, outcomes: &[DeliveryOutcome]) -> Uuid {
        let outbox_id = Uuid::new_v4();
        let mut state = self.state.lock().unwrap();
        state.recipients.insert(outbox_id, recipient.to_owned());
        state
            .scripts
            .insert(outbox_id, outcomes.iter().copied().collect());
        outbox_id
    }

    fn add_panicking(&self, recipient: &str) -> Uuid {
        let outbox_id = self.add(recipient, &[]);
        self.state.lock().unwrap().panicking_ids.insert(outbox_id);
        outbox_id
    }

    /// Makes calls for `recipient` wait until the returned semaphore gets permits.
    fn gate(&self, recipient: &str) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        self.state
            .lock()
            .unwrap()
            .gates
            .insert(recipient.to_owned(), Arc::clone(&gate));
        gate
    }

    fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    fn calls_to(&self, recipient: &str) -> Vec<Uuid> {
        self.calls()
            .into_iter()
            .filter(|call| call.recipient == recipient)
            .map(|call| call.outbox_id)
            .collect()
    }

    fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    fn overlapping_recipients(&self) -> Vec<String> {
        self.state.lock().unwrap().overlapping_recipients.clone()
    }

    /// Waits until at least `count` calls were recorded and returns all calls.
    async fn wait_for_calls(&self, count: usize) -> Vec<Call> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let calls = self.calls();
            if calls.len() >= count {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} deliver calls within {CALL_TIMEOUT:?}, got {}: {calls:?}",
                calls.len()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Deliver for FakeDeliver {
    async fn deliver(&self, outbox_id: Uuid) -> DeliveryOutcome {
        let (recipient, gate, outcome, panics) = {
            let mut state = self.state.lock().unwrap();
            let recipient = state
                .recipients
                .get(&outbox_id)
                .cloned()
                .expect("the test registers every outbox id");
            state.calls.push(Call {
                at: Instant::now(),
                outbox_id,
                recipient: recipient.clone(),
            });
            state.in_flight += 1;
            state.max_in_flight = state.max_in_flight.max(state.in_flight);
            let recipient_in_flight = state
                .in_flight_by_recipient
                .entry(recipient.clone())
                .or_default();
            *recipient_in_flight += 1;
            if *recipient_in_flight > 1 {
                state.overlapping_recipients.push(recipient.clone());
            }
            let outcome = state
                .scripts
                .get_mut(&outbox_id)
                .and_then(VecDeque::pop_front)
                .unwrap_or(DeliveryOutcome::Sent);
            let gate = state.gates.get(&recipient).cloned();
            let panics = state.panicking_ids.contains(&outbox_id);
            (recipient, gate, outcome, panics)
        };

        if let Some(gate) = gate {
            gate.acquire().await.expect("gate is never closed").forget();
        }
        // Keeps the call in flight long enough for an overlapping call to show up.
        tokio::time::sleep(Duration::from_millis(1)).await;

        {
            let mut state = self.state.lock().unwrap();
            state.in_flight -= 1;
            *state.in_flight_by_recipient.get_mut(&recipient).unwrap() -= 1;
        }
        assert!(!panics, "deliver panicked as scripted for {outbox_id}");
        outcome
    }
}

/// Config with limits small enough for tests: pacing and backoff take milliseconds.
fn test_config() -> SenderConfig {
    SenderConfig {
        per_second: NonZeroU32::new(1000).unwrap(),
        pair_period: Duration::from_millis(10),
        pair_burst: NonZeroU32::new(5).unwrap(),
        max_in_flight: 32,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        max_attempts: 8,
    }
}

async fn spawn_sender(
    fake: &Arc<FakeDeliver>,
    config: SenderConfig,
) -> (ActorRef<SenderMsg>, JoinHandle<()>) {
    let args = SenderArgs {
        deliver: Arc::clone(fake),
        config,
        phone_number_id: "1234567890".to_owned(),
    };
    Actor::spawn(None, Sender::<FakeDeliver>::new(), args)
        .await
        .expect("sender starts")
}

async fn stop(actor: ActorRef<SenderMsg>, handle: JoinHandle<()>) {
    actor.stop(None);
    handle.await.expect("sender stops cleanly");
}

fn enqueue(actor: &ActorRef<SenderMsg>, outbox_id: Uuid, recipient: &str) {
    actor
        .cast(SenderMsg::Enqueue {
            outbox_id,
            recipient: recipient.to_owned(),
        })
        .expect("sender is running");
}

/// Returns the largest number of calls that start within one second of each other.
fn max_calls_in_one_second(calls: &[Call]) -> usize {
    let mut starts: Vec<Instant> = calls.iter().map(|call| call.at).collect();
    starts.sort();
    let mut max = 0;
    for (first, start) in starts.iter().enumerate() {
        let window_end = *start + Duration::from_secs(1);
        let in_window = starts[first..]
            .iter()
            .take_while(|other| **other < window_end)
            .count();
        max = max.max(in_window);
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_cap_per_number() {
    let fake = Arc::new(FakeDeliver::default());
    let per_second = 20;
    let config = SenderConfig {
        per_second: NonZeroU32::new(per_second).unwrap(),
        ..test_config()
    };
    let (actor, handle) = spawn_sender(&fake, config).await;

    let ids: Vec<(Uuid, String)> = (0..60)
        .map(|index| {
            let recipient = format!("3161234{index:04}");
            (fake.add(&recipient, &[]), recipient)
        })
        .collect();
    let enqueued_at = Instant::now();
    for (outbox_id, recipient) in &ids {
        enqueue(&actor, *outbox_id, recipient);
    }
    let calls = fake.wait_for_calls(ids.len()).await;

    // One extra start is allowed because the fake records when its task runs, which can
    // lag the limiter's decision by a scheduling delay.
    let max_in_window = max_calls_in_one_second(&calls);
    assert!(
        max_in_window <= per_second as usize + 1,
        "{max_in_window} deliveries started within one second, limit is {per_second}"
    );

    // Starts are at least 1/per_second apart from the first limiter check, which happens
    // after `enqueued_at`, so the last of 60 starts is at least 59 intervals later.
    let last_start = calls.iter().map(|call| call.at).max().unwrap();
    let min_span = Duration::from_secs(1) * 59 / per_second;
    assert!(
        last_start - enqueued_at >= min_span,
        "60 deliveries took {:?}, the rate allows no less than {min_span:?}",
        last_start - enqueued_at
    );

    let delivered: HashSet<Uuid> = calls.iter().map(|call| call.outbox_id).collect();
    assert_eq!(delivered.len(), ids.len(), "every item is delivered");
    assert_eq!(calls.len(), ids.len(), "no item is delivered twice");
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_order_is_fifo() {
    let fake = Arc::new(FakeDeliver::default());
    let (actor, handle) = spawn_sender(&fake, test_config()).await;
    let recipients = ["31600000001", "31600000002", "31600000003"];

    let mut expected: HashMap<&str, Vec<Uuid>> = HashMap::new();
    for _ in 0..8 {
        for recipient in recipients {
            let outbox_id = fake.add(recipient, &[]);
            expected.entry(recipient).or_default().push(outbox_id);
            enqueue(&actor, outbox_id, recipient);
        }
    }
    fake.wait_for_calls(8 * recipients.len()).await;

    for recipient in recipients {
        assert_eq!(
            fake.calls_to(recipient),
            expected[recipient],
            "order for {recipient}"
        );
    }
    assert!(
        fake.overlapping_recipients().is_empty(),
        "recipients with two deliveries in flight at once: {:?}",
        fake.overlapping_recipients()
    );
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_pacing_bound() {
    let fake = Arc::new(FakeDeliver::default());
    let pair_period = Duration::from_millis(40);
    let pair_burst = 2;
    let config = SenderConfig {
        pair_period,
        pair_burst: NonZeroU32::new(pair_burst).unwrap(),
        ..test_config()
    };
    let (actor, handle) = spawn_sender(&fake, config).await;

    let recipient = "31600000001";
    let ids: Vec<Uuid> = (0..6).map(|_| fake.add(recipient, &[])).collect();
    let enqueued_at = Instant::now();
    for outbox_id in &ids {
        enqueue(&actor, *outbox_id, recipient);
    }
    let calls = fake.wait_for_calls(ids.len()).await;

    // The pair limiter lets `pair_burst` calls pass at once and then one per period, so
    // call n (counting from 0) cannot start before (n + 1 - pair_burst) periods.
    for (index, call) in calls.iter().enumerate().skip(pair_burst as usize) {
        let earned_periods = u32::try_from(index).unwrap() + 1 - pair_burst;
        let earliest = pair_period * earned_periods;
        assert!(
            call.at - enqueued_at >= earliest,
            "call {index} started after {:?}, pacing allows no earlier than {earliest:?}",
            call.at - enqueued_at
        );
    }
    assert_eq!(fake.calls_to(recipient), ids, "order for {recipient}");
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_enqueue_delivered_once() {
    let fake = Arc::new(FakeDeliver::default());
    let (actor, handle) = spawn_sender(&fake, test_config()).await;
    let recipient = "31600000001";
    let gate = fake.gate(recipient);
    let in_flight_id = fake.add(recipient, &[]);
    let queued_id = fake.add(recipient, &[]);
    let last_id = fake.add(recipient, &[]);

    enqueue(&actor, in_flight_id, recipient);
    enqueue(&actor, queued_id, recipient);
    fake.wait_for_calls(1).await;
    enqueue(&actor, in_flight_id, recipient);
    enqueue(&actor, queued_id, recipient);
    // Any duplicate would be queued ahead of `last_id`, so once `last_id` is delivered
    // every duplicate would have been delivered too.
    enqueue(&actor, last_id, recipient);
    gate.add_permits(10);
    fake.wait_for_calls(3).await;

    assert_eq!(
        fake.calls_to(recipient),
        vec![in_flight_id, queued_id, last_id]
    );

    // After its delivery finished, the same id is a new request and goes to `deliver`,
    // which must skip rows that were already sent.
    enqueue(&actor, in_flight_id, recipient);
    fake.wait_for_calls(4).await;
    assert_eq!(
        fake.calls_to(recipient),
        vec![in_flight_id, queued_id, last_id, in_flight_id]
    );
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_then_success_in_order() {
    let fake = Arc::new(FakeDeliver::default());
    let (actor, handle) = spawn_sender(&fake, test_config()).await;
    let recipient = "31600000001";
    let retried_id = fake.add(
        recipient,
        &[
            DeliveryOutcome::Retry { code: Some(131000) },
            DeliveryOutcome::Sent,
        ],
    );
    let next_id = fake.add(recipient, &[]);

    enqueue(&actor, retried_id, recipient);
    enqueue(&actor, next_id, recipient);
    fake.wait_for_calls(3).await;

    assert_eq!(
        fake.calls_to(recipient),
        vec![retried_id, retried_id, next_id]
    );
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_outcomes_not_retried() {
    let fake = Arc::new(FakeDeliver::default());
    let (actor, handle) = spawn_sender(&fake, test_config()).await;
    let outcomes = [
        DeliveryOutcome::Sent,
        DeliveryOutcome::Skipped,
        DeliveryOutcome::Failed { code: Some(131026) },
        DeliveryOutcome::Failed { code: None },
        DeliveryOutcome::Uncertain,
    ];

    let mut expected = Vec::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        let recipient = format!("3160000000{index}");
        // The second item on the same recipient is only delivered once the first has its
        // final outcome, so a retry of the first would show up before it.
        let first_id = fake.add(&recipient, &[*outcome]);
        let next_id = fake.add(&recipient, &[]);
        enqueue(&actor, first_id, &recipient);
        enqueue(&actor, next_id, &recipient);
        expected.push((*outcome, recipient, vec![first_id, next_id]));
    }
    fake.wait_for_calls(2 * outcomes.len()).await;

    for (outcome, recipient, ids) in expected {
        assert_eq!(fake.calls_to(&recipient), ids, "calls after {outcome:?}");
    }
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_honoured() {
    let fake = Arc::new(FakeDeliver::default());
    let config = SenderConfig {
        max_attempts: 3,
        ..test_config()
    };
    let (actor, handle) = spawn_sender(&fake, config).await;
    let recipient = "31600000001";
    let retry = DeliveryOutcome::Retry { code: Some(131056) };
    let failing_id = fake.add(recipient, &[retry; 10]);
    let next_id = fake.add(recipient, &[]);

    enqueue(&actor, failing_id, recipient);
    enqueue(&actor, next_id, recipient);
    fake.wait_for_calls(4).await;

    assert_eq!(
        fake.calls_to(recipient),
        vec![failing_id, failing_id, failing_id, next_id]
    );
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_recipient_does_not_block_others() {
    let fake = Arc::new(FakeDeliver::default());
    // A slow per-number rate makes the later items wait together in the ready list, with
    // the paced recipient at its front.
    let config = SenderConfig {
        per_second: NonZeroU32::new(10).unwrap(),
        pair_period: Duration::from_secs(30),
        pair_burst: NonZeroU32::new(1).unwrap(),
        ..test_config()
    };
    let (actor, handle) = spawn_sender(&fake, config).await;
    let paced = "31600000001";
    let paced_first = fake.add(paced, &[]);
    let paced_second = fake.add(paced, &[]);
    let others: Vec<(Uuid, String)> = (2..5)
        .map(|index| {
            let recipient = format!("3160000000{index}");
            (fake.add(&recipient, &[]), recipient)
        })
        .collect();

    enqueue(&actor, paced_first, paced);
    fake.wait_for_calls(1).await;
    // Lets the first delivery finish, so that `paced_second` becomes ready ahead of the
    // others. On a slower machine the test still passes but checks less.
    tokio::time::sleep(Duration::from_millis(30)).await;
    enqueue(&actor, paced_second, paced);
    for (outbox_id, recipient) in &others {
        enqueue(&actor, *outbox_id, recipient);
    }
    fake.wait_for_calls(1 + others.len()).await;

    // `paced_second` cannot start for 30 s, and the others went ahead of it.
    assert_eq!(fake.calls_to(paced), vec![paced_first]);
    for (outbox_id, recipient) in &others {
        assert_eq!(
            fake.calls_to(recipient),
            vec![*outbox_id],
            "calls to {recipient}"
        );
    }
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_delivery_does_not_block_others() {
    let fake = Arc::new(FakeDeliver::default());
    let (actor, handle) = spawn_sender(&fake, test_config()).await;
    let slow = "31600000001";
    let gate = fake.gate(slow);
    let slow_first = fake.add(slow, &[]);
    let slow_second = fake.add(slow, &[]);
    let other = "31600000002";
    let other_ids: Vec<Uuid> = (0..3).map(|_| fake.add(other, &[])).collect();

    enqueue(&actor, slow_first, slow);
    enqueue(&actor, slow_second, slow);
    for outbox_id in &other_ids {
        enqueue(&actor, *outbox_id, other);
    }
    fake.wait_for_calls(1 + other_ids.len()).await;

    // `slow_first` is still blocked on its gate, so `slow_second` must wait for it.
    assert_eq!(fake.calls_to(slow), vec![slow_first]);
    assert_eq!(fake.calls_to(other), other_ids);

    gate.add_permits(2);
    fake.wait_for_calls(2 + other_ids.len()).await;
    assert_eq!(fake.calls_to(slow), vec![slow_first, slow_second]);
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_caps_concurrency() {
    let fake = Arc::new(FakeDeliver::default());
    let max_in_flight = 3;
    let config = SenderConfig {
        max_in_flight,
        ..test_config()
    };
    let (actor, handle) = spawn_sender(&fake, config).await;
    let mut gates = Vec::new();
    for index in 0..8 {
        let recipient = format!("3160000000{index}");
        gates.push(fake.gate(&recipient));
        enqueue(&actor, fake.add(&recipient, &[]), &recipient);
    }
    fake.wait_for_calls(max_in_flight).await;

    // Gives the actor time to start a fourth call if the cap were broken.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.calls().len(),
        max_in_flight,
        "calls started while gated"
    );

    for gate in &gates {
        gate.add_permits(1);
    }
    fake.wait_for_calls(gates.len()).await;
    assert!(
        fake.max_in_flight() <= max_in_flight,
        "{} calls were in flight at once, the cap is {max_in_flight}",
        fake.max_in_flight()
    );
    stop(actor, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_delivery_frees_recipient() {
    let fake = Arc::new(FakeDeliver::default());
    let (actor, handle) = spawn_sender(&fake, test_config()).await;
    let recipient = "31600000001";
    let panicking_id = fake.add_panicking(recipient);
    let next_id = fake.add(recipient, &[]);

    enqueue(&actor, panicking_id, recipient);
    enqueue(&actor, next_id, recipient);
    fake.wait_for_calls(2).await;

    // A panic is not retried, because the message may already have reached Meta.
    assert_eq!(fake.calls_to(recipient), vec![panicking_id, next_id]);
    stop(actor, handle).await;
}

#[tokio::test]
async fn invalid_config_rejected() {
    let cases = [
        (
            "zero pair_period",
            SenderConfig {
                pair_period: Duration::ZERO,
                ..test_config()
            },
        ),
        (
            "zero max_in_flight",
            SenderConfig {
                max_in_flight: 0,
                ..test_config()
            },
        ),
        (
            "zero max_attempts",
            SenderConfig {
                max_attempts: 0,
                ..test_config()
            },
        ),
    ];
    for (case, config) in cases {
        let args = SenderArgs {
            deliver: Arc::new(FakeDeliver::default()),
            config,
            phone_number_id: "1234567890".to_owned(),
        };
        let result = Actor::spawn(None, Sender::<FakeDeliver>::new(), args).await;
        assert!(result.is_err(), "{case} is accepted");
    }
}

#[test]
fn backoff_delay_bounds() {
    let config = SenderConfig {
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(300),
        ..SenderConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(7);

    for attempt in [1, 2, 3, 5, 8, 9, 10, 31, 32, 33, 64, u32::MAX] {
        let ceiling = 2_u32
            .checked_pow(attempt - 1)
            .map_or(config.backoff_max, |factor| {
                (config.backoff_base * factor).min(config.backoff_max)
            });
        let delays: Vec<Duration> = (0..1000)
            .map(|_| backoff_delay(&config, attempt, &mut rng))
            .collect();
        let longest = delays.iter().max().unwrap();
        assert!(
            *longest <= ceiling,
            "attempt {attempt}: delay {longest:?} exceeds {ceiling:?}"
        );
        // Full jitter spreads delays over the whole range, so 1000 uniform draws reach
        // beyond the middle of it.
        assert!(
            *longest > ceiling / 2,
            "attempt {attempt}: delays stay below {:?}",
            ceiling / 2
        );
    }
}

#[test]
fn default_config_matches_meta_limits() {
    let config = SenderConfig::default();
    assert_eq!(config.per_second.get(), 80);
    assert_eq!(config.pair_period, Duration::from_secs(6));
    assert_eq!(config.pair_burst.get(), 5);
    assert_eq!(config.max_in_flight, 32);
    assert_eq!(config.backoff_base, Duration::from_secs(1));
    assert_eq!(config.backoff_max, Duration::from_secs(300));
    assert_eq!(config.max_attempts, 8);
}
