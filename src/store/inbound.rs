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

/// Longest WhatsApp id or message id stored; Meta's are far shorter, and PostgreSQL cannot index
/// values of several kilobytes.
const MAX_ID_LEN: usize = 256;
/// Maximum length of a message type name stored as sent; longer ones are stored as `unsupported`.
const MAX_TYPE_LEN: usize = 64;
/// How far ahead of this server's clock a Meta timestamp may be before it is distrusted.
const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// A message ready to store: its usable timestamp and its payload cleaned for PostgreSQL.
struct Prepared<'a> {
    message: &'a InboundMessage,
    timestamp: i64,
    raw: serde_json::Value,
}

/// Stores every item of one change in a single transaction of `tenant_id`.
///
/// Items that cannot be stored as sent are repaired or skipped one by one, so that one odd item
/// never fails the others. NUL characters, which PostgreSQL text cannot hold, are removed. Ids
/// too long to be real are skipped with a warning. Timestamps in the future or missing are
/// replaced by the time of receipt.
pub async fn ingest(
    pool: &PgPool,
    tenant_id: Uuid,
    phone_number_id: &str,
    value: &ChangeValue,
) -> anyhow::Result<Ingested> {
    let now = Utc::now().timestamp();
    let mut ingested = Ingested::default();
    let names: HashMap<&str, String> = value
        .contacts
        .iter()
        .filter_map(|c| Some((c.wa_id.as_str(), strip_nul(c.profile_name.as_deref()?))))
        .collect();

    let mut messages: Vec<Prepared> = value
        .messages
        .iter()
        .filter(|message| {
            usable_id(&message.id, "message id") && usable_id(&message.from, "sender")
        })
        .map(|message| Prepared {
            message,
            timestamp: usable_timestamp(message.timestamp, now),
            raw: clean_json(&message.raw),
        })
        .collect();
    // Meta's timestamps order a conversation, so a batch is stored oldest first.
    messages.sort_by_key(|prepared| prepared.timestamp);
    let mut statuses: Vec<&Status> = value
        .statuses
        .iter()
        .filter(|status| usable_id(&status.id, "status id"))
        .collect();
    statuses.sort_by(|a, b| (&a.id, a.timestamp).cmp(&(&b.id, b.timestamp)));
    let preferences: Vec<&UserPreference> = value
        .user_preferences
        .iter()
        .filter(|p| usable_id(&p.wa_id, "preference wa_id"))
        .collect();

    // Concurrent webhooks lock contact and conversation rows in one order, sorted by WhatsApp
    // id, so that they never deadlock.
    let mut wa_ids: Vec<&str> = messages
        .iter()
        .map(|prepared| prepared.message.from.as_str())
        .chain(preferences.iter().map(|p| p.wa_id.as_str()))
        .collect();
    wa_ids.sort_unstable();
    wa_ids.dedup();

    let mut tx = tenant_tx(pool, tenant_id).await?;
    let mut senders: HashMap<&str, i64> = HashMap::new();
    for prepared in &messages {
        let latest = senders
            .entry(prepared.message.from.as_str())
            .or_insert(prepared.timestamp);
        *latest = (*latest).max(prepared.timestamp);
    }
    let mut conversations: HashMap<&str, Uuid> = HashMap::new();
    for wa_id in wa_ids {
        let name = names.get(wa_id).map(String::as_str);
        let contact_id = upsert_contact(&mut tx, tenant_id, wa_id, name).await?;
        if let Some(latest) = senders.get(wa_id) {
            let latest = unix_time(*latest);
            let id = upsert_conversation(&mut tx, tenant_id, contact_id, phone_number_id, latest)
                .await?;
            conversations.insert(wa_id, id);
        }
    }

    for prepared in &messages {
        let conversation_id = conversations[prepared.message.from.as_str()];
        match insert_message(&mut tx, tenant_id, conversation_id, prepared).await? {
            Some((event_id, message_id)) => {
                record_message_event(&mut tx, tenant_id, conversation_id, message_id, prepared)
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

    for status in statuses {
        if insert_status(&mut tx, tenant_id, status).await? {
            outbox::apply_status(&mut tx, &outbox::StatusUpdate::from_webhook(status)).await?;
        }
        ingested.statuses += 1;
    }

    for preference in preferences {
        apply_preference(&mut tx, preference).await?;
    }

    tx.commit().await?;
    Ok(ingested)
}

/// Returns whether an id can be stored, and logs the ones that cannot.
fn usable_id(id: &str, what: &str) -> bool {
    let usable = !id.is_empty() && id.len() <= MAX_ID_LEN && !id.contains('\0');
    if !usable {
        tracing::warn!(
            what,
            length = id.len(),
            "skipping webhook item with an unusable id"
        );
    }
    usable
}

/// Meta's timestamp, or the time of receipt when it is missing or in the future: a timestamp
/// ahead of the clock would otherwise make every later message look older.
fn usable_timestamp(timestamp: i64, now: i64) -> i64 {
    if timestamp <= 0 || timestamp > now + MAX_CLOCK_SKEW_SECS {
        tracing::warn!(
            timestamp,
            "replacing an implausible message timestamp with the time of receipt"
        );
        now
    } else {
        timestamp
    }
}

/// Removes NUL characters, which PostgreSQL text and jsonb cannot hold.
pub fn strip_nul(text: &str) -> String {
    text.replace('\0', "")
}

/// Returns a copy of a JSON value with NUL characters removed from every string and key.
pub fn clean_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains('\0') => Value::String(strip_nul(text)),
        Value::Array(items) => Value::Array(items.iter().map(clean_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (strip_nul(k), clean_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
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

/// Creates or touches the customer's conversation. `latest_message_at` is the newest Meta
/// timestamp among the customer's messages in this change, and it opens the 24-hour service
/// window. A redelivered message sets it to a value it already had.
async fn upsert_conversation(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    contact_id: Uuid,
    phone_number_id: &str,
    latest_message_at: DateTime<Utc>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO conversations (id, tenant_id, contact_id, phone_number_id, last_message_at,
                                    last_customer_message_at)
         VALUES ($1, $2, $3, $4, now(), $5)
         ON CONFLICT (tenant_id, contact_id)
         DO UPDATE SET phone_number_id = EXCLUDED.phone_number_id, last_message_at = now(),
             last_customer_message_at = GREATEST(
                 COALESCE(conversations.last_customer_message_at, '-infinity'::timestamptz), $5)
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(contact_id)
    .bind(phone_number_id)
    .bind(latest_message_at)
    .fetch_one(&mut **tx)
    .await
}

/// Records the new message for the staff API's live event feed.
async fn record_message_event(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    conversation_id: Uuid,
    message_id: Uuid,
    prepared: &Prepared<'_>,
) -> sqlx::Result<()> {
    let message = prepared.message;
    let sent_at = unix_time(prepared.timestamp);
    let payload = json!({
        "conversation_id": conversation_id,
        "message_id": message_id,
        "direction": "inbound",
        "wamid": message.id,
        "message_type": type_name(message),
        "body": message.kind.text().map(strip_nul),
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
    prepared: &Prepared<'_>,
) -> sqlx::Result<Option<(i64, Uuid)>> {
    let message = prepared.message;
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
    .bind(type_name(message))
    .bind(message.kind.text().map(strip_nul))
    .bind(message.context_id.as_deref().map(strip_nul))
    .bind(&prepared.raw)
    .bind(unix_time(prepared.timestamp))
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

/// Returns the Cloud API type name, or `unsupported` for a name too long to be real.
fn type_name(message: &InboundMessage) -> &str {
    let name = message.kind.type_name();
    if name.len() > MAX_TYPE_LEN || name.contains('\0') {
        "unsupported"
    } else {
        name
    }
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
    .bind(status.recipient_id.as_deref().map(strip_nul))
    .bind(status.biz_opaque_callback_data.as_deref().map(strip_nul))
    .bind(status.errors.first().map(|e| e.code))
    .bind(clean_json(&status.raw))
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Records WhatsApp's own marketing stop or resume for a contact.
async fn apply_preference(tx: &mut TenantTx, preference: &UserPreference) -> sqlx::Result<()> {
    let stopped = match preference.value.as_str() {
        "stop" => true,
        "resume" => false,
        other => {
            tracing::warn!(value = other, "ignoring unknown user preference value");
            return Ok(());
        }
    };
    // The contact row exists: the intake upserted every WhatsApp id of the change first.
    // Only a preference at least as new as the last one applied counts.
    sqlx::query(
        "UPDATE contacts SET marketing_opted_out = $2, marketing_preference_at = $3
         WHERE wa_id = $1 AND COALESCE(marketing_preference_at, 0) <= $3",
    )
    .bind(&preference.wa_id)
    .bind(stopped)
    .bind(preference.timestamp)
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
