//! Access and refresh tokens: login, refresh-token rotation and logout.
//!
//! Access tokens are HS256 JWTs checked against [`AuthConfig::clock`]. Refresh tokens are 32
//! random bytes in base64url, stored only as their SHA-256 hash. Each login starts a token
//! family, each refresh marks its token used and issues the next one in the family, and a used
//! token presented again revokes the whole family, because only a stolen copy explains a reuse.
//! These functions read `staff_users` and `refresh_tokens` before any tenant is known, so they
//! run as the connecting role, which bypasses row-level security.

use std::sync::LazyLock;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use super::password::{hash_password, verify_password, MAX_PASSWORD_BYTES};

/// Password checks allowed to run at once.
static PASSWORD_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
use super::{AuthConfig, Identity, Role};
use crate::api::error::ApiError;

/// Length of a refresh token before base64url encoding, in bytes.
const REFRESH_TOKEN_BYTES: usize = 32;

/// A hash that login verifies against when the email is unknown, so that an unknown email costs
/// the same argon2 work as a wrong password.
static DUMMY_PASSWORD_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_password("velochat dummy password for unknown emails")
        .expect("argon2 hashing with default parameters succeeds")
});

/// Authentication failures. Every variant except `Internal` is a 401 whose message is safe to
/// show to the caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown email or wrong password, deliberately not distinguished.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The password was right but the account is disabled.
    #[error("account disabled")]
    AccountDisabled,
    /// Malformed, tampered, wrongly signed or wrongly typed access token.
    #[error("invalid access token")]
    InvalidAccessToken,
    #[error("access token expired")]
    AccessTokenExpired,
    /// Malformed or unknown refresh token.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("refresh token expired")]
    RefreshTokenExpired,
    /// The token's family was revoked by logout or by a detected reuse.
    #[error("refresh token revoked")]
    RefreshTokenRevoked,
    /// A refresh token presented after it had been used, which revokes its whole family.
    #[error("refresh token already used, so every token of its session is revoked")]
    RefreshTokenReused,
    /// Storage or hashing failed. The cause is logged by [`ApiError`], never sent.
    #[error("authentication failed internally")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AuthError {
    fn from(error: sqlx::Error) -> Self {
        AuthError::Internal(error.into())
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Internal(cause) => ApiError::Internal(cause),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

/// The `token_type` of a [`TokenPair`], as in OAuth 2.0 token responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum TokenType {
    Bearer,
}

/// The tokens returned by login and refresh.
#[derive(Clone, Serialize, ToSchema)]
pub struct TokenPair {
    /// Always `Bearer`: send the access token as `Authorization: Bearer <token>`.
    pub token_type: TokenType,
    /// An HS256 JWT.
    pub access_token: String,
    pub access_expires_at: DateTime<Utc>,
    /// Single-use: exchange it at `/v1/auth/refresh` for a new pair.
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish_non_exhaustive()
    }
}

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    /// The staff user id.
    sub: Uuid,
    /// Absent for platform administrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<Uuid>,
    role: String,
    /// Issue and expiry times, in seconds since the Unix epoch.
    iat: i64,
    exp: i64,
    jti: Uuid,
}

impl AuthConfig {
    /// Signs an access token for `identity`, returning it with its expiry.
    pub fn issue_access(&self, identity: &Identity) -> anyhow::Result<(String, DateTime<Utc>)> {
        anyhow::ensure!(
            !self.jwt_secret.expose().is_empty(),
            "the JWT secret is empty"
        );
        let now = self.clock.now();
        let exp = (now + self.access_ttl).timestamp();
        // JWT times are whole seconds, so the returned expiry is the one the token carries.
        let expires_at =
            DateTime::from_timestamp(exp, 0).context("access token expiry out of range")?;
        let claims = AccessClaims {
            sub: identity.user_id,
            tenant: identity.tenant_id,
            role: identity.role.as_str().to_string(),
            iat: now.timestamp(),
            exp,
            jti: Uuid::new_v4(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.jwt_secret.expose().as_bytes()),
        )
        .context("signing the access token failed")?;
        Ok((token, expires_at))
    }

