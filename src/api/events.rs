//! Server-Sent Events: new messages, status changes, and mode and assignment changes of the
//! caller's tenant, within a second of the change.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use uuid::Uuid;

use super::error::{ApiResult, ErrorBody};
use super::extract::Staff;
use crate::auth::Role;
use crate::http::AppState;
use crate::store::{self, staff};

/// How often the feed looks for new events; well under the one-second promise.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How far back a reconnecting client can resume with `Last-Event-ID`.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(600);
/// Event ids are assigned when a transaction inserts them but become visible when it commits,
/// so a lower id can appear after a higher one. Each poll looks this many ids back and skips
/// the ones already sent.
const LOOKBACK_IDS: i64 = 200;
const BATCH: i64 = 200;

struct Feed {
    state: AppState,
    tenant_id: Uuid,
    /// Never send ids at or below this: the client had them when it reconnected.
    floor: i64,
    /// The highest id sent.
    cursor: i64,
    sent: BTreeSet<i64>,
    first: bool,
    /// The access token that opened the stream, checked again before every poll.
    token: String,
    user_id: Uuid,
}

/// Streams the tenant's changes. A client that reconnects with `Last-Event-ID` receives what it
/// missed in the last ten minutes.
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(("Last-Event-ID" = Option<i64>, Header, description = "The id of the last event received")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "A stream of `message.created`, `message.status`, `conversation.updated` and `contact.updated` events with JSON data"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    staff: Staff,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    staff.require(&[Role::Owner, Role::Manager, Role::Agent])?;
    let resume_from = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<i64>().ok())
        .map(|id| id.max(0));

    let start = match resume_from {
        Some(id) => id,
        None => {
            let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
            let latest: i64 = sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM staff_events")
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            latest
        }
    };
    let feed = Feed {
        state,
        tenant_id: staff.tenant_id,
        floor: start,
        cursor: start,
        sent: BTreeSet::new(),
        first: true,
        token: super::extract::bearer_token(&headers)
            .unwrap_or_default()
            .to_string(),
        user_id: staff.user_id,
    };

    let stop = feed.state.stop.clone();
    let events = stream::unfold(feed, |mut feed| async move {
        if !feed.first {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        feed.first = false;
        // The stream lives no longer than the credentials that opened it.
        if feed.state.auth.verify_access(&feed.token).is_err()
            || !super::extract::account_active(&feed.state, feed.user_id).await
        {
            return None;
        }
        let batch = feed.poll().await;
        Some((stream::iter(batch), feed))
    })
    .flatten()
    .take_until(stop.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

impl Feed {
    async fn poll(&mut self) -> Vec<Result<Event, Infallible>> {
        let after = self.floor.max(self.cursor.saturating_sub(LOOKBACK_IDS));
        let rows = match self.fetch(after).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), tenant_id = %self.tenant_id, "event feed poll failed");
                return Vec::new();
            }
        };

        let mut events = Vec::new();
        for row in rows {
            if !self.sent.insert(row.id) {
                continue;
            }
            self.cursor = self.cursor.max(row.id);
            let data = serde_json::json!({
                "id": row.id,
                "kind": row.kind,
                "conversation_id": row.conversation_id,
                "at": row.created_at,
                "data": row.payload,
            });
            events.push(Ok(Event::default()
                .id(row.id.to_string())
                .event(row.kind)
                .data(data.to_string())));
        }
        // Ids below the lookback can no longer arrive, so forget them.
        let keep_from = self.cursor.saturating_sub(LOOKBACK_IDS);
        self.sent = self.sent.split_off(&keep_from);
        events
    }

    async fn fetch(&self, after: i64) -> anyhow::Result<Vec<staff::StaffEvent>> {
        let mut tx = store::tenant_tx(&self.state.pool, self.tenant_id).await?;
        let rows = staff::events_after(&mut tx, after, REPLAY_WINDOW.as_secs_f64(), BATCH).await?;
        tx.commit().await?;
        Ok(rows)
    }
}
