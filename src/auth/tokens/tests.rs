use std::sync::Arc;

use chrono::Duration;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::auth::testing::{self, TestDb, PASSWORD};
use crate::clock::OffsetClock;
use crate::secret::Secret;

fn agent() -> Identity {
    Identity {
        user_id: Uuid::new_v4(),
        tenant_id: Some(Uuid::new_v4()),
        role: Role::Agent,
    }
}

/// Claims that `verify_access` accepts, for tests that change one of them.
fn valid_claims(config: &AuthConfig) -> serde_json::Value {
    let now = config.clock.now().timestamp();
    json!({
        "sub": Uuid::new_v4(),
        "tenant": Uuid::new_v4(),
        "role": "manager",
        "iat": now,
        "exp": now + 900,
        "jti": Uuid::new_v4(),
    })
}

fn sign(config: &AuthConfig, algorithm: Algorithm, claims: &serde_json::Value) -> String {
    encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(config.jwt_secret.expose().as_bytes()),
    )
    .unwrap()
}

fn assert_invalid(config: &AuthConfig, token: &str) {
    let result = config.verify_access(token);
    assert!(
        matches!(result, Err(AuthError::InvalidAccessToken)),
        "token {token:?} gave {result:?}"
    );
}

#[test]
fn access_token_round_trips() {
    let config = testing::config(&OffsetClock::default());
    for identity in [
        agent(),
        Identity {
            user_id: Uuid::new_v4(),
            tenant_id: None,
            role: Role::PlatformAdmin,
        },
    ] {
        let (token, expires_at) = config.issue_access(&identity).unwrap();
        assert_eq!(config.verify_access(&token).unwrap(), identity);
        let ttl = expires_at - config.clock.now();
        assert!(ttl > Duration::minutes(14), "{ttl}");
        assert!(ttl <= Duration::minutes(15), "{ttl}");
    }
}

#[test]
fn access_token_has_expected_claims() {
    let config = testing::config(&OffsetClock::default());
    let identity = agent();
    let (token, expires_at) = config.issue_access(&identity).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], json!(identity.user_id));
    assert_eq!(claims["tenant"], json!(identity.tenant_id));
    assert_eq!(claims["role"], "agent");
    assert_eq!(claims["exp"], expires_at.timestamp());
    assert!(claims["iat"].is_i64());
    assert!(claims["jti"].is_string());
}

#[test]
fn access_token_unique_per_issue() {
    let config = testing::config(&OffsetClock::default());
    let identity = agent();
    let (first, _) = config.issue_access(&identity).unwrap();
    let (second, _) = config.issue_access(&identity).unwrap();
    assert_ne!(first, second);
}

#[test]
fn access_token_expires_by_clock() {
    let clock = OffsetClock::default();
    let config = testing::config(&clock);
    let (token, expires_at) = config.issue_access(&agent()).unwrap();

    clock.advance(Duration::minutes(14));
    assert!(config.verify_access(&token).is_ok());

    clock.advance(Duration::minutes(1) + Duration::seconds(1));
    assert!(config.clock.now() > expires_at);
    assert!(matches!(
        config.verify_access(&token),
        Err(AuthError::AccessTokenExpired)
    ));
}

#[test]
fn expired_claim_rejected_without_leeway() {
    let config = testing::config(&OffsetClock::default());
    let mut claims = valid_claims(&config);
    claims["exp"] = json!(config.clock.now().timestamp() - 1);
    let token = sign(&config, Algorithm::HS256, &claims);
    assert!(matches!(
        config.verify_access(&token),
        Err(AuthError::AccessTokenExpired)
    ));
}

#[test]
fn alg_none_token_rejected() {
    let config = testing::config(&OffsetClock::default());
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(valid_claims(&config).to_string());
    assert_invalid(&config, &format!("{header}.{payload}."));
    // The same with the signature of a real token attached.
    let (real, _) = config.issue_access(&agent()).unwrap();
    let signature = real.rsplit('.').next().unwrap();
    assert_invalid(&config, &format!("{header}.{payload}.{signature}"));
}

#[test]
fn hs512_token_with_right_key_rejected() {
    let config = testing::config(&OffsetClock::default());
    let claims = valid_claims(&config);
    assert!(config
        .verify_access(&sign(&config, Algorithm::HS256, &claims))
        .is_ok());
    assert_invalid(&config, &sign(&config, Algorithm::HS512, &claims));
    assert_invalid(&config, &sign(&config, Algorithm::HS384, &claims));
}

