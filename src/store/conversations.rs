//! Conversation state for the actors: loading, committing transitions, and history for replies.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use velochat_actors::backend::{ConversationKey, Queued, StoredInbound};
use velochat_actors::keywords::Keywords;
use velochat_actors::machine::{Content, ConversationState, Mode, Outgoing};

use serde_json::json;

use super::staff;
use super::tenants::{self, TenantSettings};
use super::{tenant_tx, TenantTx};
use crate::whatsapp::split_text;

/// Meta's limit on a text message body, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

const DEFAULT_AUTOMATED_LABEL: &str = "[Auto-reply]";

/// Loads a conversation's machine state and its tenant's keywords.
pub async fn load(
    pool: &PgPool,
    key: ConversationKey,
) -> anyhow::Result<(ConversationState, Keywords)> {
    let mut tx = tenant_tx(pool, key.tenant_id).await?;
    let row: (i64, Option<Uuid>, Option<i64>, Option<i64>, String, bool) = sqlx::query_as(
        "SELECT c.reply_generation, c.reply_owed_for, c.opt_changed_at, c.latest_inbound_at,
                c.mode, ct.opted_out
         FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
         WHERE c.id = $1",
    )
    .bind(key.conversation_id)
    .fetch_one(&mut *tx)
    .await?;
    let settings = tenants::settings(&mut tx).await?;
    tx.commit().await?;

    let (reply_generation, reply_owed_for, opt_changed_at, latest_inbound_at, mode, opted_out) =
        row;
    let state = ConversationState {
        opted_out,
        opt_changed_at,
        mode: if mode == "human" {
            Mode::Human
        } else {
            Mode::Ai
        },
        reply_generation: reply_generation as u64,
        reply_owed_for,
        latest_inbound_at,
        recent_events: VecDeque::new(),
    };
    let keywords = Keywords::new(
        settings.stop_keywords.as_deref(),
        settings.start_keywords.as_deref(),
    );
    Ok((state, keywords))
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: Uuid,
    wa_timestamp: DateTime<Utc>,
    message_type: String,
    body: Option<String>,
    payload: serde_json::Value,
}

