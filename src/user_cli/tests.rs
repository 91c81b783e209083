use super::*;
use crate::auth::password::verify_password;
use crate::auth::testing::TestDb;

fn agent(tenant_id: Uuid) -> NewUser {
    NewUser {
        tenant_id: Some(tenant_id),
        email: "ravi@saimotors.in".to_string(),
        phone: Some("+919876500011".to_string()),
        name: "Ravi Kulkarni".to_string(),
        role: Role::Agent,
        password: "correct horse battery".to_string(),
    }
}

fn error_of(new: &NewUser) -> String {
    format!("{:#}", validate(new).unwrap_err())
}

#[test]
fn validate_accepts_complete_user() {
    assert!(validate(&agent(Uuid::new_v4())).is_ok());
    let admin = NewUser {
        tenant_id: None,
        role: Role::PlatformAdmin,
        phone: None,
        ..agent(Uuid::new_v4())
    };
    assert!(validate(&admin).is_ok());
}

#[test]
fn validate_requires_tenant_except_platform_admin() {
    for role in [Role::Owner, Role::Manager, Role::Agent] {
        let user = NewUser {
            tenant_id: None,
            role,
            ..agent(Uuid::new_v4())
        };
        assert!(error_of(&user).contains("needs a tenant"), "{role}");
    }
    let admin_with_tenant = NewUser {
        role: Role::PlatformAdmin,
        ..agent(Uuid::new_v4())
    };
    assert!(error_of(&admin_with_tenant).contains("must not belong to a tenant"));
}

#[test]
fn validate_rejects_bad_email() {
    for email in [
        "",
        "ravi",
        "@saimotors.in",
        "ravi@",
        "ravi@localhost",
        "ravi@@saimotors.in",
        "ravi kulkarni@saimotors.in",
        "ravi@saimotors.in.",
    ] {
        let user = NewUser {
            email: email.to_string(),
            ..agent(Uuid::new_v4())
        };
        assert!(error_of(&user).contains("invalid email"), "{email:?}");
    }
}

#[test]
fn validate_rejects_bad_phone() {
    for phone in [
        "9876500011",
        "+91 98765 00011",
        "+1234567",
        "+1234567890123456",
        "+91abc",
    ] {
        let user = NewUser {
            phone: Some(phone.to_string()),
            ..agent(Uuid::new_v4())
        };
        assert!(error_of(&user).contains("invalid phone"), "{phone:?}");
    }
}

#[test]
fn validate_rejects_bad_name_and_password() {
    let unnamed = NewUser {
        name: "  ".to_string(),
        ..agent(Uuid::new_v4())
    };
    assert!(error_of(&unnamed).contains("invalid name"));
    let short_password = NewUser {
        password: "short".to_string(),
        ..agent(Uuid::new_v4())
    };
    assert!(error_of(&short_password).contains("password is too short"));
}

#[test]
fn password_line_strips_line_ending() {
    let read = |input: &str| read_password_line(input.as_bytes());
    assert_eq!(
        read("correct horse battery\n").unwrap(),
        "correct horse battery"
    );
    assert_eq!(
        read("correct horse battery\r\n").unwrap(),
        "correct horse battery"
    );
    assert_eq!(
        read("correct horse battery").unwrap(),
        "correct horse battery"
    );
    assert_eq!(read("first line\nsecond line\n").unwrap(), "first line");
    assert!(read("").is_err());
    assert!(read("\n").is_err());
}

#[test]
fn debug_hides_password() {
    let debug_output = format!("{:?}", agent(Uuid::new_v4()));
    assert!(
        !debug_output.contains("correct horse battery"),
        "{debug_output}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_user_stores_hashed_password() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    let id = create_user(&db.pool, agent(tenant_id)).await.unwrap();

    let (stored_tenant, email, phone, role, hash): (
        Option<Uuid>,
        String,
        Option<String>,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT tenant_id, email, phone, role, password_hash FROM staff_users WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored_tenant, Some(tenant_id));
    assert_eq!(email, "ravi@saimotors.in");
    assert_eq!(phone.as_deref(), Some("+919876500011"));
    assert_eq!(role, "agent");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(verify_password("correct horse battery", &hash));

    // Row-level security shows the user to its own tenant only.
    let mut tx = store::tenant_tx(&db.pool, tenant_id).await.unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM staff_users")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, 1);
    drop(tx);
    let other_tenant = db.tenant("Shree Auto").await;
    let mut tx = store::tenant_tx(&db.pool, other_tenant).await.unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM staff_users")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_user_platform_admin() {
    let db = TestDb::create().await;
    let admin = NewUser {
        tenant_id: None,
        email: "ops@velochat.in".to_string(),
        role: Role::PlatformAdmin,
        ..agent(Uuid::new_v4())
    };
    let id = create_user(&db.pool, admin).await.unwrap();
    let tenant: Option<Uuid> =
        sqlx::query_scalar("SELECT tenant_id FROM staff_users WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(tenant, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_user_rejects_unknown_tenant() {
    let db = TestDb::create().await;
    let missing = Uuid::new_v4();
    let error = create_user(&db.pool, agent(missing)).await.unwrap_err();
    assert_eq!(error.to_string(), format!("tenant {missing} not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_user_rejects_duplicate_email() {
    let db = TestDb::create().await;
    let tenant_id = db.tenant("Sai Motors").await;
    let other_tenant = db.tenant("Shree Auto").await;
    create_user(&db.pool, agent(tenant_id)).await.unwrap();

    // Emails are unique across tenants and compared case-insensitively.
    let duplicate = NewUser {
        email: "Ravi@SaiMotors.IN".to_string(),
        ..agent(other_tenant)
    };
    let error = create_user(&db.pool, duplicate).await.unwrap_err();
    assert!(error.to_string().contains("already exists"), "{error:#}");
}

#[derive(clap::Parser)]
struct TestCli {
    #[command(flatten)]
    args: UserCreateArgs,
}

#[test]
fn args_parse_role_and_tenant() {
    use clap::Parser;

    let tenant_id = Uuid::new_v4();
    let tenant = tenant_id.to_string();
    let cli = TestCli::try_parse_from([
        "user-create",
        "--tenant",
        tenant.as_str(),
        "--email",
        "ravi@saimotors.in",
        "--name",
        "Ravi Kulkarni",
        "--role",
        "manager",
        "--password-stdin",
    ])
    .unwrap();
    assert_eq!(cli.args.tenant, Some(tenant_id));
    assert_eq!(cli.args.role, Role::Manager);
    assert!(cli.args.password_stdin);
    assert_eq!(cli.args.phone, None);

    let base = ["user-create", "--email", "ops@velochat.in", "--name", "Ops"];
    let unknown_role = TestCli::try_parse_from(base.iter().chain(&["--role", "root"]));
    let error = unknown_role.err().unwrap().to_string();
    assert!(error.contains("invalid role"), "{error}");
    let password_flag = TestCli::try_parse_from(base.iter().chain(&[
        "--role",
        "platform_admin",
        "--password",
        "x",
    ]));
    assert!(password_flag.is_err());
}
