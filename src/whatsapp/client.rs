//! Graph API client for sending WhatsApp messages.

use std::error::Error as _;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

/// Graph API base URL with the API version pinned, so that a version change is a
/// reviewed code change rather than a silent switch by Meta.
pub const DEFAULT_GRAPH_API_BASE: &str = "https://graph.facebook.com/v23.0";

/// Maximum length of an unreadable response body kept in [`SendError::InvalidResponse`].
const MAX_KEPT_BODY_CHARS: usize = 2000;

/// Client for the Cloud API send endpoint. Cloning is cheap and shares the connection
/// pool.
///
/// The client stores no access token: each call takes the token of the tenant's phone
/// number, and the token is sent only as a sensitive header, which reqwest leaves out
/// of its `Debug` output.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base_url: Url,
}

/// A message that Meta accepted. Acceptance is not delivery: the status webhooks
/// report delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The id of the sent message (`wamid.…`), which status webhooks refer to.
    pub wamid: String,
    /// `contacts[0].wa_id`: the recipient's WhatsApp id as Meta resolved it.
    pub wa_id: Option<String>,
}

/// Reasons a send failed, classified by whether Meta may have accepted the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Meta responded with an error object, so it did not accept the message.
    #[error("Graph API rejected the send with HTTP {http_status}, error code {code}: {message}")]
    Api {
        http_status: u16,
        code: i64,
        message: String,
        /// `error.error_data.details`.
        details: Option<String>,
    },
    /// The request never reached Meta (DNS, connect or TLS failure), so a retry cannot
    /// send the message twice.
    #[error("could not connect to the Graph API: {0}")]
    Connect(String),
    /// The request was sent but no complete response came back (a timeout or a broken
    /// connection), so Meta may have accepted the message.
    #[error("Graph API send timed out or failed after the request was sent, so Meta may have accepted the message: {0}")]
    Uncertain(String),
    /// Meta's response was neither a send result nor an error object.
    #[error("Graph API returned an unreadable response with HTTP {http_status}: {body}")]
    InvalidResponse { http_status: u16, body: String },
    /// The request could not be built, for example because the access token contains
    /// characters that an HTTP header cannot carry. Nothing was sent.
    #[error("could not build the Graph API request: {0}")]
    InvalidRequest(String),
}

impl SendError {
    /// Returns `true` when sending the same message again is both safe and useful.
    ///
    /// `Uncertain` errors, and unreadable responses with a 2xx status, return `false`
    /// even though the request may succeed again, because Meta may already have
    /// accepted the message and a second send would reach the customer twice. See
    /// [`SendError::may_have_been_accepted`].
    pub fn is_retriable(&self) -> bool {
        match self {
            SendError::Api {
                http_status, code, ..
            } => {
                if is_retriable_code(*code) {
                    true
                } else if is_permanent_code(*code) {
                    false
                } else {
                    *http_status >= 500
                }
            }
            SendError::Connect(_) => true,
            SendError::Uncertain(_) | SendError::InvalidRequest(_) => false,
            SendError::InvalidResponse { http_status, .. } => *http_status >= 500,
        }
    }

    /// Returns `true` when Meta may have accepted the message despite the error.
    ///
    /// The caller then has to wait for a status webhook that echoes the callback data
    /// before it sends again.
    pub fn may_have_been_accepted(&self) -> bool {
        match self {
            SendError::Uncertain(_) => true,
            SendError::InvalidResponse { http_status, .. } => (200..300).contains(http_status),
            _ => false,
        }
    }

