//! The staff API under `/v1`: login, conversations, takeover, live events and the audit trail.
//!
//! Every route is registered through [`OpenApiRouter`], so `/openapi.json` describes exactly the
//! routes that exist, and every `/v1` request passes the audit middleware.

pub mod admin;
pub mod audit;
pub mod auth_routes;
pub mod contacts;
pub mod conversations;
pub mod error;
pub mod events;
pub mod extract;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::{ApiError, ApiResult};
use crate::http::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "velochat staff API", description = "Watch and take over WhatsApp conversations."),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody, error::ErrorDetail))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Builds the staff API routes and their OpenAPI description.
pub fn router(state: AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth_routes::routes())
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::show))
        .routes(routes!(conversations::history, conversations::send))
        .routes(routes!(conversations::takeover))
        .routes(routes!(conversations::release))
        .routes(routes!(conversations::assign))
        .routes(routes!(contacts::show))
        .routes(routes!(events::stream))
        .routes(routes!(audit::list))
        .routes(routes!(admin::tenants))
        .split_for_parts();

    let routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state, audit::record));
    let spec = openapi.clone();
    let with_spec = Router::new()
        .route("/openapi.json", get(move || async move { Json(spec) }))
        .merge(routes);
    (with_spec, openapi)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = error::ErrorBody {
        error: error::ErrorDetail {
            code: "method_not_allowed".into(),
            message: "this route does not accept that method".into(),
        },
    };
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// Validates a page size.
pub fn page_limit(requested: Option<i64>, default: i64, max: i64) -> ApiResult<i64> {
    match requested {
        None => Ok(default),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::Unprocessable(format!(
            "invalid limit {limit}: expected 1 to {max}"
        ))),
    }
}