/// Loads an unprocessed inbound event with its message.
pub async fn load_event(
    pool: &PgPool,
    key: ConversationKey,
    event_id: i64,
) -> anyhow::Result<Option<StoredInbound>> {
    let mut tx = tenant_tx(pool, key.tenant_id).await?;
    let row: Option<EventRow> = sqlx::query_as(
        "SELECT m.id, m.wa_timestamp, m.message_type, m.body, m.payload
         FROM inbound_events e JOIN messages m ON m.id = e.message_id
         WHERE e.id = $1 AND e.conversation_id = $2 AND e.processed_at IS NULL",
    )
    .bind(event_id)
    .bind(key.conversation_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;

    Ok(row.map(|row| StoredInbound {
        event_id,
        message_id: row.id,
        timestamp: row.wa_timestamp.timestamp(),
        content: content_of(&row.message_type, row.body, &row.payload),
    }))
}

/// Converts a stored message into the content the state machine reads.
fn content_of(message_type: &str, body: Option<String>, payload: &serde_json::Value) -> Content {
    let quick_reply_payload = match message_type {
        "button" => payload.pointer("/button/payload"),
        "interactive" => payload
            .pointer("/interactive/button_reply/id")
            .or_else(|| payload.pointer("/interactive/list_reply/id")),
        _ => None,
    };
    if let Some(quick_reply) = quick_reply_payload {
        return Content::QuickReply {
            payload: quick_reply.as_str().map(str::to_string),
            text: body,
        };
    }
    match body {
        Some(text) if !text.trim().is_empty() => Content::Text(text),
        _ => Content::Other,
    }
}

/// Commits one transition: the state, the event's processed mark and the queued messages.
///
/// Returns no rows when the event had already been processed, for example by an earlier
/// incarnation of the actor, so that a replay never queues a message twice.
pub async fn commit(
    pool: &PgPool,
    key: ConversationKey,
    commit: &velochat_actors::backend::Commit,
) -> anyhow::Result<Vec<Queued>> {
    let mut tx = tenant_tx(pool, key.tenant_id).await?;

    if let Some(event_id) = commit.event_id {
        let marked = sqlx::query(
            "UPDATE inbound_events SET processed_at = now()
             WHERE id = $1 AND conversation_id = $2 AND processed_at IS NULL",
        )
        .bind(event_id)
        .bind(key.conversation_id)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(Vec::new());
        }
    }

    let state = &commit.state;
    // Rows are locked contact first, then conversation, the same order as webhook intake, so
    // the two never wait on each other in a cycle.
    let contact_id: Uuid = sqlx::query_scalar("SELECT contact_id FROM conversations WHERE id = $1")
        .bind(key.conversation_id)
        .fetch_one(&mut *tx)
        .await?;
    let opt_changed = sqlx::query(
        "UPDATE contacts SET opted_out = $2,
                opted_out_at = CASE WHEN $2 THEN COALESCE(opted_out_at, now()) ELSE NULL END
         WHERE id = $1 AND opted_out <> $2",
    )
    .bind(contact_id)
    .bind(state.opted_out)
    .execute(&mut *tx)
    .await?;

    let (phone_number_id, recipient): (String, String) = sqlx::query_as(
        "UPDATE conversations c SET
             reply_generation = $2, reply_owed_for = $3, opt_changed_at = $4,
             latest_inbound_at = $5, mode = $6
         FROM contacts ct
         WHERE c.id = $1 AND ct.id = c.contact_id
         RETURNING c.phone_number_id, ct.wa_id",
    )
    .bind(key.conversation_id)
    .bind(state.reply_generation as i64)
    .bind(state.reply_owed_for)
    .bind(state.opt_changed_at)
    .bind(state.latest_inbound_at)
    .bind(match state.mode {
        Mode::Ai => "ai",
        Mode::Human => "human",
    })
    .fetch_one(&mut *tx)
    .await?;

    if opt_changed.rows_affected() > 0 {
        if state.opted_out {
            // Nothing queued before the opt-out may go out after it.
            sqlx::query(
                "UPDATE outbox SET status = 'cancelled', error_message = 'the customer opted out'
                 WHERE conversation_id = $1 AND status = 'queued'",
            )
            .bind(key.conversation_id)
            .execute(&mut *tx)
            .await?;
        }
        let payload = json!({ "contact_id": contact_id, "opted_out": state.opted_out });
        staff::record_event(
            &mut tx,
            key.tenant_id,
            "contact.updated",
            Some(key.conversation_id),
            payload,
        )
        .await?;
    }

    // NOTE: follow-up timers do not exist yet, so `commit.cancel_follow_ups` has nothing to
    // cancel; the opt-out above already cancels every queued message.
    let mut queued = Vec::new();
    if !commit.sends.is_empty() {
        let settings = tenants::settings(&mut tx).await?;
        for outgoing in &commit.sends {
            let ids = queue(
                &mut tx,
                key,
                &phone_number_id,
                &recipient,
                &settings,
                outgoing,
            )
            .await?;
            queued.extend(ids.into_iter().map(|outbox_id| Queued {
                outbox_id,
                phone_number_id: phone_number_id.clone(),
                recipient: recipient.clone(),
            }));
        }
    }

    tx.commit().await?;
    Ok(queued)
}

