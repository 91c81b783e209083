//! Tenant isolation by PostgreSQL row-level security.

use sqlx::{Connection, Executor, PgConnection};

use crate::support::{create_tenant, ts, TestEnv};

async fn app_role(env: &TestEnv) -> PgConnection {
    let mut connection = PgConnection::connect(&env.database_url).await.unwrap();
    connection.execute("SET ROLE velochat_app").await.unwrap();
    connection
}

#[tokio::test(flavor = "multi_thread")]
async fn app_role_without_tenant_sees_nothing() {
    let env = TestEnv::start().await;
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.I1", ts(0), "hello"),
    )
    .await;
    assert_eq!(env.count("SELECT count(*) FROM messages").await, 1);

    let mut connection = app_role(&env).await;
    for table in [
        "tenants",
        "whatsapp_numbers",
        "contacts",
        "conversations",
        "messages",
        "inbound_events",
        "outbox",
        "message_statuses",
    ] {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut connection)
            .await
            .unwrap();
        assert_eq!(count, 0, "{table} is visible without a tenant");
    }

    let role_bypasses: bool = sqlx::query_scalar(
        "SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = 'velochat_app'",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert!(!role_bypasses);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_cannot_read_another_tenants_messages() {
    let env = TestEnv::start().await;
    let tenant_b = create_tenant(&env.pool, "Shree Auto", "200000000000002", "+919876500002").await;
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.TA1", ts(0), "tenant A secret"),
    )
    .await;
    let mut b_customer = env.customer("919812300099");
    b_customer.phone_number_id = "200000000000002".to_string();
    env.post_ok(&b_customer.text("wamid.TB1", ts(0), "tenant B secret"))
        .await;

    let mut connection = app_role(&env).await;
    let mut tx = connection.begin().await.unwrap();
    sqlx::query("SELECT set_config('velochat.tenant_id', $1, true)")
        .bind(tenant_b.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM messages")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(bodies, vec!["tenant B secret".to_string()]);

    let by_id: Option<String> =
        sqlx::query_scalar("SELECT body FROM messages WHERE wamid = 'wamid.TA1'")
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
    assert_eq!(by_id, None, "tenant A's message by id");

    let forged = sqlx::query(
        "INSERT INTO contacts (id, tenant_id, wa_id) VALUES (gen_random_uuid(), $1, '919800000000')",
    )
    .bind(env.tenant_id)
    .execute(&mut *tx)
    .await;
    assert!(
        forged.is_err(),
        "writing a row of another tenant is rejected"
    );
    env.finish().await;
}
