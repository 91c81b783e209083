//! The staff API's error type: one JSON shape for every failure, internal causes logged and
//! never sent to clients.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// An error response of the staff API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, expired, tampered or wrongly signed credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role lacks the right.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource for the caller's tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the resource's state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request is well-formed but invalid.
    #[error("{0}")]
    Unprocessable(String),
    /// The body is not JSON, is not sent as JSON, or is too large.
    #[error("{message}")]
    BadBody { status: StatusCode, message: String },
    /// Anything else; the cause is logged, not sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error's code and description.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code, such as `unauthorized` or `outside_service_window`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl ApiError {
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ApiError::BadBody { status, .. } => (*status, "invalid_body"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "staff API request failed");
        }
        let (status, code) = self.status_and_code();
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: code.to_string(),
                    message: self.to_string(),
                },
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(error.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::Internal(error)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // Well-formed JSON of the wrong shape is 422; anything that is not JSON keeps axum's
        // status (400 malformed, 413 too large, 415 wrong content type).
        match rejection {
            JsonRejection::JsonDataError(_) => {
                ApiError::Unprocessable(format!("invalid JSON body: {}", rejection.body_text()))
            }
            other => ApiError::BadBody {
                status: other.status(),
                message: other.body_text(),
            },
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Unprocessable(format!("invalid query: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        // A malformed id names nothing that exists.
        ApiError::NotFound("resource")
    }
}

/// The result type of staff API handlers.
pub type ApiResult<T> = Result<T, ApiError>;
