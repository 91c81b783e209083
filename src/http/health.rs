//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{AppState, READY_TIMEOUT};

/// Reports that the process is running.
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Reports ready only while PostgreSQL and Redis both respond.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let postgres =
        tokio::time::timeout(READY_TIMEOUT, sqlx::query("SELECT 1").execute(&state.pool))
            .await
            .is_ok_and(|result| result.is_ok());
    let redis = tokio::time::timeout(READY_TIMEOUT, state.dispatcher.ping())
        .await
        .unwrap_or(false);
    let status = if postgres && redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |up: bool| if up { "up" } else { "down" };
    (
        status,
        Json(json!({ "postgres": word(postgres), "redis": word(redis) })),
    )
}
