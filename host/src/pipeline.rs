//! The path of an event: a batch of deliveries is parsed, deduplicated,
//! handed to the plugin, committed to the store in one transaction, its
//! `publish` actions and dead letters are sent with confirms, and only then
//! is the batch acknowledged.
//!
//! [`apply_events`] is the blocking core shared with the HTTP API;
//! [`Pipeline`] owns the broker side (connections, consumers, reconnects).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection};
use serde_json::{Map, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::{self, BrokerStatus, Outgoing, Publisher};
use crate::config::{Config, redact_url};
use crate::plugins::bindings::{Action, Event};
use crate::plugins::{LoadedPlugin, PluginRegistry};
use crate::store::{BatchCommit, DocumentWrite, OutboxEntry, Store, now_ms};

/// How long a batch holding a transient failure waits before the failed
/// deliveries are requeued, so that a failing dependency is not hammered.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// How long one connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Handled and committed: acknowledge.
    Applied,
    /// Applied before (same event id): acknowledge, change nothing.
    Duplicate,
    /// Bad event: send to the dead-letter queue with the reason, acknowledge.
    DeadLetter(String),
    /// Transient failure: requeue for another try.
    Requeue(String),
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

/// Turns a plugin's actions for one event into store writes and events to
/// publish; `Err` (the plugin produced something invalid) rejects the event.
fn collect_actions(
    plugin: &str,
    event: &Event,
    actions: Vec<Action>,
    documents: &mut Vec<DocumentWrite>,
    publish: &mut Vec<(String, String)>,
) -> Result<(), String> {
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
                events.push((out.routing_key, Value::Object(fields).to_string()));
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

/// Hands `events` (fresh, not yet applied) to the plugin one by one and
/// commits what the successful ones did, with their ids, in one
/// transaction. Blocking. Returns one verdict per event, and the outbox
/// entries to publish.
pub fn apply_events(
    plugin: &LoadedPlugin,
    db: &Store,
    events: &[Event],
) -> (Vec<Verdict>, Vec<OutboxEntry>) {
    let mut verdicts = Vec::with_capacity(events.len());
    let mut commit = BatchCommit {
        plugin: plugin.name.clone(),
        version: plugin.sha256.clone(),
        ..BatchCommit::default()
    };
    // Held until the commit is done: nothing else writes this plugin's state
    // in between.
    let mut instance = plugin.instance();
    for event in events {
        let verdict = match instance.handle(event) {
            Ok(actions) => match collect_actions(
                &plugin.name,
                event,
                actions,
                &mut commit.documents,
                &mut commit.publish,
            ) {
                Ok(()) => {
                    commit.applied_event_ids.push(event.id.clone());
                    Verdict::Applied
                }
                Err(reason) => Verdict::DeadLetter(reason),
            },
            Err(e) if e.is_transient() => Verdict::Requeue(e.to_string()),
            Err(e) => Verdict::DeadLetter(e.to_string()),
        };
        instance.finish_event(verdict == Verdict::Applied);
        verdicts.push(verdict);
    }
    let mut outbox = Vec::new();
    if !commit.applied_event_ids.is_empty() {
        commit.state = instance.take_state_writes();
        match db.commit_batch(&commit) {
            Ok(entries) => {
                plugin.counters.commits.fetch_add(1, Relaxed);
                outbox = entries;
                instance.state_committed(std::mem::take(&mut commit.state));
            }
            Err(e) => {
                let reason = format!("store commit failed: {e:#}");
                tracing::error!(plugin = %plugin.name, error = %reason, "batch not committed; requeueing");
                for v in verdicts.iter_mut().filter(|v| **v == Verdict::Applied) {
                    *v = Verdict::Requeue(reason.clone());
                }
            }
        }
    }
    drop(instance);
    let count = |f: fn(&Verdict) -> bool| verdicts.iter().filter(|v| f(v)).count() as u64;
    plugin
        .counters
        .applied
        .fetch_add(count(|v| *v == Verdict::Applied), Relaxed);
    plugin
        .counters
        .dead_lettered
        .fetch_add(count(|v| matches!(v, Verdict::DeadLetter(_))), Relaxed);
    (verdicts, outbox)
}

/// Parses, deduplicates and applies one batch of deliveries. Blocking.
pub fn process_deliveries(
    plugin: &LoadedPlugin,
    db: &Store,
    deliveries: &[Delivery],
) -> (Vec<Verdict>, Vec<OutboxEntry>) {
    let received = now_ms() as u64;
    let parsed: Vec<Result<Event, String>> = deliveries
        .iter()
        .map(|d| parse_event(d.routing_key.as_str(), &d.data, received))
        .collect();
    let ids: Vec<&str> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().map(|e| e.id.as_str()))
        .collect();
    let already = match db.applied_among(&plugin.name, &ids) {
        Ok(already) => already,
        Err(e) => {
            let reason = format!("store unavailable: {e:#}");
            return (vec![Verdict::Requeue(reason); deliveries.len()], Vec::new());
        }
    };
    let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(deliveries.len());
    let mut fresh = Vec::new();
    let mut fresh_index = Vec::new();
    let mut seen = HashSet::new();
    for (i, p) in parsed.into_iter().enumerate() {
        match p {
            Err(reason) => {
                plugin.counters.dead_lettered.fetch_add(1, Relaxed);
                verdicts.push(Some(Verdict::DeadLetter(reason)));
            }
            Ok(event) if already.contains(&event.id) || !seen.insert(event.id.clone()) => {
                verdicts.push(Some(Verdict::Duplicate));
            }
            Ok(event) => {
                verdicts.push(None);
                fresh.push(event);
                fresh_index.push(i);
            }
        }
    }
    let (applied, outbox) = apply_events(plugin, db, &fresh);
    for (i, v) in fresh_index.into_iter().zip(applied) {
        verdicts[i] = Some(v);
    }
    (
        verdicts
            .into_iter()
            .map(|v| v.expect("every delivery has a verdict"))
            .collect(),
        outbox,
    )
}

/// Runs one consumer per loaded plugin against the broker, reconnecting
/// with capped exponential backoff, until `shutdown`.
pub struct Pipeline {
    pub config: Arc<Config>,
    pub db: Arc<Store>,
    pub registry: Arc<PluginRegistry>,
    pub status: Arc<BrokerStatus>,
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
                Err(e) => format!("{e:#}"),
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

    /// One connection's life: declare, consume, and return when it breaks
    /// (`Err`) or on shutdown (`Ok`, after in-flight batches are settled).
    async fn session(&self, shutdown: &CancellationToken) -> Result<()> {
        let name = self.config.connection_name();
        let connect = broker::connect(&self.config.amqp_url, &name);
        let connection = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => Arc::new(
                connected.map_err(|_| anyhow::anyhow!("connecting to RabbitMQ timed out after {CONNECT_TIMEOUT:?}"))??,
            ),
        };
        let channel = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        broker::declare_exchange(&channel, &self.config.exchange).await?;
        let plugins = self.registry.all();
        for plugin in &plugins {
            broker::declare_plugin_queue(
                &channel,
                &self.config,
                &plugin.name,
                &plugin.info.subscriptions,
            )
            .await?;
        }
        let _ = channel.close(200, ShortString::from("declared")).await;
        self.status.connected();
        tracing::info!(broker = %redact_url(&self.config.amqp_url), plugins = plugins.len(), "connected to RabbitMQ");

        let stop = shutdown.child_token();
        let mut consumers = JoinSet::new();
        for plugin in plugins {
            let consumer = Consumer {
                config: Arc::clone(&self.config),
                db: Arc::clone(&self.db),
                connection: Arc::clone(&connection),
                stop: stop.clone(),
                span: tracing::info_span!("consumer", plugin = %plugin.name),
                plugin,
            };
            let span = consumer.span.clone();
            consumers.spawn(consumer.run().instrument(span));
        }
        if consumers.is_empty() {
            // Nothing to consume; stay connected so that /health is honest.
            stop.cancelled().await;
        }
        let mut outcome = Ok(());
        while let Some(joined) = consumers.join_next().await {
            let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = result {
                if outcome.is_ok() {
                    outcome = Err(e);
                }
                // One consumer failing means the connection (or its
                // channel) is gone: stop the others and reconnect.
                stop.cancel();
            }
        }
        let _ = connection.close(200, ShortString::from("bye")).await;
        outcome
    }
}

