//! Dispatch of stored events to conversation actors through Redis Streams.
//!
//! Conversations map to a fixed number of virtual shards through a stable, versioned hash. Each
//! shard has its own stream, read by one consumer named after the shard, so that entries pending
//! when a node stops are read again by the shard's next owner. An entry is acknowledged only
//! after its effects are committed in PostgreSQL. Redis is a dispatch path, not the record: the
//! recovery sweep re-dispatches stored events that Redis lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use ractor::ActorRef;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;
use velochat_actors::backend::{ConversationKey, Delivery, Dispatch};
use velochat_actors::supervisor::SupervisorMsg;

use crate::store::inbound::NewEvent;

/// The consumer group every shard stream is read through.
const GROUP: &str = "velochat";
/// Approximate number of entries a shard stream keeps; acknowledged entries beyond it are trimmed.
const STREAM_MAX_LEN: usize = 100_000;
const READ_BLOCK: Duration = Duration::from_secs(2);
const READ_COUNT: usize = 100;
/// Reader failures since start-up, across all shards and engines in the process.
static READER_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Maps a conversation to its shard. Version 1: the first eight bytes of SHA-256 over
/// `v1:<conversation id>`, modulo the shard count. Changing it moves conversations between
/// shards, so a new scheme needs a new version prefix and a migration of pending entries.
pub fn shard_of(conversation_id: Uuid, shards: u32) -> u32 {
    let digest = Sha256::digest(format!("v1:{conversation_id}").as_bytes());
    let head = u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"));
    (head % u64::from(shards)) as u32
}

/// Publishes events to shard streams and acknowledges them.
#[derive(Clone)]
pub struct Dispatcher {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
    shards: u32,
}

impl Dispatcher {
    /// Connects to Redis, failing fast with the address when it cannot be reached.
    pub async fn connect(redis_url: &str, prefix: &str, shards: u32) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(redis_url).context("REDIS_URL is not a valid Redis URL")?;
        // A plain connection and PING first, because the connection manager reports only a
        // timeout where this reports the cause (refused, wrong password, unknown database).
        let described = crate::store::describe_url(redis_url);
        let mut probe = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| anyhow::anyhow!("could not connect to Redis at {described}: timed out"))?
        .with_context(|| format!("could not connect to Redis at {described}"))?;
        redis::cmd("PING")
            .query_async::<String>(&mut probe)
            .await
            .with_context(|| format!("Redis at {described} did not answer PING"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(3))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(2);
        let connection = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|result| result.map_err(anyhow::Error::from))
        .with_context(|| {
            format!(
                "could not connect to Redis at {}",
                crate::store::describe_url(redis_url)
            )
        })?;
        Ok(Self {
            client,
            connection,
            prefix: prefix.to_string(),
            shards,
        })
    }

    fn stream_key(&self, shard: u32) -> String {
        format!("{}:events:{shard}", self.prefix)
    }

    /// Adds events to their shard streams in one round trip.
    pub async fn publish(&self, events: &[NewEvent]) -> redis::RedisResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for event in events {
            let key = self.stream_key(shard_of(event.conversation_id, self.shards));
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*")
                .arg("tenant")
                .arg(event.tenant_id.to_string())
                .arg("conversation")
                .arg(event.conversation_id.to_string())
                .arg("event")
                .arg(event.event_id)
                .ignore();
        }
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection).await
    }

    /// Acknowledges a processed entry.
    pub async fn acknowledge(&self, delivery: &Delivery) {
        let mut connection = self.connection.clone();
        let key = self.stream_key(delivery.shard);
        let result: redis::RedisResult<i64> =
            connection.xack(&key, GROUP, &[&delivery.entry_id]).await;
        if let Err(error) = result {
            // The entry stays pending and is read again later; its event is already processed,
            // so that only costs a lookup.
            warn!(shard = delivery.shard, entry_id = delivery.entry_id, %error, "could not acknowledge stream entry");
        }
    }

    /// Returns whether Redis responds to PING.
    pub async fn ping(&self) -> bool {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .is_ok()
    }

    /// Starts one reader per shard, each routing entries to the supervisor until `stop` fires.
    pub fn spawn_readers(
        &self,
        supervisor: ActorRef<SupervisorMsg>,
        stop: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) {
        for shard in 0..self.shards {
            let reader = ShardReader {
                client: self.client.clone(),
                key: self.stream_key(shard),
                shard,
                supervisor: supervisor.clone(),
            };
            let stop = stop.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = reader.run() => {}
                }
            });
        }
    }
}

