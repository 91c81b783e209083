//! Test support: a throwaway database with a tenant and staff users, and a token configuration
//! on a clock that tests can advance.

use std::sync::Arc;

use chrono::Duration;
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

use super::{AuthConfig, Role};
use crate::clock::OffsetClock;
use crate::secret::Secret;
use crate::store::{self, tenants};
use crate::user_cli::{create_user, NewUser};

const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// The password of every user that [`TestDb::user`] creates.
pub const PASSWORD: &str = "correct horse battery";

/// Builds a token configuration with a 15-minute access and 30-day refresh lifetime.
pub fn config(clock: &OffsetClock) -> AuthConfig {
    AuthConfig {
        jwt_secret: Secret::new("test-jwt-secret-of-reasonable-length"),
        access_ttl: Duration::minutes(15),
        refresh_ttl: Duration::days(30),
        clock: Arc::new(clock.clone()),
    }
}

/// A migrated database of its own, dropped when the value is dropped (a failed test included).
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    /// Creates and migrates `velochat_auth_test_<random>`.
    pub async fn create() -> TestDb {
        let suffix = Uuid::new_v4().simple().to_string();
        let url = format!("{SERVER_URL}/velochat_auth_test_{}", &suffix[..12]);
        store::migrate(&url).await.expect("migrations apply");
        let pool = store::connect(&url).await.expect("database reachable");
        TestDb { url, pool }
    }

    /// Registers a tenant with a random WhatsApp number, returning its id.
    pub async fn tenant(&self, name: &str) -> Uuid {
        let digits = rand::thread_rng().gen_range(1_000_000_000u64..10_000_000_000);
        let tenant = tenants::NewTenant {
            name: name.to_string(),
            timezone: "Asia/Kolkata".to_string(),
            phone_number_id: format!("10654{digits}"),
            display_phone: format!("+91{digits}"),
            access_token: "test-access-token".to_string(),
            profile: serde_json::json!({ "dealership": name }),
        };
        tenants::create(&self.pool, &tenant)
            .await
            .expect("tenant created")
    }

    /// Creates a staff user with password [`PASSWORD`], returning its id.
    pub async fn user(&self, tenant_id: Option<Uuid>, email: &str, role: Role) -> Uuid {
        create_user(
            &self.pool,
            NewUser {
                tenant_id,
                email: email.to_string(),
                phone: None,
                name: "Ravi Kulkarni".to_string(),
                role,
                password: PASSWORD.to_string(),
            },
        )
        .await
        .expect("staff user created")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside async code, so the database is dropped on a runtime of its own.
        // `DROP DATABASE ... WITH (FORCE)` ends the pool's open connections.
        let url = self.url.clone();
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test database")
                .block_on(crate::demo::drop_database(&url))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.url);
        }
    }
}
