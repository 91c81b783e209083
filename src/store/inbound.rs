//! Storing webhook items: messages, statuses and preference changes, deduplicated by WhatsApp id.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use serde_json::json;

use super::{outbox, staff, tenant_tx, TenantTx};
use crate::whatsapp::{ChangeValue, InboundMessage, Status, UserPreference};

/// A newly stored customer message waiting for its conversation actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    pub event_id: i64,
}

/// The new events and counts from storing one change.
#[derive(Debug, Default)]
pub struct Ingested {
    pub events: Vec<NewEvent>,
    pub duplicate_messages: usize,
    pub statuses: usize,
}

/// Stores every item of one change in a single transaction of `tenant_id`.
pub async fn ingest(
    pool: &PgPool,
    tenant_id: Uuid,
    phone_number_id: &str,
    value: &ChangeValue,
) -> anyhow::Result<Ingested> {
    let mut tx = tenant_tx(pool, tenant_id).await?;
    let mut ingested = Ingested::default();
    let names: HashMap<&str, &str> = value
        .contacts
        .iter()
        .filter_map(|c| Some((c.wa_id.as_str(), c.profile_name.as_deref()?)))
        .collect();

    // Meta's timestamps order a conversation, so a batch is stored oldest first.
    let mut messages: Vec<&InboundMessage> = value.messages.iter().collect();
    messages.sort_by_key(|m| m.timestamp);
    let mut conversations: HashMap<&str, Uuid> = HashMap::new();
    for message in messages {
        let conversation_id = match conversations.get(message.from.as_str()) {
            Some(id) => *id,
            None => {
                let name = names.get(message.from.as_str()).copied();
                let contact_id = upsert_contact(&mut tx, tenant_id, &message.from, name).await?;
                let id =
                    upsert_conversation(&mut tx, tenant_id, contact_id, phone_number_id).await?;
                conversations.insert(&message.from, id);
                id
            }
        };
        match insert_message(&mut tx, tenant_id, conversation_id, message).await? {
            Some((event_id, message_id)) => {
                note_customer_message(&mut tx, tenant_id, conversation_id, message_id, message)
                    .await?;
                ingested.events.push(NewEvent {
                    tenant_id,
                    conversation_id,
                    event_id,
                });
            }
            None => ingested.duplicate_messages += 1,
        }
    }

    for status in &value.statuses {
        if insert_status(&mut tx, tenant_id, status).await? {
            outbox::apply_status(&mut tx, &outbox::StatusUpdate::from_webhook(status)).await?;
        }
        ingested.statuses += 1;
    }

    for preference in &value.user_preferences {
        apply_preference(&mut tx, tenant_id, preference).await?;
    }

    tx.commit().await?;
    Ok(ingested)
}

async fn upsert_contact(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    wa_id: &str,
    profile_name: Option<&str>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO contacts (id, tenant_id, wa_id, profile_name) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, wa_id)
         DO UPDATE SET profile_name = COALESCE(EXCLUDED.profile_name, contacts.profile_name)
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(wa_id)
    .bind(profile_name)
    .fetch_one(&mut **tx)
    .await
}

async fn upsert_conversation(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    contact_id: Uuid,
    phone_number_id: &str,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO conversations (id, tenant_id, contact_id, phone_number_id, last_message_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (tenant_id, contact_id)
         DO UPDATE SET phone_number_id = EXCLUDED.phone_number_id, last_message_at = now()
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(contact_id)
    .bind(phone_number_id)
    .fetch_one(&mut **tx)
    .await
}

/// Opens the 24-hour service window and tells staff about the new message.
async fn note_customer_message(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    conversation_id: Uuid,
    message_id: Uuid,
    message: &InboundMessage,
) -> sqlx::Result<()> {
    let sent_at = unix_time(message.timestamp);
    sqlx::query(
        "UPDATE conversations SET last_customer_message_at =
             GREATEST(COALESCE(last_customer_message_at, '-infinity'::timestamptz), $2)
         WHERE id = $1",
    )
    .bind(conversation_id)
    .bind(sent_at)
    .execute(&mut **tx)
    .await?;
    let payload = json!({
        "conversation_id": conversation_id,
        "message_id": message_id,
        "direction": "inbound",
        "wamid": message.id,
        "message_type": message.kind.type_name(),
        "body": message.kind.text(),
        "timestamp": sent_at,
    });
    staff::record_event(
        tx,
        tenant_id,
        "message.created",
        Some(conversation_id),
        payload,
    )
    .await
}

/// Stores a message and its inbound event, returning the event and message ids; `None` when the
/// WhatsApp id was stored before.
async fn insert_message(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    conversation_id: Uuid,
    message: &InboundMessage,
) -> sqlx::Result<Option<(i64, Uuid)>> {
    let message_id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO messages (id, tenant_id, conversation_id, wamid, message_type, body,
                               context_wamid, payload, wa_timestamp)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (tenant_id, wamid) DO NOTHING
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(conversation_id)
    .bind(&message.id)
    .bind(message.kind.type_name())
    .bind(message.kind.text())
    .bind(message.context_id.as_deref())
    .bind(&message.raw)
    .bind(unix_time(message.timestamp))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(message_id) = message_id else {
        return Ok(None);
    };

    let event_id = sqlx::query_scalar(
        "INSERT INTO inbound_events (tenant_id, conversation_id, message_id) VALUES ($1, $2, $3)
         RETURNING id",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .bind(message_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some((event_id, message_id)))
}

/// Stores a status item; `false` when the same status of the same message was stored before.
async fn insert_status(tx: &mut TenantTx, tenant_id: Uuid, status: &Status) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO message_statuses (tenant_id, wamid, status, wa_timestamp, recipient,
                                       callback_data, error_code, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, wamid, status) DO NOTHING",
    )
    .bind(tenant_id)
    .bind(&status.id)
    .bind(status.status.as_str())
    .bind(unix_time(status.timestamp))
    .bind(status.recipient_id.as_deref())
    .bind(status.biz_opaque_callback_data.as_deref())
    .bind(status.errors.first().map(|e| e.code))
    .bind(&status.raw)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Records WhatsApp's own marketing stop or resume for a contact.
async fn apply_preference(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    preference: &UserPreference,
) -> sqlx::Result<()> {
    let stopped = match preference.value.as_str() {
        "stop" => true,
        "resume" => false,
        other => {
            tracing::warn!(value = other, "ignoring unknown user preference value");
            return Ok(());
        }
    };
    sqlx::query(
        "INSERT INTO contacts (id, tenant_id, wa_id, marketing_opted_out) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, wa_id) DO UPDATE SET marketing_opted_out = EXCLUDED.marketing_opted_out",
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(&preference.wa_id)
    .bind(stopped)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Converts Meta's unix seconds, clamping values chrono cannot represent.
pub fn unix_time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Lists unprocessed events older than `min_age_seconds`, across tenants. Runs as the platform role.
pub async fn unprocessed(
    pool: &PgPool,
    min_age_seconds: f64,
    limit: i64,
) -> sqlx::Result<Vec<NewEvent>> {
    let rows: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
        "SELECT tenant_id, conversation_id, id FROM inbound_events
         WHERE processed_at IS NULL AND created_at <= now() - make_interval(secs => $1)
         ORDER BY id LIMIT $2",
    )
    .bind(min_age_seconds)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, conversation_id, event_id)| NewEvent {
            tenant_id,
            conversation_id,
            event_id,
        })
        .collect())
}
