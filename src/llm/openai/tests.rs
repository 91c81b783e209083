use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::llm::mock_llm::MockLlm;
use crate::llm::Turn;

const API_KEY: &str = "sk-test-velochat-0123456789";

fn responder(mock: &MockLlm, timeout: Duration) -> OpenAiResponder {
    OpenAiResponder::new(API_KEY, Some(&mock.base_url()), "gpt-4o-mini", timeout).unwrap()
}

fn turn(role: Role, text: &str) -> Turn {
    Turn {
        role,
        text: text.to_owned(),
    }
}

fn context(history: Vec<Turn>) -> ReplyContext {
    ReplyContext {
        tenant_name: "sai-motors".to_owned(),
        profile: json!({
            "dealership": "Sai Motors",
            "models": [{"name": "Jupiter ZX", "on_road_price": "Rs 87,500"}]
        }),
        prompt_template: None,
        customer_name: Some("Ravi".to_owned()),
        history,
    }
}

fn price_question() -> ReplyContext {
    context(vec![
        turn(Role::Customer, "Hi"),
        turn(Role::Business, "Namaste! Welcome to Sai Motors."),
        turn(Role::Customer, "Jupiter ZX kitne ka hai?"),
    ])
}

fn roles_and_texts(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| {
            let role = message["role"].as_str().unwrap().to_owned();
            let content = message["content"].as_str().unwrap().to_owned();
            (role, content)
        })
        .collect()
}

#[tokio::test]
async fn reply_returns_assistant_text() {
    let mock = MockLlm::start().await.unwrap();
    mock.set_reply("  Jupiter ZX ki on-road price Rs 87,500 hai.\n");

    let reply = responder(&mock, Duration::from_secs(5))
        .reply(&price_question())
        .await
        .unwrap();

    assert_eq!(reply, "Jupiter ZX ki on-road price Rs 87,500 hai.");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn request_carries_prompt_and_history() {
    let mock = MockLlm::start().await.unwrap();

    responder(&mock, Duration::from_secs(5))
        .reply(&price_question())
        .await
        .unwrap();

    let requests = mock.requests();
    let request = &requests[0];
    assert_eq!(request["model"], "gpt-4o-mini");

    let messages = roles_and_texts(request);
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0].0, "system");
    assert!(messages[0].1.contains("WhatsApp assistant of Sai Motors"));
    assert!(messages[0].1.contains("Jupiter ZX: Rs 87,500"));
    assert_eq!(messages[1], ("user".to_owned(), "Hi".to_owned()));
    assert_eq!(
        messages[2],
        (
            "assistant".to_owned(),
            "Namaste! Welcome to Sai Motors.".to_owned()
        )
    );
    assert_eq!(
        messages[3],
        ("user".to_owned(), "Jupiter ZX kitne ka hai?".to_owned())
    );
}

#[tokio::test]
async fn history_is_capped_to_latest_turns() {
    let mock = MockLlm::start().await.unwrap();
    let mut history = Vec::new();
    for i in 0..15 {
        history.push(turn(Role::Customer, &format!("question {i}")));
        history.push(turn(Role::Business, &format!("answer {i}")));
    }
    history.push(turn(Role::Business, "   "));
    history.push(turn(Role::Customer, "last question"));

    responder(&mock, Duration::from_secs(5))
        .reply(&context(history))
        .await
        .unwrap();

    let messages = roles_and_texts(&mock.requests()[0]);
    // The system prompt plus the latest 20 turns, less the blank one among them.
    assert_eq!(messages.len(), 1 + MAX_HISTORY_TURNS - 1);
    assert_eq!(messages[1], ("user".to_owned(), "question 6".to_owned()));
    assert_eq!(
        messages.last().unwrap(),
        &("user".to_owned(), "last question".to_owned())
    );
}

