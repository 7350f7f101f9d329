//! The path of an event: a batch of deliveries is parsed, deduplicated,
//! handed to the plugin's current version, committed to the store in one
//! transaction, its `publish` actions and dead letters are sent with
//! confirms, and only then is the batch acknowledged.
//!
//! [`process_batch`] is the blocking core shared with the embedded bus and
//! the HTTP API;
//! [`Pipeline`] owns the broker side: connections, one consumer per loaded
//! plugin, started, stopped and re-bound as plugins come, change and go,
//! and reconnects.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use serde_json::{Map, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::{self, BrokerStatus, ConnectionWatch, Outgoing, Publisher};
use crate::config::{Config, redact_url};
use crate::headers;
use crate::plugins::bindings::{Action, Event};
use crate::plugins::{CallError, LoadedPlugin, PluginRegistry, PluginSlot};
use crate::store::{
    BatchCommit, DocumentWrite, OutboxEntry, PublishWrite, Store, StoreError, now_ms,
};

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Handled and committed: acknowledge.
    Applied,
    /// Applied before (same event id): acknowledge, change nothing.
    Duplicate,
    /// Bad event: send to the dead-letter queue with the reason, acknowledge.
    DeadLetter(String),
    /// Transient failure: try again after a backoff (dead-lettered once the
    /// attempts run out).
    Retry(String),
    /// The store could not be read or could not commit: an outage
    /// ([`StoreError::is_outage`]), not the event's fault. For now handled
    /// exactly as [`Verdict::Retry`]; kept apart so that the pipeline can
    /// wait an outage out instead of spending the event's attempts.
    StoreUnavailable(String),
}

impl Verdict {
    /// The verdict for events that a store failure stopped: an outage is
    /// [`Verdict::StoreUnavailable`]; a conflict (another writer recorded
    /// an id first: the retry finds it applied) or anything else is a
    /// [`Verdict::Retry`].
    pub fn store_failed(reason: String, error: &StoreError) -> Self {
        if error.is_outage() {
            Verdict::StoreUnavailable(reason)
        } else {
            Verdict::Retry(reason)
        }
    }
}

/// An event to hand to a plugin, and how many plugins published it before.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub event: Event,
    pub hops: u32,
}

/// Parses a delivery body into an [`Event`], or says why it cannot be one.
pub fn parse_event(routing_key: &str, body: &[u8], received_at_ms: u64) -> Result<Event, String> {
    let fields: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err("body is not a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    let id = match fields.get("eventId") {
        None => return Err("missing eventId".into()),
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(_) => return Err("eventId must be a non-empty string".into()),
    };
    let body = String::from_utf8(body.to_vec()).map_err(|_| "body is not UTF-8".to_owned())?;
    Ok(Event {
        id,
        routing_key: routing_key.to_owned(),
        body,
        received_at_ms,
    })
}

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

/// Turns a plugin's actions for one event into store writes and events to
/// publish; `Err` (the plugin produced something invalid) rejects the event.
fn collect_actions(
    plugin: &str,
    incoming: &Incoming,
    actions: Vec<Action>,
    documents: &mut Vec<DocumentWrite>,
    publish: &mut Vec<PublishWrite>,
) -> Result<(), String> {
    let event = &incoming.event;
    let mut docs = Vec::new();
    let mut events = Vec::new();
    for action in actions {
        match action {
            Action::Upsert(doc) => {
                check_name("collection", &doc.collection)?;
                check_name("document key", &doc.key)?;
                serde_json::from_str::<serde::de::IgnoredAny>(&doc.json).map_err(|e| {
                    format!(
                        "plugin returned invalid JSON for {}/{}: {e}",
                        doc.collection, doc.key
                    )
                })?;
                docs.push(DocumentWrite::Upsert {
                    collection: doc.collection,
                    key: doc.key,
                    json: doc.json,
                });
            }
            Action::Delete(doc) => docs.push(DocumentWrite::Delete {
                collection: doc.collection,
                key: doc.key,
            }),
            Action::Publish(out) => {
                check_name("routing key", &out.routing_key)?;
                let mut fields = match serde_json::from_str::<Value>(&out.body) {
                    Ok(Value::Object(fields)) => fields,
                    _ => return Err("plugin published a body that is not a JSON object".into()),
                };
                // A deterministic id, so that the event published again after
                // a crash is recognised downstream as the same one.
                fields.entry("eventId").or_insert_with(|| {
                    Value::String(format!("{}/{plugin}/{}", event.id, events.len()))
                });
                events.push(PublishWrite {
                    routing_key: out.routing_key,
                    body: Value::Object(fields).to_string(),
                    hops: incoming.hops.saturating_add(1),
                });
            }
        }
    }
    documents.extend(docs);
    publish.extend(events);
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("plugin returned an empty or over-long {what}"));
    }
    Ok(())
}

