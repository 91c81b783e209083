//! Sender actor that sends one WhatsApp phone number's outbox within Meta's rate limits.
//!
//! One [`Sender`] runs per phone number. It keeps a FIFO queue per recipient, paces
//! deliveries with governor limiters, and runs each [`Deliver::deliver`] call in a spawned
//! task whose outcome comes back as a message, so the mailbox never waits on I/O.

#![warn(missing_docs)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::Rng;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

#[cfg(test)]
mod tests;

/// Time between sweeps that drop pair limiter entries of recipients whose pacing state
/// is back to fresh, so the limiter does not keep one entry per recipient ever seen.
const PAIR_LIMITER_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Sends one outbox item through the WhatsApp Cloud API and records the outcome.
///
/// Implementations do all the I/O (database checks, the HTTP call to Meta, storing the
/// result). The sender actor only decides when to call them and what to do next.
pub trait Deliver: Send + Sync + 'static {
    /// Sends one outbox item and records the outcome.
    fn deliver(&self, outbox_id: Uuid) -> impl Future<Output = DeliveryOutcome> + Send;
}

/// Outcome of one [`Deliver::deliver`] call, which decides what the sender does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Meta accepted the message.
    Sent,
    /// Nothing was sent because the item was already sent or cancelled, or the recipient
    /// opted out at send time.
    Skipped,
    /// Retriable failure (network error, HTTP 5xx, or a code such as 130429 or 131056).
    /// The row is back in the queue, and the sender calls `deliver` again after a backoff.
    Retry {
        /// Graph API error code, or `None` when the response carried none.
        code: Option<i64>,
    },
    /// Permanent failure that has been recorded. The sender never retries it.
    Failed {
        /// Graph API error code, or `None` when the response carried none.
        code: Option<i64>,
    },
    /// Meta may have accepted the message, for example when the request timed out after
    /// it was written. The row waits for a status webhook, so the sender does not retry it.
    Uncertain,
}

/// Rate limits, concurrency and retry policy of one sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Maximum number of deliveries started in any one-second window. Meta allows 80
    /// messages per second per number by default (1,000 after an upgrade, 20 for numbers
    /// shared with the WhatsApp Business app) and rejects more with error 130429.
    pub per_second: NonZeroU32,
    /// Time after which one more message to the same recipient is allowed. Meta allows
    /// about one message every 6 seconds to the same customer and rejects more with error
    /// 131056.
    pub pair_period: Duration,
    /// Number of messages to one recipient that may start back to back before
    /// `pair_period` pacing applies, because Meta tolerates short bursts to one customer.
    pub pair_burst: NonZeroU32,
    /// Maximum number of concurrent `deliver` calls, and so of HTTP requests, for this
    /// number. Must be at least 1.
    pub max_in_flight: usize,
    /// Upper bound of the random delay before the first retry. Each later retry doubles it.
    pub backoff_base: Duration,
    /// Cap on the upper bound of the random retry delay.
    pub backoff_max: Duration,
    /// Maximum number of `deliver` calls for one item. A retriable failure on the last
    /// call is logged as an error and the item leaves the queue. Must be at least 1.
    pub max_attempts: u32,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            per_second: NonZeroU32::new(80).expect("80 is not zero"),
            pair_period: Duration::from_secs(6),
            pair_burst: NonZeroU32::new(5).expect("5 is not zero"),
            max_in_flight: 32,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5 * 60),
            max_attempts: 8,
        }
    }
}

/// Arguments that start one [`Sender`].
pub struct SenderArgs<D: Deliver> {
    /// Implementation that performs each send.
    pub deliver: Arc<D>,
    /// Rate limits, concurrency and retry policy.
    pub config: SenderConfig,
    /// Meta's id of the WhatsApp phone number that this sender sends from, used in logs.
    pub phone_number_id: String,
}

