//! Conversations: listing, history, takeover and hand-back, assignment and staff replies.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ractor::rpc::CallResult;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use velochat_actors::backend::{ConversationKey, Queued};
use velochat_actors::machine::Event;
use velochat_actors::supervisor::SupervisorMsg;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Staff;
use crate::auth::Role;
use crate::http::AppState;
use crate::store::staff::{self, ConversationFilter, ConversationView, MessageView};
use crate::store::{self, conversations::MAX_TEXT_CHARS, TenantTx};

/// Roles that work with conversations.
const STAFF_ROLES: &[Role] = &[Role::Owner, Role::Manager, Role::Agent];
/// How long an API call waits for a conversation actor to commit a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// `ai` or `human`.
    mode: Option<String>,
    /// Only conversations assigned to this staff member.
    assigned_to: Option<Uuid>,
    /// Only conversations with (true) or without (false) unread customer messages.
    unread: Option<bool>,
    /// Only opted-out (true) or subscribed (false) customers.
    opted_out: Option<bool>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Conversations per page, 1 to 200; 50 by default.
    limit: Option<i64>,
}

/// A page of conversations, most recent activity first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    pub items: Vec<ConversationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Lists the tenant's conversations.
#[utoipa::path(
    get, path = "/v1/conversations", tag = "conversations",
    params(ListQuery),
    responses(
        (status = 200, body = ConversationPage),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<ConversationPage>> {
    staff.require(STAFF_ROLES)?;
    let Query(query) = query?;
    if let Some(mode) = &query.mode {
        if mode != "ai" && mode != "human" {
            return Err(ApiError::Unprocessable(format!(
                "invalid mode {mode:?}: expected ai or human"
            )));
        }
    }
    let limit = super::page_limit(query.limit, 50, 200)?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = ConversationFilter {
        mode: query.mode,
        assigned_to: query.assigned_to,
        unread: query.unread,
        opted_out: query.opted_out,
        after,
        limit,
    };

    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    let items = staff::list_conversations(&mut tx, &filter).await?;
    tx.commit().await?;
    let next_cursor = if items.len() as i64 == limit {
        items
            .last()
            .map(|last| encode_cursor(last.last_message_at, last.id))
    } else {
        None
    };
    Ok(Json(ConversationPage { items, next_cursor }))
}

fn encode_cursor(at: Option<DateTime<Utc>>, id: Uuid) -> String {
    // The listing sorts a conversation without messages as if its last one were at the epoch.
    let micros = at.map_or(0, |at| at.timestamp_micros());
    URL_SAFE_NO_PAD.encode(format!("{micros}_{id}"))
}

fn decode_cursor(cursor: &str) -> ApiResult<(DateTime<Utc>, Uuid)> {
    let invalid = || {
        ApiError::Unprocessable("invalid cursor: pass the next_cursor of a previous page".into())
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('_').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    // Year 10000 in microseconds; PostgreSQL timestamps go no further in practice.
    const LATEST_MICROS: i64 = 253_402_300_800_000_000;
    if !(0..LATEST_MICROS).contains(&micros) {
        return Err(invalid());
    }
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    Ok((at, id.parse().map_err(|_| invalid())?))
}

/// Loads a conversation of the caller's tenant, or 404.
async fn find(tx: &mut TenantTx, id: Uuid) -> ApiResult<ConversationView> {
    staff::conversation(tx, id)
        .await?
        .ok_or(ApiError::NotFound("conversation"))
}

/// Shows one conversation.
#[utoipa::path(
    get, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses(
        (status = 200, body = ConversationView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    staff: Staff,
    id: Result<Path<Uuid>, PathRejection>,
) -> ApiResult<Json<ConversationView>> {
    staff.require(STAFF_ROLES)?;
    let Path(id) = id?;
    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    let conversation = find(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(conversation))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// The newest messages to return, 1 to 500; 100 by default.
    limit: Option<i64>,
}

/// Lists a conversation's messages in WhatsApp timestamp order, each with its delivery status,
/// and marks the conversation read.
#[utoipa::path(
    get, path = "/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = Uuid, Path, description = "Conversation id"), HistoryQuery),
    responses(
        (status = 200, body = Vec<MessageView>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    staff: Staff,
    id: Result<Path<Uuid>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<MessageView>>> {
    staff.require(STAFF_ROLES)?;
    let Path(id) = id?;
    let Query(query) = query?;
    let limit = super::page_limit(query.limit, 100, 500)?;

    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    find(&mut tx, id).await?;
    let messages = staff::messages(&mut tx, id, limit).await?;
    staff::mark_read(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(messages))
}

/// Runs a state-machine command in the conversation's actor and waits until it is committed.
async fn command(state: &AppState, key: ConversationKey, event: Event) -> ApiResult<()> {
    let called = state
        .supervisor
        .call(
            |reply| SupervisorMsg::Command { key, event, reply },
            Some(COMMAND_TIMEOUT),
        )
        .await
        .map_err(|error| ApiError::internal(anyhow::anyhow!("supervisor unavailable: {error}")))?;
    match called {
        CallResult::Success(Ok(_)) => Ok(()),
        CallResult::Success(Err(error)) => Err(ApiError::internal(anyhow::anyhow!(
            "command failed: {error}"
        ))),
        CallResult::Timeout => Err(ApiError::internal(anyhow::anyhow!(
            "conversation actor timed out"
        ))),
        CallResult::SenderError => Err(ApiError::internal(anyhow::anyhow!(
            "conversation actor stopped"
        ))),
    }
}

/// Sets the assignee and records the change for live clients, returning the new view.
async fn set_assignee(
    state: &AppState,
    staff: &Staff,
    id: Uuid,
    assignee: Option<Uuid>,
    reason: &str,
) -> ApiResult<ConversationView> {
    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    sqlx::query(
        "UPDATE conversations SET assigned_to = $2, staff_activity_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(assignee)
    .execute(&mut *tx)
    .await?;
    record_update(tx, staff, id, reason).await
}

/// Records a conversation's current mode and assignee for live clients, returning the new view.
async fn record_update(
    mut tx: TenantTx,
    staff: &Staff,
    id: Uuid,
    reason: &str,
) -> ApiResult<ConversationView> {
    let view = find(&mut tx, id).await?;
    let payload = json!({
        "conversation_id": id, "mode": view.mode, "assigned_to": view.assigned_to,
        "by": staff.user_id, "reason": reason,
    });
    staff::record_event(
        &mut tx,
        staff.tenant_id,
        "conversation.updated",
        Some(id),
        payload,
    )
    .await?;
    tx.commit().await?;
    Ok(view)
}

/// Takes a conversation over: the caller owns it and the AI goes silent at once, including a
/// reply already being generated.
#[utoipa::path(
    post, path = "/v1/conversations/{id}/takeover", tag = "conversations",
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses(
        (status = 200, body = ConversationView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Another staff member owns the conversation"),
    ),
    security(("bearer" = []))
)]
pub async fn takeover(
    State(state): State<AppState>,
    staff: Staff,
    id: Result<Path<Uuid>, PathRejection>,
) -> ApiResult<Json<ConversationView>> {
    staff.require(STAFF_ROLES)?;
    let Path(id) = id?;
    // Claiming the conversation is one conditional update, so of two staff members taking it
    // over at the same moment exactly one succeeds.
    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    find(&mut tx, id).await?;
    let claimed = sqlx::query(
        "UPDATE conversations SET assigned_to = $2, staff_activity_at = now()
         WHERE id = $1 AND (assigned_to IS NULL OR assigned_to = $2)",
    )
    .bind(id)
    .bind(staff.user_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if claimed.rows_affected() == 0 {
        return Err(ApiError::Conflict {
            code: "already_taken_over",
            message: "another staff member owns this conversation; a manager can reassign it"
                .into(),
        });
    }

    // The actor commits the mode, so an auto-reply it is about to queue becomes stale. As a
    // second guard, the sender cancels automated replies of human-run conversations.
    command(
        &state,
        ConversationKey {
            tenant_id: staff.tenant_id,
            conversation_id: id,
        },
        Event::TakenOver,
    )
    .await?;
    // The claim above already set the assignee; only the change is left to record.
    let tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    Ok(Json(record_update(tx, &staff, id, "takeover").await?))
}

/// Hands a conversation back to the AI.
#[utoipa::path(
    post, path = "/v1/conversations/{id}/release", tag = "conversations",
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses(
        (status = 200, body = ConversationView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The conversation is already in AI mode"),
    ),
    security(("bearer" = []))
)]
pub async fn release(
    State(state): State<AppState>,
    staff: Staff,
    id: Result<Path<Uuid>, PathRejection>,
) -> ApiResult<Json<ConversationView>> {
    staff.require(STAFF_ROLES)?;
    let Path(id) = id?;
    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    let current = find(&mut tx, id).await?;
    tx.commit().await?;
    if current.mode != "human" {
        return Err(ApiError::Conflict {
            code: "not_taken_over",
            message: "the conversation is already in AI mode".into(),
        });
    }
    ensure_not_owned_by_other(&staff, &current)?;
    command(
        &state,
        ConversationKey {
            tenant_id: staff.tenant_id,
            conversation_id: id,
        },
        Event::Released,
    )
    .await?;
    Ok(Json(
        set_assignee(&state, &staff, id, None, "release").await?,
    ))
}

/// Whom to assign a conversation to.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignRequest {
    /// A staff member of the same dealership.
    pub user_id: Uuid,
}

/// Assigns a conversation to a staff member. Owners and managers only.
#[utoipa::path(
    post, path = "/v1/conversations/{id}/assign", tag = "conversations",
    params(("id" = Uuid, Path, description = "Conversation id")),
    request_body = AssignRequest,
    responses(
        (status = 200, body = ConversationView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn assign(
    State(state): State<AppState>,
    staff: Staff,
    id: Result<Path<Uuid>, PathRejection>,
    body: Result<Json<AssignRequest>, JsonRejection>,
) -> ApiResult<Json<ConversationView>> {
    staff.require(&[Role::Owner, Role::Manager])?;
    let Path(id) = id?;
    let Json(request) = body?;
    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    find(&mut tx, id).await?;
    if !staff::staff_exists(&mut tx, request.user_id).await? {
        return Err(ApiError::Unprocessable(format!(
            "user_id {} is not an active staff member of this dealership",
            request.user_id
        )));
    }
    tx.commit().await?;
    Ok(Json(
        set_assignee(&state, &staff, id, Some(request.user_id), "assign").await?,
    ))
}

/// An approved template, the only message allowed outside the 24-hour window.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TemplateRequest {
    pub name: String,
    /// Language code, such as `en` or `hi`.
    pub language: String,
    /// Cloud API template components (header, body and button parameters).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub components: Option<serde_json::Value>,
}

/// A staff reply: free text inside the 24-hour window, or an approved template.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SendRequest {
    pub text: Option<String>,
    pub template: Option<TemplateRequest>,
}

/// A queued staff message.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendAccepted {
    pub id: Uuid,
    pub status: String,
}

/// Sends a staff message through the outbox, with the same rate limits and opt-out check as
/// automated ones.
#[utoipa::path(
    post, path = "/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = Uuid, Path, description = "Conversation id")),
    request_body = SendRequest,
    responses(
        (status = 202, body = SendAccepted),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Outside the 24-hour customer service window without a template, or the customer opted out"),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn send(
    State(state): State<AppState>,
    staff: Staff,
    id: Result<Path<Uuid>, PathRejection>,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<SendAccepted>)> {
    staff.require(STAFF_ROLES)?;
    let Path(id) = id?;
    let Json(request) = body?;
    let content = validate_send(request)?;

    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    let conversation = find(&mut tx, id).await?;
    ensure_not_owned_by_other(&staff, &conversation)?;
    if conversation.opted_out {
        return Err(ApiError::Conflict {
            code: "contact_opted_out",
            message: "the customer opted out; only they can opt back in, by sending START".into(),
        });
    }
    let window_open = conversation
        .service_window_closes_at
        .is_some_and(|closes| closes > Utc::now());
    let (body, template) = match content {
        Content::Text(_) if !window_open => {
            let closed = conversation
                .service_window_closes_at
                .map_or("no customer message yet".to_string(), |at| {
                    format!("closed at {}", at.to_rfc3339())
                });
            return Err(ApiError::Conflict {
                code: "outside_service_window",
                message: format!(
                    "the 24-hour customer service window is not open ({closed}); send an approved template instead"
                ),
            });
        }
        Content::Text(text) => (text, None),
        Content::Template(template) => {
            if !staff::template_approved(&mut tx, &template.name, &template.language).await? {
                return Err(ApiError::Unprocessable(format!(
                    "template {} ({}) is not approved for this dealership",
                    template.name, template.language
                )));
            }
            let mut object =
                json!({ "name": template.name, "language": { "code": template.language } });
            if let Some(components) = template.components {
                object["components"] = components;
            }
            (format!("[template {}]", template.name), Some(object))
        }
    };

    let (phone_number_id, recipient): (String, String) = sqlx::query_as(
        "SELECT c.phone_number_id, ct.wa_id FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
         WHERE c.id = $1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let outbox_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, conversation_id, phone_number_id, recipient, kind, automated,
                             body, message_type, template, sent_by)
         VALUES ($1, $2, $3, $4, $5, 'staff', false, $6, $7, $8, $9)",
    )
    .bind(outbox_id)
    .bind(staff.tenant_id)
    .bind(id)
    .bind(&phone_number_id)
    .bind(&recipient)
    .bind(&body)
    .bind(if template.is_some() { "template" } else { "text" })
    .bind(&template)
    .bind(staff.user_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE conversations SET staff_activity_at = now(), last_message_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let payload = json!({
        "conversation_id": id, "message_id": outbox_id, "direction": "outbound", "kind": "staff",
        "automated": false, "body": body, "status": "queued", "by": staff.user_id,
    });
    staff::record_event(
        &mut tx,
        staff.tenant_id,
        "message.created",
        Some(id),
        payload,
    )
    .await?;
    tx.commit().await?;

    let queued = Queued {
        outbox_id,
        phone_number_id,
        recipient,
    };
    if let Err(error) = state.supervisor.cast(SupervisorMsg::Enqueue(queued)) {
        // The row is committed; the recovery sweep hands it to the sender.
        tracing::warn!(%error, %outbox_id, "could not hand staff message to the sender");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(SendAccepted {
            id: outbox_id,
            status: "queued".into(),
        }),
    ))
}

/// Rejects an agent acting on a conversation another staff member owns; owners and managers
/// may step in.
fn ensure_not_owned_by_other(staff: &Staff, conversation: &ConversationView) -> ApiResult<()> {
    let owned_by_other = conversation.mode == "human"
        && conversation
            .assigned_to
            .is_some_and(|owner| owner != staff.user_id);
    if owned_by_other && staff.role == Role::Agent {
        return Err(ApiError::Conflict {
            code: "owned_by_other",
            message: "another staff member owns this conversation; a manager can reassign it"
                .into(),
        });
    }
    Ok(())
}

enum Content {
    Text(String),
    Template(TemplateRequest),
}

fn validate_send(request: SendRequest) -> ApiResult<Content> {
    match (request.text, request.template) {
        (Some(_), Some(_)) => Err(ApiError::Unprocessable(
            "give either text or template, not both".into(),
        )),
        (None, None) => Err(ApiError::Unprocessable("give text or template".into())),
        (Some(text), None) => {
            let length = text.chars().count();
            let visible = text.chars().any(|c| {
                !c.is_whitespace()
                    && !matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
            });
            if !visible {
                Err(ApiError::Unprocessable("text must not be empty".into()))
            } else if text.contains('\0') {
                Err(ApiError::Unprocessable(
                    "text must not contain NUL characters".into(),
                ))
            } else if length > MAX_TEXT_CHARS {
                Err(ApiError::Unprocessable(format!(
                    "text is {length} characters; WhatsApp allows at most {MAX_TEXT_CHARS}"
                )))
            } else {
                Ok(Content::Text(text))
            }
        }
        (None, Some(template)) => {
            if template.name.trim().is_empty()
                || template.language.trim().is_empty()
                || template.name.contains('\0')
                || template.language.contains('\0')
            {
                Err(ApiError::Unprocessable(
                    "template name and language must not be empty".into(),
                ))
            } else if template.components.as_ref().is_some_and(|c| !c.is_array()) {
                Err(ApiError::Unprocessable(
                    "template components must be an array".into(),
                ))
            } else {
                Ok(Content::Template(template))
            }
        }
    }
}