/// One plugin's consumer on one connection.
struct Consumer {
    config: Arc<Config>,
    db: Arc<Store>,
    connection: Arc<Connection>,
    plugin: Arc<LoadedPlugin>,
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
        let queue = self.config.queue_name(&self.plugin.name);
        let tag = format!("switchyard-{}", self.plugin.name);
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
                    if self.plugin.take_outbox_flag() {
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
            let (plugin, db) = (Arc::clone(&self.plugin), Arc::clone(&self.db));
            let span = self.span.clone();
            let (deliveries, (verdicts, outbox)) = tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                let result = process_deliveries(&plugin, &db, &deliveries);
                (deliveries, result)
            })
            .await
            .context("batch worker panicked")?;
            self.settle(&channel, &publisher, &deliveries, &verdicts, outbox)
                .await?;
        }
        // Shutdown: the batch in flight was settled above. Cancel the
        // consumer first so that no delivery races the channel's closing;
        // whatever was prefetched but not handled goes back to the queue.
        let _ = channel
            .basic_cancel(
                ShortString::from(tag.as_str()),
                BasicCancelOptions::default(),
            )
            .await;
        let _ = channel.close(200, ShortString::from("shutting down")).await;
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

    /// Publishes what the commit promised, dead-letters what was rejected,
    /// requeues what failed transiently, then acknowledges the rest.
    async fn settle(
        &self,
        channel: &Channel,
        publisher: &Publisher,
        deliveries: &[Delivery],
        verdicts: &[Verdict],
        outbox: Vec<OutboxEntry>,
    ) -> Result<()> {
        self.publish_outbox(publisher, outbox).await?;

        let dead: Vec<Outgoing> = deliveries
            .iter()
            .zip(verdicts)
            .filter_map(|(d, v)| match v {
                Verdict::DeadLetter(reason) => Some(self.dead_letter(d, reason)),
                _ => None,
            })
            .collect();
        if !dead.is_empty() {
            publisher
                .publish_all(&dead)
                .await
                .context("publishing dead letters")?;
        }

        let requeue: Vec<u64> = deliveries
            .iter()
            .zip(verdicts)
            .filter_map(|(d, v)| matches!(v, Verdict::Requeue(_)).then_some(d.delivery_tag))
            .collect();
        if !requeue.is_empty() {
            tracing::warn!(count = requeue.len(), reason = ?verdicts.iter().find(|v| matches!(v, Verdict::Requeue(_))), "requeueing after a transient failure");
            tokio::time::sleep(REQUEUE_PAUSE).await;
            for tag in &requeue {
                channel
                    .basic_nack(
                        *tag,
                        BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        },
                    )
                    .await
                    .context("requeueing a delivery")?;
            }
        }
        let last_settled = deliveries
            .iter()
            .map(|d| d.delivery_tag)
            .filter(|tag| !requeue.contains(tag))
            .max();
        if let Some(tag) = last_settled {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .context("acknowledging a batch")?;
        }
        Ok(())
    }

    fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Outgoing {
        let event_id = serde_json::from_slice::<Value>(&delivery.data)
            .ok()
            .and_then(|v| v.get("eventId").and_then(Value::as_str).map(str::to_owned));
        tracing::warn!(
            event_id = event_id.as_deref().unwrap_or("-"),
            reason,
            "event dead-lettered"
        );
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let mut add = |k: &str, v: String| {
            headers.insert(
                ShortString::from(k),
                AMQPValue::LongString(LongString::from(v)),
            );
        };
        add("x-switchyard-reason", reason.to_owned());
        add("x-switchyard-plugin", self.plugin.name.clone());
        add("x-switchyard-plugin-version", self.plugin.sha256.clone());
        add("x-switchyard-failed-at-ms", now_ms().to_string());
        Outgoing {
            exchange: self.config.dead_letter_exchange(&self.plugin.name),
            routing_key: delivery.routing_key.to_string(),
            body: delivery.data.clone(),
            properties: delivery.properties.clone().with_headers(headers),
        }
    }

    async fn publish_outbox(&self, publisher: &Publisher, outbox: Vec<OutboxEntry>) -> Result<()> {
        if outbox.is_empty() {
            return Ok(());
        }
        let messages: Vec<Outgoing> = outbox
            .iter()
            .map(|e| {
                let headers = broker::string_headers([("x-switchyard-source", e.plugin.clone())]);
                Outgoing::json_event(
                    &self.config.exchange,
                    &e.routing_key,
                    e.body.clone().into_bytes(),
                    headers,
                )
            })
            .collect();
        publisher
            .publish_all(&messages)
            .await
            .context("publishing plugin events")?;
        let seqs: Vec<i64> = outbox.iter().map(|e| e.seq).collect();
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.outbox_done(&seqs))
            .await
            .context("outbox worker panicked")?
            .context("clearing the outbox")
    }

    /// Publishes outbox entries left by a crash or by the HTTP API.
    async fn flush_outbox(&self, publisher: &Publisher) -> Result<()> {
        let (db, name) = (Arc::clone(&self.db), self.plugin.name.clone());
        let pending = tokio::task::spawn_blocking(move || db.pending_outbox(&name))
            .await
            .context("outbox worker panicked")??;
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

    fn event() -> Event {
        Event {
            id: "e1".into(),
            routing_key: "a.b".into(),
            body: "{}".into(),
            received_at_ms: 0,
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
            (
                "x.y".to_string(),
                r#"{"a":1,"eventId":"e1/p/0"}"#.to_string()
            )
        );
        assert_eq!(publish[1].1, r#"{"eventId":"own"}"#);
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
