use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::*;
use crate::auth::testing::{self, TestDb, PASSWORD};
use crate::auth::Role;
use crate::clock::OffsetClock;

#[derive(Clone)]
struct TestState {
    pool: PgPool,
    config: Arc<AuthConfig>,
}

impl FromRef<TestState> for PgPool {
    fn from_ref(state: &TestState) -> Self {
        state.pool.clone()
    }
}

impl FromRef<TestState> for Arc<AuthConfig> {
    fn from_ref(state: &TestState) -> Self {
        state.config.clone()
    }
}

/// Serves the routes on a free port of 127.0.0.1 and returns the base URL.
async fn serve(db: &TestDb) -> String {
    let state = TestState {
        pool: db.pool.clone(),
        config: Arc::new(testing::config(&OffsetClock::default())),
    };
    let (router, _) = routes::<TestState>().split_for_parts();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.with_state(state))
            .await
            .unwrap()
    });
    format!("http://{addr}")
}

async fn post(base: &str, path: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, headers, json)
}

async fn post_raw(base: &str, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap())
}

#[test]
fn openapi_lists_auth_paths() {
    let (_, api) = routes::<TestState>().split_for_parts();
    let json = serde_json::to_value(&api).unwrap();
    for path in ["/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"] {
        let operation = &json["paths"][path]["post"];
        assert!(operation.is_object(), "{path} is missing");
        assert!(
            operation["requestBody"].is_object(),
            "{path} has no request body"
        );
        for status in ["401", "422"] {
            assert!(
                operation["responses"][status].is_object(),
                "{path} lacks {status}"
            );
        }
    }
    assert!(json["paths"]["/v1/auth/login"]["post"]["responses"]["200"].is_object());
    assert!(json["paths"]["/v1/auth/logout"]["post"]["responses"]["204"].is_object());
    let pair = &json["components"]["schemas"]["TokenPair"];
    assert!(pair["properties"]["token_type"].is_object(), "{pair}");
    assert!(json["components"]["schemas"]["LoginRequest"].is_object());
    assert!(json["components"]["schemas"]["RefreshRequest"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refresh_logout_over_http() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    db.user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let base = serve(&db).await;

    let credentials = json!({ "email": "ravi@saimotors.in", "password": PASSWORD });
    let (status, headers, pair) = post(&base, "/v1/auth/login", &credentials).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(pair["token_type"], "Bearer");
    for field in [
        "access_token",
        "access_expires_at",
        "refresh_token",
        "refresh_expires_at",
    ] {
        assert!(pair[field].is_string(), "{field} missing from {pair}");
    }

    let (status, headers, renewed) = post(
        &base,
        "/v1/auth/refresh",
        &json!({ "refresh_token": pair["refresh_token"] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_ne!(renewed["refresh_token"], pair["refresh_token"]);

    let (status, _, body) = post(
        &base,
        "/v1/auth/logout",
        &json!({ "refresh_token": renewed["refresh_token"] }),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null);

    let (status, _, body) = post(
        &base,
        "/v1/auth/refresh",
        &json!({ "refresh_token": renewed["refresh_token"] }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(body["error"]["message"], "refresh token revoked");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_failures_look_alike() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    db.user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let base = serve(&db).await;

    let wrong_password = json!({ "email": "ravi@saimotors.in", "password": "wrong password!" });
    let unknown_email = json!({ "email": "nobody@saimotors.in", "password": PASSWORD });
    let (status, _, first) = post(&base, "/v1/auth/login", &wrong_password).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, second) = post(&base, "/v1/auth/login", &unknown_email).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(first, second);
    assert_eq!(first["error"]["message"], "invalid email or password");
}

#[tokio::test(flavor = "multi_thread")]
async fn reused_refresh_token_is_unauthorized() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    db.user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let base = serve(&db).await;

    let credentials = json!({ "email": "ravi@saimotors.in", "password": PASSWORD });
    let (_, _, pair) = post(&base, "/v1/auth/login", &credentials).await;
    let body = json!({ "refresh_token": pair["refresh_token"] });
    let (status, _, _) = post(&base, "/v1/auth/refresh", &body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, error) = post(&base, "/v1/auth/refresh", &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_bodies_rejected() {
    let db = TestDb::create().await;
    let base = serve(&db).await;

    let cases = [
        (
            "/v1/auth/login",
            json!({ "email": "", "password": PASSWORD }),
        ),
        (
            "/v1/auth/login",
            json!({ "email": "  ", "password": PASSWORD }),
        ),
        (
            "/v1/auth/login",
            json!({ "email": "ravi@saimotors.in", "password": "" }),
        ),
        ("/v1/auth/login", json!({ "email": "ravi@saimotors.in" })),
        (
            "/v1/auth/login",
            json!({ "email": 7, "password": PASSWORD }),
        ),
        ("/v1/auth/refresh", json!({ "refresh_token": "" })),
        ("/v1/auth/refresh", json!({})),
        ("/v1/auth/logout", json!({ "refresh_token": "" })),
        ("/v1/auth/logout", json!([])),
    ];
    for (path, body) in cases {
        let (status, _, error) = post(&base, path, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path} {body}");
        assert_eq!(error["error"]["code"], "invalid_request", "{path} {body}");
    }

    // Bodies that are not JSON at all keep their own statuses: 400 malformed, 415 not JSON.
    for path in ["/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"] {
        let (status, error) = post_raw(&base, path, "application/json", "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error["error"]["code"], "invalid_body", "{path}");
        let (status, error) = post_raw(&base, path, "text/plain", "{}").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
        assert_eq!(error["error"]["code"], "invalid_body", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_refresh_token_is_unauthorized() {
    let db = TestDb::create().await;
    let base = serve(&db).await;
    for path in ["/v1/auth/refresh", "/v1/auth/logout"] {
        let (status, _, error) = post(&base, path, &json!({ "refresh_token": "nope" })).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(error["error"]["message"], "invalid refresh token", "{path}");
    }
}
