//! The conversation state machine: `state + event -> new state + effects`, with no I/O.
//!
//! The conversation actor feeds it one event at a time and carries out the effects. Everything
//! the machine must remember across a restart lives in [`ConversationState`], which the actor
//! persists together with the effects in one transaction.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keywords::{KeywordMatch, Keywords};

/// How many recently handled event ids a state remembers to drop replays.
const RECENT_EVENTS: usize = 64;

/// Who replies to the customer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Automated replies.
    #[default]
    Ai,
    /// A staff member owns the conversation; the AI stays silent.
    Human,
}

/// The persisted state of one conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationState {
    /// Whether the customer has opted out of automated and business-initiated messages.
    pub opted_out: bool,
    /// Meta timestamp (unix seconds) of the STOP or START that last changed `opted_out`.
    pub opt_changed_at: Option<i64>,
    /// Who answers.
    pub mode: Mode,
    /// Incremented whenever a pending auto-reply becomes stale, so a late reply can be recognised.
    pub reply_generation: u64,
    /// The customer message still waiting for an auto-reply, if any.
    pub reply_owed_for: Option<Uuid>,
    /// Meta timestamp (unix seconds) of the newest customer message seen.
    pub latest_inbound_at: Option<i64>,
    /// Ids of recently handled inbound events, newest last.
    pub recent_events: VecDeque<i64>,
}

/// The part of a customer message the machine acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Typed text, a caption, or the title of a tapped button or list row.
    Text(String),
    /// A template quick-reply button.
    QuickReply {
        /// The payload the template defined for the button.
        payload: Option<String>,
        /// The button's visible text.
        text: Option<String>,
    },
    /// Anything without text to reply to: reactions, stickers, system messages and so on.
    Other,
}

/// An input to the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A stored customer message, identified by its inbound event.
    CustomerMessage {
        /// The inbound event id; replays of the same id are ignored.
        event_id: i64,
        /// The stored message.
        message_id: Uuid,
        /// Meta's timestamp of the message, unix seconds.
        timestamp: i64,
        /// What the message says.
        content: Content,
    },
    /// A generated auto-reply came back.
    ReplyReady {
        /// The generation the reply was requested for.
        generation: u64,
        /// The reply text, without the automated marker.
        text: String,
    },
    /// Generating an auto-reply failed or timed out.
    ReplyFailed {
        /// The generation the reply was requested for.
        generation: u64,
    },
    /// A staff member took the conversation over.
    TakenOver,
    /// The conversation was handed back to the AI.
    Released,
}

/// Messages the machine decides to send; the actor renders their text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Confirms an opt-out. It is the one message allowed after STOP.
    OptOutConfirmation,
    /// Confirms an opt-in after START.
    OptInConfirmation,
    /// An automated reply to `reply_to`.
    AutoReply {
        /// The customer message answered.
        reply_to: Uuid,
        /// The generated text.
        text: String,
    },
    /// Sent instead of an auto-reply that could not be generated.
    Holding {
        /// The customer message answered.
        reply_to: Uuid,
    },
}

/// Work the actor carries out after a transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Queue a message in the outbox.
    Send(Outgoing),
    /// Start generating an auto-reply outside the mailbox.
    RequestReply {
        /// Reply generation to echo back in [`Event::ReplyReady`].
        generation: u64,
        /// The newest customer message, which the reply answers.
        for_message: Uuid,
    },
    /// Abandon any auto-reply in flight.
    CancelReply,
    /// Cancel follow-ups scheduled for this customer.
    CancelFollowUps,
}

/// The outcome of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state after the event.
    pub state: ConversationState,
    /// The effects to carry out, in order.
    pub effects: Vec<Effect>,
}

impl ConversationState {
    /// Returns whether an auto-reply for `generation` may still be sent.
    pub fn reply_is_current(&self, generation: u64) -> bool {
        generation == self.reply_generation
            && self.reply_owed_for.is_some()
            && !self.opted_out
            && self.mode == Mode::Ai
    }

    /// Returns the reply request to resume after a restart, if a reply is still owed.
    pub fn owed_reply(&self) -> Option<Effect> {
        let for_message = self.reply_owed_for?;
        if self.opted_out || self.mode != Mode::Ai {
            return None;
        }
        Some(Effect::RequestReply {
            generation: self.reply_generation,
            for_message,
        })
    }
}

