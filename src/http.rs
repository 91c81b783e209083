//! The HTTP surface: Meta's webhook and the health checks.

mod health;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRef, Request};
use ractor::ActorRef;
use velochat_actors::supervisor::SupervisorMsg;

use crate::auth::AuthConfig;
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;
use tower_http::trace::TraceLayer;
use tracing::info_span;

use crate::dispatch::Dispatcher;
use crate::secret::Secret;

/// Meta sends webhook bodies of up to 3 MB.
pub const MAX_WEBHOOK_BODY: usize = 3 * 1024 * 1024;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub dispatcher: Dispatcher,
    pub app_secret: Arc<Secret>,
    pub verify_token: Arc<Secret>,
    pub auth: Arc<AuthConfig>,
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Cancelled when the engine shuts down, which ends long-lived responses such as event
    /// streams.
    pub stop: tokio_util::sync::CancellationToken,
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> PgPool {
        state.pool.clone()
    }
}

impl FromRef<AppState> for Arc<AuthConfig> {
    fn from_ref(state: &AppState) -> Arc<AuthConfig> {
        state.auth.clone()
    }
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let (api, _) = crate::api::router(state.clone());
    Router::new()
        .merge(api)
        .route(
            "/webhooks/whatsapp",
            get(webhook::verify).post(webhook::receive).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        )
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            info_span!("http_request", method = %request.method(), path = request.uri().path())
        }))
        .with_state(state)
}

/// How long the readiness check waits for each dependency.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);
