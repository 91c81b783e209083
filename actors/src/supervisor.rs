//! The supervisor: routes events to conversation actors and outbox rows to sender actors,
//! spawning both on demand and restarting conversations that fail.
//!
//! It is the only router of conversation events, which makes idle shutdown safe: an actor asks
//! to stop with the count of routed messages it handled, and the supervisor agrees only when that
//! equals what it routed, so the mailbox is empty and later events go to a new incarnation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{debug, error, info, warn};

use crate::backend::{Backend, ConversationKey, Dispatch, Queued};
use crate::conversation::{
    ConversationActor, ConversationArgs, ConversationConfig, ConversationMsg,
};
use crate::machine::{ConversationState, Event};
use crate::sender::{Sender, SenderArgs, SenderMsg};

/// Failures of one conversation within [`FAILURE_WINDOW`] after which the supervisor stops
/// restarting it and leaves its events to the periodic recovery sweep.
const MAX_RAPID_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Messages of the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Routes a stored inbound event to its conversation.
    Dispatch(Dispatch),
    /// Routes a state-machine event, such as a staff takeover, to a conversation and replies
    /// with the committed state.
    Command {
        /// The conversation.
        key: ConversationKey,
        /// The event.
        event: Event,
        /// Receives the committed state, or why the command failed.
        reply: RpcReplyPort<Result<ConversationState, String>>,
    },
    /// Hands an outbox row to its number's sender.
    Enqueue(Queued),
    /// Drops what a number's sender has queued for a customer who just opted out.
    DropQueued {
        /// The business number.
        phone_number_id: String,
        /// The customer's WhatsApp id.
        recipient: String,
    },
    /// A conversation actor reports that it has been idle.
    Idle {
        /// The conversation.
        key: ConversationKey,
        /// The reporting incarnation.
        actor: ActorId,
        /// Routed messages it has handled.
        handled: u64,
    },
    /// Starts a conversation's actor if it is not running, which resumes a reply it owes, and
    /// re-dispatches its unprocessed events.
    Recover(ConversationKey),
}

/// Start-up arguments of the supervisor.
pub struct SupervisorArgs<B> {
    /// Storage and services.
    pub backend: Arc<B>,
    /// Settings handed to every conversation actor.
    pub conversation: ConversationConfig,
}

struct Child {
    actor: ActorRef<ConversationMsg>,
    routed: u64,
}

/// The supervisor's running state.
pub struct SupervisorState<B> {
    backend: Arc<B>,
    conversation_config: ConversationConfig,
    // NOTE: idle actors stop after their timeout, but nothing caps how many run at once.
    conversations: HashMap<ConversationKey, Child>,
    senders: HashMap<String, ActorRef<SenderMsg>>,
    /// Child kinds by actor id, for supervision events.
    children: HashMap<ActorId, ChildKind>,
    failures: HashMap<ConversationKey, (u32, tokio::time::Instant)>,
}

enum ChildKind {
    Conversation(ConversationKey),
    Sender(String),
}

/// The supervisor actor.
pub struct Supervisor<B>(std::marker::PhantomData<fn() -> B>);

