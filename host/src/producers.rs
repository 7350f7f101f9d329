//! The producer scheduler: polls each producer plugin on its interval,
//! publishes the events it returns to the exchange with publisher confirms,
//! and commits the producer's state (its cursor, what it has seen) only
//! once every event of that poll is confirmed. A poll that fails, or whose
//! events the broker does not confirm, commits nothing: the next poll
//! starts from the same state and emits the same events, with the same ids.
//!
//! A poll may hand events over while it runs (the `publish` import, for
//! walks over large upstreams): they are published with confirms at once,
//! and count as the poll's events; its state still commits only at the end.
//!
//! Hosts sharing a store poll each producer once between them: a poll
//! needs the producer's lease (`cluster::Lease`), which the host holding
//! it renews while it polls; another host takes it over when it lapses.
//!
//! Producers hot-reload like transformers: each poll runs on the version
//! current when it starts. With the embedded bus, a poll's events are
//! applied by the transformers in-process before its state is committed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, PublisherConfirm};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::{self, BrokerStatus, ConnectionWatch, Outgoing, Publisher};
use crate::cluster::Lease;
use crate::config::Config;
use crate::embedded::{self, EmbeddedBus};
use crate::headers;
use crate::plugins::bindings::{ProducedEvent, PublishSink};
use crate::plugins::state_txn::StateTxn;
use crate::plugins::{
    CallError, LoadedPlugin, POLL_TIMEOUT_SETTING, PluginRegistry, PluginSlot, PollRecord,
};
use crate::store::{BatchCommit, Store, StoreError, StoreHealth, now_ms};

