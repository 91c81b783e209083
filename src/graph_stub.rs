//! A local stand-in for the Graph API send endpoint, for tests, the demo and load
//! generation. Its responses have the shapes of Meta's Cloud API, so that the
//! production [`GraphClient`](crate::whatsapp::GraphClient) is what gets exercised.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// The Graph API version the stand-in serves, matching the client's default base URL.
pub const GRAPH_API_VERSION: &str = "v23.0";

/// Maximum length of a text body in characters, as the Cloud API enforces it.
const MAX_TEXT_BODY_CHARS: usize = 4096;

/// How long `shutdown` waits for open requests before it aborts the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running stand-in server on 127.0.0.1. Dropping it stops the server.
pub struct GraphStandIn {
    base_url: String,
    state: Arc<SharedState>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// One send request as the stand-in received it.
#[derive(Clone)]
pub struct RecordedSend {
    pub received_at: Instant,
    pub received_at_utc: DateTime<Utc>,
    pub phone_number_id: String,
    /// The `to` field, or empty when the request had none.
    pub to: String,
    /// `text.body` of a text message.
    pub body: Option<String>,
    /// `biz_opaque_callback_data`.
    pub callback_data: Option<String>,
    pub bearer_token: Option<String>,
    /// The id returned for an accepted send, `None` for a rejected one.
    pub wamid: Option<String>,
    /// The request body as JSON, or as a JSON string when it was not valid JSON.
    pub raw: Value,
}

impl fmt::Debug for RecordedSend {
    // The bearer token is left out so that a test failure or a log line never prints
    // a token, even a test one that may have been copied from a real configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedSend")
            .field("received_at_utc", &self.received_at_utc)
            .field("phone_number_id", &self.phone_number_id)
            .field("to", &self.to)
            .field("body", &self.body)
            .field("callback_data", &self.callback_data)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("wamid", &self.wamid)
            .field("raw", &self.raw)
            .finish()
    }
}

/// A scripted response to the next request that reaches the stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptedResponse {
    /// Validates the request and accepts it if valid, as without a script.
    Ok,
    /// Rejects the request with Meta's error object, whatever the request contains.
    Error {
        http_status: u16,
        code: i64,
        message: String,
    },
    /// Waits this long, then responds with the next scripted response (or the
    /// default). The request is still processed if the client gives up meanwhile,
    /// because Meta may send a message whose request timed out on the client side.
    Delay(Duration),
    /// Responds with this status and body verbatim, to imitate a proxy page or a
    /// broken response.
    Raw { http_status: u16, body: String },
}

struct SharedState {
    recorded: Mutex<Recorded>,
    /// Woken whenever a request has been recorded.
    recorded_changed: Notify,
}

#[derive(Default)]
struct Recorded {
    requests: Vec<RecordedSend>,
    script: VecDeque<ScriptedResponse>,
}