/// Applies one event to a state.
pub fn transition(state: &ConversationState, keywords: &Keywords, event: Event) -> Transition {
    let mut next = state.clone();
    let mut effects = Vec::new();

    match event {
        Event::CustomerMessage {
            event_id,
            message_id,
            timestamp,
            content,
        } => {
            if next.recent_events.contains(&event_id) {
                return Transition {
                    state: next,
                    effects,
                };
            }
            remember_event(&mut next, event_id);
            customer_message(
                &mut next,
                keywords,
                message_id,
                timestamp,
                content,
                &mut effects,
            );
        }
        Event::ReplyReady { generation, text } => {
            if next.reply_is_current(generation) {
                let reply_to = next.reply_owed_for.take().expect("a current reply is owed");
                effects.push(Effect::Send(Outgoing::AutoReply { reply_to, text }));
            }
        }
        Event::ReplyFailed { generation } => {
            if next.reply_is_current(generation) {
                let reply_to = next.reply_owed_for.take().expect("a current reply is owed");
                effects.push(Effect::Send(Outgoing::Holding { reply_to }));
            }
        }
        Event::TakenOver => {
            if next.mode == Mode::Ai {
                next.mode = Mode::Human;
                supersede_reply(&mut next, &mut effects);
            }
        }
        Event::Released => {
            next.mode = Mode::Ai;
        }
    }

    Transition {
        state: next,
        effects,
    }
}

fn customer_message(
    state: &mut ConversationState,
    keywords: &Keywords,
    message_id: Uuid,
    timestamp: i64,
    content: Content,
    effects: &mut Vec<Effect>,
) {
    let is_newest = state
        .latest_inbound_at
        .is_none_or(|latest| timestamp >= latest);
    if is_newest {
        state.latest_inbound_at = Some(timestamp);
    }

    // A STOP or START older than the last change of opt-out state arrived out of order, so the
    // newer decision remains.
    let keyword = match &content {
        Content::Text(text) => keywords.classify_text(text),
        Content::QuickReply { payload, text } => {
            keywords.classify_quick_reply(payload.as_deref(), text.as_deref())
        }
        Content::Other => KeywordMatch::None,
    };
    let opt_change_is_current = state
        .opt_changed_at
        .is_none_or(|changed| timestamp >= changed);

    match keyword {
        KeywordMatch::Stop if opt_change_is_current => {
            state.opt_changed_at = Some(timestamp);
            if !state.opted_out {
                state.opted_out = true;
                supersede_reply(state, effects);
                effects.push(Effect::CancelFollowUps);
                effects.push(Effect::Send(Outgoing::OptOutConfirmation));
            }
            return;
        }
        KeywordMatch::Start if opt_change_is_current && state.opted_out => {
            state.opt_changed_at = Some(timestamp);
            state.opted_out = false;
            effects.push(Effect::Send(Outgoing::OptInConfirmation));
            return;
        }
        KeywordMatch::Stop | KeywordMatch::Start if state.opted_out || !opt_change_is_current => {
            return;
        }
        _ => {}
    }

    // Nothing automated goes to an opted-out customer, a human-run conversation gets no AI reply,
    // and a message older than one already answered does not start a reply of its own.
    if state.opted_out || state.mode != Mode::Ai || !is_newest {
        return;
    }
    if matches!(content, Content::Other) {
        return;
    }

    supersede_reply(state, effects);
    state.reply_owed_for = Some(message_id);
    effects.push(Effect::RequestReply {
        generation: state.reply_generation,
        for_message: message_id,
    });
}

/// Makes any pending auto-reply stale.
fn supersede_reply(state: &mut ConversationState, effects: &mut Vec<Effect>) {
    state.reply_generation += 1;
    if state.reply_owed_for.take().is_some() {
        effects.push(Effect::CancelReply);
    }
}

fn remember_event(state: &mut ConversationState, event_id: i64) {
    if state.recent_events.len() == RECENT_EVENTS {
        state.recent_events.pop_front();
    }
    state.recent_events.push_back(event_id);
}

#[cfg(test)]
mod tests;
