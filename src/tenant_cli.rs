//! `velochat tenant create`.

use anyhow::Context;
use uuid::Uuid;

use crate::cli::TenantCreateArgs;
use crate::store::{self, tenants};

/// Registers the dealership the arguments describe and returns its id.
pub async fn create(args: TenantCreateArgs) -> anyhow::Result<Uuid> {
    let profile = match &args.profile {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read profile file {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("profile file {} is not valid JSON", path.display()))?
        }
        None => serde_json::json!({ "dealership": args.name }),
    };
    let tenant = tenants::NewTenant {
        name: args.name,
        timezone: args.timezone,
        phone_number_id: args.phone_number_id,
        display_phone: args.display_phone,
        access_token: args.access_token.expose().to_string(),
        profile,
    };

    store::migrate(&args.database.database_url).await?;
    let pool = store::connect(&args.database.database_url).await?;
    let id = tenants::create(&pool, &tenant).await?;
    pool.close().await;
    Ok(id)
}