/// Hands `events` (fresh, not yet applied) to `version` of the plugin in
/// `slot`, one by one, and commits what the successful ones did, with their
/// ids, in one transaction. Blocking. Returns one verdict per event, and
/// the outbox entries to publish.
fn apply_events(
    slot: &PluginSlot,
    version: &LoadedPlugin,
    db: &Store,
    events: &[Incoming],
) -> (Vec<Verdict>, Vec<OutboxEntry>) {
    let mut verdicts = Vec::with_capacity(events.len());
    if events.is_empty() {
        return (verdicts, Vec::new());
    }
    version.note_batch();
    let mut commit = BatchCommit {
        plugin: slot.name.clone(),
        version: version.sha256.clone(),
        ..BatchCommit::default()
    };
    // Held until the commit is done: nothing else writes this plugin's state
    // in between, whichever version.
    let writer = slot.writer();
    let Some(mut instance) = version.transformer() else {
        // Replaced by a producer under this consumer; it stops shortly.
        let reason = format!("{} is no longer a transformer", slot.name);
        return (vec![Verdict::Retry(reason); events.len()], Vec::new());
    };
    instance.sync_cache(slot.state_generation());
    for incoming in events {
        let verdict = match instance.handle(&incoming.event) {
            Ok(actions) => match collect_actions(
                &slot.name,
                incoming,
                actions,
                &mut commit.documents,
                &mut commit.publish,
            ) {
                Ok(()) => {
                    commit.applied_event_ids.push(incoming.event.id.clone());
                    Verdict::Applied
                }
                Err(reason) => Verdict::DeadLetter(reason),
            },
            Err(CallError::Store(e)) => Verdict::store_failed(e.to_string(), &e),
            Err(e) if e.is_transient() => Verdict::Retry(e.to_string()),
            Err(e) => Verdict::DeadLetter(e.to_string()),
        };
        instance.finish_event(verdict == Verdict::Applied);
        verdicts.push(verdict);
    }
    let mut outbox = Vec::new();
    if !commit.applied_event_ids.is_empty() {
        commit.state = instance.take_state_writes();
        match db.blocking().commit_batch(&commit) {
            Ok(entries) => {
                slot.counters.commits.fetch_add(1, Relaxed);
                outbox = entries;
                let generation = slot.state_committed();
                instance.state_committed(std::mem::take(&mut commit.state), generation);
            }
            Err(e) => {
                let reason = format!("store commit failed: {e}");
                tracing::error!(
                    plugin = %slot.name,
                    error = %reason,
                    outage = e.is_outage(),
                    conflict = e.is_conflict(),
                    "batch not committed; requeueing"
                );
                for v in verdicts.iter_mut().filter(|v| **v == Verdict::Applied) {
                    *v = Verdict::store_failed(reason.clone(), &e);
                }
            }
        }
    }
    drop(instance);
    drop(writer);
    let count = |f: fn(&Verdict) -> bool| verdicts.iter().filter(|v| f(v)).count() as u64;
    slot.counters
        .applied
        .fetch_add(count(|v| *v == Verdict::Applied), Relaxed);
    slot.counters
        .dead_lettered
        .fetch_add(count(|v| matches!(v, Verdict::DeadLetter(_))), Relaxed);
    (verdicts, outbox)
}

/// One message as the plugin would be handed it, or why it cannot be: it
/// has been published by more than `max_hops` plugins in turn, or its body
/// is not an event ([`parse_event`]).
pub fn admit(
    routing_key: &str,
    body: &[u8],
    hops: u32,
    max_hops: u32,
    received_at_ms: u64,
) -> Result<Incoming, String> {
    if hops > max_hops {
        return Err(format!(
            "hop limit exceeded: published by {hops} plugins in turn (limit {max_hops}); \
             do plugins feed each other in a loop?"
        ));
    }
    let event = parse_event(routing_key, body, received_at_ms)?;
    Ok(Incoming { event, hops })
}

