use proptest::prelude::*;

use super::*;

fn message(event_id: i64, timestamp: i64, text: &str) -> (Uuid, Event) {
    let message_id = Uuid::from_u128(event_id as u128);
    let event = Event::CustomerMessage {
        event_id,
        message_id,
        timestamp,
        content: Content::Text(text.to_string()),
    };
    (message_id, event)
}

fn run(state: &ConversationState, event: Event) -> Transition {
    transition(state, &Keywords::default(), event)
}

#[test]
fn customer_text_requests_reply() {
    let (id, event) = message(1, 100, "What is the price of the Jupiter?");
    let t = run(&ConversationState::default(), event);
    assert_eq!(
        t.effects,
        vec![Effect::RequestReply {
            generation: 1,
            for_message: id
        }]
    );
    assert_eq!(t.state.reply_owed_for, Some(id));
}

#[test]
fn ready_reply_is_sent_once() {
    let (id, event) = message(1, 100, "hello");
    let requested = run(&ConversationState::default(), event);
    let ready = Event::ReplyReady {
        generation: 1,
        text: "Namaste".into(),
    };
    let sent = run(&requested.state, ready.clone());
    let reply = Outgoing::AutoReply {
        reply_to: id,
        text: "Namaste".into(),
    };
    assert_eq!(sent.effects, vec![Effect::Send(reply)]);
    assert_eq!(sent.state.reply_owed_for, None);
    assert!(run(&sent.state, ready).effects.is_empty());
}

#[test]
fn quick_messages_get_one_reply() {
    let (_, first) = message(1, 100, "hi");
    let (second_id, second) = message(2, 101, "price of Activa?");
    let after_first = run(&ConversationState::default(), first);
    let after_second = run(&after_first.state, second);
    assert!(after_second.effects.contains(&Effect::CancelReply));

    let stale = run(
        &after_second.state,
        Event::ReplyReady {
            generation: 1,
            text: "a".into(),
        },
    );
    assert!(stale.effects.is_empty());
    let current = run(
        &after_second.state,
        Event::ReplyReady {
            generation: 2,
            text: "b".into(),
        },
    );
    let reply = Outgoing::AutoReply {
        reply_to: second_id,
        text: "b".into(),
    };
    assert_eq!(current.effects, vec![Effect::Send(reply)]);
}

#[test]
fn failed_reply_sends_holding_message() {
    let (id, event) = message(1, 100, "hello");
    let requested = run(&ConversationState::default(), event);
    let failed = run(&requested.state, Event::ReplyFailed { generation: 1 });
    assert_eq!(
        failed.effects,
        vec![Effect::Send(Outgoing::Holding { reply_to: id })]
    );
}

#[test]
fn stop_message_start_sequence() {
    let (_, stop) = message(1, 100, "STOP");
    let stopped = run(&ConversationState::default(), stop);
    assert!(stopped.state.opted_out);
    assert!(stopped
        .effects
        .contains(&Effect::Send(Outgoing::OptOutConfirmation)));
    assert!(stopped.effects.contains(&Effect::CancelFollowUps));

    let (_, again) = message(2, 101, "stop");
    assert!(
        run(&stopped.state, again).effects.is_empty(),
        "one confirmation only"
    );

    let (_, text) = message(3, 102, "what about the price?");
    let ignored = run(&stopped.state, text);
    assert!(ignored.effects.is_empty());

    let (_, start) = message(4, 103, " Start ");
    let started = run(&ignored.state, start);
    assert!(!started.state.opted_out);
    assert_eq!(
        started.effects,
        vec![Effect::Send(Outgoing::OptInConfirmation)]
    );
}

#[test]
fn stop_cancels_reply_in_flight() {
    let (_, text) = message(1, 100, "price?");
    let requested = run(&ConversationState::default(), text);
    let (_, stop) = message(2, 101, "stop");
    let stopped = run(&requested.state, stop);
    assert!(stopped.effects.contains(&Effect::CancelReply));
    let late = run(
        &stopped.state,
        Event::ReplyReady {
            generation: 1,
            text: "x".into(),
        },
    );
    assert!(late.effects.is_empty());
}

#[test]
fn sentence_with_stop_is_ordinary() {
    let (id, event) = message(1, 100, "please stop calling me after 6");
    let t = run(&ConversationState::default(), event);
    assert!(!t.state.opted_out);
    assert_eq!(
        t.effects,
        vec![Effect::RequestReply {
            generation: 1,
            for_message: id
        }]
    );
}

#[test]
fn older_stop_does_not_undo_newer_start() {
    let (_, stop) = message(1, 100, "stop");
    let (_, start) = message(2, 200, "start");
    let (_, late_stop) = message(3, 150, "stop");
    let stopped = run(&ConversationState::default(), stop);
    let started = run(&stopped.state, start);
    let after_late = run(&started.state, late_stop);
    assert!(!after_late.state.opted_out);
    assert!(after_late.effects.is_empty());
}

#[test]
fn older_message_starts_no_reply() {
    let (_, newer) = message(1, 200, "hi");
    let (_, older) = message(2, 100, "hello?");
    let after_newer = run(&ConversationState::default(), newer);
    let after_older = run(&after_newer.state, older);
    assert!(after_older.effects.is_empty());
    assert_eq!(
        after_older.state.reply_owed_for,
        after_newer.state.reply_owed_for
    );
}

