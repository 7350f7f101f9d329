//! The producer scheduler: polls each producer plugin on its interval,
//! publishes the events it returns to the exchange with publisher confirms,
//! and commits the producer's state (its cursor, what it has seen) only
//! once every event of that poll is confirmed. A poll that fails, or whose
//! events the broker does not confirm, commits nothing: the next poll
//! starts from the same state and emits the same events, with the same ids.
//!
//! Producers hot-reload like transformers: each poll runs on the version
//! current when it starts. With the embedded bus, a poll's events are
//! applied by the transformers in-process before its state is committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lapin::Connection;
use lapin::types::{FieldTable, ShortString};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::{self, BrokerStatus, Outgoing, Publisher};
use crate::config::Config;
use crate::embedded::{self, EmbeddedBus};
use crate::headers;
use crate::plugins::bindings::ProducedEvent;
use crate::plugins::{LoadedPlugin, PluginRegistry, PluginSlot};
use crate::store::{BatchCommit, Store, now_ms};

/// Runs one poll loop per loaded producer, following the registry.
pub struct Scheduler {
    pub config: Arc<Config>,
    pub db: Store,
    pub registry: Arc<PluginRegistry>,
    pub status: Arc<BrokerStatus>,
    /// Set when events travel in-process rather than through RabbitMQ.
    pub bus: Option<Arc<EmbeddedBus>>,
}

impl Scheduler {
    pub async fn run(self, shutdown: CancellationToken) {
        // The first polls wait until the consumers' queues are declared and
        // bound (the pipeline reports the broker connected only then): an
        // event published before its queue exists would be dropped by the
        // broker, confirmed all the same.
        while self.status.get().is_err() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let mut changes = self.registry.changes();
        changes.mark_unchanged();
        let mut running: HashMap<String, (Arc<PluginSlot>, CancellationToken)> = HashMap::new();
        let mut loops = JoinSet::new();
        loop {
            let wanted: Vec<Arc<PluginSlot>> = self
                .registry
                .all()
                .into_iter()
                .filter(|s| s.current().is_producer())
                .collect();
            running.retain(|name, (slot, stop)| {
                let kept = wanted
                    .iter()
                    .any(|w| w.name == *name && Arc::ptr_eq(w, slot));
                if !kept {
                    stop.cancel();
                }
                kept
            });
            for slot in wanted {
                if running.contains_key(&slot.name) {
                    continue;
                }
                let stop = shutdown.child_token();
                let poller = Poller {
                    config: Arc::clone(&self.config),
                    db: self.db.clone(),
                    slot: Arc::clone(&slot),
                    bus: self.bus.clone(),
                    link: None,
                };
                let span = tracing::info_span!("producer", plugin = %slot.name);
                loops.spawn(poller.run(stop.clone()).instrument(span));
                running.insert(slot.name.clone(), (slot, stop));
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    changes.mark_unchanged();
                }
                Some(_) = loops.join_next() => {}
            }
        }
        for (_, stop) in running.values() {
            stop.cancel();
        }
        while loops.join_next().await.is_some() {}
    }
}

/// A connection and a confirming channel, opened on first need and dropped
/// when publishing fails (the next poll opens new ones).
struct Link {
    connection: Connection,
    publisher: Publisher,
}

/// One producer's poll loop.
struct Poller {
    config: Arc<Config>,
    db: Store,
    slot: Arc<PluginSlot>,
    bus: Option<Arc<EmbeddedBus>>,
    link: Option<Link>,
}

