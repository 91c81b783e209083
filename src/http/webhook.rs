//! Meta's webhook: verification, and the intake of messages and statuses.
//!
//! The 200 means every item is committed in PostgreSQL; nothing here waits for a reply or a send.

use std::collections::HashMap;
use std::time::Duration;

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

/// How long publishing to Redis may take before the events are left to the recovery sweep.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of the webhook intake, sent to Meta without internal detail.
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
            WebhookError::Signature(error) => {
                warn!(%error, "webhook rejected: signature check failed");
                StatusCode::UNAUTHORIZED
            }
            WebhookError::Payload(error) => {
                warn!(%error, "webhook rejected: malformed body");
                StatusCode::BAD_REQUEST
            }
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
    let changes = parse_webhook(&replace_lone_surrogates(&body))?;

    // Storing runs in a task of its own, so Meta closing the connection early cannot drop the
    // work halfway through a transaction.
    tokio::spawn(store_changes(state, changes))
        .await
        .map_err(|error| {
            WebhookError::Storage(anyhow::anyhow!("webhook storage task failed: {error}"))
        })?
}

/// Stores every change of a verified webhook, then dispatches the new events.
async fn store_changes(
    state: AppState,
    changes: Vec<crate::whatsapp::ChangeValue>,
) -> Result<StatusCode, WebhookError> {
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
                    "webhook change without metadata.phone_number_id; kept as unrouted"
                );
                keep_unrouted(&state, None, change).await?;
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
            // Meta does not deliver an acknowledged webhook again, so it is kept for an operator
            // who registers the number late.
            warn!(
                phone_number_id,
                "webhook for an unregistered phone number id; kept as unrouted"
            );
            keep_unrouted(&state, Some(phone_number_id), change).await?;
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

    // The events are committed, so Meta gets its response now. Publishing runs on its own, with
    // a time limit, and if Redis is unavailable the recovery sweep dispatches the events.
    if !new_events.is_empty() {
        let dispatcher = state.dispatcher.clone();
        tokio::spawn(async move {
            let published =
                tokio::time::timeout(PUBLISH_TIMEOUT, dispatcher.publish(&new_events)).await;
            let error = match published {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("timed out after {PUBLISH_TIMEOUT:?}"),
            };
            warn!(
                error,
                count = new_events.len(),
                "could not publish events to Redis; the recovery sweep will dispatch them"
            );
        });
    }
    Ok(StatusCode::OK)
}

/// Stores the items of a change that no tenant can take, in the platform's unrouted table.
async fn keep_unrouted(
    state: &AppState,
    phone_number_id: Option<&str>,
    change: &crate::whatsapp::ChangeValue,
) -> Result<(), WebhookError> {
    let payload = json!({
        "field": change.field,
        "messages": change.messages.iter().map(|m| &m.raw).collect::<Vec<_>>(),
        "statuses": change.statuses.iter().map(|s| &s.raw).collect::<Vec<_>>(),
    });
    sqlx::query("INSERT INTO unrouted_webhooks (phone_number_id, payload) VALUES ($1, $2)")
        .bind(phone_number_id.map(crate::store::inbound::strip_nul))
        .bind(crate::store::inbound::clean_json(&payload))
        .execute(&state.pool)
        .await
        .map_err(|error| WebhookError::Storage(error.into()))?;
    Ok(())
}

/// Replaces `\uXXXX` escapes of unpaired UTF-16 surrogates with U+FFFD.
///
/// JSON allows them but Rust strings cannot hold them, so without this one such character
/// anywhere would make the whole body unparsable and every message in it would be lost. The
/// signature has already been checked on the bytes as received.
fn replace_lone_surrogates(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    fn escape_at(body: &[u8], at: usize) -> Option<u16> {
        let digits = body.get(at..at + 6)?;
        if digits[0] != b'\\' || digits[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&digits[2..]).ok()?, 16).ok()
    }
    let is_high = |unit: u16| (0xD800..0xDC00).contains(&unit);
    let is_low = |unit: u16| (0xDC00..0xE000).contains(&unit);

    if !body
        .windows(3)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && matches!(w[2], b'd' | b'D'))
    {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut fixed = Vec::with_capacity(body.len());
    let mut at = 0;
    while at < body.len() {
        if body[at] != b'\\' {
            fixed.push(body[at]);
            at += 1;
            continue;
        }
        match escape_at(body, at) {
            Some(high) if is_high(high) => match escape_at(body, at + 6) {
                Some(low) if is_low(low) => {
                    fixed.extend_from_slice(&body[at..at + 12]);
                    at += 12;
                }
                _ => {
                    fixed.extend_from_slice(b"\\ufffd");
                    at += 6;
                }
            },
            Some(low) if is_low(low) => {
                fixed.extend_from_slice(b"\\ufffd");
                at += 6;
            }
            // Any other escape, `\\` included, is copied whole so that its second character is
            // never read as the start of an escape.
            _ => {
                let end = (at + 2).min(body.len());
                fixed.extend_from_slice(&body[at..end]);
                at = end;
            }
        }
    }
    std::borrow::Cow::Owned(fixed)
}

#[cfg(test)]
mod tests {
    use super::replace_lone_surrogates;

    #[test]
    fn lone_surrogates_replaced() {
        let cases: [(&[u8], &[u8]); 5] = [
            (br#"{"a":"x\ud83d y"}"#, br#"{"a":"x\ufffd y"}"#),
            (br#"{"a":"\ude00"}"#, br#"{"a":"\ufffd"}"#),
            (br#"{"a":"\ud83d\ude00"}"#, br#"{"a":"\ud83d\ude00"}"#),
            (br#"{"a":"\\ud83d"}"#, br#"{"a":"\\ud83d"}"#),
            (br#"{"a":"plain"}"#, br#"{"a":"plain"}"#),
        ];
        for (input, expected) in cases {
            let fixed = replace_lone_surrogates(input);
            assert_eq!(&*fixed, expected, "{}", String::from_utf8_lossy(input));
            assert!(serde_json::from_slice::<serde_json::Value>(&fixed).is_ok());
        }
    }
}