/// Messages that a [`Sender`] accepts.
#[derive(Debug)]
pub enum SenderMsg {
    /// Queues an outbox item behind earlier items for the same recipient. An id that is
    /// already queued, waiting for a retry or in flight is ignored. An id whose delivery
    /// has finished is delivered again, so `Deliver` must skip rows that were already sent.
    Enqueue {
        /// Id of the outbox row to send.
        outbox_id: Uuid,
        /// WhatsApp id (phone number) of the customer.
        recipient: String,
    },
    /// Drops every item queued for a recipient, such as automated replies cancelled by an
    /// opt-out, so that they do not hold up later messages by using the recipient's pacing.
    /// A delivery already in flight finishes.
    DropQueued {
        /// WhatsApp id (phone number) of the customer.
        recipient: String,
    },
    /// Wake-up or delivery outcome that the actor sends to itself.
    #[doc(hidden)]
    Internal(InternalMsg),
}

/// Message that a [`Sender`] sends to itself. Only the sender module can build one.
#[doc(hidden)]
#[derive(Debug)]
pub struct InternalMsg(Event);

#[derive(Debug)]
enum Event {
    /// A `deliver` task finished. The error is the panic message when the task panicked.
    Delivered {
        recipient: String,
        item: QueuedItem,
        result: Result<DeliveryOutcome, String>,
    },
    /// The recipient's pacing or retry delay has elapsed.
    RecipientReady(String),
    /// The per-number limiter allows another start.
    NumberReady,
    PrunePairLimiter,
}

fn internal(event: Event) -> SenderMsg {
    SenderMsg::Internal(InternalMsg(event))
}

/// Actor that sends the outbox of one WhatsApp phone number.
///
/// It keeps Meta's per-number throughput limit, paces each recipient, keeps each
/// recipient's messages in FIFO order with at most one in flight, and retries retriable
/// failures with exponential backoff. Items still queued when the actor stops are dropped
/// from memory only, because their outbox rows were never touched.
pub struct Sender<D: Deliver> {
    deliver: PhantomData<fn() -> D>,
}

impl<D: Deliver> Sender<D> {
    /// Creates the actor definition to pass to `Actor::spawn`.
    pub fn new() -> Self {
        Self {
            deliver: PhantomData,
        }
    }
}

impl<D: Deliver> Default for Sender<D> {
    fn default() -> Self {
        Self::new()
    }
}

type NumberLimiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;
type PairLimiter =
    RateLimiter<String, DashMapStateStore<String>, MonotonicClock, NoOpMiddleware<Instant>>;

/// Queues, limiters and counters of a running [`Sender`].
pub struct SenderState<D: Deliver> {
    deliver: Arc<D>,
    config: SenderConfig,
    phone_number_id: String,
    number_limiter: NumberLimiter,
    pair_limiter: PairLimiter,
    /// Contains a recipient while it has queued items or a delivery in flight.
    recipients: HashMap<String, RecipientQueue>,
    /// Recipients in `RecipientStatus::Ready`, in the order they became ready.
    ready: VecDeque<String>,
    /// Ids that are queued, waiting for a retry or in flight.
    pending_ids: HashSet<Uuid>,
    in_flight: usize,
    number_wake_scheduled: bool,
    prune_timer: JoinHandle<()>,
}

#[derive(Debug)]
struct QueuedItem {
    outbox_id: Uuid,
    /// Number of `deliver` calls started for this item.
    attempts: u32,
}

struct RecipientQueue {
    items: VecDeque<QueuedItem>,
    status: RecipientStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecipientStatus {
    /// Listed in `SenderState::ready` and waiting for the per-number limiter.
    Ready,
    /// Waiting for a wake-up from the pair limiter.
    Pacing,
    /// Waiting for a wake-up after a retriable failure.
    Backoff,
    InFlight,
}

impl<D: Deliver> Actor for Sender<D> {
    type Msg = SenderMsg;
    type State = SenderState<D>;
    type Arguments = SenderArgs<D>;

