//! Meta's webhook: verification, and the intake of messages and statuses.
//!
//! The 200 means every item is committed in PostgreSQL; nothing here waits for a reply or a send.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, info_span, warn, Instrument};

use super::AppState;
use crate::store::{inbound, tenants};
use crate::whatsapp::{parse_webhook, verify_signature};

#[derive(Deserialize)]
pub struct VerifyParams {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Returns the challenge of Meta's subscription check when the verify token matches.
pub async fn verify(State(state): State<AppState>, Query(params): Query<VerifyParams>) -> Response {
    let token_matches = params
        .verify_token
        .as_deref()
        .is_some_and(|token| state.verify_token.constant_time_eq(token.as_bytes()));
    match (params.mode.as_deref(), params.challenge) {
        (Some("subscribe"), Some(challenge)) if token_matches => {
            (StatusCode::OK, challenge).into_response()
        }
        _ => {
            warn!("webhook verification rejected");
            (
                StatusCode::FORBIDDEN,
                "verification failed: hub.mode or hub.verify_token is wrong",
            )
                .into_response()
        }
    }
}

/// Errors of the webhook intake, answered without internal detail.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid signature: {0}")]
    Signature(#[from] crate::whatsapp::SignatureError),
    #[error("malformed webhook body: {0}")]
    Payload(#[from] crate::whatsapp::PayloadError),
    #[error("storing the webhook failed")]
    Storage(#[source] anyhow::Error),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = match &self {
            WebhookError::Signature(_) => StatusCode::UNAUTHORIZED,
            WebhookError::Payload(_) => StatusCode::BAD_REQUEST,
            // A 5xx makes Meta deliver again, so nothing is lost while storage is down.
            WebhookError::Storage(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "webhook not stored; Meta will retry"
                );
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Verifies, parses and stores a webhook, then dispatches the new events.
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, WebhookError> {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|value| value.to_str().ok());
    verify_signature(state.app_secret.expose().as_bytes(), signature, &body)?;
    let changes = parse_webhook(&body)?;

    let mut tenants_by_number: HashMap<String, Option<uuid::Uuid>> = HashMap::new();
    let mut new_events = Vec::new();
    for change in &changes {
        for skipped in &change.skipped {
            warn!(
                reason = skipped.reason,
                "skipping webhook item without a usable id"
            );
        }
        if !change.errors.is_empty() {
            warn!(errors = %serde_json::Value::from(change.errors.clone()), "webhook carried errors");
        }
        let Some(phone_number_id) = change.phone_number_id.as_deref() else {
            if !change.messages.is_empty() || !change.statuses.is_empty() {
                warn!(
                    field = change.field,
                    "webhook change without metadata.phone_number_id; ignored"
                );
            }
            continue;
        };

        let tenant_id = match tenants_by_number.get(phone_number_id) {
            Some(known) => *known,
            None => {
                let found = tenants::tenant_for_number(&state.pool, phone_number_id)
                    .await
                    .map_err(|e| WebhookError::Storage(e.into()))?;
                tenants_by_number.insert(phone_number_id.to_string(), found);
                found
            }
        };
        let Some(tenant_id) = tenant_id else {
            // Acknowledged so that Meta stops retrying a number this deployment does not serve.
            warn!(
                phone_number_id,
                "webhook for an unregistered phone number id; acknowledged and ignored"
            );
            continue;
        };

        let span = info_span!("ingest", %tenant_id, phone_number_id);
        let ingested = inbound::ingest(&state.pool, tenant_id, phone_number_id, change)
            .instrument(span)
            .await
            .map_err(WebhookError::Storage)?;
        for message in &change.messages {
            info!(%tenant_id, wamid = message.id, message_type = message.kind.type_name(), "message received");
        }
        if ingested.duplicate_messages > 0 {
            info!(%tenant_id, duplicates = ingested.duplicate_messages, "ignored redelivered messages");
        }
        new_events.extend(ingested.events);
    }

    // The events are committed; if Redis is unavailable the recovery sweep dispatches them.
    if let Err(error) = state.dispatcher.publish(&new_events).await {
        warn!(%error, count = new_events.len(), "could not publish events to Redis; recovery sweep will dispatch them");
    }
    Ok(StatusCode::OK)
}