#[test]
fn tampered_payload_rejected() {
    let config = testing::config(&OffsetClock::default());
    let (token, _) = config.issue_access(&agent()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("owner");
    let forged = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert_invalid(&config, &format!("{}.{forged}.{}", parts[0], parts[2]));
}

#[test]
fn wrong_key_rejected() {
    let config = testing::config(&OffsetClock::default());
    let other = AuthConfig {
        jwt_secret: Secret::new("another-secret-of-reasonable-length"),
        ..config.clone()
    };
    let (token, _) = other.issue_access(&agent()).unwrap();
    assert_invalid(&config, &token);
}

#[test]
fn malformed_tokens_rejected() {
    let config = testing::config(&OffsetClock::default());
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "...",
        "Bearer x.y.z",
        "ey.ey.ey.ey",
    ] {
        assert_invalid(&config, token);
    }
}

#[test]
fn unknown_role_rejected() {
    let config = testing::config(&OffsetClock::default());
    let mut claims = valid_claims(&config);
    claims["role"] = json!("superuser");
    assert_invalid(&config, &sign(&config, Algorithm::HS256, &claims));
}

#[test]
fn role_tenant_mismatch_rejected() {
    let config = testing::config(&OffsetClock::default());
    let mut admin_with_tenant = valid_claims(&config);
    admin_with_tenant["role"] = json!("platform_admin");
    assert_invalid(
        &config,
        &sign(&config, Algorithm::HS256, &admin_with_tenant),
    );

    let mut agent_without_tenant = valid_claims(&config);
    agent_without_tenant
        .as_object_mut()
        .unwrap()
        .remove("tenant");
    assert_invalid(
        &config,
        &sign(&config, Algorithm::HS256, &agent_without_tenant),
    );
}

#[test]
fn missing_claims_rejected() {
    let config = testing::config(&OffsetClock::default());
    for claim in ["sub", "exp", "role", "iat", "jti"] {
        let mut claims = valid_claims(&config);
        claims.as_object_mut().unwrap().remove(claim);
        let result = config.verify_access(&sign(&config, Algorithm::HS256, &claims));
        assert!(
            matches!(result, Err(AuthError::InvalidAccessToken)),
            "without {claim}: {result:?}"
        );
    }
}

#[test]
fn empty_secret_cannot_issue() {
    let config = AuthConfig {
        jwt_secret: Secret::new(""),
        ..testing::config(&OffsetClock::default())
    };
    assert!(config.issue_access(&agent()).is_err());
}

#[test]
fn auth_errors_map_to_api_errors() {
    let expired = ApiError::from(AuthError::AccessTokenExpired);
    assert!(
        matches!(&expired, ApiError::Unauthorized(message) if message == "access token expired"),
        "{expired:?}"
    );
    let credentials = ApiError::from(AuthError::InvalidCredentials);
    assert!(
        matches!(&credentials, ApiError::Unauthorized(message) if message == "invalid email or password"),
        "{credentials:?}"
    );
    let internal = ApiError::from(AuthError::Internal(anyhow::anyhow!("connection refused")));
    assert!(matches!(internal, ApiError::Internal(_)), "{internal:?}");
}

