//! The outbox: every outbound message from the decision to send it until its final status.
//!
//! Statuses only move forward (queued, sending, sent, delivered, read); failed and cancelled are
//! final, and a failure reported after delivery was confirmed is kept in `message_statuses`
//! without changing the row. Status webhooks can arrive before the send call returns, out of
//! order, or twice, so every update below is written to be safe in any order.

use sqlx::PgPool;
use uuid::Uuid;

use super::{tenant_tx, TenantTx};
use crate::whatsapp::{ErrorDetail, Status};

/// The prefix of `biz_opaque_callback_data`, which Meta echoes in status webhooks.
pub const CALLBACK_PREFIX: &str = "outbox:";

/// SQL rank of a status; a status update applies only to a lower rank.
const RANK: &str = "CASE status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
                    WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 9 END";

/// The callback data that identifies an outbox row.
pub fn callback_data(outbox_id: Uuid) -> String {
    format!("{CALLBACK_PREFIX}{outbox_id}")
}

/// A status to apply to the outbox, from a webhook or from one stored earlier.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub wamid: String,
    pub callback_data: Option<String>,
    /// Meta's status name: sent, delivered, read, played or failed.
    pub status: String,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
}

impl StatusUpdate {
    /// Builds the update for a webhook status item.
    pub fn from_webhook(status: &Status) -> Self {
        let error = status.errors.first();
        Self {
            wamid: status.id.clone(),
            callback_data: status.biz_opaque_callback_data.clone(),
            status: status.status.as_str().to_string(),
            error_code: error.map(|e| e.code),
            error_message: error.map(describe_error),
        }
    }
}

