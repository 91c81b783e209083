//! Platform figures for platform administrators: counts per tenant, never a customer's data.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use crate::auth::Role;
use crate::http::AppState;

/// Activity counts of one tenant.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct TenantFigures {
    pub tenant_id: Uuid,
    pub name: String,
    pub conversations: i64,
    pub inbound_messages: i64,
    pub outbound_messages: i64,
    pub opted_out_contacts: i64,
}

/// Lists message and conversation counts per tenant. Platform administrators only.
#[utoipa::path(
    get, path = "/v1/admin/tenants", tag = "admin",
    responses(
        (status = 200, body = Vec<TenantFigures>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn tenants(
    State(state): State<AppState>,
    Caller(identity): Caller,
) -> ApiResult<Json<Vec<TenantFigures>>> {
    if identity.role != Role::PlatformAdmin {
        return Err(ApiError::Forbidden("platform administrators only".into()));
    }
    // Aggregates across tenants, so this runs as the platform role.
    let figures = sqlx::query_as(
        "SELECT t.id AS tenant_id, t.name,
                (SELECT count(*) FROM conversations c WHERE c.tenant_id = t.id) AS conversations,
                (SELECT count(*) FROM messages m WHERE m.tenant_id = t.id) AS inbound_messages,
                (SELECT count(*) FROM outbox o WHERE o.tenant_id = t.id) AS outbound_messages,
                (SELECT count(*) FROM contacts ct WHERE ct.tenant_id = t.id AND ct.opted_out)
                    AS opted_out_contacts
         FROM tenants t ORDER BY t.name",
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(figures))
}
