//! Sending through the Graph API: retries, permanent failures, statuses and rate limits.

use std::time::Duration;

use serde_json::json;
use velochat::graph_stub::ScriptedResponse;

use crate::support::{set_rate, ts, TestEnv};

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_error_retried_then_sent_once() {
    let env = TestEnv::start().await;
    env.graph.push_responses([ScriptedResponse::Error {
        http_status: 400,
        code: 130429,
        message: "(#130429) Rate limit hit".to_string(),
    }]);
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.R1", ts(0), "price?"),
    )
    .await;

    let sent = env.expect_sent(1, Duration::from_millis(800)).await;
    assert_eq!(
        env.graph.requests().len(),
        2,
        "one rejected attempt, one accepted"
    );
    let (status, attempts): (String, i32) = sqlx::query_as("SELECT status, attempts FROM outbox")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(status, "sent");
    assert_eq!(attempts, 2);
    assert!(sent[0].wamid.is_some());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn undeliverable_recorded_as_failed() {
    let env = TestEnv::start().await;
    env.graph.push_responses([ScriptedResponse::Error {
        http_status: 400,
        code: 131026,
        message: "Message undeliverable".to_string(),
    }]);
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.F1", ts(0), "price?"),
    )
    .await;

    env.eventually(
        "the failure to be recorded",
        Duration::from_secs(10),
        || async {
            env.count("SELECT count(*) FROM outbox WHERE status = 'failed'")
                .await
                == 1
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.graph.requests().len(),
        1,
        "a permanent failure is not retried"
    );
    assert!(env.graph.sent().is_empty());
    let code: i64 = sqlx::query_scalar("SELECT error_code FROM outbox")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(code, 131026);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_only_move_forward() {
    let env = TestEnv::start().await;
    let customer = env.customer("919812300045");
    env.post_ok(&customer.text("wamid.ST1", ts(0), "price?"))
        .await;
    let sent = env.expect_sent(1, Duration::from_millis(300)).await;
    let wamid = sent[0].wamid.clone().unwrap();
    let callback = sent[0].callback_data.clone().unwrap();

    let status = |name: &str, timestamp: i64, errors: serde_json::Value| {
        customer.value(json!({
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "919876500001", "phone_number_id": env.phone_number_id },
            "statuses": [{ "id": wamid, "status": name, "timestamp": timestamp.to_string(),
                           "recipient_id": "919812300045", "biz_opaque_callback_data": callback,
                           "errors": errors }]
        }))
    };
    let current = || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM outbox")
            .fetch_one(&env.pool)
            .await
            .unwrap()
    };

    env.post_ok(&status("read", ts(10), json!([]))).await;
    assert_eq!(current().await, "read");
    env.post_ok(&status("delivered", ts(5), json!([]))).await;
    assert_eq!(
        current().await,
        "read",
        "an older status does not move it back"
    );
    env.post_ok(&status(
        "failed",
        ts(20),
        json!([{ "code": 131026, "title": "undeliverable" }]),
    ))
    .await;
    assert_eq!(current().await, "read", "read is not undone by failed");
    let failures = env
        .count("SELECT count(*) FROM message_statuses WHERE status = 'failed'")
        .await;
    assert_eq!(failures, 1, "the failure is kept in the status history");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_status_is_final() {
    let env = TestEnv::start().await;
    let customer = env.customer("919812300045");
    env.post_ok(&customer.text("wamid.FS1", ts(0), "price?"))
        .await;
    let sent = env.expect_sent(1, Duration::from_millis(300)).await;
    let wamid = sent[0].wamid.clone().unwrap();
    let item = |name: &str, errors: serde_json::Value| {
        customer.value(json!({
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "919876500001", "phone_number_id": env.phone_number_id },
            "statuses": [{ "id": wamid, "status": name, "timestamp": ts(10).to_string(), "recipient_id": "919812300045", "errors": errors }]
        }))
    };
    env.post_ok(&item(
        "failed",
        json!([{ "code": 131049, "title": "not delivered" }]),
    ))
    .await;
    env.post_ok(&item("delivered", json!([]))).await;
    let (status, code): (String, i64) = sqlx::query_as("SELECT status, error_code FROM outbox")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(code, 131049);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn burst_never_exceeds_number_rate() {
    let env = TestEnv::start().await;
    let rate = 10;
    set_rate(&env.pool, &env.phone_number_id, rate).await;
    let customers = 35;
    for index in 0..customers {
        let customer = env.customer(&format!("9198000{index:05}"));
        env.post_ok(&customer.text(&format!("wamid.BURST{index}"), ts(0), "price?"))
            .await;
    }

    let sent = env
        .graph
        .wait_for_sent(customers, Duration::from_secs(30))
        .await;
    assert_eq!(sent.len(), customers);
    let mut times: Vec<_> = env.graph.requests().iter().map(|r| r.received_at).collect();
    times.sort();
    let mut max_in_window = 0;
    for (start, first) in times.iter().enumerate() {
        let in_window = times[start..]
            .iter()
            .take_while(|t| t.duration_since(*first) < Duration::from_secs(1))
            .count();
        max_in_window = max_in_window.max(in_window);
    }
    // One extra arrival is allowed for network jitter between the limiter and the stand-in.
    assert!(
        max_in_window <= rate as usize + 1,
        "{max_in_window} sends in one second at a limit of {rate}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn long_reply_split_in_order() {
    let env = TestEnv::start().await;
    let paragraph = "The Jupiter ZX comes in six colours. ".repeat(60);
    let long = format!("{paragraph}\n\n{paragraph}\n\n{paragraph}");
    env.llm.set_reply(&long);
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.LONG1", ts(0), "tell me everything"),
    )
    .await;
    env.graph.wait_for_sent(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = env.graph.sent();
    assert!(sent.len() >= 2, "split into parts");
    for part in &sent {
        let body = part.body.as_deref().unwrap();
        assert!(body.chars().count() <= 4096);
        assert!(body.starts_with("[Auto-reply] "));
    }
    let callbacks: std::collections::HashSet<_> =
        sent.iter().map(|s| s.callback_data.clone()).collect();
    assert_eq!(
        callbacks.len(),
        sent.len(),
        "each part carries its own outbox id"
    );
    env.finish().await;
}
