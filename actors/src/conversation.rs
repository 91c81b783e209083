//! The conversation actor: one per (tenant, customer), handling that conversation's events one
//! at a time.
//!
//! Each event goes through the pure [state machine](crate::machine); the actor commits the new
//! state and the queued messages in one transaction, hands the queued messages to the sender,
//! and only then acknowledges the stream entry. Auto-replies are generated in a spawned task
//! whose result comes back through the mailbox, so a slow LLM never blocks the conversation.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tracing::{debug, info_span, warn, Instrument};
use uuid::Uuid;

use crate::backend::{Backend, Commit, ConversationKey, Delivery};
use crate::keywords::Keywords;
use crate::machine::{self, ConversationState, Effect, Event, Outgoing};
use crate::supervisor::SupervisorMsg;

/// Timing settings of conversation actors.
#[derive(Clone, Debug)]
pub struct ConversationConfig {
    /// How long an actor waits without events before asking to be stopped.
    pub idle_timeout: Duration,
    /// How long to wait for further customer messages before generating a reply, so that several
    /// quick messages get one reply.
    pub reply_debounce: Duration,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            reply_debounce: Duration::from_millis(1500),
        }
    }
}

/// Messages of a conversation actor.
#[derive(Debug)]
pub enum ConversationMsg {
    /// A stored inbound event to handle, routed by the supervisor.
    Event {
        /// The inbound event id.
        event_id: i64,
        /// The stream entry to acknowledge afterwards.
        delivery: Option<Delivery>,
    },
    /// A state-machine event routed by the supervisor, such as a takeover by staff, replied to
    /// once the new state is committed.
    Command {
        /// The event.
        event: Event,
        /// Receives the committed state, or why the command failed.
        reply: RpcReplyPort<Result<ConversationState, String>>,
    },
    /// The result of an auto-reply generation started by this actor.
    #[doc(hidden)]
    ReplyDone {
        /// The generation the reply was requested for.
        generation: u64,
        /// The reply text, or why generation failed.
        result: Result<String, String>,
    },
    /// Checks whether the actor has been idle since `sequence` was handed out.
    #[doc(hidden)]
    IdleCheck {
        /// The activity counter when the check was scheduled.
        sequence: u64,
    },
}

/// Start-up arguments of a conversation actor.
pub struct ConversationArgs<B> {
    /// The conversation.
    pub key: ConversationKey,
    /// Storage and services.
    pub backend: Arc<B>,
    /// The supervisor, which routes events and owns the senders.
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Timing settings.
    pub config: ConversationConfig,
}

/// The running state of a conversation actor.
pub struct ConversationRuntime<B> {
    args: ConversationArgs<B>,
    state: ConversationState,
    keywords: Keywords,
    /// Messages routed by the supervisor and handled so far; the supervisor compares it with
    /// what it routed before stopping an idle actor.
    routed_handled: u64,
    /// Bumped on every message, so a stale idle check can be recognised.
    activity: u64,
    /// The generation of the reply being prepared, and the handle that cancels its debounce
    /// wait when dropped.
    reply_task: Option<(u64, oneshot::Sender<()>)>,
}

/// The conversation actor.
pub struct ConversationActor<B>(std::marker::PhantomData<fn() -> B>);

