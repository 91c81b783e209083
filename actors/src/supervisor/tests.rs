//! Supervision with an in-memory backend: restarts after failures and safe idle stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::backend::{BoxError, Commit, Delivery, LoadedConversation, SenderSetup, StoredInbound};
use crate::keywords::Keywords;
use crate::machine::{Content, ConversationState, Outgoing};
use crate::sender::{Deliver, DeliveryOutcome, SenderConfig};

/// Events, state and sends kept in memory, with failures injected on request.
#[derive(Default)]
struct MemoryBackend {
    events: Mutex<HashMap<i64, (String, bool)>>,
    states: Mutex<HashMap<ConversationKey, ConversationState>>,
    sent: Arc<Mutex<Vec<Uuid>>>,
    queued: Mutex<Vec<Outgoing>>,
    /// Commits that fail before succeeding.
    failing_commits: AtomicUsize,
    loads: AtomicUsize,
}

struct MemoryDeliver(Arc<Mutex<Vec<Uuid>>>);

impl Deliver for MemoryDeliver {
    async fn deliver(&self, outbox_id: Uuid) -> DeliveryOutcome {
        self.0.lock().unwrap().push(outbox_id);
        DeliveryOutcome::Sent
    }
}

impl Backend for MemoryBackend {
    type Deliver = MemoryDeliver;

    async fn load_conversation(
        &self,
        key: ConversationKey,
    ) -> Result<LoadedConversation, BoxError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let state = self
            .states
            .lock()
            .unwrap()
            .get(&key)
            .cloned()
            .unwrap_or_default();
        Ok(LoadedConversation {
            state,
            keywords: Keywords::default(),
        })
    }

    async fn load_event(
        &self,
        _key: ConversationKey,
        event_id: i64,
    ) -> Result<Option<StoredInbound>, BoxError> {
        let events = self.events.lock().unwrap();
        Ok(events
            .get(&event_id)
            .filter(|(_, processed)| !processed)
            .map(|(text, _)| StoredInbound {
                event_id,
                message_id: Uuid::from_u128(event_id as u128),
                timestamp: event_id,
                content: Content::Text(text.clone()),
            }))
    }

    async fn commit(&self, key: ConversationKey, commit: Commit) -> Result<Vec<Queued>, BoxError> {
        if self
            .failing_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("injected commit failure".into());
        }
        if commit.event_id == Some(SLOW_EVENT) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(event_id) = commit.event_id {
            let mut events = self.events.lock().unwrap();
            let entry = events.get_mut(&event_id).expect("known event");
            if entry.1 {
                return Ok(Vec::new());
            }
            entry.1 = true;
        }
        self.states.lock().unwrap().insert(key, commit.state);
        self.queued
            .lock()
            .unwrap()
            .extend(commit.sends.iter().cloned());
        Ok(commit
            .sends
            .iter()
            .map(|_| Queued {
                outbox_id: Uuid::new_v4(),
                phone_number_id: "1".into(),
                recipient: "91".into(),
            })
            .collect())
    }

    async fn acknowledge(&self, _delivery: Delivery) {}

    async fn generate_reply(
        &self,
        _key: ConversationKey,
        _for_message: Uuid,
    ) -> Result<String, BoxError> {
        Ok("reply".to_string())
    }

    async fn unprocessed_events(&self, _key: ConversationKey) -> Result<Vec<i64>, BoxError> {
        let events = self.events.lock().unwrap();
        let mut ids: Vec<i64> = events
            .iter()
            .filter(|(_, (_, done))| !done)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn sender_setup(
        &self,
        _phone_number_id: &str,
    ) -> Result<SenderSetup<MemoryDeliver>, BoxError> {
        Ok(SenderSetup {
            deliver: Arc::new(MemoryDeliver(self.sent.clone())),
            config: SenderConfig::default(),
        })
    }
}

/// An event whose commit takes a while, so that later events wait in the mailbox.
const SLOW_EVENT: i64 = 1000;

fn key() -> ConversationKey {
    ConversationKey {
        tenant_id: Uuid::from_u128(1),
        conversation_id: Uuid::from_u128(2),
    }
}

