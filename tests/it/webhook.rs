//! The webhook endpoint: verification, signatures, limits, parsing and storage.

use std::time::Duration;

use serde_json::json;
use velochat::simulate::meta_bytes;
use velochat::whatsapp::sign;

use crate::support::{ts, TestEnv, APP_SECRET, VERIFY_TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn verification_answers_challenge() {
    let env = TestEnv::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/webhooks/whatsapp", env.engine_url());

    let ok = http
        .get(&url)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", VERIFY_TOKEN),
            ("hub.challenge", "1158201444"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");

    let wrong = http
        .get(&url)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "nope"),
            ("hub.challenge", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 403);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_good_bad_and_missing() {
    let env = TestEnv::start().await;
    let webhook = env.webhook();
    let body = meta_bytes(
        &env.customer("919812300045")
            .text("wamid.SIG1", ts(0), "hello"),
    );

    let missing = webhook
        .post_with_signature(body.clone(), None)
        .await
        .unwrap();
    assert_eq!(missing.as_u16(), 401);
    let wrong = sign(b"another-secret", &body);
    let bad = webhook
        .post_with_signature(body.clone(), Some(&wrong))
        .await
        .unwrap();
    assert_eq!(bad.as_u16(), 401);
    let garbage = webhook
        .post_with_signature(body.clone(), Some("sha256=zz"))
        .await
        .unwrap();
    assert_eq!(garbage.as_u16(), 401);
    assert_eq!(
        env.count("SELECT count(*) FROM messages").await,
        0,
        "rejected bodies store nothing"
    );

    let good = sign(APP_SECRET.as_bytes(), &body);
    let accepted = webhook
        .post_with_signature(body, Some(&good))
        .await
        .unwrap();
    assert_eq!(accepted.as_u16(), 200);
    assert_eq!(env.count("SELECT count(*) FROM messages").await, 1);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_covers_escaped_unicode_bytes() {
    let env = TestEnv::start().await;
    let text = "Café visit? Price ₹87,500 🏍️ mail: asha@example.com path a/b";
    let body = env.customer("919812300045").text("wamid.UNI1", ts(0), text);
    let bytes = meta_bytes(&body);
    let raw = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        raw.contains("\\u20b9") && raw.contains("\\/"),
        "body is escaped as Meta sends it"
    );

    let status = env.webhook().post_bytes(bytes).await.unwrap();
    assert_eq!(status.as_u16(), 200);
    let stored: String = sqlx::query_scalar("SELECT body FROM messages WHERE wamid = 'wamid.UNI1'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, text);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_bodies_rejected() {
    let env = TestEnv::start().await;
    let webhook = env.webhook();

    let malformed = webhook
        .post_bytes(b"{\"object\": \"whatsapp_business_account\", ".to_vec())
        .await
        .unwrap();
    assert_eq!(malformed.as_u16(), 400);
    let not_object = webhook.post_bytes(b"[1, 2]".to_vec()).await.unwrap();
    assert_eq!(not_object.as_u16(), 400);

    let padding = "x".repeat(3 * 1024 * 1024 + 10);
    let oversized = webhook
        .post_bytes(format!("{{\"pad\":\"{padding}\"}}").into_bytes())
        .await
        .unwrap();
    assert_eq!(oversized.as_u16(), 413);
    assert_eq!(env.count("SELECT count(*) FROM messages").await, 0);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_number_acknowledged() {
    let env = TestEnv::start().await;
    let mut stranger = env.customer("919812300045");
    stranger.phone_number_id = "999999999999".to_string();
    env.post_ok(&stranger.text("wamid.X1", ts(0), "hello"))
        .await;
    assert_eq!(env.count("SELECT count(*) FROM messages").await, 0);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_type_is_stored() {
    let env = TestEnv::start().await;
    let customer = env.customer("919812300045");
    let from = "919812300045";
    let items = vec![
        json!({"type":"image","image":{"id":"m1","mime_type":"image/jpeg","caption":"my bike","sha256":"x"}}),
        json!({"type":"video","video":{"id":"m2","mime_type":"video/mp4"}}),
        json!({"type":"audio","audio":{"id":"m3","mime_type":"audio/ogg","voice":true}}),
        json!({"type":"sticker","sticker":{"id":"m4","mime_type":"image/webp","animated":false}}),
        json!({"type":"document","document":{"id":"m5","mime_type":"application/pdf","filename":"quote.pdf"}}),
        json!({"type":"location","location":{"latitude":19.87,"longitude":75.34,"name":"Showroom"}}),
        json!({"type":"contacts","contacts":[{"name":{"formatted_name":"Ravi"},"phones":[{"phone":"+919800000000"}]}]}),
        json!({"type":"interactive","interactive":{"type":"list_reply","list_reply":{"id":"jupiter","title":"Jupiter"}}}),
        json!({"type":"button","button":{"payload":"book","text":"Book now"}}),
        json!({"type":"reaction","reaction":{"message_id":"wamid.OUT1","emoji":"👍"}}),
        json!({"type":"reaction","reaction":{"message_id":"wamid.OUT1"}}),
        json!({"type":"system","system":{"body":"Asha changed number","type":"user_changed_number"}}),
        json!({"type":"order","order":{"catalog_id":"c1","product_items":[]}}),
        json!({"type":"unsupported","errors":[{"code":131051,"title":"Message type unknown"}]}),
        json!({"type":"unknown","errors":[{"code":131051,"title":"Message type unknown"}]}),
        json!({"type":"hologram","hologram":{"id":"m9"}}),
        json!({"type":"image","image":"not an object"}),
    ];
    let count = items.len() as i64;
    for (index, mut item) in items.into_iter().enumerate() {
        item["from"] = json!(from);
        item["id"] = json!(format!("wamid.TYPE{index}"));
        item["timestamp"] = json!((ts(index as i64)).to_string());
        env.post_ok(&customer.message(item)).await;
    }
    assert_eq!(env.count("SELECT count(*) FROM messages").await, count);
    let hologram: String =
        sqlx::query_scalar("SELECT message_type FROM messages WHERE wamid = 'wamid.TYPE15'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        hologram, "hologram",
        "an unknown type is stored under its own name"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_with_unknown_statuses_and_message() {
    let env = TestEnv::start().await;
    let customer = env.customer("919812300045");
    let body = customer.value(json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "919876500001", "phone_number_id": env.phone_number_id },
        "contacts": [{ "profile": { "name": "Asha" }, "wa_id": "919812300045" }],
        "statuses": [
            { "id": "wamid.NEVERSENT1", "status": "delivered", "timestamp": ts(70).to_string(), "recipient_id": "919812300045" },
            { "id": "wamid.NEVERSENT2", "status": "failed", "timestamp": ts(71).to_string(), "recipient_id": "919812300046",
              "errors": [{ "code": 131026, "title": "Message undeliverable" }] },
            { "status": "read" }
        ],
        "messages": [
            { "from": "919812300045", "id": "wamid.BATCH1", "timestamp": ts(72).to_string(), "type": "text",
              "text": { "body": "price of Jupiter?" } },
            { "id": "wamid.NOFROM" }
        ]
    }));
    env.post_ok(&body).await;
    assert_eq!(env.count("SELECT count(*) FROM messages").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM message_statuses").await, 2);
    env.expect_sent(1, Duration::from_millis(300)).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_failure_answers_503_and_keeps_nothing() {
    let env = TestEnv::start().await;
    let body = env
        .customer("919812300045")
        .text("wamid.DOWN1", ts(0), "hello");
    // A broken store, as when PostgreSQL fails mid-request.
    sqlx::query("ALTER TABLE inbound_events RENAME TO inbound_events_away")
        .execute(&env.pool)
        .await
        .unwrap();
    let status = env.webhook().post(&body).await.unwrap();
    assert_eq!(status.as_u16(), 503, "Meta must deliver again");
    sqlx::query("ALTER TABLE inbound_events_away RENAME TO inbound_events")
        .execute(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        env.count("SELECT count(*) FROM messages").await,
        0,
        "the failed request stored nothing"
    );

    // Meta's redelivery is then accepted and answered once.
    env.post_ok(&body).await;
    env.expect_sent(1, Duration::from_millis(500)).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness() {
    let env = TestEnv::start().await;
    let http = reqwest::Client::new();
    let live = http
        .get(format!("{}/healthz", env.engine_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
    let ready = http
        .get(format!("{}/readyz", env.engine_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body, json!({ "postgres": "up", "redis": "up" }));
    env.finish().await;
}