impl<B> Default for Supervisor<B> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<B: Backend> Actor for Supervisor<B> {
    type Msg = SupervisorMsg;
    type State = SupervisorState<B>;
    type Arguments = SupervisorArgs<B>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            backend: args.backend,
            conversation_config: args.conversation,
            conversations: HashMap::new(),
            senders: HashMap::new(),
            children: HashMap::new(),
            failures: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Dispatch(dispatch) => {
                let message = ConversationMsg::Event {
                    event_id: dispatch.event_id,
                    delivery: dispatch.delivery,
                };
                state.route(&myself, dispatch.key, message).await;
            }
            SupervisorMsg::Command { key, event, reply } => {
                let message = ConversationMsg::Command { event, reply };
                state.route(&myself, key, message).await;
            }
            SupervisorMsg::Enqueue(queued) => state.enqueue(&myself, queued).await,
            SupervisorMsg::DropQueued {
                phone_number_id,
                recipient,
            } => {
                if let Some(sender) = state.senders.get(&phone_number_id) {
                    let _ = sender.cast(SenderMsg::DropQueued { recipient });
                }
            }
            SupervisorMsg::Idle {
                key,
                actor,
                handled,
            } => {
                let idle = state
                    .conversations
                    .get(&key)
                    .is_some_and(|child| child.actor.get_id() == actor && child.routed == handled);
                if idle {
                    let child = state.conversations.remove(&key).expect("checked above");
                    debug!(tenant_id = %key.tenant_id, conversation_id = %key.conversation_id, "stopping idle conversation");
                    child.actor.stop(Some("idle".to_string()));
                }
            }
            SupervisorMsg::Recover(key) => {
                // A running actor has its state and receives its events; only a stopped one
                // needs starting, which also resumes a reply it owes.
                if state.conversations.contains_key(&key) {
                    return Ok(());
                }
                state.child(&myself, key).await;
                match state.backend.unprocessed_events(key).await {
                    Ok(events) => {
                        for event_id in events {
                            let message = ConversationMsg::Event {
                                event_id,
                                delivery: None,
                            };
                            state.route(&myself, key, message).await;
                        }
                    }
                    Err(error) => warn!(
                        tenant_id = %key.tenant_id,
                        conversation_id = %key.conversation_id,
                        error = %error,
                        "could not list unprocessed events; the recovery sweep will retry"
                    ),
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, failure) => {
                match state.forget(cell.get_id()) {
                    Some(ChildKind::Conversation(key)) => {
                        state.restart_later(&myself, key, &*failure)
                    }
                    Some(ChildKind::Sender(phone_number_id)) => {
                        // Its queued rows stay queued in storage; the recovery sweep hands them to
                        // the next sender.
                        error!(phone_number_id, error = %failure, "sender failed");
                    }
                    None => {}
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.forget(cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl<B: Backend> SupervisorState<B> {
    async fn route(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: ConversationKey,
        message: ConversationMsg,
    ) {
        let Some(child) = self.child(myself, key).await else {
            return;
        };
        if let Err(error) = child.actor.cast(message) {
            warn!(conversation_id = %key.conversation_id, %error, "conversation actor is gone");
            return;
        }
        child.routed += 1;
    }

    /// Returns the conversation's actor, spawning it with its state loaded when it is not running.
    async fn child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: ConversationKey,
    ) -> Option<&mut Child> {
        if !self.conversations.contains_key(&key) {
            let args = ConversationArgs {
                key,
                backend: self.backend.clone(),
                supervisor: myself.clone(),
                config: self.conversation_config.clone(),
            };
            let spawned = Actor::spawn_linked(
                None,
                ConversationActor::<B>::default(),
                args,
                myself.get_cell(),
            )
            .await;
            match spawned {
                Ok((actor, _)) => {
                    self.children
                        .insert(actor.get_id(), ChildKind::Conversation(key));
                    self.conversations.insert(key, Child { actor, routed: 0 });
                }
                Err(error) => {
                    // The event stays unprocessed in storage and unacknowledged in its stream.
                    warn!(
                        tenant_id = %key.tenant_id,
                        conversation_id = %key.conversation_id,
                        %error,
                        "could not start conversation actor; the recovery sweep will retry"
                    );
                    return None;
                }
            }
        }
        self.conversations.get_mut(&key)
    }

    async fn enqueue(&mut self, myself: &ActorRef<SupervisorMsg>, queued: Queued) {
        if !self.senders.contains_key(&queued.phone_number_id) {
            let setup = match self.backend.sender_setup(&queued.phone_number_id).await {
                Ok(setup) => setup,
                Err(error) => {
                    warn!(phone_number_id = queued.phone_number_id, %error, "could not prepare sender; the recovery sweep will retry");
                    return;
                }
            };
            let args = SenderArgs {
                deliver: setup.deliver,
                config: setup.config,
                phone_number_id: queued.phone_number_id.clone(),
            };
            match Actor::spawn_linked(
                None,
                Sender::<B::Deliver>::default(),
                args,
                myself.get_cell(),
            )
            .await
            {
                Ok((sender, _)) => {
                    self.children.insert(
                        sender.get_id(),
                        ChildKind::Sender(queued.phone_number_id.clone()),
                    );
                    self.senders.insert(queued.phone_number_id.clone(), sender);
                }
                Err(error) => {
                    warn!(phone_number_id = queued.phone_number_id, %error, "could not start sender");
                    return;
                }
            }
        }

        let sender = &self.senders[&queued.phone_number_id];
        let message = SenderMsg::Enqueue {
            outbox_id: queued.outbox_id,
            recipient: queued.recipient,
        };
        if let Err(error) = sender.cast(message) {
            warn!(phone_number_id = queued.phone_number_id, %error, "sender is gone");
        }
    }

    /// Drops a stopped child from the maps, unless a newer incarnation replaced it already.
    fn forget(&mut self, actor: ActorId) -> Option<ChildKind> {
        let kind = self.children.remove(&actor)?;
        match &kind {
            ChildKind::Conversation(key) => {
                if self
                    .conversations
                    .get(key)
                    .is_some_and(|child| child.actor.get_id() == actor)
                {
                    self.conversations.remove(key);
                }
            }
            ChildKind::Sender(phone_number_id) => {
                if self
                    .senders
                    .get(phone_number_id)
                    .is_some_and(|s| s.get_id() == actor)
                {
                    self.senders.remove(phone_number_id);
                }
            }
        }
        Some(kind)
    }

    /// Schedules a failed conversation's restart, backing off when it keeps failing.
    fn restart_later(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        key: ConversationKey,
        failure: &(dyn std::error::Error + Send + Sync),
    ) {
        let now = tokio::time::Instant::now();
        let (count, since) = self.failures.entry(key).or_insert((0, now));
        if now.duration_since(*since) > FAILURE_WINDOW {
            *count = 0;
            *since = now;
        }
        *count += 1;

        if *count > MAX_RAPID_FAILURES {
            error!(
                tenant_id = %key.tenant_id,
                conversation_id = %key.conversation_id,
                error = %failure,
                failures = *count,
                "conversation keeps failing; leaving it to the recovery sweep"
            );
            return;
        }
        info!(
            tenant_id = %key.tenant_id,
            conversation_id = %key.conversation_id,
            error = %failure,
            "conversation failed; restarting with its state reloaded"
        );
        let delay = Duration::from_millis(200) * 2u32.pow(*count - 1);
        myself.send_after(delay, move || SupervisorMsg::Recover(key));
    }
}

#[cfg(test)]
mod tests;
