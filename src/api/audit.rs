//! The audit trail: every staff API request, failed ones included, and the owners' view of it.

use axum::extract::{Query, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{AuditSlot, Staff};
use crate::auth::Role;
use crate::http::AppState;
use crate::store::{self, staff::AuditEntry};

/// Writes one audit row per request once the handler has produced its response.
pub async fn record(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 128 && value.is_ascii())
        .map(str::to_string)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let slot = AuditSlot::default();
    request.extensions_mut().insert(slot.clone());

    // The handler and the audit row run in a task of their own, so a client that disconnects
    // mid-request can neither cut a change off halfway nor leave it unaudited.
    let recorded_id = request_id.clone();
    let handled = tokio::spawn(async move {
        let response = next.run(request).await;
        let identity = slot.identity();
        let status = i32::from(response.status().as_u16());
        let written = insert(&state, identity, &method, &path, status, &recorded_id).await;
        if let Err(error) = written {
            tracing::error!(
                error = format!("{error:#}"),
                request_id = recorded_id,
                path,
                "could not write audit row"
            );
        }
        response
    })
    .await;

    let mut response = match handled {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, request_id, "staff API handler panicked");
            ApiError::internal(anyhow::anyhow!("handler panicked")).into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn insert(
    state: &AppState,
    identity: Option<crate::auth::Identity>,
    method: &str,
    path: &str,
    status: i32,
    request_id: &str,
) -> anyhow::Result<()> {
    const INSERT: &str =
        "INSERT INTO audit_log (tenant_id, user_id, method, path, status, request_id)
                          VALUES ($1, $2, $3, $4, $5, $6)";
    let tenant_id = identity.and_then(|identity| identity.tenant_id);
    let user_id = identity.map(|identity| identity.user_id);
    let query = sqlx::query(INSERT)
        .bind(tenant_id)
        .bind(user_id)
        .bind(method)
        .bind(path)
        .bind(status)
        .bind(request_id);
    match tenant_id {
        Some(tenant_id) => {
            let mut tx = store::tenant_tx(&state.pool, tenant_id).await?;
            query.execute(&mut *tx).await?;
            tx.commit().await?;
        }
        // Requests without a tenant (failed logins, platform administrators) are recorded by
        // the platform role.
        None => {
            query.execute(&state.pool).await?;
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Return entries older than this id (the `next_before` of the previous page).
    before: Option<i64>,
    /// Entries per page, 1 to 500; 100 by default.
    limit: Option<i64>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// Lists the tenant's audit trail. Owners only.
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    staff.require(&[Role::Owner])?;
    let Query(query) = query?;
    let limit = super::page_limit(query.limit, 100, 500)?;

    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    let items = store::staff::audit_entries(&mut tx, query.before, limit).await?;
    tx.commit().await?;
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage { items, next_before }))
}
