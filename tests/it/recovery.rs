//! Crashes and lost dispatch: nothing acknowledged is lost, nothing is done twice.

use std::time::Duration;

use crate::support::{ts, TestEnv};

#[tokio::test(flavor = "multi_thread")]
async fn killed_before_reply_answers_once_after_restart() {
    let mut env = TestEnv::start().await;
    env.llm.set_delay(Duration::from_secs(3));
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.K1", ts(0), "price?"),
    )
    .await;
    env.eventually("the LLM call to start", Duration::from_secs(10), || async {
        env.llm.request_count() == 1
    })
    .await;
    env.kill_engine();
    assert!(
        env.graph.sent().is_empty(),
        "nothing was sent before the crash"
    );

    env.llm.set_delay(Duration::ZERO);
    env.start_engine().await;
    env.expect_sent(1, Duration::from_secs(2)).await;
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, 1);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_before_dispatch_answers_once_after_restart() {
    let mut env = TestEnv::start().await;
    // The event is stored and the engine dies before any actor sees it.
    env.kill_engine();
    store_without_dispatch(&env, "wamid.K2", "test ride?").await;

    env.start_engine().await;
    env.expect_sent(1, Duration::from_secs(2)).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_lost_by_redis_are_recovered() {
    let env = TestEnv::start().await;
    // Redis loses its streams, as after a restart without persistence, and an event is stored
    // that never reaches a stream.
    velochat::demo::delete_keys("redis://127.0.0.1:6379", &env.redis_prefix)
        .await
        .unwrap();
    store_without_dispatch(&env, "wamid.LOST1", "hello").await;

    env.expect_sent(1, Duration::from_secs(1)).await;
    assert_eq!(
        env.count("SELECT count(*) FROM inbound_events WHERE processed_at IS NULL")
            .await,
        0
    );

    // The readers recreate their groups, so later webhooks flow through Redis again.
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.LOST2", ts(1), "price?"),
    )
    .await;
    env.expect_sent(2, Duration::from_secs(1)).await;
    env.finish().await;
}

/// Stores a customer message the way the webhook does, without publishing it to Redis.
async fn store_without_dispatch(env: &TestEnv, wamid: &str, text: &str) {
    let body = env.customer("919812300045").text(wamid, ts(0), text);
    let changes = velochat::whatsapp::parse_webhook(&serde_json::to_vec(&body).unwrap()).unwrap();
    velochat::store::inbound::ingest(&env.pool, env.tenant_id, &env.phone_number_id, &changes[0])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_restart_keeps_state() {
    let mut env = TestEnv::start().await;
    let customer = env.customer("919812300045");
    env.post_ok(&customer.text("wamid.G1", ts(0), "STOP")).await;
    env.expect_sent(1, Duration::from_millis(300)).await;
    env.kill_engine();
    env.start_engine().await;
    env.post_ok(&customer.text("wamid.G2", ts(1), "price?"))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.graph.sent().len(),
        1,
        "still opted out after the restart"
    );
    env.finish().await;
}
