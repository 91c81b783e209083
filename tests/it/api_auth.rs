//! Staff API authentication over HTTP: login, refresh-token rotation and reuse, logout, and
//! access-token expiry, against the test database.

use std::sync::Arc;

use axum::extract::FromRef;
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use velochat::api::auth_routes;
use velochat::auth::tokens::AuthError;
use velochat::auth::{AuthConfig, Identity, Role};
use velochat::clock::OffsetClock;
use velochat::secret::Secret;
use velochat::user_cli::{create_user, NewUser};

use crate::support::TestEnv;

const PASSWORD: &str = "correct horse battery";

#[derive(Clone)]
struct AuthState {
    pool: PgPool,
    config: Arc<AuthConfig>,
}

impl FromRef<AuthState> for PgPool {
    fn from_ref(state: &AuthState) -> Self {
        state.pool.clone()
    }
}

impl FromRef<AuthState> for Arc<AuthConfig> {
    fn from_ref(state: &AuthState) -> Self {
        state.config.clone()
    }
}

/// The authentication routes on a free port of 127.0.0.1, with a clock the test can advance.
struct AuthServer {
    base_url: String,
    clock: OffsetClock,
    config: Arc<AuthConfig>,
    http: reqwest::Client,
}

impl AuthServer {
    async fn start(pool: &PgPool) -> AuthServer {
        let clock = OffsetClock::default();
        let config = Arc::new(AuthConfig {
            jwt_secret: Secret::new("integration-test-jwt-secret"),
            access_ttl: Duration::minutes(15),
            refresh_ttl: Duration::days(30),
            clock: Arc::new(clock.clone()),
        });
        let state = AuthState {
            pool: pool.clone(),
            config: config.clone(),
        };
        let (router, _) = auth_routes::routes::<AuthState>().split_for_parts();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("port for the auth routes");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router.with_state(state))
                .await
                .expect("auth routes serve")
        });
        AuthServer {
            base_url: format!("http://{addr}"),
            clock,
            config,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(body)
            .send()
            .await
            .expect("auth request");
        let status = response.status();
        let text = response.text().await.expect("auth response body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("auth response is JSON")
        };
        (status, json)
    }

    async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/v1/auth/login",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    async fn refresh(&self, refresh_token: &Value) -> (StatusCode, Value) {
        self.post(
            "/v1/auth/refresh",
            &json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    async fn logout(&self, refresh_token: &Value) -> (StatusCode, Value) {
        self.post(
            "/v1/auth/logout",
            &json!({ "refresh_token": refresh_token }),
        )
        .await
    }
}

async fn create_staff(env: &TestEnv, email: &str, role: Role) -> Uuid {
    create_user(
        &env.pool,
        NewUser {
            tenant_id: Some(env.tenant_id),
            email: email.to_string(),
            phone: Some("+919876500011".to_string()),
            name: "Ravi Kulkarni".to_string(),
            role,
            password: PASSWORD.to_string(),
        },
    )
    .await
    .expect("staff user created")
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_returns_token_pair() {
    let env = TestEnv::start().await;
    let user_id = create_staff(&env, "ravi@saimotors.in", Role::Manager).await;
    let server = AuthServer::start(&env.pool).await;

    let (status, pair) = server.login("RAVI@saimotors.in", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(pair["token_type"], "Bearer");
    let identity = server
        .config
        .verify_access(pair["access_token"].as_str().unwrap())
        .expect("access token verifies");
    assert_eq!(
        identity,
        Identity {
            user_id,
            tenant_id: Some(env.tenant_id),
            role: Role::Manager,
        }
    );
    assert!(pair["refresh_token"].is_string());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_failures_are_indistinguishable() {
    let env = TestEnv::start().await;
    let user_id = create_staff(&env, "ravi@saimotors.in", Role::Agent).await;
    let server = AuthServer::start(&env.pool).await;

    let (status, wrong_password) = server.login("ravi@saimotors.in", "wrong password!").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, unknown_email) = server.login("nobody@saimotors.in", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password, unknown_email);
    assert_eq!(message(&wrong_password), "invalid email or password");

    sqlx::query("UPDATE staff_users SET disabled_at = now() WHERE id = $1")
        .bind(user_id)
        .execute(&env.pool)
        .await
        .unwrap();
    let (status, disabled) = server.login("ravi@saimotors.in", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(message(&disabled), "account disabled");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_or_malformed_body_is_unprocessable() {
    let env = TestEnv::start().await;
    let server = AuthServer::start(&env.pool).await;

    let (status, body) = server.login("", PASSWORD).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_request");
    let (status, _) = server.login("ravi@saimotors.in", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = server
        .post("/v1/auth/refresh", &json!({ "token": "x" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_request");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_reuse_revokes_session() {
    let env = TestEnv::start().await;
    create_staff(&env, "ravi@saimotors.in", Role::Agent).await;
    let server = AuthServer::start(&env.pool).await;
    let (_, first) = server.login("ravi@saimotors.in", PASSWORD).await;

    let (status, second) = server.refresh(&first["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);

    let (status, reused) = server.refresh(&first["refresh_token"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message(&reused).contains("already used"), "{reused}");

    // The newer token of the same session stopped working too.
    let (status, newer) = server.refresh(&second["refresh_token"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(message(&newer), "refresh token revoked");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_session() {
    let env = TestEnv::start().await;
    create_staff(&env, "ravi@saimotors.in", Role::Agent).await;
    let server = AuthServer::start(&env.pool).await;
    let (_, pair) = server.login("ravi@saimotors.in", PASSWORD).await;

    let (status, body) = server.logout(&pair["refresh_token"]).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = server.refresh(&pair["refresh_token"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(message(&body), "refresh token revoked");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_expire_by_clock() {
    let env = TestEnv::start().await;
    create_staff(&env, "ravi@saimotors.in", Role::Agent).await;
    let server = AuthServer::start(&env.pool).await;
    let (_, pair) = server.login("ravi@saimotors.in", PASSWORD).await;
    let access_token = pair["access_token"].as_str().unwrap();

    server.clock.advance(Duration::minutes(14));
    assert!(server.config.verify_access(access_token).is_ok());
    server
        .clock
        .advance(Duration::minutes(1) + Duration::seconds(1));
    assert!(matches!(
        server.config.verify_access(access_token),
        Err(AuthError::AccessTokenExpired)
    ));

    server.clock.advance(server.config.refresh_ttl);
    let (status, body) = server.refresh(&pair["refresh_token"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(message(&body), "refresh token expired");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_refresh_one_succeeds() {
    let env = TestEnv::start().await;
    create_staff(&env, "ravi@saimotors.in", Role::Agent).await;
    let server = Arc::new(AuthServer::start(&env.pool).await);
    let (_, pair) = server.login("ravi@saimotors.in", PASSWORD).await;

    let attempts = (0..6).map(|_| {
        let server = server.clone();
        let token = pair["refresh_token"].clone();
        tokio::spawn(async move { server.refresh(&token).await.0 })
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|joined| joined.expect("refresh task"))
        .collect();
    let succeeded = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(succeeded, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    env.finish().await;
}