    async fn pre_start(
        &self,
        myself: ActorRef<SenderMsg>,
        args: SenderArgs<D>,
    ) -> Result<SenderState<D>, ActorProcessingErr> {
        let SenderArgs {
            deliver,
            config,
            phone_number_id,
        } = args;
        validate_config(&config).map_err(|message| {
            format!("invalid sender config for phone number {phone_number_id}: {message}")
        })?;

        let prune_timer = myself.send_interval(PAIR_LIMITER_PRUNE_INTERVAL, || {
            internal(Event::PrunePairLimiter)
        });
        tracing::info!(
            phone_number_id,
            per_second = config.per_second.get(),
            max_in_flight = config.max_in_flight,
            "sender started"
        );
        Ok(SenderState {
            deliver,
            number_limiter: number_limiter(config.per_second),
            pair_limiter: pair_limiter(config.pair_period, config.pair_burst),
            config,
            phone_number_id,
            recipients: HashMap::new(),
            ready: VecDeque::new(),
            pending_ids: HashSet::new(),
            in_flight: 0,
            number_wake_scheduled: false,
            prune_timer,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SenderMsg>,
        state: &mut SenderState<D>,
    ) -> Result<(), ActorProcessingErr> {
        state.prune_timer.abort();
        tracing::info!(
            phone_number_id = state.phone_number_id,
            pending = state.pending_ids.len(),
            in_flight = state.in_flight,
            "sender stopped; queued items were dropped and in-flight deliveries run to completion"
        );
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SenderMsg>,
        message: SenderMsg,
        state: &mut SenderState<D>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SenderMsg::Enqueue {
                outbox_id,
                recipient,
            } => state.enqueue(outbox_id, recipient),
            SenderMsg::DropQueued { recipient } => state.drop_queued(&recipient),
            SenderMsg::Internal(InternalMsg(event)) => match event {
                Event::Delivered {
                    recipient,
                    item,
                    result,
                } => state.complete(&myself, recipient, item, result),
                Event::RecipientReady(recipient) => state.wake_recipient(recipient),
                Event::NumberReady => state.number_wake_scheduled = false,
                Event::PrunePairLimiter => {
                    state.pair_limiter.retain_recent();
                    state.pair_limiter.shrink_to_fit();
                }
            },
        }
        state.dispatch(&myself);
        Ok(())
    }
}

fn validate_config(config: &SenderConfig) -> Result<(), String> {
    if config.pair_period.is_zero() {
        return Err("pair_period must be greater than zero".to_owned());
    }
    if config.max_in_flight == 0 {
        return Err("max_in_flight must be at least 1".to_owned());
    }
    if config.max_attempts == 0 {
        return Err("max_attempts must be at least 1".to_owned());
    }
    Ok(())
}

/// Builds the per-number limiter with a burst of 1, so starts are spaced evenly at least
/// 1/`per_second` apart.
///
/// A burst of `per_second` would let a full second's quota start at once at the end of one
/// second and again at the start of the next, so a one-second window straddling the two
/// would see twice the rate. With even spacing no window, wherever it starts, contains more
/// than `per_second` starts. The interval is rounded up to whole nanoseconds because
/// rounding down would fit `per_second + 1` starts into one second.
fn number_limiter(per_second: NonZeroU32) -> NumberLimiter {
    let interval_nanos = 1_000_000_000_u64.div_ceil(u64::from(per_second.get()));
    let quota = Quota::with_period(Duration::from_nanos(interval_nanos))
        .expect("the interval is at least 1 ns");
    RateLimiter::direct_with_clock(quota, MonotonicClock)
}

/// Builds the per-recipient limiter, which lets `pair_burst` messages start back to back
/// and then one more per `pair_period`.
fn pair_limiter(pair_period: Duration, pair_burst: NonZeroU32) -> PairLimiter {
    let quota = Quota::with_period(pair_period)
        .expect("validate_config rejects a zero pair_period")
        .allow_burst(pair_burst);
    RateLimiter::dashmap_with_clock(quota, MonotonicClock)
}

/// Picks the delay before retrying after the given attempt with "full jitter": a uniform
/// random delay between zero and `min(backoff_max, backoff_base * 2^(attempt - 1))`.
///
/// Full jitter spreads out retries of messages that failed together, such as a burst
/// rejected with 130429, so they do not hit Meta again at the same instant.
fn backoff_delay(config: &SenderConfig, attempt: u32, rng: &mut impl Rng) -> Duration {
    let exponent = attempt.saturating_sub(1);
    let ceiling = 2_u32
        .checked_pow(exponent)
        .and_then(|factor| config.backoff_base.checked_mul(factor))
        .map_or(config.backoff_max, |delay| delay.min(config.backoff_max));
    let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.gen_range(0..=ceiling_nanos))
}

impl<D: Deliver> SenderState<D> {
    fn enqueue(&mut self, outbox_id: Uuid, recipient: String) {
        if !self.pending_ids.insert(outbox_id) {
            tracing::debug!(
                phone_number_id = self.phone_number_id,
                %outbox_id,
                recipient,
                "ignored an outbox item that is already queued or in flight"
            );
            return;
        }

        let item = QueuedItem {
            outbox_id,
            attempts: 0,
        };
        match self.recipients.get_mut(&recipient) {
            Some(queue) => queue.items.push_back(item),
            None => {
                self.recipients.insert(
                    recipient.clone(),
                    RecipientQueue {
                        items: VecDeque::from([item]),
                        status: RecipientStatus::Ready,
                    },
                );
                self.ready.push_back(recipient);
            }
        }
    }