/// Inserts one decided message into the outbox, split into parts when it is too long.
async fn queue(
    tx: &mut TenantTx,
    key: ConversationKey,
    phone_number_id: &str,
    recipient: &str,
    settings: &TenantSettings,
    outgoing: &Outgoing,
) -> sqlx::Result<Vec<Uuid>> {
    let (kind, reply_to, text) = render(settings, outgoing);
    // An empty label would hide that the message is automated, so it falls back to the default.
    let label = settings
        .automated_label
        .as_deref()
        .map(str::trim)
        .filter(|label| !label.is_empty())
        .unwrap_or(DEFAULT_AUTOMATED_LABEL);
    // Every part carries the label, so the customer sees each one is automated.
    let room = MAX_TEXT_CHARS - label.chars().count() - 1;

    let mut ids = Vec::new();
    for (part, text) in split_text(&text, room).into_iter().enumerate() {
        let id: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO outbox (id, tenant_id, conversation_id, phone_number_id, recipient, kind,
                                 automated, body, reply_to, part)
             VALUES ($1, $2, $3, $4, $5, $6, true, $7, $8, $9)
             ON CONFLICT (conversation_id, kind, reply_to, part) DO NOTHING
             RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(key.tenant_id)
        .bind(key.conversation_id)
        .bind(phone_number_id)
        .bind(recipient)
        .bind(kind)
        .bind(format!("{label} {text}"))
        .bind(reply_to)
        .bind(part as i16)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(id) = id {
            let payload = json!({
                "conversation_id": key.conversation_id,
                "message_id": id,
                "direction": "outbound",
                "kind": kind,
                "automated": true,
                "body": format!("{label} {text}"),
                "status": "queued",
            });
            staff::record_event(
                tx,
                key.tenant_id,
                "message.created",
                Some(key.conversation_id),
                payload,
            )
            .await?;
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The outbox kind, the message answered and the text of a decided message.
fn render(settings: &TenantSettings, outgoing: &Outgoing) -> (&'static str, Option<Uuid>, String) {
    let name = &settings.name;
    match outgoing {
        Outgoing::OptOutConfirmation => (
            "opt_out_confirmation",
            None,
            settings.opt_out_confirmation.clone().unwrap_or_else(|| {
                format!("You will no longer receive messages from {name}. Reply START to subscribe again.")
            }),
        ),
        Outgoing::OptInConfirmation => (
            "opt_in_confirmation",
            None,
            settings.opt_in_confirmation.clone().unwrap_or_else(|| {
                format!("You are subscribed to messages from {name} again. Reply STOP to unsubscribe.")
            }),
        ),
        Outgoing::AutoReply { reply_to, text } => ("auto_reply", Some(*reply_to), text.clone()),
        Outgoing::Holding { reply_to } => (
            "holding",
            Some(*reply_to),
            settings.holding_message.clone().unwrap_or_else(|| {
                format!("Thank you for your message. Someone from {name} will get back to you shortly.")
            }),
        ),
    }
}

/// One line of conversation history, oldest first.
#[derive(Debug, Clone)]
pub struct HistoryLine {
    pub inbound: bool,
    pub text: String,
}

/// Loads the tenant's settings, the customer's name and the recent history up to `for_message`.
pub async fn reply_context(
    pool: &PgPool,
    key: ConversationKey,
    for_message: Uuid,
    limit: i64,
) -> anyhow::Result<(TenantSettings, Option<String>, Vec<HistoryLine>)> {
    let mut tx = tenant_tx(pool, key.tenant_id).await?;
    let settings = tenants::settings(&mut tx).await?;
    let customer_name: Option<String> = sqlx::query_scalar(
        "SELECT ct.profile_name FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
         WHERE c.id = $1",
    )
    .bind(key.conversation_id)
    .fetch_one(&mut *tx)
    .await?;

    // The newest `limit` lines up to the message being answered. Inbound and outbound lines are
    // interleaved by this server's clock, since Meta's timestamps exist only for inbound ones;
    // the answered message is always the last line.
    let mut lines: Vec<(bool, String)> = sqlx::query_as(
        "WITH answered AS (SELECT received_at FROM messages WHERE id = $2)
         SELECT inbound, text FROM (
             SELECT true AS inbound, body AS text, received_at AS at
             FROM messages
             WHERE conversation_id = $1 AND body IS NOT NULL
               AND received_at <= (SELECT received_at FROM answered)
             UNION ALL
             SELECT false, body, created_at
             FROM outbox
             WHERE conversation_id = $1 AND status NOT IN ('cancelled', 'failed')
               AND created_at <= (SELECT received_at FROM answered)
         ) lines
         ORDER BY at DESC, inbound DESC
         LIMIT $3",
    )
    .bind(key.conversation_id)
    .bind(for_message)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    lines.reverse();
    let history = lines
        .into_iter()
        .map(|(inbound, text)| HistoryLine { inbound, text })
        .collect();
    Ok((settings, customer_name, history))
}

/// Lists a conversation's stored but unprocessed events, oldest first.
pub async fn unprocessed_events(pool: &PgPool, key: ConversationKey) -> anyhow::Result<Vec<i64>> {
    let mut tx = tenant_tx(pool, key.tenant_id).await?;
    let ids = sqlx::query_scalar(
        "SELECT e.id FROM inbound_events e JOIN messages m ON m.id = e.message_id
         WHERE e.conversation_id = $1 AND e.processed_at IS NULL
         ORDER BY m.wa_timestamp, e.id",
    )
    .bind(key.conversation_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids)
}

/// Lists conversations that still owe an auto-reply, across tenants. Runs as the platform role.
pub async fn owing_replies(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<ConversationKey>> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, id FROM conversations WHERE reply_owed_for IS NOT NULL LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, conversation_id)| ConversationKey {
            tenant_id,
            conversation_id,
        })
        .collect())
}
