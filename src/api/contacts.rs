//! Contacts and their opt-out state. There is deliberately no way for staff to clear an
//! opt-out: only the customer can, by sending START.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use uuid::Uuid;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Staff;
use crate::auth::Role;
use crate::http::AppState;
use crate::store::{self, staff::ContactView};

/// Shows a contact and its opt-out state.
#[utoipa::path(
    get, path = "/v1/contacts/{id}", tag = "contacts",
    params(("id" = Uuid, Path, description = "Contact id")),
    responses(
        (status = 200, body = ContactView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    staff: Staff,
    id: Result<Path<Uuid>, PathRejection>,
) -> ApiResult<Json<ContactView>> {
    staff.require(&[Role::Owner, Role::Manager, Role::Agent])?;
    let Path(id) = id?;
    let mut tx = store::tenant_tx(&state.pool, staff.tenant_id).await?;
    let contact = store::staff::contact(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("contact"))?;
    tx.commit().await?;
    Ok(Json(contact))
}
