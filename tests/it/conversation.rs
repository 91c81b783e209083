//! Conversations end to end: replies, duplicates, opt-out and the LLM's failure modes.

use std::time::Duration;

use crate::support::{bodies, ts, Options, TestEnv};

const SETTLE: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread")]
async fn reply_is_generated_and_marked_automated() {
    let env = TestEnv::start().await;
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.A1", ts(0), "Jupiter price?"),
    )
    .await;

    let sent = env.expect_sent(1, SETTLE).await;
    let body = sent[0].body.clone().unwrap();
    assert!(
        body.starts_with("[Auto-reply] "),
        "marked as automated: {body}"
    );
    assert!(body.contains("Rs 87,500"), "LLM text sent: {body}");
    assert_eq!(sent[0].to, "919812300045");
    assert_eq!(
        sent[0].bearer_token.as_deref(),
        Some("token-106540352242922")
    );

    let callback = sent[0].callback_data.clone().unwrap();
    let outbox_id: uuid::Uuid = callback.strip_prefix("outbox:").unwrap().parse().unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM outbox WHERE id = $1")
        .bind(outbox_id)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(status, "sent");

    let request = &env.llm.requests()[0];
    let messages = request["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages.last().unwrap()["content"], "Jupiter price?");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_wamid_stored_and_answered_once() {
    let env = TestEnv::start().await;
    let body = env
        .customer("919812300045")
        .text("wamid.DUP1", ts(0), "hello");
    env.post_ok(&body).await;
    env.post_ok(&body).await;
    env.expect_sent(1, SETTLE).await;
    env.post_ok(&body).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(env.graph.sent().len(), 1);
    assert_eq!(env.count("SELECT count(*) FROM messages").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM inbound_events").await, 1);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_message_start_confirmations() {
    let env = TestEnv::start().await;
    let customer = env.customer("919812300045");

    env.post_ok(&customer.text("wamid.S1", ts(0), "STOP")).await;
    let sent = env.expect_sent(1, SETTLE).await;
    assert!(
        sent[0]
            .body
            .as_deref()
            .unwrap()
            .contains("no longer receive"),
        "{:?}",
        bodies(&sent)
    );
    let opted_out: bool = sqlx::query_scalar("SELECT opted_out FROM contacts")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(opted_out);

    env.post_ok(&customer.text("wamid.S2", ts(1), "What is the price?"))
        .await;
    env.post_ok(&customer.text("wamid.S3", ts(2), "stop")).await;
    env.expect_sent(1, SETTLE).await;

    env.post_ok(&customer.text("wamid.S4", ts(3), " Start "))
        .await;
    let sent = env.expect_sent(2, SETTLE).await;
    assert!(
        sent[1].body.as_deref().unwrap().contains("subscribed"),
        "{:?}",
        bodies(&sent)
    );
    assert_eq!(
        env.llm.request_count(),
        0,
        "no reply was generated while opted out"
    );

    env.post_ok(&customer.text("wamid.S5", ts(4), "please stop calling me after 6"))
        .await;
    let sent = env.expect_sent(3, SETTLE).await;
    assert!(
        sent[2].body.as_deref().unwrap().contains("Rs 87,500"),
        "ordinary text gets a reply: {:?}",
        bodies(&sent)
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_in_hindi_and_marathi() {
    let env = TestEnv::start().await;
    env.post_ok(
        &env.customer("919800000001")
            .text("wamid.H1", ts(0), "बंद करो"),
    )
    .await;
    env.post_ok(
        &env.customer("919800000002")
            .text("wamid.M1", ts(0), "थांबवा"),
    )
    .await;
    env.expect_sent(2, SETTLE).await;
    assert_eq!(
        env.count("SELECT count(*) FROM contacts WHERE opted_out")
            .await,
        2
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_llm_still_acknowledged_at_once() {
    let env = TestEnv::start().await;
    env.llm.set_delay(Duration::from_secs(2));
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.SLOW1", ts(0), "price?"),
    )
    .await;
    // The webhook answered before any reply could exist.
    assert!(env.graph.sent().is_empty());
    assert_eq!(
        env.count("SELECT count(*) FROM messages").await,
        1,
        "stored before the 200"
    );

    env.expect_sent(1, Duration::from_secs(1)).await;
    assert_eq!(env.llm.request_count(), 1);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_error_sends_holding_message() {
    let env = TestEnv::start().await;
    env.llm.set_failure(Some(500));
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.ERR1", ts(0), "price?"),
    )
    .await;
    let sent = env.expect_sent(1, SETTLE).await;
    let body = sent[0].body.as_deref().unwrap();
    assert!(body.contains("get back to you"), "holding message: {body}");
    assert!(body.starts_with("[Auto-reply] "));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_timeout_sends_holding_message() {
    let env = TestEnv::start_with(Options {
        llm_timeout: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    env.llm.set_delay(Duration::from_secs(3));
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.TO1", ts(0), "price?"),
    )
    .await;
    let sent = env.expect_sent(1, Duration::from_secs(3)).await;
    assert!(sent[0].body.as_deref().unwrap().contains("get back to you"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quick_messages_get_one_reply() {
    let env = TestEnv::start_with(Options {
        reply_debounce: Duration::from_millis(600),
        ..Options::default()
    })
    .await;
    let customer = env.customer("919812300045");
    env.post_ok(&customer.text("wamid.Q1", ts(0), "hi")).await;
    env.post_ok(&customer.text("wamid.Q2", ts(1), "is the Jupiter available"))
        .await;
    env.post_ok(&customer.text("wamid.Q3", ts(2), "in grey?"))
        .await;
    env.expect_sent(1, Duration::from_secs(1)).await;
    let request = env.llm.requests().pop().unwrap();
    let last = request["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["content"], "in grey?",
        "the reply answers the newest message"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_responder_answers_without_llm() {
    let env = TestEnv::start_with(Options {
        use_llm: false,
        ..Options::default()
    })
    .await;
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.OFF1", ts(0), "Namaste"),
    )
    .await;
    let sent = env.expect_sent(1, SETTLE).await;
    assert!(sent[0]
        .body
        .as_deref()
        .unwrap()
        .starts_with("[Auto-reply] "));
    assert_eq!(env.llm.request_count(), 0);
    env.finish().await;
}
