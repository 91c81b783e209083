//! Auto-replies from an OpenAI-compatible chat completions API.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequestArgs,
};
use async_openai::Client;

use super::prompt::render_system_prompt;
use super::{ReplyContext, ReplyError, Role};

/// Maximum number of conversation turns sent with each request. Older turns rarely change the
/// answer to the latest question, and every turn costs prompt tokens.
const MAX_HISTORY_TURNS: usize = 20;

/// Maximum length in characters of a provider error message kept in [`ReplyError::Provider`].
/// A failing gateway can respond with a whole HTML page.
const MAX_ERROR_CHARS: usize = 500;

/// Client for the chat completions endpoint of OpenAI or a compatible server.
pub struct OpenAiResponder {
    client: Client<OpenAIConfig>,
    api_key: String,
    api_base: String,
    model: String,
    timeout: Duration,
}

impl fmt::Debug for OpenAiResponder {
    // Written by hand so that the API key never reaches a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiResponder")
            .field("api_key", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OpenAiResponder {
    /// Builds a client for `base_url` (for example `http://127.0.0.1:8080/v1`), or for
    /// OpenAI's own API when `base_url` is `None`.
    ///
    /// Fails when the key or model is blank, the base URL is not an http(s) URL or the timeout
    /// is zero.
    pub fn new(
        api_key: &str,
        base_url: Option<&str>,
        model: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let api_key = api_key.trim();
        if api_key.is_empty() {
            bail!("the LLM API key is empty");
        }
        let model = model.trim();
        if model.is_empty() {
            bail!("the LLM model name is empty; set it to a chat model such as gpt-4o-mini");
        }
        if timeout.is_zero() {
            bail!("the LLM timeout must be greater than zero");
        }

        let mut config = OpenAIConfig::new().with_api_key(api_key);
        if let Some(base_url) = base_url {
            config = config.with_api_base(parse_api_base(base_url)?);
        }
        let api_base = async_openai::config::Config::api_base(&config).to_owned();

        // async-openai 0.28 retries HTTP 5xx and 429 responses with exponential backoff for up to
        // 15 minutes by default. The retries would run until our timeout cut them off, so a
        // provider outage would look like a timeout and hold the reply for the whole budget.
        // A zero retry budget returns the first error at once, and the caller decides whether
        // to try again.
        let no_retries = backoff::ExponentialBackoffBuilder::new()
            .with_max_elapsed_time(Some(Duration::ZERO))
            .build();
        let client = Client::with_config(config).with_backoff(no_retries);

        Ok(Self {
            client,
            api_key: api_key.to_owned(),
            api_base,
            model: model.to_owned(),
            timeout,
        })
    }

    /// Base URL that requests go to, without a trailing slash.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// Asks the model for a reply to the last customer message of `ctx`.
    ///
    /// The whole call, connection and response body included, is bounded by the timeout given
    /// to [`Self::new`].
    #[tracing::instrument(
        name = "llm_reply",
        skip_all,
        fields(tenant = %ctx.tenant_name, model = %self.model, turns = ctx.history.len())
    )]
    pub async fn reply(&self, ctx: &ReplyContext) -> Result<String, ReplyError> {
        if ctx.customer_message().is_none() {
            return Err(ReplyError::NoCustomerMessage);
        }
        let system_prompt = render_system_prompt(ctx)?;
        let messages = build_messages(system_prompt, ctx);

        let request = CreateChatCompletionRequestArgs::default()
            .model(self.model.as_str())
            .messages(messages)
            .build()
            .map_err(|error| self.provider_error(&error))?;

        let started = Instant::now();
        let response = tokio::time::timeout(self.timeout, self.client.chat().create(request))
            .await
            .map_err(|_| ReplyError::Timeout(self.timeout))?
            .map_err(|error| self.provider_error(&error))?;

        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            total_tokens = response.usage.as_ref().map(|usage| usage.total_tokens),
            "LLM reply received"
        );

        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            return Err(ReplyError::EmptyReply);
        }
        Ok(text.to_owned())
    }

    fn provider_error(&self, error: &OpenAIError) -> ReplyError {
        let message = match error {
            // async-openai 0.28 passes a 5xx body through unparsed, with no type or code.
            OpenAIError::ApiError(api_error) if api_error.r#type.is_none() => {
                server_error_message(&api_error.message)
            }
            OpenAIError::ApiError(api_error) => api_error.to_string(),
            OpenAIError::Reqwest(error) => error_chain(error),
            OpenAIError::JSONDeserialize(error) => format!("invalid response body: {error}"),
            other => other.to_string(),
        };
        ReplyError::Provider(truncate(&redact(&message, &self.api_key), MAX_ERROR_CHARS))
    }
}

/// Validates a base URL such as `http://127.0.0.1:8080/v1` and strips its trailing slash,
/// because async-openai appends paths like `/chat/completions` to it verbatim.
fn parse_api_base(base_url: &str) -> anyhow::Result<String> {
    let base_url = base_url.trim();
    let url = reqwest::Url::parse(base_url)
        .with_context(|| format!("invalid LLM base URL {base_url:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("invalid LLM base URL {base_url:?}: the scheme must be http or https");
    }
    Ok(base_url.trim_end_matches('/').to_owned())
}

/// Builds the system message followed by the latest turns, skipping blank ones. Staff
/// messages and earlier auto-replies both become assistant messages, because to the model they
/// are what the dealership already sent.
fn build_messages(system_prompt: String, ctx: &ReplyContext) -> Vec<ChatCompletionRequestMessage> {
    let first_kept = ctx.history.len().saturating_sub(MAX_HISTORY_TURNS);
    let mut messages = Vec::with_capacity(1 + ctx.history.len() - first_kept);
    messages.push(ChatCompletionRequestSystemMessage::from(system_prompt).into());

    for turn in &ctx.history[first_kept..] {
        let text = turn.text.trim();
        if text.is_empty() {
            continue;
        }
        let message = match turn.role {
            Role::Customer => ChatCompletionRequestUserMessage::from(text).into(),
            Role::Business => ChatCompletionRequestAssistantMessage::from(text).into(),
        };
        messages.push(message);
    }
    messages
}

/// Returns "type: message" from a body in OpenAI's error format, or the body itself when it is
/// in another format (a gateway's HTML page, for example).
fn server_error_message(body: &str) -> String {
    let Ok(parsed) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_owned();
    };
    let error = &parsed["error"];
    match (error["type"].as_str(), error["message"].as_str()) {
        (Some(error_type), Some(message)) => format!("{error_type}: {message}"),
        (None, Some(message)) => message.to_owned(),
        _ => body.to_owned(),
    }
}

/// Formats an error with its causes, because reqwest's own message omits the cause (such as
/// "connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Removes the API key from a provider message. OpenAI echoes a rejected key in a masked form
/// such as `sk-proj-abc***wxyz`, so every word starting with `sk-` is removed as well.
fn redact(message: &str, api_key: &str) -> String {
    let without_key = message.replace(api_key, "<redacted>");
    without_key
        .split(' ')
        .map(|word| {
            if word.starts_with("sk-") {
                "sk-<redacted>"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate(message: &str, max_chars: usize) -> String {
    match message.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}...", &message[..end]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
