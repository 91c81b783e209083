//! A local stand-in for an OpenAI-compatible chat completions API.
//!
//! It serves `POST /v1/chat/completions` on 127.0.0.1 in OpenAI's wire format, so tests run
//! the production async-openai client over real HTTP. The library's unit tests include this
//! same file, which keeps one mock for both test binaries.

// Each test binary that includes this file uses a different subset of the methods.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// A running mock server. Dropping it stops the server.
pub struct MockLlm {
    address: SocketAddr,
    state: Arc<Mutex<MockState>>,
    server: JoinHandle<()>,
}

struct MockState {
    reply: String,
    delay: Duration,
    failure: Option<u16>,
    requests: Vec<Value>,
}

impl MockLlm {
    /// Starts the server on a free port of 127.0.0.1. It responds with "Namaste! How can I
    /// help?" until [`MockLlm::set_reply`] changes the text.
    pub async fn start() -> anyhow::Result<MockLlm> {
        let state = Arc::new(Mutex::new(MockState {
            reply: "Namaste! How can I help?".to_owned(),
            delay: Duration::ZERO,
            failure: None,
            requests: Vec::new(),
        }));

        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("mock LLM server on {address} failed: {error}");
            }
        });

        Ok(MockLlm {
            address,
            state,
            server,
        })
    }

    /// Base URL for the client, such as `http://127.0.0.1:41234/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Sets the assistant text of later successful responses.
    pub fn set_reply(&self, text: impl Into<String>) {
        self.lock().reply = text.into();
    }

    /// Sets how long the server waits before it responds to each request.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Makes later requests fail with this HTTP status and an OpenAI error body, or succeed
    /// again with `None`.
    pub fn set_failure(&self, status: Option<u16>) {
        self.lock().failure = status;
    }

    /// Request bodies received so far, oldest first. A body that is not JSON is kept as a
    /// JSON string.
    pub fn requests(&self) -> Vec<Value> {
        self.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    fn lock(&self) -> MutexGuard<'_, MockState> {
        lock(&self.state)
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// A test that panicked while holding the lock must not hide its own failure behind a
// poisoned-lock panic in the next call.
fn lock(state: &Mutex<MockState>) -> MutexGuard<'_, MockState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn chat_completions(
    State(state): State<Arc<Mutex<MockState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let (reply, delay, failure) = {
        let mut state = lock(&state);
        state.requests.push(request.clone());
        (state.reply.clone(), state.delay, state.failure)
    };

    if !has_bearer_token(&headers) {
        return error_response(401, "You didn't provide an API key.");
    }
    if !request.is_object() {
        return error_response(400, "The request body is not valid JSON.");
    }

    tokio::time::sleep(delay).await;

    if let Some(status) = failure {
        return error_response(status, "The mock LLM was told to fail this request.");
    }
    completion_response(&request, &reply)
}

fn has_bearer_token(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| !token.trim().is_empty())
}

fn completion_response(request: &Value, reply: &str) -> Response {
    let model = request["model"].as_str().unwrap_or("mock-model");
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    // Rough token counts, about four characters per token, so that clients that read usage
    // see plausible numbers.
    let prompt_tokens = request.to_string().len() / 4;
    let completion_tokens = reply.len().div_ceil(4);

    let body = json!({
        "id": format!("chatcmpl-mock-{created}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        },
        "system_fingerprint": null
    });
    Json(body).into_response()
}

/// Builds an error response shaped like OpenAI's, with the type and code OpenAI uses for the
/// status.
fn error_response(status: u16, message: &str) -> Response {
    let (error_type, code) = match status {
        400 => ("invalid_request_error", Value::Null),
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => (
            "invalid_request_error",
            json!("unsupported_country_region_territory"),
        ),
        404 => ("invalid_request_error", json!("model_not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        500..=599 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    let body = json!({
        "error": {"message": message, "type": error_type, "param": null, "code": code}
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}
