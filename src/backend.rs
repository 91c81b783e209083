//! The service's implementation of the actors' [`Backend`]: PostgreSQL, Redis, the LLM and the
//! Graph API behind the operations the actors call.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tracing::{info, warn};
use uuid::Uuid;
use velochat_actors::backend::{
    Backend, BoxError, Commit, ConversationKey, Delivery, LoadedConversation, Queued, SenderSetup,
    StoredInbound,
};
use velochat_actors::sender::{Deliver, DeliveryOutcome, SenderConfig};

use crate::dispatch::Dispatcher;
use crate::llm::{ReplyContext, Responder, Role, Turn};
use crate::store::{self, outbox};
use crate::whatsapp::GraphClient;

/// How many lines of history an auto-reply sees.
const HISTORY_LINES: i64 = 20;

/// Everything the actors reach through the backend.
pub struct ServiceBackend {
    pub pool: PgPool,
    pub dispatcher: Dispatcher,
    pub responder: Arc<Responder>,
    pub graph: GraphClient,
    /// Pacing and retry defaults; the per-second rate comes from each number's row.
    pub sender_defaults: SenderConfig,
}

impl Backend for ServiceBackend {
    type Deliver = ServiceDeliver;

    async fn load_conversation(
        &self,
        key: ConversationKey,
    ) -> Result<LoadedConversation, BoxError> {
        let (state, keywords) = store::conversations::load(&self.pool, key).await?;
        Ok(LoadedConversation { state, keywords })
    }

    async fn load_event(
        &self,
        key: ConversationKey,
        event_id: i64,
    ) -> Result<Option<StoredInbound>, BoxError> {
        Ok(store::conversations::load_event(&self.pool, key, event_id).await?)
    }

    async fn commit(&self, key: ConversationKey, commit: Commit) -> Result<Vec<Queued>, BoxError> {
        Ok(store::conversations::commit(&self.pool, key, &commit).await?)
    }

    async fn acknowledge(&self, delivery: Delivery) {
        self.dispatcher.acknowledge(&delivery).await;
    }

    async fn generate_reply(
        &self,
        key: ConversationKey,
        for_message: Uuid,
    ) -> Result<String, BoxError> {
        let (settings, customer_name, history) =
            store::conversations::reply_context(&self.pool, key, for_message, HISTORY_LINES)
                .await?;
        let context = ReplyContext {
            tenant_name: settings.name,
            profile: settings.profile,
            prompt_template: settings.prompt_template,
            customer_name,
            history: history
                .into_iter()
                .map(|line| Turn {
                    role: if line.inbound {
                        Role::Customer
                    } else {
                        Role::Business
                    },
                    text: line.text,
                })
                .collect(),
        };
        Ok(self.responder.reply(&context).await?)
    }

    async fn unprocessed_events(&self, key: ConversationKey) -> Result<Vec<i64>, BoxError> {
        Ok(store::conversations::unprocessed_events(&self.pool, key).await?)
    }

    async fn sender_setup(
        &self,
        phone_number_id: &str,
    ) -> Result<SenderSetup<ServiceDeliver>, BoxError> {
        let number = store::tenants::number_settings(&self.pool, phone_number_id)
            .await?
            .ok_or_else(|| format!("WhatsApp number {phone_number_id} is not registered"))?;
        let mut config = self.sender_defaults.clone();
        config.per_second =
            NonZeroU32::new(number.messages_per_second as u32).unwrap_or(config.per_second);
        let deliver = ServiceDeliver {
            pool: self.pool.clone(),
            graph: self.graph.clone(),
            tenant_id: number.tenant_id,
            phone_number_id: number.phone_number_id,
            access_token: number.access_token,
            max_attempts: config.max_attempts,
            backoff_base: config.backoff_base,
            backoff_max: config.backoff_max,
        };
        Ok(SenderSetup {
            deliver: Arc::new(deliver),
            config,
        })
    }
}

/// Sends outbox rows of one business number through the Graph API.
pub struct ServiceDeliver {
    pool: PgPool,
    graph: GraphClient,
    tenant_id: Uuid,
    phone_number_id: String,
    access_token: String,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl Deliver for ServiceDeliver {
    async fn deliver(&self, outbox_id: Uuid) -> DeliveryOutcome {
        match self.try_deliver(outbox_id).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // A storage failure before the call leaves the row queued; after a successful call
                // it leaves the row sending, which the confirm window resolves.
                warn!(outbox_id = %outbox_id, error = format!("{error:#}"), "send bookkeeping failed");
                DeliveryOutcome::Uncertain
            }
        }
    }
}

impl ServiceDeliver {
    async fn try_deliver(&self, outbox_id: Uuid) -> anyhow::Result<DeliveryOutcome> {
        let claimed = match outbox::claim(&self.pool, self.tenant_id, outbox_id).await {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(outbox::NotClaimed::NotQueued)) => return Ok(DeliveryOutcome::Skipped),
            Ok(Err(outbox::NotClaimed::Cancelled(reason))) => {
                info!(outbox_id = %outbox_id, reason, "outbound message cancelled at send time");
                return Ok(DeliveryOutcome::Skipped);
            }
            Err(error) => {
                warn!(outbox_id = %outbox_id, error = format!("{error:#}"), "could not claim outbox row");
                return Ok(DeliveryOutcome::Retry { code: None });
            }
        };

        let callback = outbox::callback_data(outbox_id);
        let result = match &claimed.template {
            Some(template) => {
                self.graph
                    .send_template(
                        &self.phone_number_id,
                        &self.access_token,
                        &claimed.recipient,
                        template,
                        &callback,
                    )
                    .await
            }
            None => {
                self.graph
                    .send_text(
                        &self.phone_number_id,
                        &self.access_token,
                        &claimed.recipient,
                        &claimed.body,
                        &callback,
                    )
                    .await
            }
        };

        match result {
            Ok(sent) => {
                outbox::record_sent(&self.pool, self.tenant_id, outbox_id, &sent.wamid).await?;
                info!(outbox_id = %outbox_id, wamid = sent.wamid, "message accepted by Meta");
                Ok(DeliveryOutcome::Sent)
            }
            Err(error) if error.may_have_been_accepted() => {
                warn!(outbox_id = %outbox_id, %error, "send outcome unknown; waiting for a status webhook");
                Ok(DeliveryOutcome::Uncertain)
            }
            Err(error) if error.is_retriable() && (claimed.attempts as u32) < self.max_attempts => {
                let delay = self.retry_delay(claimed.attempts as u32);
                let message = error.to_string();
                outbox::record_retry(
                    &self.pool,
                    self.tenant_id,
                    outbox_id,
                    error.code(),
                    &message,
                    delay,
                )
                .await?;
                Ok(DeliveryOutcome::Retry { code: error.code() })
            }
            Err(error) => {
                let message = if error.is_retriable() {
                    format!("gave up after {} attempts: {error}", claimed.attempts)
                } else {
                    error.to_string()
                };
                outbox::record_failed(
                    &self.pool,
                    self.tenant_id,
                    outbox_id,
                    error.code(),
                    &message,
                )
                .await?;
                warn!(outbox_id = %outbox_id, code = error.code(), error = message, "send failed permanently");
                Ok(DeliveryOutcome::Failed { code: error.code() })
            }
        }
    }

    /// When the recovery sweep may pick the row up again if this process stops before retrying.
    fn retry_delay(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}
