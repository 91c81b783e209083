//! Extractors that authenticate the caller from its bearer token.

use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

use super::error::ApiError;
use crate::auth::{Identity, Role};
use crate::http::AppState;

/// The caller's identity, stored by an extractor once checked so that the audit middleware can
/// record it.
#[derive(Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Option<Identity>>>);

impl AuditSlot {
    pub fn identity(&self) -> Option<Identity> {
        *self.0.lock().expect("audit slot lock")
    }

    fn set(&self, identity: Identity) {
        *self.0.lock().expect("audit slot lock") = Some(identity);
    }
}

/// Any authenticated caller.
#[derive(Clone, Copy, Debug)]
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Err(ApiError::Unauthorized(
                "missing Authorization header".to_string(),
            ));
        }
        let token = bearer_token(&parts.headers).ok_or_else(|| {
            ApiError::Unauthorized("Authorization must be `Bearer <access token>`".to_string())
        })?;
        let identity = state.auth.verify_access(token)?;
        // A disabled or deleted account loses access at once, not when its token expires.
        if !account_active(state, identity.user_id).await {
            return Err(ApiError::Unauthorized(
                "account disabled or removed".to_string(),
            ));
        }
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.set(identity);
        }
        Ok(Caller(identity))
    }
}

/// A staff member of a dealership; platform administrators are rejected.
#[derive(Clone, Copy, Debug)]
pub struct Staff {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
}

impl Staff {
    /// Rejects the request with 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(identity) = Caller::from_request_parts(parts, state).await?;
        match identity.tenant_id {
            Some(tenant_id) if identity.role != Role::PlatformAdmin => Ok(Staff {
                user_id: identity.user_id,
                tenant_id,
                role: identity.role,
            }),
            _ => Err(ApiError::Forbidden(
                "platform administrators see aggregate figures only".to_string(),
            )),
        }
    }
}

/// Returns the token of an `Authorization: Bearer` header. The scheme name is case-insensitive.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Returns whether a staff account exists and is not disabled. Runs as the platform role, because it
/// applies to platform administrators as well; a failed lookup counts as inactive.
pub async fn account_active(state: &AppState, user_id: Uuid) -> bool {
    let active =
        sqlx::query_scalar::<_, bool>("SELECT disabled_at IS NULL FROM staff_users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&state.pool)
            .await;
    match active {
        Ok(found) => found.unwrap_or(false),
        Err(error) => {
            tracing::warn!(%error, %user_id, "could not check whether an account is active");
            false
        }
    }
}
