//! The recovery sweep: finds work that is stored but was never finished and hands it out again.
//!
//! It covers events Redis lost or that were read before a crash, outbox rows whose sender
//! stopped, and sends cut off after Meta may have accepted them. Handing out the same work twice
//! is harmless: events are marked processed in the transaction that commits their effects, and
//! senders claim a row only while it is queued.

use std::time::Duration;

use ractor::ActorRef;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use velochat_actors::backend::{ConversationKey, Dispatch, Queued};
use velochat_actors::supervisor::SupervisorMsg;

use ractor::rpc::CallResult;
use velochat_actors::machine::Event;

use crate::store::{self, conversations, inbound, outbox};

/// How long the sweep waits for a conversation actor to commit a hand-back.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// How many rows one sweep hands out at most, per kind.
const SWEEP_LIMIT: i64 = 1000;

/// Timing of the sweep.
#[derive(Clone, Debug)]
pub struct RecoveryConfig {
    /// Time between sweeps.
    pub interval: Duration,
    /// Minimum age of an unprocessed event before the sweep dispatches it again, so that the
    /// sweep does not race the normal path. The first sweep after start-up uses zero.
    pub event_grace: Duration,
    /// How long a send cut off mid-call waits for a status webhook before it is retried.
    pub confirm_window: Duration,
    /// How long a taken-over conversation may go without staff activity before it returns to
    /// the AI.
    pub human_idle: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            event_grace: Duration::from_secs(30),
            confirm_window: Duration::from_secs(120),
            human_idle: Duration::from_secs(1800),
        }
    }
}

/// Sweeps until `stop` fires.
pub async fn run(
    pool: PgPool,
    supervisor: ActorRef<SupervisorMsg>,
    config: RecoveryConfig,
    stop: CancellationToken,
) {
    let mut grace = Duration::ZERO;
    loop {
        if let Err(error) = sweep(&pool, &supervisor, &config, grace).await {
            warn!(
                error = format!("{error:#}"),
                "recovery sweep failed; retrying at the next interval"
            );
        }
        grace = config.event_grace;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
    }
}

async fn sweep(
    pool: &PgPool,
    supervisor: &ActorRef<SupervisorMsg>,
    config: &RecoveryConfig,
    grace: Duration,
) -> anyhow::Result<()> {
    let events = inbound::unprocessed(pool, grace.as_secs_f64(), SWEEP_LIMIT).await?;
    if !events.is_empty() {
        info!(count = events.len(), "re-dispatching unprocessed events");
    }
    for event in events {
        let key = ConversationKey {
            tenant_id: event.tenant_id,
            conversation_id: event.conversation_id,
        };
        supervisor.cast(SupervisorMsg::Dispatch(Dispatch {
            key,
            event_id: event.event_id,
            delivery: None,
        }))?;
    }

    // A reply owed when the engine stopped resumes when its conversation's actor starts; a
    // running actor ignores this.
    for key in conversations::owing_replies(pool, SWEEP_LIMIT).await? {
        supervisor.cast(SupervisorMsg::Recover(key))?;
    }

    hand_back_idle(pool, supervisor, config.human_idle).await?;

    // Old live events are past any client's replay window.
    sqlx::query("DELETE FROM staff_events WHERE created_at < now() - interval '1 hour'")
        .execute(pool)
        .await?;

    let requeued = outbox::requeue_unconfirmed(pool, config.confirm_window).await?;
    if requeued > 0 {
        warn!(
            count = requeued,
            "retrying sends that were cut off and never confirmed"
        );
    }
    for pending in outbox::due(pool, SWEEP_LIMIT).await? {
        supervisor.cast(SupervisorMsg::Enqueue(Queued {
            outbox_id: pending.outbox_id,
            phone_number_id: pending.phone_number_id,
            recipient: pending.recipient,
        }))?;
    }
    Ok(())
}

/// Returns taken-over conversations without staff activity for `idle` to the AI.
async fn hand_back_idle(
    pool: &PgPool,
    supervisor: &ActorRef<SupervisorMsg>,
    idle: Duration,
) -> anyhow::Result<()> {
    let idle_conversations: Vec<(uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
        "SELECT tenant_id, id FROM conversations
         WHERE mode = 'human'
           AND COALESCE(staff_activity_at, '-infinity'::timestamptz) < now() - make_interval(secs => $1)
         LIMIT $2",
    )
    .bind(idle.as_secs_f64())
    .bind(SWEEP_LIMIT)
    .fetch_all(pool)
    .await?;

    for (tenant_id, conversation_id) in idle_conversations {
        let key = ConversationKey {
            tenant_id,
            conversation_id,
        };
        let released = supervisor
            .call(
                |reply| SupervisorMsg::Command {
                    key,
                    event: Event::Released,
                    reply,
                },
                Some(COMMAND_TIMEOUT),
            )
            .await?;
        if !matches!(released, CallResult::Success(Ok(_))) {
            warn!(%tenant_id, %conversation_id, "could not hand an idle conversation back to the AI");
            continue;
        }
        let mut tx = store::tenant_tx(pool, tenant_id).await?;
        sqlx::query(
            "UPDATE conversations SET assigned_to = NULL, staff_activity_at = now() WHERE id = $1",
        )
        .bind(conversation_id)
        .execute(&mut *tx)
        .await?;
        let payload = serde_json::json!({
            "conversation_id": conversation_id, "mode": "ai", "assigned_to": null, "reason": "idle",
        });
        store::staff::record_event(
            &mut tx,
            tenant_id,
            "conversation.updated",
            Some(conversation_id),
            payload,
        )
        .await?;
        tx.commit().await?;
        info!(%tenant_id, %conversation_id, "taken-over conversation idle; handed back to the AI");
    }
    Ok(())
}