/// Moves an outbox row forward by a status, matched by callback data or WhatsApp id.
pub async fn apply_status(tx: &mut TenantTx, update: &StatusUpdate) -> sqlx::Result<bool> {
    let outbox_id = update
        .callback_data
        .as_deref()
        .and_then(|data| data.strip_prefix(CALLBACK_PREFIX))
        .and_then(|id| Uuid::parse_str(id).ok());
    let (new_status, rank) = match update.status.as_str() {
        "sent" => ("sent", 2),
        "delivered" => ("delivered", 3),
        "read" | "played" => ("read", 4),
        "failed" => ("failed", 5),
        other => {
            tracing::debug!(
                status = other,
                wamid = update.wamid,
                "ignoring unknown status"
            );
            return Ok(false);
        }
    };

    let updated: Option<Changed> = sqlx::query_as(&format!(
        "UPDATE outbox SET status = $1, status_at = now(),
                wamid = COALESCE(wamid, $2),
                sent_at = COALESCE(sent_at, now()),
                error_code = COALESCE($3, error_code),
                error_message = COALESCE($4, error_message)
         WHERE (id = $5 OR wamid = $2)
           AND status NOT IN ('failed', 'cancelled')
           AND ({RANK}) < $6
                                 AND NOT ($1 = 'failed' AND status IN ('delivered', 'read'))
         RETURNING {CHANGED_COLUMNS}"
    ))
    .bind(new_status)
    .bind(&update.wamid)
    .bind(update.error_code)
    .bind(update.error_message.as_deref())
    .bind(outbox_id)
    .bind(rank)
    .fetch_optional(&mut **tx)
    .await?;
    match updated {
        Some(row) => {
            record_status_event(tx, &row).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// An outbox row after a status change.
#[derive(sqlx::FromRow)]
struct Changed {
    id: Uuid,
    tenant_id: Uuid,
    conversation_id: Uuid,
    status: String,
    wamid: Option<String>,
    error_code: Option<i64>,
}

const CHANGED_COLUMNS: &str = "id, tenant_id, conversation_id, status, wamid, error_code";

async fn record_status_event(tx: &mut TenantTx, row: &Changed) -> sqlx::Result<()> {
    let payload = serde_json::json!({
        "conversation_id": row.conversation_id,
        "message_id": row.id,
        "status": row.status,
        "wamid": row.wamid,
        "error_code": row.error_code,
    });
    let conversation = Some(row.conversation_id);
    super::staff::record_event(tx, row.tenant_id, "message.status", conversation, payload).await
}

fn describe_error(error: &ErrorDetail) -> String {
    [
        error.title.as_deref(),
        error.message.as_deref(),
        error.details.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(": ")
}

/// An outbox row claimed for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub recipient: String,
    pub body: String,
    /// The Cloud API `template` object of a template message; `None` for text.
    pub template: Option<serde_json::Value>,
    pub attempts: i32,
}

/// The reason a row was not claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotClaimed {
    /// It is no longer queued: sent, failed, cancelled or being sent.
    NotQueued,
    /// The customer opted out, or staff took over an automated reply; the row is cancelled.
    Cancelled(&'static str),
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    status: String,
    recipient: String,
    body: String,
    automated: bool,
    kind: String,
    opted_out: bool,
    mode: String,
    attempts: i32,
    template: Option<serde_json::Value>,
    window_open: bool,
}

/// Checks a queued row at send time and marks it as sending.
pub async fn claim(
    pool: &PgPool,
    tenant_id: Uuid,
    outbox_id: Uuid,
) -> anyhow::Result<Result<Claimed, NotClaimed>> {
    let mut tx = tenant_tx(pool, tenant_id).await?;
    let row: Option<ClaimRow> = sqlx::query_as(
        "SELECT o.status, o.recipient, o.body, o.automated, o.kind, ct.opted_out, c.mode, o.attempts,
                o.template,
                COALESCE(c.last_customer_message_at > now() - interval '24 hours', false)
                    AS window_open
         FROM outbox o
         JOIN conversations c ON c.id = o.conversation_id
         JOIN contacts ct ON ct.id = c.contact_id
         WHERE o.id = $1
         FOR UPDATE OF o",
    )
    .bind(outbox_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(ClaimRow {
        status,
        recipient,
        body,
        automated,
        kind,
        opted_out,
        mode,
        attempts,
        template,
        window_open,
    }) = row
    else {
        return Ok(Err(NotClaimed::NotQueued));
    };
    if status != "queued" {
        return Ok(Err(NotClaimed::NotQueued));
    }

    // Opt-out is checked again here because it may have changed since the row was queued; the
    // opt-out confirmation itself is the one message allowed through.
    let cancel_reason = if opted_out && kind != "opt_out_confirmation" {
        Some("the customer opted out")
    } else if automated && mode == "human" && matches!(kind.as_str(), "auto_reply" | "holding") {
        Some("staff took the conversation over")
    } else if template.is_none() && !window_open {
        // Meta rejects free-form messages outside the 24-hour customer service window (131047).
        Some("the 24-hour customer service window is closed; only templates may be sent")
    } else {
        None
    };
    if let Some(reason) = cancel_reason {
        sqlx::query("UPDATE outbox SET status = 'cancelled', error_message = $2 WHERE id = $1")
            .bind(outbox_id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(Err(NotClaimed::Cancelled(reason)));
    }

    sqlx::query(
        "UPDATE outbox SET status = 'sending', attempts = attempts + 1, attempt_started_at = now()
         WHERE id = $1",
    )
    .bind(outbox_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Claimed {
        id: outbox_id,
        recipient,
        body,
        template,
        attempts: attempts + 1,
    }))
}

/// Records Meta's acceptance, then applies any status that arrived before the send call returned.
pub async fn record_sent(
    pool: &PgPool,
    tenant_id: Uuid,
    outbox_id: Uuid,
    wamid: &str,
) -> sqlx::Result<()> {
    let mut tx = tenant_tx(pool, tenant_id).await?;
    let changed: Option<Changed> = sqlx::query_as(&format!(
        "UPDATE outbox SET wamid = $2, sent_at = COALESCE(sent_at, now()),
                status = CASE WHEN status IN ('queued', 'sending') THEN 'sent' ELSE status END,
                error_code = NULL, error_message = NULL
         WHERE id = $1
         RETURNING {CHANGED_COLUMNS}"
    ))
    .bind(outbox_id)
    .bind(wamid)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &changed {
        record_status_event(&mut tx, row).await?;
    }

    let early: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT status, error_code FROM message_statuses WHERE wamid = $1 ORDER BY wa_timestamp, id",
    )
    .bind(wamid)
    .fetch_all(&mut *tx)
    .await?;
    for (status, error_code) in early {
        let update = StatusUpdate {
            wamid: wamid.to_string(),
            callback_data: None,
            status,
            error_code,
            error_message: None,
        };
        apply_status(&mut tx, &update).await?;
    }
    tx.commit().await
}

/// Puts a row back in the queue after a retriable failure.
pub async fn record_retry(
    pool: &PgPool,
    tenant_id: Uuid,
    outbox_id: Uuid,
    code: Option<i64>,
    message: &str,
    delay: std::time::Duration,
) -> sqlx::Result<()> {
    let mut tx = tenant_tx(pool, tenant_id).await?;
    sqlx::query(
        "UPDATE outbox SET status = 'queued', error_code = $2, error_message = $3,
                next_attempt_at = now() + make_interval(secs => $4)
         WHERE id = $1 AND status = 'sending'",
    )
    .bind(outbox_id)
    .bind(code)
    .bind(message)
    .bind(delay.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Records a permanent failure; failed is final.
pub async fn record_failed(
    pool: &PgPool,
    tenant_id: Uuid,
    outbox_id: Uuid,
    code: Option<i64>,
    message: &str,
) -> sqlx::Result<()> {
    let mut tx = tenant_tx(pool, tenant_id).await?;
    let changed: Option<Changed> = sqlx::query_as(&format!(
        "UPDATE outbox SET status = 'failed', error_code = $2, error_message = $3, status_at = now()
         WHERE id = $1 AND status IN ('queued', 'sending')
         RETURNING {CHANGED_COLUMNS}"
    ))
    .bind(outbox_id)
    .bind(code)
    .bind(message)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &changed {
        record_status_event(&mut tx, row).await?;
    }
    tx.commit().await
}

/// A queued row to hand to a sender.
#[derive(Debug, Clone)]
pub struct Pending {
    pub outbox_id: Uuid,
    pub phone_number_id: String,
    pub recipient: String,
}

/// Lists queued rows that are due, across tenants. Runs as the platform role.
pub async fn due(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<Pending>> {
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT id, phone_number_id, recipient FROM outbox
         WHERE status = 'queued' AND next_attempt_at <= now()
         ORDER BY created_at, part LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(outbox_id, phone_number_id, recipient)| Pending {
            outbox_id,
            phone_number_id,
            recipient,
        })
        .collect())
}

/// Requeues rows whose send was cut off and for which no status arrived within `confirm_window`.
///
/// Meta's send call takes no idempotency key, so a send interrupted after Meta may have accepted
/// it is only retried once the status webhooks, which echo the outbox id, had time to arrive.
/// Runs as the platform role.
pub async fn requeue_unconfirmed(
    pool: &PgPool,
    confirm_window: std::time::Duration,
) -> sqlx::Result<u64> {
    let updated = sqlx::query(
        "UPDATE outbox SET status = 'queued', next_attempt_at = now(),
                error_message = 'send was interrupted and no status arrived; retrying'
         WHERE status = 'sending' AND attempt_started_at <= now() - make_interval(secs => $1)",
    )
    .bind(confirm_window.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(updated.rows_affected())
}