#[test]
fn malformed_refresh_tokens_rejected() {
    for token in [
        "",
        "short",
        "not base64 at all!",
        &"A".repeat(44),
        &"A".repeat(42),
    ] {
        assert!(
            matches!(
                refresh_token_hash(token),
                Err(AuthError::InvalidRefreshToken)
            ),
            "{token:?}"
        );
    }
    assert!(refresh_token_hash(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
}

// Database-backed tests. Each creates and drops a database of its own.

async fn family_tokens(db: &TestDb, user_id: Uuid) -> Vec<(Uuid, Option<DateTime<Utc>>)> {
    sqlx::query_as(
        "SELECT family_id, revoked_at FROM refresh_tokens WHERE user_id = $1 ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_returns_identity_and_tokens() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    let user_id = db
        .user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let config = testing::config(&OffsetClock::default());

    let (identity, pair) = login(&db.pool, &config, "ravi@saimotors.in", PASSWORD)
        .await
        .unwrap();
    let expected = Identity {
        user_id,
        tenant_id: Some(tenant_id),
        role: Role::Agent,
    };
    assert_eq!(identity, expected);
    assert_eq!(config.verify_access(&pair.access_token).unwrap(), expected);
    assert_eq!(pair.token_type, TokenType::Bearer);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&pair.refresh_token).unwrap().len(),
        32
    );
    assert!(pair.refresh_expires_at > config.clock.now() + Duration::days(29));

    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM refresh_tokens")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        Sha256::digest(pair.refresh_token.as_bytes()).to_vec()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_email_is_case_insensitive() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    db.user(Some(tenant_id), "Ravi@SaiMotors.in", Role::Owner)
        .await;
    let config = testing::config(&OffsetClock::default());

    let (identity, _) = login(&db.pool, &config, " ravi@saimotors.IN ", PASSWORD)
        .await
        .unwrap();
    assert_eq!(identity.role, Role::Owner);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_platform_admin_has_no_tenant() {
    let db = TestDb::create().await;
    db.user(None, "ops@velochat.in", Role::PlatformAdmin).await;
    let config = testing::config(&OffsetClock::default());

    let (identity, pair) = login(&db.pool, &config, "ops@velochat.in", PASSWORD)
        .await
        .unwrap();
    assert_eq!(identity.tenant_id, None);
    assert_eq!(identity.role, Role::PlatformAdmin);
    assert_eq!(config.verify_access(&pair.access_token).unwrap(), identity);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rejects_wrong_password_and_unknown_email_alike() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    db.user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let config = testing::config(&OffsetClock::default());

    let wrong_password = login(
        &db.pool,
        &config,
        "ravi@saimotors.in",
        "correct horse batterY",
    )
    .await
    .unwrap_err();
    let unknown_email = login(&db.pool, &config, "nobody@saimotors.in", PASSWORD)
        .await
        .unwrap_err();
    assert!(matches!(wrong_password, AuthError::InvalidCredentials));
    assert!(matches!(unknown_email, AuthError::InvalidCredentials));
    assert_eq!(wrong_password.to_string(), unknown_email.to_string());

    let too_long = "a".repeat(MAX_PASSWORD_BYTES + 1);
    let result = login(&db.pool, &config, "ravi@saimotors.in", &too_long).await;
    assert!(matches!(result, Err(AuthError::InvalidCredentials)));

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rejects_disabled_user() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    let user_id = db
        .user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    sqlx::query("UPDATE staff_users SET disabled_at = now() WHERE id = $1")
        .bind(user_id)
        .execute(&db.pool)
        .await
        .unwrap();
    let config = testing::config(&OffsetClock::default());

    let right_password = login(&db.pool, &config, "ravi@saimotors.in", PASSWORD).await;
    assert!(matches!(right_password, Err(AuthError::AccountDisabled)));
    // Without the right password a disabled account looks like any failed login.
    let wrong_password = login(&db.pool, &config, "ravi@saimotors.in", "wrong password!!").await;
    assert!(matches!(wrong_password, Err(AuthError::InvalidCredentials)));
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_within_family() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    let user_id = db
        .user(Some(tenant_id), "ravi@saimotors.in", Role::Manager)
        .await;
    let config = testing::config(&OffsetClock::default());
    let (identity, first) = login(&db.pool, &config, "ravi@saimotors.in", PASSWORD)
        .await
        .unwrap();

    let (refreshed_identity, second) = refresh(&db.pool, &config, &first.refresh_token)
        .await
        .unwrap();
    assert_eq!(refreshed_identity, identity);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(
        config.verify_access(&second.access_token).unwrap(),
        identity
    );

    let (third_identity, _) = refresh(&db.pool, &config, &second.refresh_token)
        .await
        .unwrap();
    assert_eq!(third_identity, identity);

    let tokens = family_tokens(&db, user_id).await;
    assert_eq!(tokens.len(), 3);
    assert!(tokens.iter().all(|(family, _)| *family == tokens[0].0));
    assert!(tokens.iter().all(|(_, revoked)| revoked.is_none()));
    let used: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE used_at IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(used, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_reuse_revokes_family() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    let user_id = db
        .user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let config = testing::config(&OffsetClock::default());
    let (_, first) = login(&db.pool, &config, "ravi@saimotors.in", PASSWORD)
        .await
        .unwrap();
    // A second login is another session, which the reuse must leave alone.
    let (_, other_session) = login(&db.pool, &config, "ravi@saimotors.in", PASSWORD)
        .await
        .unwrap();
    let (_, second) = refresh(&db.pool, &config, &first.refresh_token)
        .await
        .unwrap();

    let reused = refresh(&db.pool, &config, &first.refresh_token).await;
    assert!(
        matches!(reused, Err(AuthError::RefreshTokenReused)),
        "{reused:?}"
    );

    let newer = refresh(&db.pool, &config, &second.refresh_token).await;
    assert!(
        matches!(newer, Err(AuthError::RefreshTokenRevoked)),
        "{newer:?}"
    );
    let reused_again = refresh(&db.pool, &config, &first.refresh_token).await;
    assert!(
        matches!(reused_again, Err(AuthError::RefreshTokenRevoked)),
        "{reused_again:?}"
    );

    let first_family = family_of(&db, &first.refresh_token).await;
    let other_family = family_of(&db, &other_session.refresh_token).await;
    for (family, revoked_at) in family_tokens(&db, user_id).await {
        if family == first_family {
            assert!(
                revoked_at.is_some(),
                "a token of the reused family is not revoked"
            );
        } else {
            assert_eq!(family, other_family);
            assert!(revoked_at.is_none(), "the other session was revoked");
        }
    }
    assert!(refresh(&db.pool, &config, &other_session.refresh_token)
        .await
        .is_ok());
}

async fn family_of(db: &TestDb, refresh_token: &str) -> Uuid {
    sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(refresh_token_hash(refresh_token).unwrap())
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_revokes_family() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    db.user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let config = testing::config(&OffsetClock::default());
    let (_, first) = login(&db.pool, &config, "ravi@saimotors.in", PASSWORD)
        .await
        .unwrap();
    let (_, second) = refresh(&db.pool, &config, &first.refresh_token)
        .await
        .unwrap();

    logout(&db.pool, &config, &second.refresh_token)
        .await
        .unwrap();
    let after_logout = refresh(&db.pool, &config, &second.refresh_token).await;
    assert!(
        matches!(after_logout, Err(AuthError::RefreshTokenRevoked)),
        "{after_logout:?}"
    );
    // Logging out again, even with an older token of the session, succeeds.
    logout(&db.pool, &config, &first.refresh_token)
        .await
        .unwrap();

    let unknown = URL_SAFE_NO_PAD.encode([9u8; 32]);
    let result = logout(&db.pool, &config, &unknown).await;
    assert!(
        matches!(result, Err(AuthError::InvalidRefreshToken)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rejects_unknown_token() {
    let db = TestDb::create().await;
    let config = testing::config(&OffsetClock::default());
    let unknown = URL_SAFE_NO_PAD.encode([9u8; 32]);
    let result = refresh(&db.pool, &config, &unknown).await;
    assert!(
        matches!(result, Err(AuthError::InvalidRefreshToken)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_expire_by_clock() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    db.user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let clock = OffsetClock::default();
    let config = testing::config(&clock);
    let (_, pair) = login(&db.pool, &config, "ravi@saimotors.in", PASSWORD)
        .await
        .unwrap();

    clock.advance(Duration::minutes(14));
    assert!(config.verify_access(&pair.access_token).is_ok());
    clock.advance(Duration::minutes(1) + Duration::seconds(1));
    let access = config.verify_access(&pair.access_token);
    assert!(
        matches!(access, Err(AuthError::AccessTokenExpired)),
        "{access:?}"
    );

    // The refresh token outlives the access token, until its own expiry.
    let (_, renewed) = refresh(&db.pool, &config, &pair.refresh_token)
        .await
        .unwrap();
    clock.advance(config.refresh_ttl - Duration::seconds(1));
    let (_, last) = refresh(&db.pool, &config, &renewed.refresh_token)
        .await
        .unwrap();
    clock.advance(config.refresh_ttl + Duration::seconds(1));
    let expired = refresh(&db.pool, &config, &last.refresh_token).await;
    assert!(
        matches!(expired, Err(AuthError::RefreshTokenExpired)),
        "{expired:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rejects_disabled_user() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    let user_id = db
        .user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let config = testing::config(&OffsetClock::default());
    let (_, pair) = login(&db.pool, &config, "ravi@saimotors.in", PASSWORD)
        .await
        .unwrap();
    sqlx::query("UPDATE staff_users SET disabled_at = now() WHERE id = $1")
        .bind(user_id)
        .execute(&db.pool)
        .await
        .unwrap();

    let result = refresh(&db.pool, &config, &pair.refresh_token).await;
    assert!(
        matches!(result, Err(AuthError::AccountDisabled)),
        "{result:?}"
    );
    let tokens = family_tokens(&db, user_id).await;
    assert!(tokens.iter().all(|(_, revoked)| revoked.is_some()));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_refresh_only_one_succeeds() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    db.user(Some(tenant_id), "ravi@saimotors.in", Role::Agent)
        .await;
    let config = Arc::new(testing::config(&OffsetClock::default()));
    let (_, pair) = login(&db.pool, &config, "ravi@saimotors.in", PASSWORD)
        .await
        .unwrap();

    let attempts = (0..8).map(|_| {
        let pool = db.pool.clone();
        let config = config.clone();
        let token = pair.refresh_token.clone();
        tokio::spawn(async move { refresh(&pool, &config, &token).await })
    });
    let results: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();

    let succeeded = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(succeeded, 1, "{results:?}");
    for result in results.iter().filter(|result| result.is_err()) {
        assert!(
            matches!(
                result,
                Err(AuthError::RefreshTokenReused | AuthError::RefreshTokenRevoked)
            ),
            "{result:?}"
        );
    }
}