/// Parses, deduplicates and applies one batch of deliveries with the
/// plugin's `version`. Blocking.
pub fn process_deliveries(
    slot: &PluginSlot,
    version: &LoadedPlugin,
    db: &Store,
    deliveries: &[Delivery],
    max_hops: u32,
) -> (Vec<Verdict>, Vec<OutboxEntry>) {
    let received = now_ms() as u64;
    let admitted = deliveries
        .iter()
        .map(|d| {
            let hops = headers::int(d.properties.headers().as_ref(), headers::HOPS).unwrap_or(0);
            let hops = u32::try_from(hops).unwrap_or(0);
            admit(&routing_key_of(d), &d.data, hops, max_hops, received)
        })
        .collect();
    process_batch(slot, version, db, admitted)
}

/// The shared core of a batch, whatever carried it (broker or embedded
/// bus): dead-letters what was not admitted, skips ids the plugin applied
/// before (or that repeat within the batch), and applies the rest. One
/// verdict per item, in order, and the outbox entries to publish. Blocking.
pub fn process_batch(
    slot: &PluginSlot,
    version: &LoadedPlugin,
    db: &Store,
    admitted: Vec<Result<Incoming, String>>,
) -> (Vec<Verdict>, Vec<OutboxEntry>) {
    let ids: Vec<&str> = admitted
        .iter()
        .filter_map(|p| p.as_ref().ok().map(|i| i.event.id.as_str()))
        .collect();
    let already = match db.blocking().applied_among(&slot.name, &ids) {
        Ok(already) => already,
        Err(e) => {
            let verdict = Verdict::store_failed(e.to_string(), &e);
            return (vec![verdict; admitted.len()], Vec::new());
        }
    };
    let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(admitted.len());
    let mut fresh = Vec::new();
    let mut fresh_index = Vec::new();
    let mut seen = HashSet::new();
    for (i, p) in admitted.into_iter().enumerate() {
        match p {
            Err(reason) => {
                slot.counters.dead_lettered.fetch_add(1, Relaxed);
                verdicts.push(Some(Verdict::DeadLetter(reason)));
            }
            Ok(incoming)
                if already.contains(&incoming.event.id)
                    || !seen.insert(incoming.event.id.clone()) =>
            {
                verdicts.push(Some(Verdict::Duplicate));
            }
            Ok(incoming) => {
                verdicts.push(None);
                fresh.push(incoming);
                fresh_index.push(i);
            }
        }
    }
    let (applied, outbox) = apply_events(slot, version, db, &fresh);
    for (i, v) in fresh_index.into_iter().zip(applied) {
        verdicts[i] = Some(v);
    }
    (
        verdicts
            .into_iter()
            .map(|v| v.expect("every item has a verdict"))
            .collect(),
        outbox,
    )
}

