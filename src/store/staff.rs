//! Queries of the staff API, all inside the caller's tenant transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::TenantTx;

/// Records a change for the live event feed, in the transaction that makes the change.
pub async fn record_event(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    kind: &str,
    conversation_id: Option<Uuid>,
    payload: Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO staff_events (tenant_id, kind, conversation_id, payload) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant_id)
    .bind(kind)
    .bind(conversation_id)
    .bind(payload)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One entry of the live event feed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaffEvent {
    pub id: i64,
    pub kind: String,
    pub conversation_id: Option<Uuid>,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

/// Lists events after `after_id` that are younger than `max_age_seconds`, oldest first.
pub async fn events_after(
    tx: &mut TenantTx,
    after_id: i64,
    max_age_seconds: f64,
    limit: i64,
) -> sqlx::Result<Vec<StaffEvent>> {
    sqlx::query_as(
        "SELECT id, kind, conversation_id, payload, created_at FROM staff_events
         WHERE id > $1 AND created_at > now() - make_interval(secs => $2)
         ORDER BY id LIMIT $3",
    )
    .bind(after_id)
    .bind(max_age_seconds)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}

/// A conversation as staff see it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ConversationView {
    pub id: Uuid,
    pub contact_id: Uuid,
    /// The customer's WhatsApp id (phone number without `+`).
    pub wa_id: String,
    pub customer_name: Option<String>,
    /// `ai` while automated replies are sent, `human` after a takeover.
    pub mode: String,
    pub assigned_to: Option<Uuid>,
    pub opted_out: bool,
    /// Whether a customer message arrived after staff last read the conversation.
    pub unread: bool,
    pub last_message_at: Option<DateTime<Utc>>,
    /// Meta timestamp of the newest customer message.
    pub last_customer_message_at: Option<DateTime<Utc>>,
    /// When the 24-hour customer service window closes; free-form replies need it open.
    pub service_window_closes_at: Option<DateTime<Utc>>,
}

const CONVERSATION_COLUMNS: &str = "
    c.id, c.contact_id, ct.wa_id, ct.profile_name AS customer_name, c.mode, c.assigned_to,
    ct.opted_out,
    (c.last_customer_message_at IS NOT NULL
     AND c.last_message_at > COALESCE(c.staff_read_at, '-infinity'::timestamptz)) AS unread,
    c.last_message_at, c.last_customer_message_at,
    c.last_customer_message_at + interval '24 hours' AS service_window_closes_at";

/// Filters of the conversation list.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub mode: Option<String>,
    pub assigned_to: Option<Uuid>,
    pub unread: Option<bool>,
    pub opted_out: Option<bool>,
    /// Continue after this (last_message_at, id), newest first.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Lists conversations, newest activity first.
pub async fn list_conversations(
    tx: &mut TenantTx,
    filter: &ConversationFilter,
) -> sqlx::Result<Vec<ConversationView>> {
    let (after_at, after_id) = match filter.after {
        Some((at, id)) => (Some(at), Some(id)),
        None => (None, None),
    };
    sqlx::query_as(&format!(
        "SELECT {CONVERSATION_COLUMNS}
         FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
         WHERE ($1::text IS NULL OR c.mode = $1)
           AND ($2::uuid IS NULL OR c.assigned_to = $2)
           AND ($3::boolean IS NULL OR (c.last_customer_message_at IS NOT NULL
                AND c.last_message_at > COALESCE(c.staff_read_at, '-infinity'::timestamptz)) = $3)
           AND ($4::boolean IS NULL OR ct.opted_out = $4)
           AND ($5::timestamptz IS NULL
                OR (COALESCE(c.last_message_at, 'epoch'::timestamptz), c.id) < ($5, $6))
         ORDER BY COALESCE(c.last_message_at, 'epoch'::timestamptz) DESC, c.id DESC
         LIMIT $7"
    ))
    .bind(filter.mode.as_deref())
    .bind(filter.assigned_to)
    .bind(filter.unread)
    .bind(filter.opted_out)
    .bind(after_at)
    .bind(after_id)
    .bind(filter.limit)
    .fetch_all(&mut **tx)
    .await
}