impl<B> Default for ConversationActor<B> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<B: Backend> Actor for ConversationActor<B> {
    type Msg = ConversationMsg;
    type State = ConversationRuntime<B>;
    type Arguments = ConversationArgs<B>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        // The state is loaded in `post_start`, which runs in the actor's own task: the
        // supervisor waits for `pre_start` only, so it never waits on the database.
        let _ = myself;
        Ok(ConversationRuntime {
            args,
            state: ConversationState::default(),
            keywords: Keywords::default(),
            routed_handled: 0,
            activity: 0,
            reply_task: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        runtime: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Messages routed meanwhile wait in the mailbox until this returns. A conversation whose
        // reply was owed when the engine stopped resumes it here.
        let loaded = runtime
            .args
            .backend
            .load_conversation(runtime.args.key)
            .await?;
        runtime.state = loaded.state;
        runtime.keywords = loaded.keywords;
        if let Some(effect) = runtime.state.owed_reply() {
            runtime.start_reply(&myself, effect);
        }
        runtime.schedule_idle_check(&myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        runtime: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        runtime.activity += 1;
        match message {
            ConversationMsg::Event { event_id, delivery } => {
                runtime.routed_handled += 1;
                let span = info_span!(
                    "conversation_event",
                    tenant_id = %runtime.args.key.tenant_id,
                    conversation_id = %runtime.args.key.conversation_id,
                    event_id,
                );
                runtime
                    .handle_inbound(&myself, event_id, delivery)
                    .instrument(span)
                    .await?;
            }
            ConversationMsg::Command { event, reply } => {
                runtime.routed_handled += 1;
                match runtime.apply(&myself, None, event).await {
                    Ok(()) => {
                        let _ = reply.send(Ok(runtime.state.clone()));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.to_string()));
                        return Err(error);
                    }
                }
            }
            ConversationMsg::ReplyDone { generation, result } => {
                if runtime
                    .reply_task
                    .as_ref()
                    .is_some_and(|(g, _)| *g == generation)
                {
                    runtime.reply_task = None;
                }
                let event = match result {
                    Ok(text) => Event::ReplyReady { generation, text },
                    Err(error) => {
                        warn!(
                            tenant_id = %runtime.args.key.tenant_id,
                            conversation_id = %runtime.args.key.conversation_id,
                            %error,
                            "auto-reply generation failed, sending the holding message"
                        );
                        Event::ReplyFailed { generation }
                    }
                };
                runtime.apply(&myself, None, event).await?;
            }
            ConversationMsg::IdleCheck { sequence } => {
                // The check itself bumped `activity`, so an untouched actor has sequence + 1.
                if sequence + 1 == runtime.activity && runtime.reply_task.is_none() {
                    runtime.args.supervisor.cast(SupervisorMsg::Idle {
                        key: runtime.args.key,
                        actor: myself.get_id(),
                        handled: runtime.routed_handled,
                    })?;
                }
                // One chain of checks per actor: each check schedules the next.
                runtime.schedule_idle_check(&myself);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        runtime: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A reply still in its debounce wait is abandoned; the owed reply is persisted.
        runtime.reply_task = None;
        Ok(())
    }
}

impl<B: Backend> ConversationRuntime<B> {
    async fn handle_inbound(
        &mut self,
        myself: &ActorRef<ConversationMsg>,
        event_id: i64,
        delivery: Option<Delivery>,
    ) -> Result<(), ActorProcessingErr> {
        let backend = self.args.backend.clone();
        match backend.load_event(self.args.key, event_id).await? {
            None => debug!("event already processed"),
            Some(stored) => {
                let event = Event::CustomerMessage {
                    event_id: stored.event_id,
                    message_id: stored.message_id,
                    timestamp: stored.timestamp,
                    content: stored.content,
                };
                self.apply(myself, Some(event_id), event).await?;
            }
        }

        // Only now are the event's effects durable, so the stream entry can go.
        if let Some(delivery) = delivery {
            backend.acknowledge(delivery).await;
        }
        Ok(())
    }

    /// Runs one state-machine step, commits it, and carries out its effects.
    async fn apply(
        &mut self,
        myself: &ActorRef<ConversationMsg>,
        event_id: Option<i64>,
        event: Event,
    ) -> Result<(), ActorProcessingErr> {
        let transition = machine::transition(&self.state, &self.keywords, event);
        let sends: Vec<Outgoing> = transition
            .effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Send(outgoing) => Some(outgoing.clone()),
                _ => None,
            })
            .collect();
        let cancel_follow_ups = transition.effects.contains(&Effect::CancelFollowUps);

        let commit = Commit {
            event_id,
            state: transition.state.clone(),
            sends,
            cancel_follow_ups,
        };
        let queued = self.args.backend.commit(self.args.key, commit).await?;
        let newly_opted_out = transition.state.opted_out && !self.state.opted_out;
        self.state = transition.state;

        // The opt-out cancelled the customer's queued messages in storage. The sender drops them
        // too, before the confirmation is queued behind them.
        if newly_opted_out {
            if let Some(first) = queued.first() {
                self.args.supervisor.cast(SupervisorMsg::DropQueued {
                    phone_number_id: first.phone_number_id.clone(),
                    recipient: first.recipient.clone(),
                })?;
            }
        }

        for item in queued {
            self.args.supervisor.cast(SupervisorMsg::Enqueue(item))?;
        }
        for effect in transition.effects {
            match effect {
                Effect::CancelReply => self.reply_task = None,
                Effect::RequestReply { .. } => self.start_reply(myself, effect),
                Effect::Send(_) | Effect::CancelFollowUps => {}
            }
        }
        Ok(())
    }

    /// Generates a reply in a task of its own; the result comes back as [`ConversationMsg::ReplyDone`].
    fn start_reply(&mut self, myself: &ActorRef<ConversationMsg>, effect: Effect) {
        let Effect::RequestReply {
            generation,
            for_message,
        } = effect
        else {
            return;
        };
        // Dropping the previous handle ends that task's debounce wait.
        self.reply_task = None;

        let backend = self.args.backend.clone();
        let key = self.args.key;
        let debounce = self.args.config.reply_debounce;
        let actor = myself.clone();
        let span = info_span!(
            "auto_reply",
            tenant_id = %key.tenant_id,
            conversation_id = %key.conversation_id,
            message_id = %for_message,
            generation,
        );
        let (cancel, cancelled) = oneshot::channel::<()>();
        tokio::spawn(
            async move {
                // Only the wait is cancellable. Generation itself runs to the end, because
                // dropping it mid-transaction could hand a pooled connection back with the
                // transaction still open. The state machine drops a superseded reply.
                tokio::select! {
                    _ = cancelled => return,
                    _ = tokio::time::sleep(debounce) => {}
                }
                let result = generate(backend.as_ref(), key, for_message).await;
                // The actor may have stopped meanwhile; the owed reply is persisted and resumed
                // by the next incarnation.
                let _ = actor.cast(ConversationMsg::ReplyDone { generation, result });
            }
            .instrument(span),
        );
        self.reply_task = Some((generation, cancel));
    }

    fn schedule_idle_check(&self, myself: &ActorRef<ConversationMsg>) {
        let sequence = self.activity;
        myself.send_after(self.args.config.idle_timeout, move || {
            ConversationMsg::IdleCheck { sequence }
        });
    }
}

async fn generate<B: Backend>(
    backend: &B,
    key: ConversationKey,
    for_message: Uuid,
) -> Result<String, String> {
    backend
        .generate_reply(key, for_message)
        .await
        .map_err(|error| error.to_string())
}
