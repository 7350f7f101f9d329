//! The embedded bus: with no broker, events travel inside the process.
//!
//! [`EmbeddedBus::deliver`] routes events to every transformer subscribed
//! to their routing keys (the same AMQP topic matching), applies them with
//! the same deduplication, hop limit and batch commit as the broker path,
//! and routes what the plugins publish in turn. It returns only once all of
//! that is committed, so a producer commits its own state after the
//! transformers' outputs: a crash in between re-polls the same events,
//! which are recognised by their ids. Dead letters are kept in the store.
//! A transient failure (`retry`) is returned to the caller, which tries
//! again later (a producer on its next poll).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::batch::{self, Outcome};
use crate::config::Config;
use crate::plugins::PluginRegistry;
use crate::store::{OutboxEntry, Store, StoreHealth, StoredDeadLetter, now_ms};
use crate::topic;

/// How often events that plugins published from API writes are routed.
const OUTBOX_EVERY: Duration = Duration::from_millis(500);

/// One event on the bus.
#[derive(Debug, Clone)]
pub struct Message {
    pub routing_key: String,
    pub body: Vec<u8>,
    /// How many plugins published it in turn.
    pub hops: u32,
}

/// An event a plugin published, on its way to the next plugins.
impl From<OutboxEntry> for Message {
    fn from(e: OutboxEntry) -> Self {
        Self {
            routing_key: e.routing_key,
            body: e.body.into_bytes(),
            hops: e.hops,
        }
    }
}

/// What became of a delivery.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub applied: u64,
    pub dead_lettered: u64,
}

/// The in-process bus.
pub struct EmbeddedBus {
    pub config: Arc<Config>,
    pub db: Store,
    pub store_health: Arc<StoreHealth>,
    pub registry: Arc<PluginRegistry>,
}

impl EmbeddedBus {
    /// Routes `messages` (and what the plugins publish because of them) to
    /// the subscribed transformers (to `only` that plugin, for a replay)
    /// and applies them. `Err` when a plugin asked to retry or the store
    /// failed: what was applied stays applied, and delivering the same
    /// messages again is harmless. Blocking.
    pub fn deliver(&self, messages: Vec<Message>, only: Option<&str>) -> Result<Delivered> {
        let mut delivered = Delivered::default();
        let mut round = messages;
        let mut retry = None;
        while !round.is_empty() {
            let mut next = Vec::new();
            for slot in self.registry.all() {
                let version = slot.current();
                if version.is_producer() || only.is_some_and(|o| o != slot.name) {
                    continue;
                }
                let mine: Vec<&Message> = round
                    .iter()
                    .filter(|m| {
                        version
                            .info
                            .subscriptions
                            .iter()
                            .any(|b| topic::matches(b, &m.routing_key))
                    })
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let now = now_ms() as u64;
                let admitted: Vec<_> = mine
                    .iter()
                    .map(|m| {
                        batch::admit(&m.routing_key, &m.body, m.hops, self.config.max_hops, now)
                    })
                    .collect();
                let processed = match batch::process(&slot, &version, &self.db, &admitted) {
                    Ok(processed) => {
                        self.store_health.answered();
                        processed
                    }
                    Err(e) => {
                        self.store_health.failed(&e);
                        return Err(e.into());
                    }
                };
                let db = self.db.blocking();
                let mut dead = Vec::new();
                for (message, outcome) in mine.into_iter().zip(processed.outcomes) {
                    match outcome {
                        Outcome::Applied => delivered.applied += 1,
                        Outcome::Duplicate => {}
                        Outcome::DeadLetter(reason) => dead.push((message, reason)),
                        Outcome::Retry(reason) => retry = Some(reason),
                    }
                }
                let outbox = processed.outbox;
                if !dead.is_empty() {
                    delivered.dead_lettered += dead.len() as u64;
                    let letters: Vec<StoredDeadLetter> = dead
                        .into_iter()
                        .map(|(m, reason)| {
                            tracing::warn!(plugin = %slot.name, %reason, "event dead-lettered");
                            StoredDeadLetter {
                                seq: 0,
                                plugin: slot.name.clone(),
                                routing_key: m.routing_key.clone(),
                                body: m.body.clone(),
                                reason,
                                version: version.sha256.clone(),
                                failed_ms: now_ms(),
                            }
                        })
                        .collect();
                    db.add_dead_letters(&letters)?;
                }
                let seqs: Vec<i64> = outbox.iter().map(|e| e.seq).collect();
                next.extend(outbox.into_iter().map(Message::from));
                // Routed in the next round: a crash before it leaves them in
                // the outbox, routed again at the next start.
                if !seqs.is_empty() {
                    db.outbox_done(&seqs)?;
                }
            }
            round = next;
        }
        if let Some(reason) = retry {
            bail!("a plugin asked to try again later: {reason}");
        }
        Ok(delivered)
    }

    /// Routes the events plugins published that are still in the outbox
    /// (left by a crash, or written by an API request). Blocking.
    pub fn flush_outboxes(&self) -> Result<()> {
        let db = self.db.blocking();
        for slot in self.registry.all() {
            let pending = db.pending_outbox(&slot.name)?;
            if pending.is_empty() {
                continue;
            }
            let seqs: Vec<i64> = pending.iter().map(|e| e.seq).collect();
            let messages = pending.into_iter().map(Message::from).collect();
            self.deliver(messages, None)?;
            db.outbox_done(&seqs)?;
        }
        Ok(())
    }

    /// Hands a plugin's stored dead letters to its current version again;
    /// returns how many. Blocking.
    pub fn replay(&self, plugin: &str) -> Result<u64> {
        let db = self.db.blocking();
        let (letters, _) = db.dead_letters(plugin, u32::MAX)?;
        let seqs: Vec<i64> = letters.iter().map(|l| l.seq).collect();
        let messages = letters
            .into_iter()
            .map(|l| Message {
                routing_key: l.routing_key,
                body: l.body,
                hops: 0,
            })
            .collect();
        // Those that fail again are stored again, as new dead letters; the
        // old ones go once the replay is done, so a crash in between loses
        // none (it may leave a copy, replayed harmlessly: ids are known).
        self.deliver(messages, Some(plugin))?;
        db.remove_dead_letters(&seqs)?;
        Ok(seqs.len() as u64)
    }

    /// Routes outboxes every [`OUTBOX_EVERY`] until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(OUTBOX_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let bus = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || bus.flush_outboxes()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %crate::telemetry::error_chain(&e), "routing published events failed; retrying")
                }
                Err(e) => tracing::error!(error = %e, "outbox worker panicked"),
            }
        }
    }
}

/// A producer's event as the bus carries it.
pub fn message(routing_key: &str, body: &Value) -> Message {
    Message {
        routing_key: routing_key.to_owned(),
        body: body.to_string().into_bytes(),
        hops: 0,
    }
}