struct ShardReader {
    client: redis::Client,
    key: String,
    shard: u32,
    supervisor: ActorRef<SupervisorMsg>,
}

impl ShardReader {
    /// Reads the shard forever, reconnecting after errors.
    async fn run(self) {
        let mut failures = 0u32;
        loop {
            match self.read_until_error().await {
                Ok(()) => return,
                Err(error) => {
                    failures += 1;
                    // All readers fail together when Redis is down, so the count is shared: the
                    // first failure is logged, then every 500th across all shards.
                    let total = READER_FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
                    if total == 1 || total % 500 == 0 {
                        warn!(shard = self.shard, %error, failures_so_far = total, "stream readers failing; reconnecting");
                    }
                    tokio::time::sleep(
                        Duration::from_secs(1).min(Duration::from_millis(100) * failures),
                    )
                    .await;
                }
            }
        }
    }

    async fn read_until_error(&self) -> anyhow::Result<()> {
        // Each reader blocks on its own connection, so one shard's wait never delays another's.
        let mut connection: MultiplexedConnection =
            self.client.get_multiplexed_async_connection().await?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        if let Err(error) = created {
            if error.code() != Some("BUSYGROUP") {
                return Err(error.into());
            }
        }

        let consumer = format!("shard-{}", self.shard);
        // First the entries this shard's consumer read before a stop and never acknowledged,
        // then new ones.
        let mut cursor = "0".to_string();
        loop {
            let mut options = StreamReadOptions::default()
                .group(GROUP, &consumer)
                .count(READ_COUNT);
            if cursor == ">" {
                options = options.block(READ_BLOCK.as_millis() as usize);
            }
            let reply: Option<StreamReadReply> = connection
                .xread_options(&[&self.key], &[&cursor], &options)
                .await?;
            let entries = reply
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
                .unwrap_or_default();

            if cursor != ">" && entries.is_empty() {
                cursor = ">".to_string();
                continue;
            }
            for entry in &entries {
                if cursor != ">" {
                    cursor = entry.id.clone();
                }
                match parse_entry(entry) {
                    Some(key_and_event) => {
                        let (key, event_id) = key_and_event;
                        let delivery = Delivery {
                            shard: self.shard,
                            entry_id: entry.id.clone(),
                        };
                        let dispatch = Dispatch {
                            key,
                            event_id,
                            delivery: Some(delivery),
                        };
                        self.supervisor
                            .cast(SupervisorMsg::Dispatch(dispatch))
                            .context("supervisor stopped")?;
                    }
                    None => {
                        warn!(
                            shard = self.shard,
                            entry_id = entry.id,
                            "dropping malformed stream entry"
                        );
                        let _: i64 = connection.xack(&self.key, GROUP, &[&entry.id]).await?;
                    }
                }
            }
            debug!(
                shard = self.shard,
                count = entries.len(),
                "dispatched stream entries"
            );
        }
    }
}

fn parse_entry(entry: &redis::streams::StreamId) -> Option<(ConversationKey, i64)> {
    let tenant_id: String = entry.get("tenant")?;
    let conversation_id: String = entry.get("conversation")?;
    let event_id: i64 = entry.get("event")?;
    let key = ConversationKey {
        tenant_id: Uuid::parse_str(&tenant_id).ok()?,
        conversation_id: Uuid::parse_str(&conversation_id).ok()?,
    };
    Some((key, event_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_hash_is_stable() {
        let id = Uuid::parse_str("0192f5e4-0000-7000-8000-000000000001").unwrap();
        assert_eq!(shard_of(id, 256), shard_of(id, 256));
        assert!(shard_of(id, 256) < 256);
        // Pinned so that an accidental change of the scheme fails here.
        assert_eq!(shard_of(Uuid::nil(), 256), PINNED_NIL_SHARD);
    }

    const PINNED_NIL_SHARD: u32 = 206;
}