/// Runs one consumer per loaded plugin against the broker, following the
/// registry as plugins are loaded, replaced and unloaded, and reconnecting
/// with capped exponential backoff, until `shutdown`.
pub struct Pipeline {
    pub config: Arc<Config>,
    pub db: Store,
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
            let deliveries = self
                .fill_batch(&mut consumer, first)
                .await
                .context("receiving deliveries")?;
            let version = self.slot.current();
            let (slot, db) = (Arc::clone(&self.slot), self.db.clone());
            let (span, max_hops) = (self.span.clone(), self.config.max_hops);
            let batch_version = Arc::clone(&version);
            let (deliveries, (verdicts, outbox)) = tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                let result = process_deliveries(&slot, &batch_version, &db, &deliveries, max_hops);
                (deliveries, result)
            })
            .await
            .context("batch worker panicked")?;
            self.settle(
                &channel,
                &publisher,
                &version,
                &deliveries,
                &verdicts,
                outbox,
            )
            .await?;
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
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(delivery)) => batch.push(delivery?),
                // The stream ended (the next call says so) or time is up.
                Ok(None) | Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// Publishes what the commit promised, then dead-letters what was
    /// rejected and sends what failed transiently to a retry queue (or, out
    /// of attempts, to the dead letters), all with confirms, then
    /// acknowledges the whole batch.
    async fn settle(
        &self,
        channel: &Channel,
        publisher: &Publisher,
        version: &LoadedPlugin,
        deliveries: &[Delivery],
        verdicts: &[Verdict],
        outbox: Vec<OutboxEntry>,
    ) -> Result<()> {
        self.publish_outbox(publisher, outbox).await?;

        let mut failed = Vec::new();
        for (delivery, verdict) in deliveries.iter().zip(verdicts) {
            let attempts = attempts_before(delivery) + 1;
            match verdict {
                Verdict::Applied | Verdict::Duplicate => {}
                Verdict::DeadLetter(reason) => {
                    failed.push(self.dead_letter(version, delivery, reason, attempts));
                }
                Verdict::Retry(reason) | Verdict::StoreUnavailable(reason)
                    if attempts >= self.config.max_attempts =>
                {
                    self.slot.counters.dead_lettered.fetch_add(1, Relaxed);
                    let reason = format!("{reason} (gave up after {attempts} attempts)");
                    failed.push(self.dead_letter(version, delivery, &reason, attempts));
                }
                Verdict::Retry(reason) | Verdict::StoreUnavailable(reason) => {
                    failed.push(self.retry(delivery, reason, attempts))
                }
            }
        }
        if !failed.is_empty() {
            publisher
                .publish_all(&failed)
                .await
                .context("publishing dead letters and retries")?;
        }
        if let Some(last) = deliveries.iter().map(|d| d.delivery_tag).max() {
            channel
                .basic_ack(last, BasicAckOptions { multiple: true })
                .await
                .context("acknowledging a batch")?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_event_names_what_is_wrong() {
        let ok = parse_event("customer.created", br#"{"eventId":"e1","id":"c1"}"#, 7).unwrap();
        assert_eq!((ok.id.as_str(), ok.received_at_ms), ("e1", 7));
        let err = |body: &[u8]| parse_event("k", body, 0).unwrap_err();
        assert!(err(br#"{"id": "c3", "name": "frank""#).starts_with("invalid JSON"));
        assert_eq!(err(br#"[1,2]"#), "body is not a JSON object");
        assert_eq!(err(br#"{"id":"c4"}"#), "missing eventId");
        assert_eq!(
            err(br#"{"eventId":""}"#),
            "eventId must be a non-empty string"
        );
        assert_eq!(
            err(br#"{"eventId":5}"#),
            "eventId must be a non-empty string"
        );
    }

    fn event() -> Incoming {
        Incoming {
            event: Event {
                id: "e1".into(),
                routing_key: "a.b".into(),
                body: "{}".into(),
                received_at_ms: 0,
            },
            hops: 3,
        }
    }

    #[test]
    fn published_events_get_a_deterministic_id() {
        use crate::plugins::bindings::OutgoingEvent;
        let (mut docs, mut publish) = (Vec::new(), Vec::new());
        let actions = vec![
            Action::Publish(OutgoingEvent {
                routing_key: "x.y".into(),
                body: r#"{"a":1}"#.into(),
            }),
            Action::Publish(OutgoingEvent {
                routing_key: "x.z".into(),
                body: r#"{"eventId":"own"}"#.into(),
            }),
        ];
        collect_actions("p", &event(), actions, &mut docs, &mut publish).unwrap();
        assert_eq!(
            publish[0],
            PublishWrite {
                routing_key: "x.y".to_string(),
                body: r#"{"a":1,"eventId":"e1/p/0"}"#.to_string(),
                hops: 4,
            },
            "one hop more than the event it came from"
        );
        assert_eq!(publish[1].body, r#"{"eventId":"own"}"#);
    }

    #[test]
    fn invalid_plugin_output_rejects_the_whole_event() {
        use crate::plugins::bindings::Document;
        let (mut docs, mut publish) = (Vec::new(), Vec::new());
        let good = Action::Upsert(Document {
            collection: "c".into(),
            key: "k".into(),
            json: "1".into(),
        });
        let bad = Action::Upsert(Document {
            collection: "c".into(),
            key: "j".into(),
            json: "{".into(),
        });
        let err =
            collect_actions("p", &event(), vec![good, bad], &mut docs, &mut publish).unwrap_err();
        assert!(err.contains("invalid JSON for c/j"), "{err}");
        assert!(docs.is_empty(), "nothing of a rejected event is kept");
    }
}
