//! A plugin's dead letters: reading them without taking them (the oldest,
//! or a bounded search for one event's), and replaying
//! them through the plugin's current version (so that a fixed plugin can
//! repair what its predecessor rejected). Used by `switchyard dlq` and the
//! admin API.

use anyhow::{Context, Result};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use serde::Serialize;

use crate::broker::{Outgoing, Publisher};
use crate::config::Config;
use crate::headers;
pub use crate::store::dead_letters::event_id_of;
use crate::store::{StoredDeadLetter, now_ms};

/// Dead letters sent back per broker round trip.
const REPLAY_CHUNK: usize = 200;

/// One lock per plugin's dead-letter queue, held by whoever reads it in
/// this process. Listing and searching hold the messages they look at
/// unacknowledged until they close their channel: a replay running
/// meanwhile would find them gone (the console lists while a user
/// replays). Other processes (`switchyard dlq`, other hosts) are not
/// kept out by it.
async fn queue_lock(plugin: &str) -> tokio::sync::OwnedMutexGuard<()> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let lock = LOCKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(plugin.to_owned())
        .or_default()
        .clone();
    lock.lock_owned().await
}

/// One dead letter, as `switchyard dlq list` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub routing_key: String,
    pub event_id: Option<String>,
    pub reason: Option<String>,
    pub attempts: Option<i64>,
    pub plugin_version: Option<String>,
    pub failed_at_ms: Option<i64>,
    pub first_failed_at_ms: Option<i64>,
    /// The original body (lossy UTF-8).
    pub body: String,
}

impl From<StoredDeadLetter> for DeadLetter {
    /// A dead letter the embedded bus kept in the store (it failed once).
    fn from(l: StoredDeadLetter) -> Self {
        Self {
            routing_key: l.routing_key,
            event_id: event_id_of(&l.body),
            reason: Some(l.reason),
            attempts: Some(1),
            plugin_version: Some(l.version),
            failed_at_ms: Some(l.failed_ms),
            first_failed_at_ms: Some(l.failed_ms),
            body: String::from_utf8_lossy(&l.body).into_owned(),
        }
    }
}

/// How many messages a plugin's dead-letter queue holds now.
async fn depth(channel: &Channel, config: &Config, plugin: &str) -> Result<u32> {
    let dlq = config.dead_letter_queue(plugin);
    let queue = channel
        .queue_declare(
            ShortString::from(dlq.as_str()),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("no dead-letter queue {dlq:?}: is {plugin:?} a plugin here?"))?;
    Ok(queue.message_count())
}

/// The next message of `queue`, unacknowledged (it goes back to the queue
/// unless acknowledged before the channel closes).
async fn take(channel: &Channel, queue: &str) -> Result<Option<lapin::message::Delivery>> {
    let got = channel
        .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: false })
        .await
        .context("reading the dead-letter queue")?;
    Ok(got.map(|message| message.delivery))
}

/// Up to `limit` dead letters of `plugin`, oldest first, left in the queue.
/// Returns them and how many the queue holds in all.
pub async fn list(
    connection: &Connection,
    config: &Config,
    plugin: &str,
    limit: usize,
) -> Result<(Vec<DeadLetter>, u32)> {
    let _reading = queue_lock(plugin).await;
    let channel = connection.create_channel().await?;
    let total = depth(&channel, config, plugin).await?;
    let dlq = config.dead_letter_queue(plugin);
    let mut letters = Vec::new();
    while letters.len() < limit.min(total as usize) {
        let Some(d) = take(&channel, &dlq).await? else {
            break;
        };
        letters.push(letter_of(&d));
    }
    // Closing the channel returns every unacknowledged message to the
    // queue, in its place.
    let _ = channel.close(200, ShortString::from("listed")).await;
    Ok((letters, total))
}

fn letter_of(d: &lapin::message::Delivery) -> DeadLetter {
    let table = d.properties.headers().as_ref();
    DeadLetter {
        routing_key: d.routing_key.to_string(),
        event_id: event_id_of(&d.data),
        reason: headers::text(table, headers::REASON),
        attempts: headers::int(table, headers::ATTEMPTS),
        plugin_version: headers::text(table, headers::PLUGIN_VERSION),
        failed_at_ms: headers::int(table, headers::FAILED_AT_MS),
        first_failed_at_ms: headers::int(table, headers::FIRST_FAILED_AT_MS),
        body: String::from_utf8_lossy(&d.data).into_owned(),
    }
}