    /// Checks an access token's signature, claims and expiry, returning the caller it names.
    pub fn verify_access(&self, token: &str) -> Result<Identity, AuthError> {
        // Only HS256 is accepted, which also rejects `alg: none`. The library's expiry check
        // reads the system clock, so expiry is compared with `self.clock` below instead.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(
            token,
            &DecodingKey::from_secret(self.jwt_secret.expose().as_bytes()),
            &validation,
        )
        .map_err(|_| AuthError::InvalidAccessToken)?
        .claims;

        let role: Role = claims
            .role
            .parse()
            .map_err(|_| AuthError::InvalidAccessToken)?;
        if (role == Role::PlatformAdmin) != claims.tenant.is_none() {
            return Err(AuthError::InvalidAccessToken);
        }
        let expires_at =
            DateTime::from_timestamp(claims.exp, 0).ok_or(AuthError::InvalidAccessToken)?;
        if self.clock.now() >= expires_at {
            return Err(AuthError::AccessTokenExpired);
        }
        Ok(Identity {
            user_id: claims.sub,
            tenant_id: claims.tenant,
            role,
        })
    }
}

/// A staff user as login reads it.
#[derive(sqlx::FromRow)]
struct LoginRow {
    id: Uuid,
    tenant_id: Option<Uuid>,
    role: String,
    password_hash: String,
    disabled_at: Option<DateTime<Utc>>,
}

/// A refresh token and its user, as refresh reads them.
#[derive(sqlx::FromRow)]
struct RefreshRow {
    id: Uuid,
    user_id: Uuid,
    family_id: Uuid,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    tenant_id: Option<Uuid>,
    role: String,
    disabled_at: Option<DateTime<Utc>>,
}

/// Checks an email and password and starts a new refresh-token family.
///
/// The email is compared case-insensitively. An unknown email and a wrong password return the
/// same error after the same argon2 work. A disabled account is reported only after its password
/// has matched.
pub async fn login(
    pool: &PgPool,
    config: &AuthConfig,
    email: &str,
    password: &str,
) -> Result<(Identity, TokenPair), AuthError> {
    // NOTE: nothing limits the rate of attempts per email or per client, so the argon2 cost is
    // the only brake on password guessing.

    // No account can have a longer password or an email with a NUL character, and checking
    // one would only cost time.
    if password.len() > MAX_PASSWORD_BYTES || email.contains('\0') {
        return Err(AuthError::InvalidCredentials);
    }
    let user: Option<LoginRow> = sqlx::query_as(
        "SELECT id, tenant_id, role, password_hash, disabled_at
         FROM staff_users WHERE lower(email) = lower($1)",
    )
    .bind(email.trim())
    .fetch_optional(pool)
    .await?;

    let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
    let password = password.to_string();
    // Each check holds about 19 MiB for argon2, so a flood of logins is queued here rather
    // than run all at once.
    let _permit = PASSWORD_CHECKS
        .acquire()
        .await
        .context("password check limiter closed")?;
    let matches = tokio::task::spawn_blocking(move || {
        let hash = stored_hash
            .as_deref()
            .unwrap_or(DUMMY_PASSWORD_HASH.as_str());
        verify_password(&password, hash)
    })
    .await
    .context("password verification task failed")?;

    let Some(user) = user else {
        return Err(AuthError::InvalidCredentials);
    };
    if !matches {
        return Err(AuthError::InvalidCredentials);
    }
    if user.disabled_at.is_some() {
        return Err(AuthError::AccountDisabled);
    }

    let identity = identity_of(user.id, user.tenant_id, &user.role)?;
    let mut connection = pool.acquire().await?;
    let pair = issue_pair(&mut connection, config, &identity, Uuid::new_v4()).await?;
    Ok((identity, pair))
}

