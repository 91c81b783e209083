//! The storage and service operations the actors need, implemented by the velochat service.
//!
//! The actors never touch PostgreSQL, Redis, Meta or an LLM directly; they call a [`Backend`].
//! That keeps their logic testable with an in-memory backend and the service free to choose its
//! drivers.

use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;

use crate::keywords::Keywords;
use crate::machine::{Content, ConversationState, Outgoing};
use crate::sender::{Deliver, SenderConfig};

/// The error type backends return; the actors log it and let supervision handle the failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A conversation of one tenant with one customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    /// The dealership.
    pub tenant_id: Uuid,
    /// The conversation row.
    pub conversation_id: Uuid,
}

/// The stream entry an event was read from, acknowledged once the event's effects are committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The virtual shard whose stream held the entry.
    pub shard: u32,
    /// The stream entry id.
    pub entry_id: String,
}

/// An inbound event to route to its conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// The conversation.
    pub key: ConversationKey,
    /// The stored inbound event.
    pub event_id: i64,
    /// Present when the event came through a stream; absent when recovered from storage.
    pub delivery: Option<Delivery>,
}

/// A conversation as loaded from storage.
#[derive(Clone, Debug)]
pub struct LoadedConversation {
    /// The persisted state machine fields.
    pub state: ConversationState,
    /// The tenant's opt-out and opt-in keywords.
    pub keywords: Keywords,
}

/// A stored customer message that has not been processed yet.
#[derive(Clone, Debug)]
pub struct StoredInbound {
    /// The inbound event id.
    pub event_id: i64,
    /// The stored message.
    pub message_id: Uuid,
    /// Meta's timestamp, unix seconds.
    pub timestamp: i64,
    /// What the message says.
    pub content: Content,
}

/// Everything one transition changes, committed in one transaction.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The inbound event to mark processed, if the transition handled one.
    pub event_id: Option<i64>,
    /// The state after the transition.
    pub state: ConversationState,
    /// Messages to queue in the outbox.
    pub sends: Vec<Outgoing>,
    /// Whether to cancel the customer's pending follow-ups.
    pub cancel_follow_ups: bool,
}

/// An outbox row ready for its number's sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The outbox row.
    pub outbox_id: Uuid,
    /// The business number that sends it.
    pub phone_number_id: String,
    /// The customer's WhatsApp id.
    pub recipient: String,
}

/// What a sender actor for one number needs.
pub struct SenderSetup<D> {
    /// Carries out single sends.
    pub deliver: Arc<D>,
    /// Rate limits and retry policy.
    pub config: SenderConfig,
}

/// Storage and services behind the actors.
pub trait Backend: Send + Sync + 'static {
    /// The send implementation used by sender actors.
    type Deliver: Deliver;

    /// Loads a conversation's persisted state and its tenant's settings.
    fn load_conversation(
        &self,
        key: ConversationKey,
    ) -> impl Future<Output = Result<LoadedConversation, BoxError>> + Send;

    /// Loads an inbound event, or `None` when it has been processed already.
    fn load_event(
        &self,
        key: ConversationKey,
        event_id: i64,
    ) -> impl Future<Output = Result<Option<StoredInbound>, BoxError>> + Send;

    /// Commits a transition atomically and returns the outbox rows it queued.
    fn commit(
        &self,
        key: ConversationKey,
        commit: Commit,
    ) -> impl Future<Output = Result<Vec<Queued>, BoxError>> + Send;

    /// Acknowledges a stream entry whose effects are committed.
    fn acknowledge(&self, delivery: Delivery) -> impl Future<Output = ()> + Send;

    /// Generates an auto-reply to the conversation's newest customer message.
    fn generate_reply(
        &self,
        key: ConversationKey,
        for_message: Uuid,
    ) -> impl Future<Output = Result<String, BoxError>> + Send;

    /// Lists the conversation's inbound events that are stored but not processed, oldest first.
    fn unprocessed_events(
        &self,
        key: ConversationKey,
    ) -> impl Future<Output = Result<Vec<i64>, BoxError>> + Send;

    /// Prepares the sender of one business number.
    fn sender_setup(
        &self,
        phone_number_id: &str,
    ) -> impl Future<Output = Result<SenderSetup<Self::Deliver>, BoxError>> + Send;
}
