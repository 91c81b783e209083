//! Odd and hostile webhook input: concurrency, unstorable items, bad timestamps, stray numbers.

use std::time::Duration;

use serde_json::json;
use velochat::simulate::meta_bytes;

use crate::support::{ts, TestEnv};

fn batch_of(env: &TestEnv, senders: &[&str], round: usize) -> serde_json::Value {
    let messages: Vec<_> = senders
        .iter()
        .map(|from| {
            json!({ "from": from, "id": format!("wamid.C{round}.{from}"), "timestamp": ts(round as i64).to_string(),
                    "type": "text", "text": { "body": "hi" } })
        })
        .collect();
    let contacts: Vec<_> = senders
        .iter()
        .map(|from| json!({ "profile": { "name": "x" }, "wa_id": from }))
        .collect();
    env.customer(senders[0]).value(json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "919876500001", "phone_number_id": env.phone_number_id },
        "contacts": contacts,
        "messages": messages,
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_batches_never_deadlock() {
    let env = TestEnv::start().await;
    let webhook = env.webhook();
    let forward = ["919800005001", "919800005002", "919800005003"];
    let backward = ["919800005003", "919800005002", "919800005001"];
    for round in 0..15 {
        let first = batch_of(&env, &forward, round * 2);
        let second = batch_of(&env, &backward, round * 2 + 1);
        let (a, b) = tokio::join!(webhook.post(&first), webhook.post(&second));
        assert_eq!(a.unwrap().as_u16(), 200, "round {round}");
        assert_eq!(b.unwrap().as_u16(), 200, "round {round}");
    }
    assert_eq!(env.count("SELECT count(*) FROM messages").await, 90);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unstorable_items_do_not_fail_batch() {
    let env = TestEnv::start().await;
    let long_id = format!("wamid.{}", "X".repeat(3000));
    let body = env.customer("919812300045").value(json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "919876500001", "phone_number_id": env.phone_number_id },
        "contacts": [{ "profile": { "name": "Asha\u{0}" }, "wa_id": "919812300045" }],
        "messages": [
            { "from": "919812300045", "id": "wamid.NUL1", "timestamp": ts(0).to_string(), "type": "text",
              "text": { "body": "nul \u{0} char" } },
            { "from": "919812300045", "id": long_id, "timestamp": ts(1).to_string(), "type": "text",
              "text": { "body": "long id" } },
            { "from": "919812300046", "id": "wamid.OK1", "timestamp": ts(2).to_string(), "type": "text",
              "text": { "body": "ordinary" } }
        ],
        "statuses": [{ "id": "wamid.S1", "status": "delivered", "timestamp": ts(3).to_string(),
                       "pricing": { "category": "service\u{0}" } }]
    }));
    env.post_ok(&body).await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT wamid FROM messages ORDER BY wamid")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        vec!["wamid.NUL1".to_string(), "wamid.OK1".to_string()],
        "the long id is skipped"
    );
    let text: String = sqlx::query_scalar("SELECT body FROM messages WHERE wamid = 'wamid.NUL1'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(text, "nul  char");
    assert_eq!(env.count("SELECT count(*) FROM message_statuses").await, 1);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lone_surrogate_keeps_the_batch() {
    let env = TestEnv::start().await;
    let body = env
        .customer("919812300045")
        .text("wamid.SUR1", ts(0), "PLACEHOLDER");
    let raw = String::from_utf8(meta_bytes(&body))
        .unwrap()
        .replace("PLACEHOLDER", "broken \\ud83d emoji");
    let status = env.webhook().post_bytes(raw.into_bytes()).await.unwrap();
    assert_eq!(status.as_u16(), 200);
    let text: String = sqlx::query_scalar("SELECT body FROM messages")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(text, "broken \u{FFFD} emoji");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn future_timestamp_does_not_silence_conversation() {
    let env = TestEnv::start().await;
    let customer = env.customer("919812300045");
    env.post_ok(&customer.text("wamid.FUT1", 253_402_300_799, "hello from the future"))
        .await;
    env.expect_sent(1, Duration::from_millis(300)).await;
    env.post_ok(&customer.text("wamid.FUT2", chrono::Utc::now().timestamp(), "price?"))
        .await;
    env.expect_sent(2, Duration::from_millis(300)).await;
    let latest: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(wa_timestamp) FROM messages")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(latest < chrono::Utc::now() + chrono::Duration::minutes(10));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unregistered_number_is_kept() {
    let env = TestEnv::start().await;
    let mut stranger = env.customer("919812300045");
    stranger.phone_number_id = "999999999999".to_string();
    env.post_ok(&stranger.text("wamid.UNR1", ts(0), "hello"))
        .await;
    assert_eq!(env.count("SELECT count(*) FROM messages").await, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM unrouted_webhooks WHERE phone_number_id = '999999999999'")
            .await,
        1
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn older_preference_does_not_override() {
    let env = TestEnv::start().await;
    let preference = |value: &str, timestamp: i64| {
        env.customer("919812300045").value(json!({
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "919876500001", "phone_number_id": env.phone_number_id },
            "user_preferences": [{ "wa_id": "919812300045", "detail": "User requested", "category": "marketing_messages",
                                   "value": value, "timestamp": timestamp }]
        }))
    };
    env.post_ok(&preference("resume", ts(100))).await;
    env.post_ok(&preference("stop", ts(0))).await;
    let stopped: bool = sqlx::query_scalar("SELECT marketing_opted_out FROM contacts")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(!stopped, "the newer resume stands");
    env.post_ok(&preference("stop", ts(200))).await;
    let stopped: bool = sqlx::query_scalar("SELECT marketing_opted_out FROM contacts")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(stopped);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_confirmation_skips_queued_replies() {
    let env = TestEnv::start().await;
    let customer = env.customer("919812300045");
    // Meta's pair limit lets five messages through in a burst; the replies after that wait
    // for the customer's pacing.
    for index in 0..8 {
        env.post_ok(&customer.text(
            &format!("wamid.Q{index}"),
            ts(index),
            &format!("question {index}"),
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    env.eventually("replies to queue up", Duration::from_secs(10), || async {
        env.count("SELECT count(*) FROM outbox WHERE status = 'queued'")
            .await
            >= 1
    })
    .await;

    env.post_ok(&customer.text("wamid.QSTOP", ts(20), "STOP"))
        .await;
    env.eventually(
        "the opt-out confirmation",
        Duration::from_secs(4),
        || async {
            env.graph.sent().iter().any(|s| {
                s.body
                    .as_deref()
                    .unwrap_or("")
                    .contains("no longer receive")
            })
        },
    )
    .await;
    let sent = env.graph.sent();
    let last = sent.last().unwrap().body.clone().unwrap();
    assert!(
        last.contains("no longer receive"),
        "nothing automated after the confirmation: {last}"
    );
    assert!(
        env.count("SELECT count(*) FROM outbox WHERE status = 'cancelled'")
            .await
            >= 1
    );
    env.finish().await;
}