#[test]
fn takeover_silences_reply_in_flight() {
    let (_, text) = message(1, 100, "price?");
    let requested = run(&ConversationState::default(), text);
    let taken = run(&requested.state, Event::TakenOver);
    assert_eq!(taken.state.mode, Mode::Human);
    assert!(taken.effects.contains(&Effect::CancelReply));
    let late = run(
        &taken.state,
        Event::ReplyReady {
            generation: 1,
            text: "x".into(),
        },
    );
    assert!(late.effects.is_empty());
    let (_, during) = message(2, 101, "hello?");
    assert!(run(&taken.state, during).effects.is_empty());

    let released = run(&taken.state, Event::Released);
    let (_, after) = message(3, 102, "anyone?");
    let answered = run(&released.state, after);
    assert!(matches!(
        answered.effects.as_slice(),
        [Effect::RequestReply { .. }]
    ));
}

#[test]
fn owed_reply_survives_restart() {
    let (id, event) = message(1, 100, "hello");
    let requested = run(&ConversationState::default(), event);
    let reloaded = ConversationState {
        recent_events: VecDeque::new(),
        ..requested.state
    };
    let owed = reloaded.owed_reply();
    assert_eq!(
        owed,
        Some(Effect::RequestReply {
            generation: 1,
            for_message: id
        })
    );
}

#[test]
fn quick_reply_payload_opts_out() {
    let event = Event::CustomerMessage {
        event_id: 1,
        message_id: Uuid::from_u128(1),
        timestamp: 100,
        content: Content::QuickReply {
            payload: Some("STOP".into()),
            text: Some("Stop promotions".into()),
        },
    };
    let t = run(&ConversationState::default(), event);
    assert!(t.state.opted_out);
}

/// One step of a random conversation.
#[derive(Clone, Debug)]
enum Step {
    Message { timestamp: i64, text: &'static str },
    Replay(usize),
    Ready { generation_offset: u64 },
    Failed { generation_offset: u64 },
    TakenOver,
    Released,
}

fn step() -> impl Strategy<Value = Step> {
    let texts = prop::sample::select(vec![
        "STOP",
        "stop",
        "Start",
        "START",
        "hi",
        "price?",
        "please stop calling me",
        "बंद करो",
        "शुरू",
        "test ride kab milega",
    ]);
    prop_oneof![
        4 => (0i64..50, texts).prop_map(|(timestamp, text)| Step::Message { timestamp, text }),
        2 => (0usize..40).prop_map(Step::Replay),
        2 => (0u64..3).prop_map(|generation_offset| Step::Ready { generation_offset }),
        1 => (0u64..3).prop_map(|generation_offset| Step::Failed { generation_offset }),
        1 => Just(Step::TakenOver),
        1 => Just(Step::Released),
    ]
}

fn is_automated(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::Send(Outgoing::AutoReply { .. } | Outgoing::Holding { .. })
    )
}

proptest! {
    #[test]
    fn no_automated_send_while_opted_out(steps in prop::collection::vec(step(), 1..60)) {
        let keywords = Keywords::default();
        let mut state = ConversationState::default();
        let mut sent_events: Vec<Event> = Vec::new();
        let mut next_event_id = 1;

        for step in steps {
            let event = match step {
                Step::Message { timestamp, text } => {
                    let (_, event) = message(next_event_id, timestamp, text);
                    next_event_id += 1;
                    sent_events.push(event.clone());
                    event
                }
                Step::Replay(index) if !sent_events.is_empty() => {
                    sent_events[index % sent_events.len()].clone()
                }
                Step::Replay(_) => continue,
                Step::Ready { generation_offset } => Event::ReplyReady {
                    generation: state.reply_generation.saturating_sub(generation_offset),
                    text: "reply".into(),
                },
                Step::Failed { generation_offset } => Event::ReplyFailed {
                    generation: state.reply_generation.saturating_sub(generation_offset),
                },
                Step::TakenOver => Event::TakenOver,
                Step::Released => Event::Released,
            };

            let was_opted_out = state.opted_out;
            let was_human = state.mode == Mode::Human;
            let t = transition(&state, &keywords, event);
            for effect in &t.effects {
                if is_automated(effect) {
                    prop_assert!(!was_opted_out, "automated send while opted out: {effect:?}");
                    prop_assert!(!t.state.opted_out, "automated send alongside an opt-out");
                    prop_assert!(!was_human, "automated send while a human owns the chat");
                }
                if let Effect::RequestReply { .. } = effect {
                    prop_assert!(!t.state.opted_out);
                }
                if *effect == Effect::Send(Outgoing::OptInConfirmation) {
                    prop_assert!(was_opted_out, "start confirmed without an opt-out");
                }
                if *effect == Effect::Send(Outgoing::OptOutConfirmation) {
                    prop_assert!(!was_opted_out, "second opt-out confirmation");
                }
            }
            state = t.state;
        }
    }

    #[test]
    fn no_event_handled_twice(
        texts in prop::collection::vec(prop::sample::select(vec!["hi", "STOP", "START", "price"]), 1..30),
        replays in prop::collection::vec(0usize..30, 1..30),
    ) {
        let keywords = Keywords::default();
        let mut state = ConversationState::default();
        let mut events = Vec::new();
        for (index, text) in texts.iter().enumerate() {
            let (_, event) = message(index as i64 + 1, index as i64, text);
            state = transition(&state, &keywords, event.clone()).state;
            events.push(event);
        }
        for replay in replays {
            let event = events[replay % events.len()].clone();
            let t = transition(&state, &keywords, event);
            prop_assert!(t.effects.is_empty(), "a replayed event had effects: {:?}", t.effects);
            prop_assert_eq!(&t.state, &state);
        }
    }
}