/// Exchanges an unused refresh token for a new pair in the same family.
///
/// The new refresh token gets a full `refresh_ttl`, so a session that refreshes at least once per
/// `refresh_ttl` does not expire. The token's row is locked for the transaction, so of two
/// concurrent refreshes with one token only the first succeeds. The second then finds the token
/// used and revokes the family, the first one's new token included.
pub async fn refresh(
    pool: &PgPool,
    config: &AuthConfig,
    refresh_token: &str,
) -> Result<(Identity, TokenPair), AuthError> {
    let token_hash = refresh_token_hash(refresh_token)?;
    let mut tx = pool.begin().await?;
    let row: Option<RefreshRow> = sqlx::query_as(
        "SELECT t.id, t.user_id, t.family_id, t.expires_at, t.used_at, t.revoked_at,
                u.tenant_id, u.role, u.disabled_at
         FROM refresh_tokens t JOIN staff_users u ON u.id = t.user_id
         WHERE t.token_hash = $1
         FOR UPDATE OF t",
    )
    .bind(&token_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(AuthError::InvalidRefreshToken);
    };

    let now = config.clock.now();
    if row.revoked_at.is_some() {
        return Err(AuthError::RefreshTokenRevoked);
    }
    if row.used_at.is_some() {
        revoke_family(&mut tx, row.family_id, now).await?;
        tx.commit().await?;
        tracing::warn!(
            user_id = %row.user_id,
            family_id = %row.family_id,
            "refresh token reused, revoked its family"
        );
        return Err(AuthError::RefreshTokenReused);
    }
    if row.expires_at <= now {
        return Err(AuthError::RefreshTokenExpired);
    }
    if row.disabled_at.is_some() {
        revoke_family(&mut tx, row.family_id, now).await?;
        tx.commit().await?;
        return Err(AuthError::AccountDisabled);
    }

    sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE id = $1")
        .bind(row.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let identity = identity_of(row.user_id, row.tenant_id, &row.role)?;
    let pair = issue_pair(&mut tx, config, &identity, row.family_id).await?;
    tx.commit().await?;
    Ok((identity, pair))
}

/// Revokes every token in the family of `refresh_token`. Revoked, used and expired tokens are
/// accepted, so logging out twice succeeds, but an unknown token is an error.
pub async fn logout(
    pool: &PgPool,
    config: &AuthConfig,
    refresh_token: &str,
) -> Result<(), AuthError> {
    let token_hash = refresh_token_hash(refresh_token)?;
    let family_id: Option<Uuid> =
        sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(&token_hash)
            .fetch_optional(pool)
            .await?;
    let Some(family_id) = family_id else {
        return Err(AuthError::InvalidRefreshToken);
    };
    let mut connection = pool.acquire().await?;
    revoke_family(&mut connection, family_id, config.clock.now()).await?;
    Ok(())
}

/// Builds the caller from a `staff_users` row.
fn identity_of(user_id: Uuid, tenant_id: Option<Uuid>, role: &str) -> Result<Identity, AuthError> {
    let role = role
        .parse()
        .map_err(|error: String| anyhow::anyhow!("staff user {user_id}: {error}"))?;
    Ok(Identity {
        user_id,
        tenant_id,
        role,
    })
}

/// Signs an access token and stores a new refresh token in `family_id`.
async fn issue_pair(
    connection: &mut PgConnection,
    config: &AuthConfig,
    identity: &Identity,
    family_id: Uuid,
) -> Result<TokenPair, AuthError> {
    let (access_token, access_expires_at) = config.issue_access(identity)?;

    let mut bytes = [0u8; REFRESH_TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let refresh_token = URL_SAFE_NO_PAD.encode(bytes);
    let now = config.clock.now();
    let refresh_expires_at = now + config.refresh_ttl;
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(identity.user_id)
    .bind(family_id)
    .bind(Sha256::digest(refresh_token.as_bytes()).to_vec())
    .bind(now)
    .bind(refresh_expires_at)
    .execute(&mut *connection)
    .await?;

    Ok(TokenPair {
        token_type: TokenType::Bearer,
        access_token,
        access_expires_at,
        refresh_token,
        refresh_expires_at,
    })
}

/// Hashes a refresh token for lookup, rejecting text that no issued token can have.
fn refresh_token_hash(refresh_token: &str) -> Result<Vec<u8>, AuthError> {
    let decoded = URL_SAFE_NO_PAD
        .decode(refresh_token)
        .map_err(|_| AuthError::InvalidRefreshToken)?;
    if decoded.len() != REFRESH_TOKEN_BYTES {
        return Err(AuthError::InvalidRefreshToken);
    }
    Ok(Sha256::digest(refresh_token.as_bytes()).to_vec())
}

/// Sets `revoked_at` on every token of a family that is not revoked yet.
async fn revoke_family(
    connection: &mut PgConnection,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(now)
    .execute(connection)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
