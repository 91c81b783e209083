//! `velochat user create`: staff accounts of the staff API.

use std::io::BufRead;

use anyhow::{bail, Context};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::password::{hash_password, validate_password};
use crate::auth::Role;
use crate::cli::DatabaseArgs;
use crate::store::{self, is_unique_violation};

/// The environment variable that carries the password unless `--password-stdin` is set.
pub const PASSWORD_ENV: &str = "VELOCHAT_USER_PASSWORD";

/// Maximum email length, in bytes. RFC 5321 (section 4.5.3.1.3) limits an SMTP path to 256
/// octets, and the path adds angle brackets to the address.
const MAX_EMAIL_BYTES: usize = 254;

#[derive(Debug, clap::Args)]
pub struct UserCreateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The dealership (tenant id) the user belongs to. Required for every role except
    /// platform_admin, which must not have one.
    #[arg(long, env = "VELOCHAT_USER_TENANT")]
    pub tenant: Option<Uuid>,
    /// Login email, unique across all dealerships and compared case-insensitively.
    #[arg(long, env = "VELOCHAT_USER_EMAIL")]
    pub email: String,
    /// Phone number in international form, such as +919876500001.
    #[arg(long, env = "VELOCHAT_USER_PHONE")]
    pub phone: Option<String>,
    /// The user's full name, shown to other staff.
    #[arg(long, env = "VELOCHAT_USER_NAME")]
    pub name: String,
    /// owner, manager, agent or platform_admin.
    #[arg(long, env = "VELOCHAT_USER_ROLE")]
    pub role: Role,
    /// Read the password from the first line of standard input instead of the
    /// VELOCHAT_USER_PASSWORD environment variable. There is no password option, because
    /// command lines are visible to other local users.
    #[arg(long)]
    pub password_stdin: bool,
}

/// A staff user to create.
#[derive(Clone)]
pub struct NewUser {
    /// `None` only for platform administrators.
    pub tenant_id: Option<Uuid>,
    pub email: String,
    /// International form, such as +919876500001.
    pub phone: Option<String>,
    pub name: String,
    pub role: Role,
    /// The plain password, hashed before it is stored.
    pub password: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("tenant_id", &self.tenant_id)
            .field("email", &self.email)
            .field("phone", &self.phone)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Creates the staff user the arguments describe and returns its id.
pub async fn create(args: UserCreateArgs) -> anyhow::Result<Uuid> {
    let password = if args.password_stdin {
        read_password_line(std::io::stdin().lock())?
    } else {
        std::env::var(PASSWORD_ENV).map_err(|_| {
            anyhow::anyhow!("missing password: set {PASSWORD_ENV} or pass --password-stdin")
        })?
    };
    let new = NewUser {
        tenant_id: args.tenant,
        email: args.email,
        phone: args.phone,
        name: args.name,
        role: args.role,
        password,
    };
    // Checking the input first means a typo never creates or migrates a database.
    validate(&new)?;

    store::migrate(&args.database.database_url).await?;
    let pool = store::connect(&args.database.database_url).await?;
    let created = create_user(&pool, new).await;
    pool.close().await;
    created
}

/// Validates `new`, hashes its password and inserts it into `staff_users`, returning the id.
pub async fn create_user(pool: &PgPool, new: NewUser) -> anyhow::Result<Uuid> {
    validate(&new)?;
    let email = new.email.trim().to_string();
    let name = new.name.trim().to_string();
    let phone = new.phone.as_deref().map(str::trim).map(str::to_string);

    if let Some(tenant_id) = new.tenant_id {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
                .bind(tenant_id)
                .fetch_one(pool)
                .await
                .context("could not look up the tenant")?;
        if !exists {
            bail!("tenant {tenant_id} not found");
        }
    }

    let password = new.password;
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .context("password hashing task failed")??;

    // The insert runs as the connecting role, not in a `tenant_tx`, because the migrations
    // grant `velochat_app` only SELECT on staff_users. The row's tenant is the checked one.
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO staff_users (id, tenant_id, email, phone, name, role, password_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(new.tenant_id)
    .bind(&email)
    .bind(&phone)
    .bind(&name)
    .bind(new.role.as_str())
    .bind(&password_hash)
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(id),
        Err(error) if is_unique_violation(&error) => {
            bail!("a staff user with email {email} already exists")
        }
        Err(error) if is_foreign_key_violation(&error) => {
            // The tenant was deleted between the check and the insert.
            bail!("tenant {} not found", new.tenant_id.unwrap_or_default())
        }
        Err(error) => Err(anyhow::Error::new(error).context("could not insert the staff user")),
    }
}

/// Checks every field of `new`, naming the first invalid one.
fn validate(new: &NewUser) -> anyhow::Result<()> {
    match (new.role, new.tenant_id) {
        (Role::PlatformAdmin, Some(_)) => {
            bail!("a platform_admin must not belong to a tenant: remove --tenant")
        }
        (role, None) if role != Role::PlatformAdmin => {
            bail!("role {role} needs a tenant: pass --tenant with the dealership's tenant id")
        }
        _ => {}
    }
    validate_email(new.email.trim())?;
    if let Some(phone) = &new.phone {
        validate_phone(phone.trim())?;
    }
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        bail!("invalid name: must be 1 to 200 characters");
    }
    validate_password(&new.password).map_err(|reason| anyhow::anyhow!("invalid {reason}"))?;
    Ok(())
}

/// Accepts `local@domain` with no spaces and a dot in the domain. Deliverability is not checked.
fn validate_email(email: &str) -> anyhow::Result<()> {
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                && email.len() <= MAX_EMAIL_BYTES
        }
        None => false,
    };
    if !valid {
        bail!("invalid email {email:?}: expected an address such as ravi@saimotors.in");
    }
    Ok(())
}

/// Accepts `+` and 8 to 15 digits, as the tenant's display phone.
fn validate_phone(phone: &str) -> anyhow::Result<()> {
    let digits = phone.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        bail!("invalid phone {phone:?}: expected international form, such as +919876500001");
    }
    Ok(())
}

/// Reads the password from the first line of `input`, without its line ending.
fn read_password_line(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("could not read the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("missing password: standard input was empty");
    }
    Ok(password.to_string())
}

fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|e| e.code()).as_deref() == Some("23503")
}

#[cfg(test)]
mod tests;
