//! Dealerships (tenants), their WhatsApp numbers and their settings.

use anyhow::Context;
use sqlx::PgPool;
use uuid::Uuid;

use super::{is_unique_violation, tenant_tx};

/// A dealership and its WhatsApp number, to register.
#[derive(Clone, Debug)]
pub struct NewTenant {
    pub name: String,
    pub timezone: String,
    pub phone_number_id: String,
    pub display_phone: String,
    pub access_token: String,
    /// Dealership facts for prompts and the offline responder.
    pub profile: serde_json::Value,
}

/// A tenant's settings that shape automated messages.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TenantSettings {
    pub id: Uuid,
    pub name: String,
    pub timezone: String,
    pub stop_keywords: Option<Vec<String>>,
    pub start_keywords: Option<Vec<String>>,
    pub opt_out_confirmation: Option<String>,
    pub opt_in_confirmation: Option<String>,
    pub holding_message: Option<String>,
    pub automated_label: Option<String>,
    pub profile: serde_json::Value,
    pub prompt_template: Option<String>,
}

/// The number's sending settings, read by its sender.
#[derive(Clone, sqlx::FromRow)]
pub struct NumberSettings {
    pub tenant_id: Uuid,
    pub phone_number_id: String,
    pub access_token: String,
    pub messages_per_second: i32,
}

impl std::fmt::Debug for NumberSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberSettings")
            .field("tenant_id", &self.tenant_id)
            .field("phone_number_id", &self.phone_number_id)
            .field("access_token", &"[redacted]")
            .field("messages_per_second", &self.messages_per_second)
            .finish()
    }
}

/// Validation failures of tenant registration.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("phone number id {0} is already registered")]
    NumberTaken(String),
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

/// Registers a dealership and its WhatsApp number, returning the tenant id.
pub async fn create(pool: &PgPool, tenant: &NewTenant) -> Result<Uuid, TenantError> {
    validate(tenant)?;
    let id = Uuid::now_v7();

    // Inserting the tenant row needs no tenant yet; everything after it runs tenant-scoped.
    let mut tx = pool.begin().await.context("could not begin transaction")?;
    sqlx::query("INSERT INTO tenants (id, name, timezone, profile) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(tenant.name.trim())
        .bind(&tenant.timezone)
        .bind(&tenant.profile)
        .execute(&mut *tx)
        .await
        .context("could not insert tenant")?;
    tx.commit().await.context("could not commit tenant")?;

    let mut tx = tenant_tx(pool, id)
        .await
        .context("could not begin tenant transaction")?;
    let inserted = sqlx::query(
        "INSERT INTO whatsapp_numbers (phone_number_id, tenant_id, display_phone, access_token)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&tenant.phone_number_id)
    .bind(id)
    .bind(&tenant.display_phone)
    .bind(&tenant.access_token)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(error) if is_unique_violation(&error) => {
            drop(tx);
            sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .ok();
            return Err(TenantError::NumberTaken(tenant.phone_number_id.clone()));
        }
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context("could not insert number")
                .into())
        }
    }
    tx.commit().await.context("could not commit number")?;
    Ok(id)
}

fn validate(tenant: &NewTenant) -> Result<(), TenantError> {
    let invalid = |field, reason: &str| {
        Err(TenantError::Invalid {
            field,
            reason: reason.to_string(),
        })
    };
    if tenant.name.trim().is_empty() || tenant.name.chars().count() > 200 {
        return invalid("name", "must be 1 to 200 characters");
    }
    if tenant.phone_number_id.is_empty()
        || !tenant.phone_number_id.bytes().all(|b| b.is_ascii_digit())
    {
        return invalid(
            "phone number id",
            "must be the numeric id Meta shows for the number",
        );
    }
    let digits = tenant.display_phone.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return invalid(
            "display phone",
            "must be in international form, such as +919876500001",
        );
    }
    if tenant.access_token.trim().is_empty() {
        return invalid("access token", "must not be empty");
    }
    if tenant.timezone.parse::<chrono_tz::Tz>().is_err() {
        return invalid("timezone", "must be an IANA name such as Asia/Kolkata");
    }
    if !tenant.profile.is_object() {
        return invalid("profile", "must be a JSON object");
    }
    Ok(())
}

/// Finds the tenant that owns a WhatsApp number. Runs as the platform role.
pub async fn tenant_for_number(pool: &PgPool, phone_number_id: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT tenant_id FROM whatsapp_numbers WHERE phone_number_id = $1")
        .bind(phone_number_id)
        .fetch_optional(pool)
        .await
}

/// Loads a tenant's settings inside its own transaction.
pub async fn settings(tx: &mut super::TenantTx) -> sqlx::Result<TenantSettings> {
    sqlx::query_as(
        "SELECT id, name, timezone, stop_keywords, start_keywords, opt_out_confirmation,
                opt_in_confirmation, holding_message, automated_label, profile, prompt_template
         FROM tenants",
    )
    .fetch_one(&mut **tx)
    .await
}

/// Loads the sending settings of a number. Runs as the platform role.
pub async fn number_settings(
    pool: &PgPool,
    phone_number_id: &str,
) -> sqlx::Result<Option<NumberSettings>> {
    sqlx::query_as(
        "SELECT tenant_id, phone_number_id, access_token, messages_per_second
         FROM whatsapp_numbers WHERE phone_number_id = $1",
    )
    .bind(phone_number_id)
    .fetch_optional(pool)
    .await
}