/// What a bounded search of a dead-letter queue found.
#[derive(Debug, Clone)]
pub struct Search {
    /// The dead letters of the event, oldest first.
    pub found: Vec<DeadLetter>,
    /// How many messages were looked at, from the oldest.
    pub searched: u32,
    /// How many the queue held when the search began.
    pub total: u32,
}

impl Search {
    /// Whether every message the queue held was looked at.
    pub fn complete(&self) -> bool {
        self.searched >= self.total
    }
}

/// The dead letters of `event_id` among the oldest `limit` messages of
/// `plugin`'s dead-letter queue, looked at for no longer than `time`; every
/// message is left in the queue, in its place. A queue of a million
/// messages is searched only in part: [`Search::complete`] says so.
pub async fn find(
    connection: &Connection,
    config: &Config,
    plugin: &str,
    event_id: &str,
    limit: u32,
    time: std::time::Duration,
) -> Result<Search> {
    let until = tokio::time::Instant::now() + time;
    let _reading = queue_lock(plugin).await;
    let channel = connection.create_channel().await?;
    let total = depth(&channel, config, plugin).await?;
    let dlq = config.dead_letter_queue(plugin);
    let mut search = Search {
        found: Vec::new(),
        searched: 0,
        total,
    };
    while search.searched < limit.min(total) && tokio::time::Instant::now() < until {
        let Some(d) = take(&channel, &dlq).await? else {
            break;
        };
        search.searched += 1;
        if event_id_of(&d.data).as_deref() == Some(event_id) {
            search.found.push(letter_of(&d));
        }
    }
    // Closing the channel returns every message taken, in its place.
    let _ = channel.close(200, ShortString::from("searched")).await;
    Ok(search)
}

/// Sends every message now in `plugin`'s dead-letter queue back to the
/// plugin's queue, without its diagnosis headers (so it gets a full set of
/// attempts) and with its original routing key. Each is removed from the
/// dead-letter queue only once the broker confirmed its copy. Messages
/// that fail again while the replay runs are not replayed twice. Returns
/// how many were replayed.
pub async fn replay(connection: &Connection, config: &Config, plugin: &str) -> Result<u32> {
    let _reading = queue_lock(plugin).await;
    let channel = connection.create_channel().await?;
    let publisher = Publisher::open(connection).await?;
    let total = depth(&channel, config, plugin).await?;
    let dlq = config.dead_letter_queue(plugin);
    let queue = config.queue_name(plugin);
    let mut replayed = 0;
    while replayed < total {
        // A chunk at a time: published together, confirmed, then removed
        // from the dead-letter queue with one acknowledgement.
        let mut copies = Vec::new();
        let mut last_tag = None;
        while copies.len() < REPLAY_CHUNK && replayed + (copies.len() as u32) < total {
            let Some(d) = take(&channel, &dlq).await? else {
                break;
            };
            let received = d.properties.headers().clone().unwrap_or_default();
            let mut table = headers::without(&received, &headers::DIAGNOSIS);
            let routing_key = headers::text(Some(&received), headers::ROUTING_KEY)
                .unwrap_or_else(|| d.routing_key.to_string());
            headers::set_text(&mut table, headers::ROUTING_KEY, routing_key);
            headers::set_int(&mut table, headers::REPLAYED_AT_MS, now_ms());
            copies.push(Outgoing {
                exchange: String::new(),
                routing_key: queue.clone(),
                body: d.data,
                properties: d.properties.with_headers(table),
            });
            last_tag = Some(d.delivery_tag);
        }
        let Some(last_tag) = last_tag else { break };
        publisher
            .publish_all(&copies)
            .await
            .context("sending dead letters back to the plugin's queue")?;
        channel
            .basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await
            .context("removing replayed dead letters")?;
        replayed += copies.len() as u32;
    }
    publisher.close().await;
    let _ = channel.close(200, ShortString::from("replayed")).await;
    tracing::info!(plugin, replayed, "dead letters replayed");
    Ok(replayed)
}