    fn drop_queued(&mut self, recipient: &str) {
        let Some(queue) = self.recipients.get_mut(recipient) else {
            return;
        };
        for item in queue.items.drain(..) {
            self.pending_ids.remove(&item.outbox_id);
        }
        // A recipient with a delivery in flight is cleaned up when that delivery completes.
        if !matches!(queue.status, RecipientStatus::InFlight) {
            self.recipients.remove(recipient);
            self.ready.retain(|ready| ready != recipient);
        }
    }

    fn wake_recipient(&mut self, recipient: String) {
        let Some(queue) = self.recipients.get_mut(&recipient) else {
            return;
        };
        if matches!(
            queue.status,
            RecipientStatus::Pacing | RecipientStatus::Backoff
        ) {
            queue.status = RecipientStatus::Ready;
            self.ready.push_back(recipient);
        }
    }

    /// Starts deliveries until the in-flight cap, the per-number limiter or the ready
    /// recipients run out, and schedules a wake-up for each recipient that is still paced.
    fn dispatch(&mut self, myself: &ActorRef<SenderMsg>) {
        while self.in_flight < self.config.max_in_flight && !self.ready.is_empty() {
            if let Err(not_until) = self.number_limiter.check() {
                if !self.number_wake_scheduled {
                    self.number_wake_scheduled = true;
                    let delay = not_until.wait_time_from(Instant::now());
                    myself.send_after(delay, || internal(Event::NumberReady));
                }
                return;
            }

            // The per-number cell is spent at this point. governor cannot return it, so when
            // every ready recipient turns out to be paced the cell goes unused. That only
            // slows this number down and never exceeds the limit.
            while let Some(recipient) = self.ready.pop_front() {
                match self.pair_limiter.check_key(&recipient) {
                    Ok(()) => {
                        self.start(myself, recipient);
                        break;
                    }
                    Err(not_until) => {
                        let delay = not_until.wait_time_from(Instant::now());
                        if let Some(queue) = self.recipients.get_mut(&recipient) {
                            queue.status = RecipientStatus::Pacing;
                        }
                        schedule_recipient_wake(myself, delay, recipient);
                    }
                }
            }
        }
    }