    /// Returns Meta's error code, if Meta responded with an error object.
    pub fn code(&self) -> Option<i64> {
        match self {
            SendError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Returns `true` for error codes after which the same send may succeed with backoff:
/// rate limits (4, 80007, 130429, 131056) and temporary failures or maintenance on
/// Meta's side (2, 131000, 131016, 131057, 133004).
pub fn is_retriable_code(code: i64) -> bool {
    matches!(
        code,
        2 | 4 | 80007 | 130429 | 131000 | 131016 | 131056 | 131057 | 133004
    )
}

/// Returns `true` for error codes after which the same send fails again.
///
/// These are invalid requests (100, 131008, 131009, 131021, 131051), an expired token
/// (190), an account blocked for policy violations (368) and an undeliverable message
/// (131026). So are a closed 24-hour window (131047), marketing stopped by the user
/// (131050) and template problems (132000-132016).
fn is_permanent_code(code: i64) -> bool {
    let listed = matches!(
        code,
        100 | 190 | 368 | 131008 | 131009 | 131021 | 131026 | 131047 | 131050 | 131051
    );
    listed || (132000..=132016).contains(&code)
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    contacts: Vec<ResponseContact>,
    #[serde(default)]
    messages: Vec<ResponseMessage>,
}

#[derive(Deserialize)]
struct ResponseContact {
    #[serde(default)]
    wa_id: Option<String>,
}

#[derive(Deserialize)]
struct ResponseMessage {
    id: String,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_data: Option<ErrorData>,
    #[serde(default)]
    fbtrace_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

impl GraphClient {
    /// Creates a client for the Graph API at `base_url`, which includes the version,
    /// as in [`DEFAULT_GRAPH_API_BASE`]. `timeout` bounds each whole request.
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let base_url = Url::parse(base_url)
            .with_context(|| format!("invalid Graph API base URL {base_url:?}"))?;
        anyhow::ensure!(
            matches!(base_url.scheme(), "http" | "https") && !base_url.cannot_be_a_base(),
            "invalid Graph API base URL {base_url}: expected an http or https URL such as {DEFAULT_GRAPH_API_BASE}"
        );
        let mut builder = reqwest::Client::builder();
        if is_loopback(&base_url) {
            // A local stand-in must not be reached through a proxy from HTTP_PROXY or
            // HTTPS_PROXY, which would send test traffic off the machine.
            builder = builder.no_proxy();
        }
        let http = builder
            .timeout(timeout)
            // A shorter connect timeout reports a stalled connect as `Connect`, which is
            // safe to retry, instead of as an `Uncertain` whole-request timeout.
            .connect_timeout(timeout / 2)
            // A redirected POST would be resent as a GET without its body, so a redirect
            // is reported as an unreadable response instead of being followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("velochat/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("failed to build the Graph API HTTP client")?;
        Ok(GraphClient { http, base_url })
    }

    /// Sends a text message from the business number `phone_number_id` to `to`.
    ///
    /// `callback_data` is sent as `biz_opaque_callback_data`, which Meta echoes in the
    /// status webhooks of this message. It is left out when empty. `body` is sent as
    /// given: Meta rejects bodies over 4,096 characters with error 100, so long texts
    /// need [`split_text`](super::split_text) first.
    pub async fn send_text(
        &self,
        phone_number_id: &str,
        access_token: &str,
        to: &str,
        body: &str,
        callback_data: &str,
    ) -> Result<SentMessage, SendError> {
        let mut request = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": { "preview_url": false, "body": body },
        });
        if !callback_data.is_empty() {
            request["biz_opaque_callback_data"] = json!(callback_data);
        }
        self.post_message(phone_number_id, access_token, &request)
            .await
    }

    /// Sends an approved template, the only kind of message Meta delivers outside the 24-hour
    /// customer service window. `template` is the Cloud API `template` object (name, language
    /// and optional components).
    pub async fn send_template(
        &self,
        phone_number_id: &str,
        access_token: &str,
        to: &str,
        template: &serde_json::Value,
        callback_data: &str,
    ) -> Result<SentMessage, SendError> {
        let mut request = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": template,
        });
        if !callback_data.is_empty() {
            request["biz_opaque_callback_data"] = json!(callback_data);
        }
        self.post_message(phone_number_id, access_token, &request)
            .await
    }

    async fn post_message(
        &self,
        phone_number_id: &str,
        access_token: &str,
        request: &serde_json::Value,
    ) -> Result<SentMessage, SendError> {
        let url = self.messages_url(phone_number_id);
        let response = self
            .http
            .post(url)
            .bearer_auth(access_token.trim())
            .json(request)
            .send()
            .await
            .map_err(classify_send_error)?;

        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| SendError::Uncertain(error_chain(&error)))?;
        parse_response(phone_number_id, status, &bytes)
    }

    fn messages_url(&self, phone_number_id: &str) -> Url {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("GraphClient::new accepts only base URLs")
            .pop_if_empty()
            .push(phone_number_id)
            .push("messages");
        url
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // `host_str` keeps the brackets of an IPv6 address.
    let address = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Maps a failure of `send()` to a `SendError`. Only connect failures are known to
/// have happened before any byte of the request reached the server.
fn classify_send_error(error: reqwest::Error) -> SendError {
    let text = error_chain(&error);
    if error.is_builder() {
        SendError::InvalidRequest(text)
    } else if error.is_connect() {
        SendError::Connect(text)
    } else {
        SendError::Uncertain(text)
    }
}

fn parse_response(
    phone_number_id: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<SentMessage, SendError> {
    let http_status = status.as_u16();
    if status.is_success() {
        if let Ok(response) = serde_json::from_slice::<SendResponse>(body) {
            if let Some(message) = response.messages.into_iter().next() {
                return Ok(SentMessage {
                    wamid: message.id,
                    wa_id: response.contacts.into_iter().next().and_then(|c| c.wa_id),
                });
            }
        }
    } else if let Ok(ErrorResponse { error }) = serde_json::from_slice::<ErrorResponse>(body) {
        // The caller logs the error. Only the trace id, which Meta support asks for, is
        // logged here because it is not part of `SendError`.
        tracing::debug!(
            phone_number_id,
            http_status,
            code = error.code,
            fbtrace_id = error.fbtrace_id.as_deref().unwrap_or(""),
            "Graph API returned an error object"
        );
        return Err(SendError::Api {
            http_status,
            code: error.code,
            message: error.message,
            details: error.error_data.and_then(|data| data.details),
        });
    }
    Err(SendError::InvalidResponse {
        http_status,
        body: String::from_utf8_lossy(body)
            .chars()
            .take(MAX_KEPT_BODY_CHARS)
            .collect(),
    })
}

/// Formats an error with its sources, because reqwest's own message ("error sending
/// request") hides the cause.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