#[tokio::test]
async fn slow_provider_times_out() {
    let mock = MockLlm::start().await.unwrap();
    mock.set_delay(Duration::from_secs(3));
    let timeout = Duration::from_millis(200);

    let started = Instant::now();
    let result = responder(&mock, timeout).reply(&price_question()).await;

    assert!(
        matches!(result, Err(ReplyError::Timeout(after)) if after == timeout),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_error_returns_promptly() {
    let mock = MockLlm::start().await.unwrap();
    mock.set_failure(Some(500));

    let started = Instant::now();
    let result = responder(&mock, Duration::from_secs(20))
        .reply(&price_question())
        .await;

    let Err(ReplyError::Provider(message)) = result else {
        panic!("expected a provider error, got {result:?}");
    };
    assert!(
        message.contains("The mock LLM was told to fail"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mock.request_count(), 1, "async-openai retried the 500");
}

#[tokio::test]
async fn rate_limit_returns_promptly() {
    let mock = MockLlm::start().await.unwrap();
    mock.set_failure(Some(429));

    let started = Instant::now();
    let result = responder(&mock, Duration::from_secs(20))
        .reply(&price_question())
        .await;

    let Err(ReplyError::Provider(message)) = result else {
        panic!("expected a provider error, got {result:?}");
    };
    assert!(message.contains("rate_limit_exceeded"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mock.request_count(), 1, "async-openai retried the 429");
}

#[tokio::test]
async fn client_errors_become_provider_errors() {
    let mock = MockLlm::start().await.unwrap();
    let responder = responder(&mock, Duration::from_secs(5));

    for status in [400, 401, 404] {
        mock.set_failure(Some(status));
        let result = responder.reply(&price_question()).await;
        assert!(
            matches!(result, Err(ReplyError::Provider(_))),
            "status {status}: {result:?}"
        );
    }
}

#[tokio::test]
async fn recovers_after_failure() {
    let mock = MockLlm::start().await.unwrap();
    let responder = responder(&mock, Duration::from_secs(5));

    mock.set_failure(Some(503));
    assert!(responder.reply(&price_question()).await.is_err());

    mock.set_failure(None);
    mock.set_reply("Namaste!");
    assert_eq!(
        responder.reply(&price_question()).await.unwrap(),
        "Namaste!"
    );
}

#[tokio::test]
async fn blank_reply_is_empty_reply_error() {
    let mock = MockLlm::start().await.unwrap();
    mock.set_reply(" \n ");

    let result = responder(&mock, Duration::from_secs(5))
        .reply(&price_question())
        .await;

    assert!(matches!(result, Err(ReplyError::EmptyReply)), "{result:?}");
}

#[tokio::test]
async fn unreachable_provider_is_provider_error() {
    // Bind and drop a listener to get a port on 127.0.0.1 that nothing listens on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let base_url = format!("http://{address}/v1");
    let responder = OpenAiResponder::new(
        API_KEY,
        Some(&base_url),
        "gpt-4o-mini",
        Duration::from_secs(5),
    )
    .unwrap();

    let result = responder.reply(&price_question()).await;

    let Err(ReplyError::Provider(message)) = result else {
        panic!("expected a provider error, got {result:?}");
    };
    assert!(message.contains(&address.to_string()), "{message}");
}

#[tokio::test]
async fn broken_tenant_template_sends_nothing() {
    let mock = MockLlm::start().await.unwrap();
    let mut ctx = price_question();
    ctx.prompt_template = Some("{% if %}".to_owned());

    let result = responder(&mock, Duration::from_secs(5)).reply(&ctx).await;

    assert!(matches!(result, Err(ReplyError::Template(_))), "{result:?}");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn mock_rejects_missing_bearer_token() {
    let mock = MockLlm::start().await.unwrap();
    let url = format!("{}/chat/completions", mock.base_url());

    let response = reqwest::Client::new()
        .post(url)
        .json(&json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["param"], Value::Null);
}

#[test]
fn debug_output_hides_api_key() {
    let responder =
        OpenAiResponder::new(API_KEY, None, "gpt-4o-mini", Duration::from_secs(5)).unwrap();
    let debug = format!("{responder:?}");

    assert!(!debug.contains(API_KEY), "{debug}");
    assert!(debug.contains("gpt-4o-mini"), "{debug}");
}

#[test]
fn api_base_defaults_to_openai() {
    let responder =
        OpenAiResponder::new(API_KEY, None, "gpt-4o-mini", Duration::from_secs(5)).unwrap();
    assert_eq!(responder.api_base(), "https://api.openai.com/v1");
}

#[test]
fn api_base_drops_trailing_slash() {
    assert_eq!(
        parse_api_base(" http://127.0.0.1:8080/v1/ ").unwrap(),
        "http://127.0.0.1:8080/v1"
    );
}

#[test]
fn redact_removes_key_and_masked_keys() {
    let message = format!("Incorrect API key provided: {API_KEY}. Also sk-proj-ab***yz here.");
    let redacted = redact(&message, API_KEY);

    assert!(!redacted.contains(API_KEY), "{redacted}");
    assert!(!redacted.contains("sk-proj-ab"), "{redacted}");
    assert!(redacted.starts_with("Incorrect API key provided: <redacted>."));
}

#[test]
fn server_error_message_formats() {
    let openai = r#"{"error":{"message":"Overloaded","type":"server_error","param":null}}"#;
    assert_eq!(server_error_message(openai), "server_error: Overloaded");
    assert_eq!(
        server_error_message(r#"{"error":{"message":"Overloaded"}}"#),
        "Overloaded"
    );
    assert_eq!(
        server_error_message("<html>502 Bad Gateway</html>"),
        "<html>502 Bad Gateway</html>"
    );
}

#[test]
fn truncate_respects_char_boundaries() {
    assert_eq!(truncate("नमस्ते", 3), "नमस...");
    assert_eq!(truncate("short", 10), "short");
}