impl SharedState {
    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A panic while the lock was held cannot leave `Recorded` half-updated, since
        // every update is a single push or pop, so a poisoned lock is still usable.
        self.recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl GraphStandIn {
    /// Starts the stand-in on an ephemeral port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("failed to bind the Graph API stand-in to 127.0.0.1")?;
        let address = listener
            .local_addr()
            .context("failed to read the Graph API stand-in's address")?;

        let state = Arc::new(SharedState {
            recorded: Mutex::new(Recorded::default()),
            recorded_changed: Notify::new(),
        });
        let router = Router::new()
            .route(
                &format!("/{GRAPH_API_VERSION}/{{phone_number_id}}/messages"),
                post(handle_send),
            )
            .with_state(Arc::clone(&state));

        let (shutdown_sender, shutdown_receiver) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown_signal = async {
                // A dropped sender also means shut down.
                let _ = shutdown_receiver.await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown_signal)
                .await
            {
                tracing::warn!(%error, %address, "Graph API stand-in stopped with an error");
            }
        });

        Ok(GraphStandIn {
            base_url: format!("http://{address}/{GRAPH_API_VERSION}"),
            state,
            shutdown: Some(shutdown_sender),
            server: Some(server),
        })
    }

    /// Returns the base URL to give to the client, such as
    /// `http://127.0.0.1:PORT/v23.0`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Returns the accepted sends, in the order of their responses.
    pub fn sent(&self) -> Vec<RecordedSend> {
        self.state
            .lock()
            .requests
            .iter()
            .filter(|request| request.wamid.is_some())
            .cloned()
            .collect()
    }

    /// Returns every request, rejected ones included, in the order of their responses.
    pub fn requests(&self) -> Vec<RecordedSend> {
        self.state.lock().requests.clone()
    }

    /// Appends scripted responses. Each request consumes the next one, and requests
    /// that find the script empty are validated and accepted as by Meta.
    pub fn push_responses(&self, responses: impl IntoIterator<Item = ScriptedResponse>) {
        self.state.lock().script.extend(responses);
    }

    /// Waits until at least `count` sends have been accepted or `timeout` has passed,
    /// and returns the accepted sends, which may be fewer than `count` after a timeout.
    pub async fn wait_for_sent(&self, count: usize, timeout: Duration) -> Vec<RecordedSend> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registering before checking means a send recorded in between still wakes us.
            let changed = self.state.recorded_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();

            let sent = self.sent();
            if sent.len() >= count {
                return sent;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.sent();
            }
        }
    }

    /// Stops the server, waiting up to 5 seconds for open requests to finish before
    /// aborting them.
    pub async fn shutdown(mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl Drop for GraphStandIn {
    fn drop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn handle_send(
    State(state): State<Arc<SharedState>>,
    Path(phone_number_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = IncomingRequest {
        received_at: Instant::now(),
        received_at_utc: Utc::now(),
        phone_number_id,
        bearer_token: bearer_token(&headers),
        raw: serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
    };
    // Processing runs in its own task, so a client that times out and closes the
    // connection does not cancel it and the request is still recorded, as Meta may
    // still send a message whose client gave up.
    match tokio::spawn(process_send(state, request)).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "Graph API stand-in failed to process a send");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

struct IncomingRequest {
    received_at: Instant,
    received_at_utc: DateTime<Utc>,
    phone_number_id: String,
    bearer_token: Option<String>,
    raw: Value,
}

/// A Meta error object to respond with.
struct GraphError {
    http_status: StatusCode,
    code: i64,
    message: String,
    details: String,
}

enum Outcome {
    Accepted {
        wamid: String,
    },
    Rejected(GraphError),
    Raw {
        http_status: StatusCode,
        body: String,
    },
}

async fn process_send(state: Arc<SharedState>, request: IncomingRequest) -> Response {
    let scripted = loop {
        let next = state.lock().script.pop_front();
        match next {
            Some(ScriptedResponse::Delay(delay)) => tokio::time::sleep(delay).await,
            other => break other,
        }
    };

    let outcome = match scripted {
        Some(ScriptedResponse::Error {
            http_status,
            code,
            message,
        }) => Outcome::Rejected(GraphError {
            http_status: StatusCode::from_u16(http_status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            details: message.clone(),
            message,
        }),
        Some(ScriptedResponse::Raw { http_status, body }) => Outcome::Raw {
            http_status: StatusCode::from_u16(http_status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        },
        Some(ScriptedResponse::Ok | ScriptedResponse::Delay(_)) | None => {
            match validate(&request) {
                Ok(()) => Outcome::Accepted { wamid: new_wamid() },
                Err(error) => Outcome::Rejected(error),
            }
        }
    };

    let raw = &request.raw;
    let to = raw.get("to").and_then(Value::as_str).unwrap_or_default();
    let response = match &outcome {
        Outcome::Accepted { wamid } => success_response(to, wamid),
        Outcome::Rejected(error) => error_response(error),
        Outcome::Raw { http_status, body } => (*http_status, body.clone()).into_response(),
    };
    let recorded = RecordedSend {
        received_at: request.received_at,
        received_at_utc: request.received_at_utc,
        to: to.to_string(),
        body: raw
            .get("text")
            .and_then(|text| text.get("body"))
            .and_then(Value::as_str)
            .map(str::to_string),
        callback_data: raw
            .get("biz_opaque_callback_data")
            .and_then(Value::as_str)
            .map(str::to_string),
        wamid: match outcome {
            Outcome::Accepted { wamid } => Some(wamid),
            _ => None,
        },
        phone_number_id: request.phone_number_id,
        bearer_token: request.bearer_token,
        raw: request.raw,
    };

    state.lock().requests.push(recorded);
    state.recorded_changed.notify_waiters();
    response
}

/// Checks a request the way the Cloud API does: the token first, then the fields a
/// message needs.
fn validate(request: &IncomingRequest) -> Result<(), GraphError> {
    if request.bearer_token.is_none() {
        return Err(GraphError {
            http_status: StatusCode::UNAUTHORIZED,
            code: 190,
            message: "Invalid OAuth access token - Cannot parse access token".into(),
            details: "Authorization header with a bearer access token is missing".into(),
        });
    }
    let raw = &request.raw;
    if !raw.is_object() {
        return Err(invalid_parameter(
            "(#100) Invalid parameter",
            "Request body is not a JSON object",
        ));
    }
    if raw.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err(invalid_parameter(
            "(#100) The parameter messaging_product is required.",
            "messaging_product must be \"whatsapp\"",
        ));
    }
    let has_recipient = raw
        .get("to")
        .and_then(Value::as_str)
        .is_some_and(|to| !to.trim().is_empty());
    if !has_recipient {
        return Err(invalid_parameter(
            "(#100) The parameter to is required.",
            "to is missing or empty",
        ));
    }

    // The Cloud API treats a message without `type` as text.
    let message_type = raw.get("type").and_then(Value::as_str).unwrap_or("text");
    if message_type != "text" {
        if raw.get(message_type).is_some_and(Value::is_object) {
            return Ok(());
        }
        return Err(invalid_parameter(
            &format!("(#100) The parameter {message_type} is required."),
            &format!("{message_type} object is missing"),
        ));
    }
    let body = raw
        .get("text")
        .and_then(|text| text.get("body"))
        .and_then(Value::as_str)
        .filter(|body| !body.trim().is_empty());
    let Some(body) = body else {
        return Err(invalid_parameter(
            "(#100) The parameter text['body'] is required.",
            "text['body'] is missing or empty",
        ));
    };
    if body.chars().count() > MAX_TEXT_BODY_CHARS {
        return Err(invalid_parameter(
            "(#100) Param text['body'] must be at most 4096 characters long.",
            "text['body'] is longer than 4096 characters",
        ));
    }
    Ok(())
}

fn invalid_parameter(message: &str, details: &str) -> GraphError {
    GraphError {
        http_status: StatusCode::BAD_REQUEST,
        code: 100,
        message: message.to_string(),
        details: details.to_string(),
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

fn new_wamid() -> String {
    format!(
        "wamid.{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 48)
    )
}

fn success_response(to: &str, wamid: &str) -> Response {
    let wa_id: String = to.chars().filter(char::is_ascii_digit).collect();
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": wa_id }],
        "messages": [{ "id": wamid }]
    }))
    .into_response()
}

fn error_response(error: &GraphError) -> Response {
    let body = json!({
        "error": {
            "message": error.message,
            "type": "OAuthException",
            "code": error.code,
            "error_data": {
                "messaging_product": "whatsapp",
                "details": error.details
            },
            "fbtrace_id": Alphanumeric.sample_string(&mut rand::thread_rng(), 23)
        }
    });
    (error.http_status, Json(body)).into_response()
}

#[cfg(test)]
mod tests;