/// Loads one conversation.
pub async fn conversation(tx: &mut TenantTx, id: Uuid) -> sqlx::Result<Option<ConversationView>> {
    sqlx::query_as(&format!(
        "SELECT {CONVERSATION_COLUMNS}
         FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
         WHERE c.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// One message of a conversation's history, inbound or outbound.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct MessageView {
    pub id: Uuid,
    /// `inbound` from the customer or `outbound` to them.
    pub direction: String,
    /// The WhatsApp message id, once Meta has assigned one.
    pub wamid: Option<String>,
    /// The Cloud API message type, such as `text`, `image` or `template`.
    pub message_type: String,
    pub body: Option<String>,
    /// For outbound messages: queued, sending, sent, delivered, read, failed or cancelled.
    /// Inbound messages are `received`.
    pub status: String,
    pub automated: bool,
    /// Meta's error code of a failed send.
    pub error_code: Option<i64>,
    /// Meta's timestamp for inbound messages; the send time for outbound ones.
    pub timestamp: DateTime<Utc>,
}

/// Loads a conversation's newest `limit` messages, in WhatsApp timestamp order.
pub async fn messages(
    tx: &mut TenantTx,
    conversation_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<MessageView>> {
    let mut rows: Vec<MessageView> = sqlx::query_as(
        "SELECT * FROM (
             SELECT id, 'inbound' AS direction, wamid, message_type, body, 'received' AS status,
                    false AS automated, NULL::bigint AS error_code, wa_timestamp AS timestamp
             FROM messages WHERE conversation_id = $1
             UNION ALL
             SELECT id, 'outbound', wamid, message_type, body, status, automated, error_code,
                    COALESCE(sent_at, created_at)
             FROM outbox WHERE conversation_id = $1
         ) history
         ORDER BY timestamp DESC, id DESC
         LIMIT $2",
    )
    .bind(conversation_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.reverse();
    Ok(rows)
}

/// Marks a conversation read by staff.
pub async fn mark_read(tx: &mut TenantTx, conversation_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE conversations SET staff_read_at = now() WHERE id = $1")
        .bind(conversation_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A contact and its opt-out state.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ContactView {
    pub id: Uuid,
    pub wa_id: String,
    pub name: Option<String>,
    /// Opted out by STOP; only the customer can opt back in, by sending START.
    pub opted_out: bool,
    pub opted_out_at: Option<DateTime<Utc>>,
    /// WhatsApp's own marketing preference, reported by Meta.
    pub marketing_opted_out: bool,
    pub created_at: DateTime<Utc>,
}

/// Loads one contact.
pub async fn contact(tx: &mut TenantTx, id: Uuid) -> sqlx::Result<Option<ContactView>> {
    sqlx::query_as(
        "SELECT id, wa_id, profile_name AS name, opted_out, opted_out_at, marketing_opted_out, created_at
         FROM contacts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// Returns whether a staff member of the current tenant exists and is enabled.
pub async fn staff_exists(tx: &mut TenantTx, user_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM staff_users WHERE id = $1 AND disabled_at IS NULL)",
    )
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await
}

/// Returns whether the tenant has this template approved.
pub async fn template_approved(
    tx: &mut TenantTx,
    name: &str,
    language: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM message_templates
                        WHERE name = $1 AND language = $2 AND status = 'approved')",
    )
    .bind(name)
    .bind(language)
    .fetch_one(&mut **tx)
    .await
}

/// One row of the audit trail.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub user_id: Option<Uuid>,
    pub method: String,
    pub path: String,
    pub status: i32,
    pub request_id: String,
    pub at: DateTime<Utc>,
}

/// Lists audit entries newest first, before `before_id` when given.
pub async fn audit_entries(
    tx: &mut TenantTx,
    before_id: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<AuditEntry>> {
    sqlx::query_as(
        "SELECT id, user_id, method, path, status, request_id, at FROM audit_log
         WHERE ($1::bigint IS NULL OR id < $1)
         ORDER BY id DESC LIMIT $2",
    )
    .bind(before_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}