    fn start(&mut self, myself: &ActorRef<SenderMsg>, recipient: String) {
        let Some(queue) = self.recipients.get_mut(&recipient) else {
            tracing::error!(
                phone_number_id = self.phone_number_id,
                recipient,
                "ready recipient has no queue; skipped it"
            );
            return;
        };
        let Some(mut item) = queue.items.pop_front() else {
            tracing::error!(
                phone_number_id = self.phone_number_id,
                recipient,
                "ready recipient has an empty queue; removed it"
            );
            self.recipients.remove(&recipient);
            return;
        };
        item.attempts += 1;
        queue.status = RecipientStatus::InFlight;
        self.in_flight += 1;

        let span = tracing::info_span!(
            "deliver",
            phone_number_id = self.phone_number_id,
            outbox_id = %item.outbox_id,
            recipient,
            attempt = item.attempts,
        );
        let deliver = Arc::clone(&self.deliver);
        let outbox_id = item.outbox_id;
        let delivery =
            tokio::spawn(async move { deliver.deliver(outbox_id).await }.instrument(span));

        // A second task awaits the first so that a panic inside `deliver` still comes back
        // as a message and frees the in-flight slot and the recipient.
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = delivery.await.map_err(|error| error.to_string());
            // The cast fails only when the actor has stopped. `deliver` has already recorded
            // the outcome, so only a pending in-memory retry is dropped.
            let _ = myself.cast(internal(Event::Delivered {
                recipient,
                item,
                result,
            }));
        });
    }

    /// Applies the outcome of a finished delivery: schedules a retry, or moves the
    /// recipient on to its next item.
    fn complete(
        &mut self,
        myself: &ActorRef<SenderMsg>,
        recipient: String,
        item: QueuedItem,
        result: Result<DeliveryOutcome, String>,
    ) {
        self.in_flight -= 1;
        let Some(queue) = self.recipients.get_mut(&recipient) else {
            tracing::error!(
                phone_number_id = self.phone_number_id,
                outbox_id = %item.outbox_id,
                recipient,
                "finished delivery has no recipient queue; dropped its outcome"
            );
            self.pending_ids.remove(&item.outbox_id);
            return;
        };

        match result {
            Ok(DeliveryOutcome::Retry { code }) if item.attempts < self.config.max_attempts => {
                let delay = backoff_delay(&self.config, item.attempts, &mut rand::thread_rng());
                tracing::warn!(
                    phone_number_id = self.phone_number_id,
                    outbox_id = %item.outbox_id,
                    recipient,
                    attempt = item.attempts,
                    max_attempts = self.config.max_attempts,
                    ?code,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "delivery failed with a retriable error; retrying after backoff"
                );
                // The item goes back to the front so later parts of the same reply still
                // arrive after it.
                queue.items.push_front(item);
                queue.status = RecipientStatus::Backoff;
                schedule_recipient_wake(myself, delay, recipient);
                return;
            }
            Ok(DeliveryOutcome::Retry { code }) => {
                // A `Deliver` must record the permanent failure itself on the last allowed
                // attempt; otherwise its row stays queued and a later sweep enqueues it again.
                tracing::error!(
                    phone_number_id = self.phone_number_id,
                    outbox_id = %item.outbox_id,
                    recipient,
                    attempts = item.attempts,
                    ?code,
                    "delivery failed with a retriable error on the last allowed attempt; gave up"
                );
            }
            Ok(outcome) => {
                tracing::debug!(
                    phone_number_id = self.phone_number_id,
                    outbox_id = %item.outbox_id,
                    recipient,
                    ?outcome,
                    "delivery finished"
                );
            }
            Err(panic) => {
                tracing::error!(
                    phone_number_id = self.phone_number_id,
                    outbox_id = %item.outbox_id,
                    recipient,
                    error = panic,
                    "deliver task panicked; not retrying because Meta may have accepted the message"
                );
            }
        }

        self.pending_ids.remove(&item.outbox_id);
        if queue.items.is_empty() {
            self.recipients.remove(&recipient);
        } else {
            queue.status = RecipientStatus::Ready;
            self.ready.push_back(recipient);
        }
    }
}

fn schedule_recipient_wake(myself: &ActorRef<SenderMsg>, delay: Duration, recipient: String) {
    myself.send_after(delay, move || internal(Event::RecipientReady(recipient)));
}