async fn start(backend: Arc<MemoryBackend>, idle_timeout: Duration) -> ActorRef<SupervisorMsg> {
    let conversation = ConversationConfig {
        idle_timeout,
        reply_debounce: Duration::from_millis(10),
    };
    let (supervisor, _) = Actor::spawn(
        None,
        Supervisor::<MemoryBackend>::default(),
        SupervisorArgs {
            backend,
            conversation,
        },
    )
    .await
    .unwrap();
    supervisor
}

fn dispatch(supervisor: &ActorRef<SupervisorMsg>, event_id: i64) {
    supervisor
        .cast(SupervisorMsg::Dispatch(Dispatch {
            key: key(),
            event_id,
            delivery: None,
        }))
        .unwrap();
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn failed_conversation_restarts_with_state_reloaded() {
    let backend = Arc::new(MemoryBackend::default());
    backend
        .events
        .lock()
        .unwrap()
        .insert(1, ("STOP".into(), false));
    backend.failing_commits.store(1, Ordering::SeqCst);
    let supervisor = start(backend.clone(), Duration::from_secs(30)).await;

    dispatch(&supervisor, 1);
    wait_until("the opt-out to be committed", || {
        backend
            .states
            .lock()
            .unwrap()
            .get(&key())
            .is_some_and(|s| s.opted_out)
    })
    .await;
    assert!(
        backend.loads.load(Ordering::SeqCst) >= 2,
        "the restarted actor loaded its state again"
    );
    assert_eq!(
        *backend.queued.lock().unwrap(),
        vec![Outgoing::OptOutConfirmation]
    );
    wait_until("the confirmation to be sent", || {
        backend.sent.lock().unwrap().len() == 1
    })
    .await;
    supervisor.stop(None);
}

#[tokio::test]
async fn idle_actor_stops_and_next_event_respawns() {
    let backend = Arc::new(MemoryBackend::default());
    backend
        .events
        .lock()
        .unwrap()
        .insert(1, ("STOP".into(), false));
    backend
        .events
        .lock()
        .unwrap()
        .insert(2, ("START".into(), false));
    let supervisor = start(backend.clone(), Duration::from_millis(50)).await;

    dispatch(&supervisor, 1);
    wait_until("the first event", || {
        backend.queued.lock().unwrap().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loads_before = backend.loads.load(Ordering::SeqCst);

    dispatch(&supervisor, 2);
    wait_until("the second event", || {
        backend.queued.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        backend.loads.load(Ordering::SeqCst),
        loads_before + 1,
        "a new incarnation loaded the state"
    );
    let state = backend.states.lock().unwrap().get(&key()).cloned().unwrap();
    assert!(
        !state.opted_out,
        "the new incarnation saw the opt-out and then the opt-in"
    );
    supervisor.stop(None);
}

#[tokio::test]
async fn stale_idle_report_does_not_stop_busy_actor() {
    let backend = Arc::new(MemoryBackend::default());
    for (id, text) in [(1, "hi"), (SLOW_EVENT, "price?"), (3, "hello?")] {
        backend
            .events
            .lock()
            .unwrap()
            .insert(id, (text.to_string(), false));
    }
    let supervisor = start(backend.clone(), Duration::from_secs(30)).await;
    dispatch(&supervisor, 1);
    wait_until("the first event", || backend.events.lock().unwrap()[&1].1).await;
    // The supervisor's children are the conversation and, once a reply is queued, a sender.
    let children: Vec<ActorId> = supervisor
        .get_children()
        .iter()
        .map(|child| child.get_id())
        .collect();

    // The actor reported idle after one event, but two more were routed before the report
    // arrived: the supervisor must keep it running.
    dispatch(&supervisor, SLOW_EVENT);
    dispatch(&supervisor, 3);
    for actor in children {
        supervisor
            .cast(SupervisorMsg::Idle {
                key: key(),
                actor,
                handled: 1,
            })
            .unwrap();
    }

    wait_until("every event to be processed", || {
        backend
            .events
            .lock()
            .unwrap()
            .values()
            .all(|(_, done)| *done)
    })
    .await;
    supervisor.stop(None);
}