/// Runs one poll loop per loaded producer, following the registry.
pub struct Scheduler {
    pub config: Arc<Config>,
    pub db: Store,
    pub store_health: Arc<StoreHealth>,
    /// This host's id: producers' leases are taken in its name.
    pub host_id: String,
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
                    store_health: Arc::clone(&self.store_health),
                    host_id: self.host_id.clone(),
                    slot: Arc::clone(&slot),
                    bus: self.bus.clone(),
                    status: Arc::clone(&self.status),
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
/// when publishing fails or the connection is lost (the next poll opens new
/// ones).
struct Link {
    connection: Connection,
    publisher: Arc<Publisher>,
    /// Says when the broker blocks the link's publishing (in the log, in
    /// `/health` and in the producer's `/plugins` entry) and when the link
    /// is lost.
    watch: ConnectionWatch,
}

/// The shortest pause between two looks at a lease another host holds.
const MIN_STANDBY_CHECK: Duration = Duration::from_millis(100);

/// How long a producer's lease lasts unrenewed: a host that stops renewing
/// it (it died) is replaced within two poll intervals, since the others
/// look every quarter interval.
fn lease_ttl(interval: Duration) -> Duration {
    (interval * 3 / 2).max(Duration::from_secs(1))
}

/// Chunks of a poll's events that may wait for their confirms while the
/// poll goes on (the broker confirms persistent messages after writing
/// them to disk: waiting for each chunk would stall the walk).
const UNCONFIRMED_CHUNKS: usize = 4;

/// Where one poll's events go: the broker, with confirms, or the embedded
/// bus. Used from the poll's blocking thread, for the events the plugin
/// publishes as it goes and for those it returns.
#[derive(Clone)]
enum Sink {
    Broker {
        publisher: Arc<Publisher>,
        runtime: tokio::runtime::Handle,
        exchange: String,
        plugin: String,
        /// Confirms still to come, a chunk of events each, oldest first.
        unconfirmed: Arc<Mutex<VecDeque<Vec<PublisherConfirm>>>>,
    },
    Bus(Arc<EmbeddedBus>),
}

impl Sink {
    /// Publishes (or applies) `events`, checked; blocking. Their confirms
    /// may still be on the way: see [`Sink::confirmed`].
    fn send(&self, events: &[ProducedEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let messages = events.iter().map(checked).collect::<Result<Vec<_>>>()?;
        match self {
            Sink::Bus(bus) => {
                let messages = messages
                    .iter()
                    .map(|(key, body)| embedded::message(key, body))
                    .collect();
                bus.deliver(messages, None)?;
            }
            Sink::Broker {
                publisher,
                runtime,
                exchange,
                plugin,
                unconfirmed,
            } => {
                let outgoing: Vec<Outgoing> = messages
                    .iter()
                    .map(|(key, body)| {
                        let mut table = FieldTable::default();
                        headers::set_text(&mut table, headers::SOURCE, plugin.clone());
                        Outgoing::json_event(exchange, key, body.to_string().into_bytes(), table)
                    })
                    .collect();
                // Only this poll's thread uses the queue.
                let mut waiting = unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
                runtime
                    .block_on(async {
                        waiting.push_back(publisher.send_all(&outgoing).await?);
                        while waiting.len() > UNCONFIRMED_CHUNKS {
                            let oldest = waiting.pop_front().expect("more than zero");
                            broker::confirmed(oldest).await?;
                        }
                        Ok::<_, anyhow::Error>(())
                    })
                    .context("publishing the poll's events")?;
            }
        }
        Ok(())
    }

    /// Waits until every event sent is confirmed; blocking.
    fn confirmed(&self) -> Result<()> {
        if let Sink::Broker {
            runtime,
            unconfirmed,
            ..
        } = self
        {
            let waiting =
                std::mem::take(&mut *unconfirmed.lock().unwrap_or_else(|p| p.into_inner()));
            runtime
                .block_on(async {
                    for chunk in waiting {
                        broker::confirmed(chunk).await?;
                    }
                    Ok::<_, anyhow::Error>(())
                })
                .context("publishing the poll's events")?;
        }
        Ok(())
    }
}

/// One producer's poll loop.
struct Poller {
    config: Arc<Config>,
    db: Store,
    store_health: Arc<StoreHealth>,
    host_id: String,
    slot: Arc<PluginSlot>,
    bus: Option<Arc<EmbeddedBus>>,
    status: Arc<BrokerStatus>,
    link: Option<Link>,
}

impl Poller {
    async fn run(mut self, stop: CancellationToken) {
        let mut lease: Option<Lease> = None;
        loop {
            let version = self.slot.current();
            let Some(interval) = version.poll_interval() else {
                break; // replaced by a transformer: the pipeline takes over
            };
            let held = Lease {
                name: format!("producer/{}", self.slot.name),
                holder: self.host_id.clone(),
                ttl: lease_ttl(interval),
            };
            let pause = match self.poll_if_ours(&version, &held).await {
                true => interval,
                // Another host polls: look again soon, to take over within
                // two intervals when it stops renewing.
                false => (interval / 4).max(MIN_STANDBY_CHECK),
            };
            lease = Some(held);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if let Some(lease) = lease {
            lease.release(&self.db).await;
        }
        if let Some(link) = self.link.take() {
            if let Some(publisher) = Arc::into_inner(link.publisher) {
                publisher.close().await;
            }
            let _ = link.connection.close(200, ShortString::from("bye")).await;
        }
    }

    /// Polls if this host holds (or takes) the producer's lease, renewing
    /// it while the poll runs; false if another host holds it.
    async fn poll_if_ours(&mut self, version: &Arc<LoadedPlugin>, lease: &Lease) -> bool {
        let db = self.db.clone();
        match lease.take(&db).await {
            Ok(holder) => {
                let ours = holder == lease.holder;
                self.slot.set_poller(holder);
                if !ours {
                    return false;
                }
            }
            Err(e) => {
                if e.is_outage() {
                    self.store_health.failed(&e);
                }
                self.poll_failed(&anyhow::Error::from(e).context("taking the producer's lease"));
                return true;
            }
        }
        let started = now_ms();
        let timer = std::time::Instant::now();
        let result = {
            // Said plainly when the broker went silent under the poll.
            let poll = async {
                self.poll_once(version).await.map_err(|e| match &self.link {
                    Some(link) => link.watch.explain(e),
                    None => e,
                })
            };
            tokio::pin!(poll);
            let mut renew = tokio::time::interval(lease.ttl / 3);
            renew.tick().await;
            loop {
                tokio::select! {
                    result = &mut poll => break result,
                    _ = renew.tick() => {
                        if let Err(e) = lease.take(&db).await {
                            tracing::warn!(error = %e, "renewing the producer's lease failed");
                        }
                    }
                }
            }
        };
        self.slot
            .counters
            .timings
            .poll_seconds
            .observe_duration(timer.elapsed());
        if result.is_err()
            && let Some(link) = self.link.take()
        {
            let _ = link
                .connection
                .close(200, ShortString::from("failed"))
                .await;
        }
        match result {
            Ok(published) => {
                let took_ms = now_ms() - started;
                self.slot.counters.polls.fetch_add(1, Relaxed);
                self.slot.poll_succeeded(PollRecord {
                    at_ms: now_ms(),
                    took_ms,
                    published,
                });
                if published > 0 {
                    tracing::info!(published, took_ms, "poll published");
                }
            }
            Err(e) => self.poll_failed(&e),
        }
        true
    }

    fn poll_failed(&self, e: &anyhow::Error) {
        let error = crate::telemetry::error_chain(e);
        tracing::warn!(%error, "poll failed; the next one starts from the same state");
        self.slot.counters.polls.fetch_add(1, Relaxed);
        self.slot.counters.failed_polls.fetch_add(1, Relaxed);
        self.slot.set_poll_error(error);
    }

    /// Polls (the plugin publishing as it goes), publishes what the poll
    /// returns, then commits the poll's state writes, in one state
    /// transaction; returns how many events were published.
    async fn poll_once(&mut self, version: &Arc<LoadedPlugin>) -> Result<u64> {
        let sink = self.sink().await?;
        let published = Arc::new(AtomicU64::new(0));
        let (slot, polled, counted) = (
            Arc::clone(&self.slot),
            Arc::clone(version),
            Arc::clone(&published),
        );
        let (db, health) = (self.db.clone(), Arc::clone(&self.store_health));
        let during = sink.clone();
        let publish: PublishSink = Box::new(move |events| {
            during.send(&events).map_err(|e| format!("{e:#}"))?;
            counted.fetch_add(events.len() as u64, Relaxed);
            Ok(())
        });
        let limit = version.poll_timeout().context("not a producer")?;
        let polled = tokio::task::spawn_blocking(move || {
            let store = |e: StoreError| {
                if e.is_outage() {
                    health.failed(&e);
                }
                anyhow::Error::from(e)
            };
            let mut txn = StateTxn::begin(&slot, &db, || polled.producer())
                .map_err(store)?
                .context("not a producer")?;
            // A failed poll discards its own writes (`Instance::poll`).
            let events = txn.instance().poll(publish, limit).map_err(|e| match e {
                CallError::Timeout => anyhow!(
                    "the poll stopped: no progress (HTTP or publish) for a whole plugin \
                     deadline, or longer than {POLL_TIMEOUT_SETTING} ({} ms)",
                    limit.as_millis()
                ),
                CallError::Store(e) => store(e),
                other => anyhow!(other),
            })?;
            sink.send(&events)?;
            sink.confirmed()?;
            let commit = BatchCommit {
                plugin: slot.name.clone(),
                version: polled.sha256.clone(),
                declared_version: polled.info.version.clone(),
                ..BatchCommit::default()
            };
            txn.commit(&db, commit)
                .map_err(store)
                .context("committing the producer's state")?;
            health.answered();
            Ok::<_, anyhow::Error>(events.len() as u64)
        })
        .await
        .context("poll worker panicked")
        .and_then(|polled| polled);
        let published = published.load(Relaxed) + polled.as_ref().map_or(0, |n| *n);
        self.slot.counters.published.fetch_add(published, Relaxed);
        polled.map(|_| published)
    }

    /// Where this poll's events go; opens the broker link if needed.
    async fn sink(&mut self) -> Result<Sink> {
        if let Some(bus) = &self.bus {
            return Ok(Sink::Bus(Arc::clone(bus)));
        }
        // A link lost since the last poll (the broker went silent, or
        // closed it) is replaced before this poll publishes anything.
        if self.link.as_ref().is_some_and(|l| l.watch.is_lost()) {
            self.link = None;
        }
        if self.link.is_none() {
            let name = format!(
                "{} producer {}",
                self.config.connection_name(),
                self.slot.name
            );
            let connection = broker::connect(&self.config, &name).await?;
            let slot = Arc::clone(&self.slot);
            let watch = ConnectionWatch::start(
                &connection,
                &name,
                Arc::clone(&self.status),
                Some(Box::new(move |reason| slot.set_publishing_blocked(reason))),
            );
            let channel = connection.create_channel().await?;
            broker::declare_exchange(&channel, &self.config.exchange).await?;
            let _ = channel.close(200, ShortString::from("declared")).await;
            let publisher = Arc::new(Publisher::open(&connection).await?);
            self.link = Some(Link {
                connection,
                publisher,
                watch,
            });
        }
        let link = self.link.as_ref().expect("opened above");
        Ok(Sink::Broker {
            publisher: Arc::clone(&link.publisher),
            runtime: tokio::runtime::Handle::current(),
            exchange: self.config.exchange.clone(),
            plugin: self.slot.name.clone(),
            unconfirmed: Arc::default(),
        })
    }
}

/// The event's routing key and body, its `eventId` the event's id.
fn checked(event: &ProducedEvent) -> Result<(String, Value)> {
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
