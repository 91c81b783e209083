//! `/v1/auth`: login, refresh-token rotation and logout. None of these need an access token.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, State};
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, ErrorBody};
use crate::auth::tokens::{self, TokenPair};
use crate::auth::AuthConfig;

/// The body of `POST /v1/auth/login`.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Compared case-insensitively.
    #[schema(example = "ravi@saimotors.in")]
    pub email: String,
    pub password: String,
}

/// The body of `POST /v1/auth/refresh` and `POST /v1/auth/logout`.
#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token of the latest [`TokenPair`].
    pub refresh_token: String,
}

/// Builds the authentication routes for any state that provides the pool and the token settings.
pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
    Arc<AuthConfig>: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// Log in with email and password.
///
/// Starts a new session: an access token and the first refresh token of a new family.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenPair),
        (status = 401, description = "Invalid email or password, or the account is disabled", body = ErrorBody),
        (status = 422, description = "Malformed body, or an empty email or password", body = ErrorBody),
    )
)]
async fn login(
    State(pool): State<PgPool>,
    State(config): State<Arc<AuthConfig>>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(request) = body?;
    if request.email.trim().is_empty() {
        return Err(ApiError::Unprocessable(
            "email must not be empty".to_string(),
        ));
    }
    if request.password.is_empty() {
        return Err(ApiError::Unprocessable(
            "password must not be empty".to_string(),
        ));
    }
    let (_, pair) = tokens::login(&pool, &config, &request.email, &request.password).await?;
    Ok(token_response(pair))
}

/// Exchange a refresh token for a new token pair.
///
/// Each refresh token works once. Presenting a used one revokes every token of its session.
#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New token pair", body = TokenPair),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = ErrorBody),
        (status = 422, description = "Malformed body or an empty refresh token", body = ErrorBody),
    )
)]
async fn refresh(
    State(pool): State<PgPool>,
    State(config): State<Arc<AuthConfig>>,
    body: Result<Json<RefreshRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(request) = body?;
    require_refresh_token(&request)?;
    let (_, pair) = tokens::refresh(&pool, &config, &request.refresh_token).await?;
    Ok(token_response(pair))
}

/// Log out, revoking every refresh token of the session.
///
/// Access tokens already issued stay valid until they expire.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Session revoked"),
        (status = 401, description = "Unknown refresh token", body = ErrorBody),
        (status = 422, description = "Malformed body or an empty refresh token", body = ErrorBody),
    )
)]
async fn logout(
    State(pool): State<PgPool>,
    State(config): State<Arc<AuthConfig>>,
    body: Result<Json<RefreshRequest>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(request) = body?;
    require_refresh_token(&request)?;
    tokens::logout(&pool, &config, &request.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn require_refresh_token(request: &RefreshRequest) -> ApiResult<()> {
    if request.refresh_token.is_empty() {
        return Err(ApiError::Unprocessable(
            "refresh_token must not be empty".to_string(),
        ));
    }
    Ok(())
}

/// Wraps the pair in a 200 response that caches must not store, with the `Cache-Control` and
/// `Pragma` headers that OAuth 2.0 (RFC 6749, section 5.1) requires of token responses.
fn token_response(pair: TokenPair) -> Response {
    let mut response = Json(pair).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests;