impl Poller {
    async fn run(mut self, stop: CancellationToken) {
        loop {
            let version = self.slot.current();
            let Some(interval) = version.poll_interval() else {
                break; // replaced by a transformer: the pipeline takes over
            };
            let started = now_ms();
            match self.poll_once(&version).await {
                Ok(published) => {
                    self.slot.counters.polls.fetch_add(1, Relaxed);
                    self.slot.counters.published.fetch_add(published, Relaxed);
                    self.slot.clear_poll_error();
                    if published > 0 {
                        tracing::info!(published, took_ms = now_ms() - started, "poll published");
                    }
                }
                Err(e) => {
                    let error = crate::telemetry::error_chain(&e);
                    tracing::warn!(%error, "poll failed; the next one starts from the same state");
                    self.slot.counters.polls.fetch_add(1, Relaxed);
                    self.slot.counters.failed_polls.fetch_add(1, Relaxed);
                    self.slot.set_poll_error(error);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        if let Some(link) = self.link.take() {
            link.publisher.close().await;
            let _ = link.connection.close(200, ShortString::from("bye")).await;
        }
    }

    /// Polls, publishes with confirms, then commits the poll's state
    /// writes; returns how many events were published.
    async fn poll_once(&mut self, version: &Arc<LoadedPlugin>) -> Result<u64> {
        let (slot, polled) = (Arc::clone(&self.slot), Arc::clone(version));
        let (events, writes) = tokio::task::spawn_blocking(move || {
            let mut instance = polled.producer().context("not a producer")?;
            instance.sync_cache(slot.state_generation());
            // A failed poll discards its own writes (`Instance::poll`).
            let events = instance.poll()?;
            Ok::<_, anyhow::Error>((events, instance.take_state_writes()))
        })
        .await
        .context("poll worker panicked")??;
        let messages = events
            .iter()
            .map(|e| self.checked(e))
            .collect::<Result<Vec<_>>>()?;
        if !messages.is_empty() {
            match &self.bus {
                Some(bus) => {
                    let bus = Arc::clone(bus);
                    let messages = messages
                        .iter()
                        .map(|(key, body)| embedded::message(key, body))
                        .collect();
                    tokio::task::spawn_blocking(move || bus.deliver(messages, None))
                        .await
                        .context("bus worker panicked")??;
                }
                None => {
                    let outgoing: Vec<Outgoing> =
                        messages.iter().map(|(k, b)| self.outgoing(k, b)).collect();
                    self.publish(&outgoing).await?;
                }
            }
        }
        if !writes.is_empty() {
            let (db, slot, version) =
                (self.db.clone(), Arc::clone(&self.slot), Arc::clone(version));
            tokio::task::spawn_blocking(move || {
                let _writer = slot.writer();
                db.blocking()
                    .commit_batch(&BatchCommit {
                        plugin: slot.name.clone(),
                        version: version.sha256.clone(),
                        state: writes.clone(),
                        ..BatchCommit::default()
                    })
                    .context("committing the producer's state")?;
                let generation = slot.state_committed();
                if let Some(mut instance) = version.producer() {
                    instance.state_committed(writes, generation);
                }
                Ok::<_, anyhow::Error>(())
            })
            .await
            .context("store worker panicked")??;
        }
        Ok(messages.len() as u64)
    }

    /// The event's routing key and body, its `eventId` the event's id.
    fn checked(&self, event: &ProducedEvent) -> Result<(String, Value)> {
        if event.id.is_empty() || event.routing_key.is_empty() {
            bail!("the plugin produced an event without an id or routing key");
        }
        let mut body = match serde_json::from_str::<Value>(&event.body) {
            Ok(Value::Object(body)) => body,
            _ => bail!("event {:?}: the body is not a JSON object", event.id),
        };
        match body.get("eventId") {
            None => {
                body.insert("eventId".into(), Value::String(event.id.clone()));
            }
            Some(Value::String(id)) if *id == event.id => {}
            Some(other) => bail!(
                "event {:?}: the body's eventId {other} differs from the event's id",
                event.id
            ),
        }
        Ok((event.routing_key.clone(), Value::Object(body)))
    }

    /// The event as the existing producers send it.
    fn outgoing(&self, routing_key: &str, body: &Value) -> Outgoing {
        let mut table = FieldTable::default();
        headers::set_text(&mut table, headers::SOURCE, self.slot.name.clone());
        Outgoing::json_event(
            &self.config.exchange,
            routing_key,
            body.to_string().into_bytes(),
            table,
        )
    }

    async fn publish(&mut self, messages: &[Outgoing]) -> Result<()> {
        if self.link.is_none() {
            let name = format!(
                "{} producer {}",
                self.config.connection_name(),
                self.slot.name
            );
            let connection = tokio::time::timeout(
                Duration::from_secs(10),
                broker::connect(self.config.amqp_url(), &name),
            )
            .await
            .context("connecting to RabbitMQ timed out")??;
            let channel = connection.create_channel().await?;
            broker::declare_exchange(&channel, &self.config.exchange).await?;
            let _ = channel.close(200, ShortString::from("declared")).await;
            let publisher = Publisher::open(&connection).await?;
            self.link = Some(Link {
                connection,
                publisher,
            });
        }
        let link = self.link.as_ref().expect("opened above");
        let published = link.publisher.publish_all(messages).await;
        if published.is_err()
            && let Some(link) = self.link.take()
        {
            let _ = link
                .connection
                .close(200, ShortString::from("failed"))
                .await;
        }
        published.context("publishing the poll's events")
    }
}
