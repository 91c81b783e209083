//! AI auto-replies to customer messages.
//!
//! A [`Responder`] either calls an OpenAI-compatible chat completions API with a system prompt
//! rendered from the dealership's profile ([`prompt`]), or, when no API key is configured,
//! answers from keyword rules over the same profile ([`OfflineResponder`]). Both state facts
//! only from the profile and hand complaints, refunds and discount requests to a person.

mod offline;
mod openai;
mod profile;
pub mod prompt;

#[cfg(test)]
#[path = "../tests/it/support/mock_llm.rs"]
mod mock_llm;

use std::time::Duration;

pub use offline::OfflineResponder;
pub use openai::OpenAiResponder;
pub use profile::{DealershipProfile, VehicleModel};

/// Input for one auto-reply.
#[derive(Debug, Clone)]
pub struct ReplyContext {
    pub tenant_name: String,
    /// Dealership facts as configured by the tenant. [`DealershipProfile`] documents the
    /// fields. Unknown fields are kept so that a tenant's own prompt template can use them.
    pub profile: serde_json::Value,
    /// The tenant's minijinja template for the system prompt, used in place of the default.
    pub prompt_template: Option<String>,
    /// The customer's WhatsApp profile name, when known.
    pub customer_name: Option<String>,
    /// Conversation turns, oldest first. The last turn is the customer message to answer.
    pub history: Vec<Turn>,
}

impl ReplyContext {
    /// Returns the text of the customer message to answer, or `None` when the history does
    /// not end with a non-blank customer turn.
    pub fn customer_message(&self) -> Option<&str> {
        let last = self.history.last()?;
        if last.role != Role::Customer || last.text.trim().is_empty() {
            return None;
        }
        Some(&last.text)
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

/// Author of a [`Turn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Customer,
    /// The dealership: its staff or an earlier automated reply.
    Business,
}

/// Reasons an auto-reply could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("LLM request timed out after {0:?}")]
    Timeout(Duration),

    /// An HTTP, API or response-format failure. The message never contains the API key.
    #[error("LLM provider request failed: {0}")]
    Provider(String),

    #[error("LLM returned an empty reply")]
    EmptyReply,

    /// The prompt template failed to compile or render, or rendered to blank text.
    #[error("failed to render the auto-reply prompt template: {0}")]
    Template(minijinja::Error),

    #[error("the conversation history does not end with a customer message")]
    NoCustomerMessage,
}

impl From<minijinja::Error> for ReplyError {
    fn from(error: minijinja::Error) -> Self {
        ReplyError::Template(error)
    }
}

/// The auto-reply backend chosen at startup.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a process builds one Responder, so boxing would save nothing"
)]
pub enum Responder {
    OpenAi(OpenAiResponder),
    Offline(OfflineResponder),
}

impl Responder {
    /// Builds the OpenAI responder when an API key is configured, and the offline keyword
    /// responder otherwise. A blank key counts as no key.
    ///
    /// Fails when the key is present but the model is empty, the base URL is not an http(s)
    /// URL or the timeout is zero.
    pub fn from_settings(
        api_key: Option<&str>,
        base_url: Option<&str>,
        model: &str,
        timeout: Duration,
    ) -> anyhow::Result<Responder> {
        let Some(api_key) = api_key.map(str::trim).filter(|key| !key.is_empty()) else {
            if base_url.is_some() {
                tracing::warn!(
                    "an LLM base URL is configured without an API key; \
                     auto-replies use the offline keyword rules"
                );
            } else {
                tracing::info!("no LLM API key configured; auto-replies use the offline rules");
            }
            return Ok(Responder::Offline(OfflineResponder::new()));
        };

        let responder = OpenAiResponder::new(api_key, base_url, model, timeout)?;
        tracing::info!(
            model,
            api_base = responder.api_base(),
            timeout_ms = timeout.as_millis() as u64,
            "auto-replies use the OpenAI chat completions API"
        );
        Ok(Responder::OpenAi(responder))
    }

    /// Produces the reply to the last customer message of `ctx`.
    pub async fn reply(&self, ctx: &ReplyContext) -> Result<String, ReplyError> {
        match self {
            Responder::OpenAi(responder) => responder.reply(ctx).await,
            Responder::Offline(responder) => responder.reply(ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(history: Vec<Turn>) -> ReplyContext {
        ReplyContext {
            tenant_name: "Sai Motors".to_owned(),
            profile: serde_json::json!({}),
            prompt_template: None,
            customer_name: None,
            history,
        }
    }

    fn turn(role: Role, text: &str) -> Turn {
        Turn {
            role,
            text: text.to_owned(),
        }
    }

    #[test]
    fn from_settings_without_key_is_offline() {
        let timeout = Duration::from_secs(5);
        for key in [None, Some(""), Some("   ")] {
            let responder = Responder::from_settings(key, None, "gpt-4o-mini", timeout).unwrap();
            assert!(matches!(responder, Responder::Offline(_)), "key {key:?}");
        }
    }

    #[test]
    fn from_settings_with_key_is_openai() {
        let responder = Responder::from_settings(
            Some("sk-test-123"),
            Some("http://127.0.0.1:9/v1"),
            "gpt-4o-mini",
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(matches!(responder, Responder::OpenAi(_)));
    }

    #[test]
    fn from_settings_rejects_bad_settings() {
        let timeout = Duration::from_secs(5);
        let key = Some("sk-test-123");
        assert!(Responder::from_settings(key, Some("not a url"), "gpt-4o-mini", timeout).is_err());
        assert!(Responder::from_settings(key, Some("ftp://127.0.0.1/v1"), "m", timeout).is_err());
        assert!(Responder::from_settings(key, None, " ", timeout).is_err());
        assert!(Responder::from_settings(key, None, "m", Duration::ZERO).is_err());
    }

    #[test]
    fn customer_message_is_last_customer_turn() {
        let ctx = context(vec![
            turn(Role::Customer, "Hi"),
            turn(Role::Business, "Namaste!"),
            turn(Role::Customer, "Jupiter kitne ka hai?"),
        ]);
        assert_eq!(ctx.customer_message(), Some("Jupiter kitne ka hai?"));
    }

    #[test]
    fn customer_message_missing_cases() {
        let cases = [
            vec![],
            vec![turn(Role::Customer, "Hi"), turn(Role::Business, "Namaste!")],
            vec![turn(Role::Customer, "  \n")],
        ];
        for history in cases {
            let ctx = context(history.clone());
            assert_eq!(ctx.customer_message(), None, "history {history:?}");
        }
    }

    #[tokio::test]
    async fn reply_without_customer_message_fails() {
        let responder = Responder::Offline(OfflineResponder::new());
        let ctx = context(vec![turn(Role::Business, "Namaste!")]);
        let result = responder.reply(&ctx).await;
        assert!(matches!(result, Err(ReplyError::NoCustomerMessage)));
    }
}
