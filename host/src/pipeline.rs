//! The broker side of the path of an event: [`Pipeline`] owns the
//! connections, one consumer per loaded plugin (started, stopped and
//! re-bound as plugins come, change and go) and reconnects. Each consumer
//! takes batches of deliveries, has the batch core decide their outcomes
//! ([`crate::batch`]) and settles them: the events the commit promised are
//! published with confirms, then the dead letters and retries are published
//! and the batch acknowledged in ONE AMQP transaction, so that a crash
//! never leaves a delivery both dead-lettered and unacknowledged (which
//! would dead-letter it twice).
//!
//! A store that fails is waited out: the batch is held, unacknowledged, no
//! more deliveries are taken, and it runs again once the store answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::{self, Outcome, Processed};
use crate::broker::{self, BrokerStatus, ConnectionWatch, Outgoing, Publisher};
use crate::config::{Config, redact_url};
use crate::headers;
use crate::plugins::{LoadedPlugin, PluginRegistry, PluginSlot};
use crate::store::{OutboxEntry, Store, StoreError, StoreHealth, now_ms};

/// Longest pause between two runs of a batch held by a store outage.
const OUTAGE_RETRY_MAX: Duration = Duration::from_secs(5);

/// The routing key the event was published with: a retry or a replay
/// reaches the plugin's queue directly and carries it in a header.
pub fn routing_key_of(delivery: &Delivery) -> String {
    headers::text(delivery.properties.headers().as_ref(), headers::ROUTING_KEY)
        .unwrap_or_else(|| delivery.routing_key.to_string())
}

