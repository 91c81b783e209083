//! Staff authentication: argon2id password hashes, 15-minute JWT access tokens, and rotating
//! refresh tokens whose reuse revokes their family.

pub mod password;
#[cfg(test)]
pub(crate) mod testing;
pub mod tokens;

use std::fmt;
use std::str::FromStr;

use chrono::Duration;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::secret::Secret;

/// The role of a staff account, which sets what it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the dealership's account: everything, the audit trail included.
    Owner,
    /// Supervises staff: conversations and assignment.
    Manager,
    /// Replies to customers: conversations, takeover, replies and release.
    Agent,
    /// Operates the platform: aggregate figures only, never a tenant's data.
    PlatformAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Manager => "manager",
            Role::Agent => "agent",
            Role::PlatformAdmin => "platform_admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "owner" => Ok(Role::Owner),
            "manager" => Ok(Role::Manager),
            "agent" => Ok(Role::Agent),
            "platform_admin" => Ok(Role::PlatformAdmin),
            other => Err(format!(
                "invalid role {other:?}: expected owner, manager, agent or platform_admin"
            )),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Uuid,
    /// `None` only for platform administrators.
    pub tenant_id: Option<Uuid>,
    pub role: Role,
}

/// Token settings.
#[derive(Clone)]
pub struct AuthConfig {
    /// The HS256 key of access tokens.
    pub jwt_secret: Secret,
    /// Lifetime of an access token: 15 minutes.
    pub access_ttl: Duration,
    /// Lifetime of a refresh token.
    pub refresh_ttl: Duration,
    /// The clock tokens are issued and checked against.
    pub clock: SharedClock,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish_non_exhaustive()
    }
}