/// How many times the plugin failed this delivery before.
fn attempts_before(delivery: &Delivery) -> u32 {
    headers::int(delivery.properties.headers().as_ref(), headers::ATTEMPTS)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// Admits a batch of deliveries and processes it with the plugin's
/// `version` ([`batch::process`]). Blocking.
fn process_deliveries(
    slot: &PluginSlot,
    version: &LoadedPlugin,
    db: &Store,
    deliveries: &[Delivery],
    max_hops: u32,
) -> Result<Processed, StoreError> {
    let received = now_ms() as u64;
    let admitted: Vec<_> = deliveries
        .iter()
        .map(|d| {
            let hops = headers::int(d.properties.headers().as_ref(), headers::HOPS).unwrap_or(0);
            let hops = u32::try_from(hops).unwrap_or(0);
            batch::admit(&routing_key_of(d), &d.data, hops, max_hops, received)
        })
        .collect();
    batch::process(slot, version, db, &admitted)
}

/// Runs one consumer per loaded plugin against the broker, following the
/// registry as plugins are loaded, replaced and unloaded, and reconnecting
/// with capped exponential backoff, until `shutdown`.
pub struct Pipeline {
    pub config: Arc<Config>,
    pub db: Store,
    pub store_health: Arc<StoreHealth>,
    pub registry: Arc<PluginRegistry>,
    pub status: Arc<BrokerStatus>,
}

/// A consumer the session started, and the bindings its queue has.
struct Running {
    slot: Arc<PluginSlot>,
    stop: CancellationToken,
    bound: Vec<String>,
}

impl Pipeline {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        while !shutdown.is_cancelled() {
            let started = tokio::time::Instant::now();
            let result = self.session(&shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            let reason = match result {
                Ok(()) => "connection closed".to_owned(),
                Err(e) => crate::telemetry::error_chain(&e),
            };
            self.status.disconnected(reason.clone());
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(250);
            }
            tracing::warn!(error = %reason, retry_in_ms = backoff.as_millis() as u64, "broker unavailable");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        self.status.disconnected("shutting down".into());
    }

    /// One connection's life: declare, consume, follow plugin changes, and
    /// return when it breaks (`Err`) or on shutdown (`Ok`, after in-flight
    /// batches are settled).
    async fn session(&self, shutdown: &CancellationToken) -> Result<()> {
        let name = self.config.connection_name();
        let connection = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            connected = broker::connect(&self.config, &name) => Arc::new(connected?),
        };
        // Blocked publishing shows in `/health`; a lost connection (a
        // missed heartbeat included) ends the session.
        let mut watch = ConnectionWatch::start(&connection, &name, Arc::clone(&self.status), None);
        // Kept open for declarations and re-binding while plugins change.
        let control = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        broker::declare_exchange(&control, &self.config.exchange).await?;
        let mut changes = self.registry.changes();
        changes.mark_unchanged();
        let stop = shutdown.child_token();
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut consumers: JoinSet<(String, Result<()>)> = JoinSet::new();
        let mut outcome = self
            .reconcile(&control, &connection, &stop, &mut running, &mut consumers)
            .await;
        if outcome.is_ok() {
            self.status.connected();
            tracing::info!(broker = %redact_url(self.config.amqp_url()), plugins = running.len(), "connected to RabbitMQ");
        }
        while outcome.is_ok() {
            tokio::select! {
                _ = stop.cancelled() => break,
                lost = watch.lost() => outcome = Err(lost),
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    changes.mark_unchanged();
                }
                Some(joined) = consumers.join_next() => {
                    let (name, result) = joined.map_err(anyhow::Error::from)?;
                    let stopped = running.remove(&name).is_some_and(|r| r.stop.is_cancelled());
                    match result {
                        Err(e) => outcome = Err(e),
                        Ok(()) if !stopped => outcome = Err(anyhow::anyhow!("the consumer of {name:?} ended")),
                        Ok(()) => {}
                    }
                }
            }
            if outcome.is_ok() {
                outcome = self
                    .reconcile(&control, &connection, &stop, &mut running, &mut consumers)
                    .await;
            }
        }
        // Said at once (the consumers may take a moment to stop), and
        // plainly when the broker went silent.
        let mut outcome = outcome.map_err(|e| watch.explain(e));
        if let Err(e) = &outcome {
            self.status.disconnected(crate::telemetry::error_chain(e));
        }
        // One consumer failing means the connection (or its channel) is
        // gone: stop the others, let each settle its batch, and reconnect.
        stop.cancel();
        while let Some(joined) = consumers.join_next().await {
            if let Ok((_, Err(e))) = joined
                && outcome.is_ok()
            {
                outcome = Err(e);
            }
        }
        let _ = control.close(200, ShortString::from("bye")).await;
        let _ = connection.close(200, ShortString::from("bye")).await;
        outcome
    }

    /// Brings the consumers in line with the registry: stops those of
    /// unloaded plugins (their queues stay, messages kept), declares and
    /// starts those of new ones, and re-binds queues whose subscriptions
    /// changed (new keys bound before old ones are removed, so a key kept
    /// across versions never misses a message).
    async fn reconcile(
        &self,
        control: &Channel,
        connection: &Arc<Connection>,
        stop: &CancellationToken,
        running: &mut HashMap<String, Running>,
        consumers: &mut JoinSet<(String, Result<()>)>,
    ) -> Result<()> {
        // Producers are the scheduler's.
        let wanted: Vec<Arc<PluginSlot>> = self
            .registry
            .all()
            .into_iter()
            .filter(|s| !s.current().is_producer())
            .collect();
        for (name, r) in running.iter() {
            let kept = wanted
                .iter()
                .any(|s| s.name == *name && Arc::ptr_eq(s, &r.slot));
            if !kept && !r.stop.is_cancelled() {
                tracing::info!(plugin = %name, "stopping consumer");
                r.stop.cancel();
            }
        }
        for slot in wanted {
            let mut keys = slot.current().info.subscriptions.clone();
            keys.sort();
            keys.dedup();
            match running.get_mut(&slot.name) {
                // Still finishing for an unloaded predecessor; started once
                // that one has settled its batch.
                Some(r) if r.stop.is_cancelled() => {}
                Some(r) => {
                    if r.bound != keys {
                        self.rebind(control, &slot.name, &r.bound, &keys).await?;
                        r.bound = keys;
                    }
                }
                None => {
                    broker::declare_plugin_queue(connection, &self.config, &slot.name).await?;
                    let recorded = self.recorded_bindings(&slot.name).await?;
                    self.rebind(control, &slot.name, &recorded, &keys).await?;
                    let consumer_stop = stop.child_token();
                    let consumer = Consumer {
                        config: Arc::clone(&self.config),
                        db: self.db.clone(),
                        store_health: Arc::clone(&self.store_health),
                        connection: Arc::clone(connection),
                        stop: consumer_stop.clone(),
                        span: tracing::info_span!("consumer", plugin = %slot.name),
                        slot: Arc::clone(&slot),
                    };
                    let span = consumer.span.clone();
                    let name = slot.name.clone();
                    consumers.spawn(async move { (name, consumer.run().await) }.instrument(span));
                    running.insert(
                        slot.name.clone(),
                        Running {
                            slot,
                            stop: consumer_stop,
                            bound: keys,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    async fn recorded_bindings(&self, plugin: &str) -> Result<Vec<String>> {
        let plugin = plugin.to_owned();
        Ok(self.db.call(move |db| db.queue_bindings(&plugin)).await?)
    }

    /// Binds `keys` that are not in `bound`, then unbinds those of `bound`
    /// no longer in `keys`, and records the result.
    async fn rebind(
        &self,
        control: &Channel,
        plugin: &str,
        bound: &[String],
        keys: &[String],
    ) -> Result<()> {
        let added: Vec<String> = keys
            .iter()
            .filter(|k| !bound.contains(k))
            .cloned()
            .collect();
        let removed: Vec<String> = bound
            .iter()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
        // Declaring binds every key: a binding deleted by hand comes back.
        broker::bind(control, &self.config, plugin, keys).await?;
        broker::unbind(control, &self.config, plugin, &removed).await?;
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(plugin, ?added, ?removed, "queue bindings changed");
        }
        let (name, keys) = (plugin.to_owned(), keys.to_vec());
        Ok(self
            .db
            .call(move |db| db.set_queue_bindings(&name, &keys))
            .await?)
    }
}

/// One plugin's consumer on one connection. Each batch runs on the
/// plugin's version current when the batch starts.
struct Consumer {
    config: Arc<Config>,
    db: Store,
    store_health: Arc<StoreHealth>,
    connection: Arc<Connection>,
    slot: Arc<PluginSlot>,
    stop: CancellationToken,
    span: tracing::Span,
}

impl Consumer {
    async fn run(self) -> Result<()> {
        let channel = self
            .connection
            .create_channel()
            .await
            .context("opening a channel")?;
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await
            .context("setting prefetch")?;
        // Dead letters, retries and the batch's ack go out together.
        channel
            .tx_select()
            .await
            .context("making the consumer's channel transactional")?;
        let publisher = Publisher::open(&self.connection).await?;
        self.flush_outbox(&publisher).await?;
        let queue = self.config.queue_name(&self.slot.name);
        let tag = format!("switchyard-{}", self.slot.name);
        let mut consumer = channel
            .basic_consume(
                ShortString::from(queue.as_str()),
                ShortString::from(tag.as_str()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming {queue:?}"))?;
        let mut outbox_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let first = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                first = consumer.next() => first,
                _ = outbox_tick.tick() => {
                    if self.slot.take_outbox_flag() {
                        self.flush_outbox(&publisher).await?;
                    }
                    continue;
                }
            };
            let Some(first) = first else {
                bail!("the broker cancelled the consumer of {queue:?}");
            };
            let batch_started = std::time::Instant::now();
            let mut deliveries = self
                .fill_batch(&mut consumer, first)
                .await
                .context("receiving deliveries")?;
            let version = self.slot.current();
            let Some(processed) = self.process(&version, &mut deliveries).await? else {
                break; // stopped while the store was out: the batch goes back
            };
            self.settle(&channel, &publisher, &version, &deliveries, processed)
                .await?;
            self.slot
                .counters
                .timings
                .batch_seconds
                .observe_duration(batch_started.elapsed());
        }
        // Stopped (shutdown or unload): the batch in flight was settled
        // above. Cancel the consumer first so that no delivery races the
        // channel's closing; whatever was prefetched but not handled goes
        // back to the queue.
        let _ = channel
            .basic_cancel(
                ShortString::from(tag.as_str()),
                BasicCancelOptions::default(),
            )
            .await;
        let _ = channel.close(200, ShortString::from("stopping")).await;
        publisher.close().await;
        Ok(())
    }
    /// Runs the batch core on `deliveries` until the store lets it through;
    /// `None` if the consumer is stopped meanwhile (nothing settled).
    async fn process(
        &self,
        version: &Arc<LoadedPlugin>,
        deliveries: &mut Vec<Delivery>,
    ) -> Result<Option<Processed>> {
        let mut pause = Duration::from_millis(250);
        loop {
            let (slot, db, span) = (Arc::clone(&self.slot), self.db.clone(), self.span.clone());
            let (max_hops, batch_version) = (self.config.max_hops, Arc::clone(version));
            let taken = std::mem::take(deliveries);
            let (taken, processed) = tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                let processed = process_deliveries(&slot, &batch_version, &db, &taken, max_hops);
                (taken, processed)
            })
            .await
            .context("batch worker panicked")?;
            *deliveries = taken;
            match processed {
                Ok(processed) => {
                    self.store_health.answered();
                    return Ok(Some(processed));
                }
                Err(e) => {
                    self.store_health.failed(&e);
                    tokio::select! {
                        _ = self.stop.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(OUTAGE_RETRY_MAX);
                }
            }
        }
    }

    /// Completes a batch begun by `first`: takes what has arrived, then
    /// waits up to the linger for more, until the batch is full. Deliveries
    /// taken but never handled (shutdown) go back to the queue when the
    /// channel closes.
    async fn fill_batch(
        &self,
        consumer: &mut lapin::Consumer,
        first: lapin::Result<Delivery>,
    ) -> lapin::Result<Vec<Delivery>> {
        let max = self.config.batch_size.max(1);
        let deadline = tokio::time::Instant::now() + self.config.batch_linger();
        let mut batch = Vec::with_capacity(max);
        batch.push(first?);
        while batch.len() < max {
            // What has arrived is taken without arming the linger's timer.
            let next = match consumer.next().now_or_never() {
                Some(next) => next,
                None => match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(next) => next,
                    Err(_) => break, // time is up
                },
            };
            match next {
                Some(delivery) => batch.push(delivery?),
                // The stream ended (the next call says so).
                None => break,
            }
        }
        Ok(batch)
    }

    /// Publishes what the commit promised (with confirms), then, in one
    /// transaction on the consumer's channel, dead-letters what was
    /// rejected, sends what failed transiently to a retry queue (or, out of
    /// attempts, to the dead letters) and acknowledges the whole batch.
    async fn settle(
        &self,
        channel: &Channel,
        publisher: &Publisher,
        version: &LoadedPlugin,
        deliveries: &[Delivery],
        processed: Processed,
    ) -> Result<()> {
        self.publish_outbox(publisher, processed.outbox).await?;
        let mut failed = Vec::new();
        for (delivery, outcome) in deliveries.iter().zip(&processed.outcomes) {
            let attempts = attempts_before(delivery) + 1;
            match outcome {
                Outcome::Applied | Outcome::Duplicate => {}
                Outcome::DeadLetter(reason) => {
                    failed.push(self.dead_letter(version, delivery, reason, attempts));
                }
                Outcome::Retry(reason) if attempts >= self.config.max_attempts => {
                    self.slot.counters.dead_lettered.fetch_add(1, Relaxed);
                    let reason = format!("{reason} (gave up after {attempts} attempts)");
                    failed.push(self.dead_letter(version, delivery, &reason, attempts));
                }
                Outcome::Retry(reason) => failed.push(self.retry(delivery, reason, attempts)),
            }
        }
        for m in &failed {
            channel
                .basic_publish(
                    ShortString::from(m.exchange.as_str()),
                    ShortString::from(m.routing_key.as_str()),
                    BasicPublishOptions::default(),
                    &m.body,
                    m.properties.clone(),
                )
                .await
                .context("publishing dead letters and retries")?;
        }
        if let Some(last) = deliveries.iter().map(|d| d.delivery_tag).max() {
            channel
                .basic_ack(last, BasicAckOptions { multiple: true })
                .await
                .context("acknowledging a batch")?;
        }
        channel
            .tx_commit()
            .await
            .context("committing the batch's dead letters, retries and ack")?;
        Ok(())
    }

    /// The delivery, diagnosed, for the plugin's dead-letter queue: body,
    /// properties and original routing key untouched, plus the headers of
    /// [`headers::DIAGNOSIS`].
    fn dead_letter(
        &self,
        version: &LoadedPlugin,
        delivery: &Delivery,
        reason: &str,
        attempts: u32,
    ) -> Outgoing {
        let event_id = crate::dead_letters::event_id_of(&delivery.data);
        tracing::warn!(
            event_id = event_id.as_deref().unwrap_or("-"),
            reason,
            attempts,
            "event dead-lettered"
        );
        let now = now_ms();
        let received = delivery.properties.headers().clone().unwrap_or_default();
        let first_failed =
            headers::int(Some(&received), headers::FIRST_FAILED_AT_MS).unwrap_or(now);
        let mut table = headers::without(&received, &[headers::RETRY_REASON]);
        headers::set_text(&mut table, headers::REASON, reason);
        headers::set_text(&mut table, headers::PLUGIN, self.slot.name.clone());
        headers::set_text(&mut table, headers::PLUGIN_VERSION, version.sha256.clone());
        headers::set_int(&mut table, headers::FAILED_AT_MS, now);
        headers::set_int(&mut table, headers::FIRST_FAILED_AT_MS, first_failed);
        headers::set_int(&mut table, headers::ATTEMPTS, attempts.into());
        Outgoing {
            exchange: self.config.dead_letter_exchange(&self.slot.name),
            routing_key: routing_key_of(delivery),
            body: delivery.data.clone(),
            properties: delivery.properties.clone().with_headers(table),
        }
    }

    /// The delivery, for the retry queue whose delay suits its attempt:
    /// it comes back to the plugin's queue when the delay has passed.
    fn retry(&self, delivery: &Delivery, reason: &str, attempts: u32) -> Outgoing {
        let delay_ms = self.config.retry_delay_ms(attempts);
        tracing::info!(reason, attempts, delay_ms, "event will be retried");
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        if headers::int(Some(&table), headers::FIRST_FAILED_AT_MS).is_none() {
            headers::set_int(&mut table, headers::FIRST_FAILED_AT_MS, now_ms());
        }
        headers::set_text(&mut table, headers::ROUTING_KEY, routing_key_of(delivery));
        headers::set_text(&mut table, headers::RETRY_REASON, reason);
        headers::set_int(&mut table, headers::ATTEMPTS, attempts.into());
        Outgoing {
            exchange: String::new(),
            routing_key: self.config.retry_queue(&self.slot.name, delay_ms),
            body: delivery.data.clone(),
            properties: delivery.properties.clone().with_headers(table),
        }
    }

    async fn publish_outbox(&self, publisher: &Publisher, outbox: Vec<OutboxEntry>) -> Result<()> {
        if outbox.is_empty() {
            return Ok(());
        }
        let messages: Vec<Outgoing> = outbox
            .iter()
            .map(|e| {
                let mut table = FieldTable::default();
                headers::set_text(&mut table, headers::SOURCE, e.plugin.clone());
                headers::set_int(&mut table, headers::HOPS, e.hops.into());
                Outgoing::json_event(
                    &self.config.exchange,
                    &e.routing_key,
                    e.body.clone().into_bytes(),
                    table,
                )
            })
            .collect();
        publisher
            .publish_all(&messages)
            .await
            .context("publishing plugin events")?;
        let seqs: Vec<i64> = outbox.iter().map(|e| e.seq).collect();
        Ok(self.db.call(move |db| db.outbox_done(&seqs)).await?)
    }

    /// Publishes outbox entries left by a crash or by the HTTP API.
    async fn flush_outbox(&self, publisher: &Publisher) -> Result<()> {
        let name = self.slot.name.clone();
        let pending = self.db.call(move |db| db.pending_outbox(&name)).await?;
        self.publish_outbox(publisher, pending).await
    }
}
