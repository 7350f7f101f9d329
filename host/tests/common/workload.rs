//! What the fault tests send and what must come of it: a large stream of
//! customer events with distinct ids and distinct timestamps, in a seeded
//! random order, with some of them sent again; the exact final state the
//! host must reach (each event counted once, the latest timestamp of each
//! customer wins); and a background publisher that gets every message
//! confirmed by the broker even if the broker goes away meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use serde_json::{Value, json};
use switchyard::Config;
use switchyard::store::Store;
use tokio::task::JoinHandle;

use super::backend::Backend;
use super::process::ChildHost;
use super::{customer_event, off_reactor, producer_properties};

/// The plugins a workload goes through: `counter` makes a double (or
/// missing) application visible, `merge` keeps the latest state.
pub const PLUGINS: &[&str] = &["counter", "merge"];

/// The seed of a test's random choices: `SWITCHYARD_TEST_SEED` to replay
/// them (the stream and the points struck; not the timing), else the clock.
/// Printed, so that a failing run can be replayed.
pub fn test_seed() -> u64 {
    let seed = match std::env::var("SWITCHYARD_TEST_SEED") {
        Ok(text) => text.parse().expect("SWITCHYARD_TEST_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!("seed {seed} (replay with SWITCHYARD_TEST_SEED={seed})");
    seed
}

/// A stream of customer events and the state it must leave.
pub struct CustomerWorkload {
    /// `(routing key, body)` in publishing order, duplicates included.
    pub messages: Vec<(String, Vec<u8>)>,
    /// Distinct event ids: what each plugin must apply, exactly.
    pub distinct: usize,
    /// Messages that repeat another's event id (sent before or after it).
    pub duplicates: usize,
    /// Malformed messages (each distinct), which every plugin receiving
    /// them must dead-letter once.
    pub malformed: usize,
    event_ids: Vec<String>,
    /// Customer id to the document `customers/<id>` must end as.
    expected: BTreeMap<String, Value>,
}

impl CustomerWorkload {
    /// `events` events with distinct ids over `customers` customers, event
    /// `i` stamped `i` milliseconds after a fixed instant, shuffled; then
    /// `duplicates` copies of random events inserted at random places.
    pub fn new(
        rng: &mut fastrand::Rng,
        events: usize,
        customers: usize,
        duplicates: usize,
    ) -> Self {
        let mut latest: BTreeMap<String, usize> = BTreeMap::new();
        let mut messages = Vec::with_capacity(events + duplicates);
        let mut event_ids = Vec::with_capacity(events);
        for i in 0..events {
            let customer = format!("c{}", i % customers);
            let event_id = format!("fault-{i}");
            let body = customer_event(&event_id, &customer, &format!("n{i}"), &timestamp(i));
            messages.push(("customer.updated".to_string(), body));
            event_ids.push(event_id);
            latest.insert(customer, i);
        }
        rng.shuffle(&mut messages);
        for _ in 0..duplicates {
            let copy = messages[rng.usize(..events)].clone();
            messages.insert(rng.usize(..=messages.len()), copy);
        }
        let expected = latest
            .into_iter()
            .map(|(id, i)| {
                let doc = json!({
                    "id": id, "name": format!("n{i}"), "email": format!("n{i}@test.com"),
                    "updatedAt": timestamp(i),
                });
                (id, doc)
            })
            .collect();
        Self {
            messages,
            distinct: events,
            duplicates,
            malformed: 0,
            event_ids,
            expected,
        }
    }

    /// Inserts `n` malformed messages at random places, each distinct:
    /// half without an `eventId`, half not JSON at all.
    pub fn add_malformed(&mut self, rng: &mut fastrand::Rng, n: usize) {
        for i in 0..n {
            let body = if i % 2 == 0 {
                format!(r#"{{"id":"c{i}","name":"no event id {i}"}}"#)
            } else {
                format!("not JSON {i}")
            };
            let at = rng.usize(..=self.messages.len());
            self.messages
                .insert(at, ("customer.updated".to_owned(), body.into_bytes()));
        }
        self.malformed += n;
    }

    /// Waits until the host has applied every event and the customer
    /// documents are final. Fails at once if the count ever passes the
    /// number of distinct events (an event applied twice).
    pub async fn wait_applied(&self, host: &ChildHost, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut count = 0;
        let mut wrong = usize::MAX;
        while Instant::now() < deadline {
            count = self.counted(host).await;
            assert!(
                count <= self.distinct as u64,
                "counter reached {count} for {} distinct events: events applied twice",
                self.distinct
            );
            if count == self.distinct as u64 {
                wrong = self.wrong_customers(host).await.len();
                if wrong == 0 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "after {limit:?}: counter at {count} of {}, {wrong} customers not final\n{}",
            self.distinct,
            host.log_tail(30)
        );
    }

    /// Random points of the stream, in order: counts of applied events
    /// in the first nine tenths, at which to strike a host.
    pub fn random_points(&self, rng: &mut fastrand::Rng, n: usize) -> Vec<u64> {
        let mut points: Vec<u64> = (0..n)
            .map(|_| rng.u64(1..self.distinct as u64 * 9 / 10))
            .collect();
        points.sort_unstable();
        points
    }

    /// Waits until the counter reaches `at_least`; returns its value.
    pub async fn wait_counted(&self, host: &ChildHost, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let count = self.counted(host).await;
            if count >= at_least {
                return count;
            }
            assert!(
                Instant::now() < deadline,
                "counter stuck at {count}, waiting for {at_least}\n{}",
                host.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The counter's total (`GET /analytics/collections/counts/total`).
    pub async fn counted(&self, host: &ChildHost) -> u64 {
        match host.get("/analytics/collections/counts/total").await {
            (200, total) => total["count"].as_u64().expect("a count"),
            (404, _) => 0,
            (status, body) => panic!("counts/total: {status} {body}"),
        }
    }

    /// Asserts the state the API serves: the count, and every customer
    /// document as its latest event left it, and no other.
    pub async fn assert_api_state(&self, host: &ChildHost) {
        assert_eq!(
            self.counted(host).await,
            self.distinct as u64,
            "each event applied exactly once"
        );
        let wrong = self.wrong_customers(host).await;
        assert!(
            wrong.is_empty(),
            "{} customer documents are not the latest event's, e.g. {:?}",
            wrong.len(),
            wrong.first()
        );
    }

    /// Customers whose document differs from the expected one, as
    /// `(id, expected, found)`; customers not expected count too.
    async fn wrong_customers(&self, host: &ChildHost) -> Vec<(String, Value, Value)> {
        let mut found = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                None => "/analytics/collections/customers?limit=1000".to_owned(),
                Some(key) => format!("/analytics/collections/customers?limit=1000&after={key}"),
            };
            let (status, page) = host.get(&path).await;
            assert_eq!(status, 200, "{path}: {page}");
            for item in page["items"].as_array().unwrap() {
                let key = item["key"].as_str().unwrap().to_owned();
                found.insert(key, item["document"].clone());
            }
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        let mut wrong: Vec<(String, Value, Value)> = self
            .expected
            .iter()
            .filter(|(id, doc)| found.get(*id) != Some(*doc))
            .map(|(id, doc)| {
                let got = found.get(id).cloned().unwrap_or(Value::Null);
                (id.clone(), doc.clone(), got)
            })
            .collect();
        wrong.extend(
            found
                .into_iter()
                .filter(|(id, _)| !self.expected.contains_key(id))
                .map(|(id, got)| (id, Value::Null, got)),
        );
        wrong
    }

    /// Asserts what the store recorded (open it with the host stopped):
    /// every plugin applied exactly the distinct event ids, and the
    /// counter's committed state agrees. Blocking, off the reactor.
    pub fn assert_store(&self, store: &Store) {
        off_reactor(|| self.assert_store_blocking(store.blocking()))
    }

    fn assert_store_blocking(&self, store: &dyn switchyard::store::Backend) {
        let ids: Vec<&str> = self.event_ids.iter().map(String::as_str).collect();
        for plugin in PLUGINS {
            assert_eq!(
                store.applied_count(plugin).unwrap(),
                self.distinct as u64,
                "{plugin}: applied ids in the store"
            );
            let applied = store.applied_among(plugin, &ids).unwrap();
            assert_eq!(
                applied.len(),
                self.distinct,
                "{plugin}: every event id of the workload is recorded as applied"
            );
        }
        let count = store.state_get("counter", "count").unwrap().expect("state");
        assert_eq!(
            u64::from_le_bytes(count.try_into().unwrap()),
            self.distinct as u64,
            "counter's committed state"
        );
    }
}

/// The `timestamp` of event `i`: `i` ms after 2026-11-24T08:00:00Z.
fn timestamp(i: usize) -> String {
    let (ms, s) = (i % 1000, i / 1000);
    format!(
        "2026-11-24T{:02}:{:02}:{:02}.{ms:03}Z",
        8 + s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A fault test under way: its seeded random choices, the stream, a host
/// started with [`PLUGINS`], and the publisher sending the stream to it.
pub struct FaultRun {
    pub rng: fastrand::Rng,
    pub workload: CustomerWorkload,
    pub host: ChildHost,
    pub publishing: Publishing,
}

impl FaultRun {
    /// A [`CustomerWorkload`] of `events` events over `customers` customers
    /// with `duplicates` repeats, published at `pace` to a healthy host
    /// whose store is on `backend`.
    pub async fn start(
        backend: Backend,
        events: usize,
        customers: usize,
        duplicates: usize,
        pace: Pace,
    ) -> Self {
        Self::start_with_malformed(backend, events, customers, duplicates, 0, pace).await
    }

    /// [`FaultRun::start`] with `malformed` bad messages in the stream.
    pub async fn start_with_malformed(
        backend: Backend,
        events: usize,
        customers: usize,
        duplicates: usize,
        malformed: usize,
        pace: Pace,
    ) -> Self {
        Self::start_with(
            backend,
            events,
            customers,
            duplicates,
            malformed,
            pace,
            |_| {},
        )
        .await
    }

    /// Like [`FaultRun::start_with_malformed`], the host's settings changed
    /// by `adjust`.
    pub async fn start_with(
        backend: Backend,
        events: usize,
        customers: usize,
        duplicates: usize,
        malformed: usize,
        pace: Pace,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut rng = fastrand::Rng::with_seed(test_seed());
        let mut workload = CustomerWorkload::new(&mut rng, events, customers, duplicates);
        workload.add_malformed(&mut rng, malformed);
        let host = ChildHost::start_on_with(backend, PLUGINS, adjust).await;
        host.wait_healthy().await;
        let publishing = Publishing::start(&host.config, workload.messages.clone(), pace);
        Self {
            rng,
            workload,
            host,
            publishing,
        }
    }
}

/// The end of a fault test: publishes the rest of the stream, waits until
/// `host` has applied all of it, checks the API's state, stops the host
/// with a SIGTERM that must succeed within `exit_limit`, then checks the
/// store and that nothing was dead-lettered. Returns the publisher's report
/// and how long that exit took.
pub async fn settle(
    workload: &CustomerWorkload,
    host: &mut ChildHost,
    publishing: Publishing,
    exit_limit: Duration,
) -> (PublishReport, Duration) {
    let published = publishing.finish().await;
    workload.wait_applied(host, Duration::from_secs(60)).await;
    workload.assert_api_state(host).await;
    let (status, took) = host.terminate(exit_limit).await;
    assert!(
        status.success(),
        "the final SIGTERM made the host exit with {status}"
    );
    workload.assert_store(&host.open_store());
    assert_no_dead_letters(&host.config).await;
    (published, took)
}

/// Takes the dead letters of `plugin`, once exactly `n` have arrived and no
/// more come: their bodies.
pub async fn dead_letters(config: &Config, plugin: &str, n: usize) -> Vec<Vec<u8>> {
    let broker = super::TestBroker::connect(config).await;
    let letters = broker
        .drain_exactly(&config.dead_letter_queue(plugin), n)
        .await;
    broker.close().await;
    letters.into_iter().map(|(_, body, _)| body).collect()
}

/// Asserts that a host's dead-letter queues are empty: nothing was rejected.
pub async fn assert_no_dead_letters(config: &Config) {
    let connection = Connection::connect(config.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for plugin in PLUGINS {
        let dlq = config.dead_letter_queue(plugin);
        let queue = channel
            .queue_declare(
                dlq.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        assert_eq!(queue.message_count(), 0, "dead letters in {dlq}");
    }
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
}

/// How fast the publisher goes: `chunk` messages, confirmed together, then
/// `pause`.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub chunk: usize,
    pub pause: Duration,
}

/// What a publisher did.
#[derive(Debug, Clone, Copy)]
pub struct PublishReport {
    pub messages: usize,
    /// Messages published again because their chunk was not confirmed.
    pub resent: usize,
    /// Connections opened after the first one.
    pub reconnects: usize,
    pub elapsed: Duration,
}

/// A background task publishing messages to a host's exchange with
/// confirms. A chunk that is not confirmed (broker gone, channel closed,
/// nack, no answer) is published again on a new connection once the broker
/// is back; the host deduplicates what arrives twice.
pub struct Publishing {
    confirmed: Arc<AtomicUsize>,
    total: usize,
    task: JoinHandle<PublishReport>,
}

/// How long the publisher keeps trying before it gives up.
const PUBLISH_LIMIT: Duration = Duration::from_secs(180);

impl Publishing {
    pub fn start(config: &Config, messages: Vec<(String, Vec<u8>)>, pace: Pace) -> Self {
        let confirmed = Arc::new(AtomicUsize::new(0));
        let total = messages.len();
        let task = tokio::spawn(publish_all(
            config.amqp_url().to_owned(),
            config.exchange.clone(),
            messages,
            pace,
            Arc::clone(&confirmed),
        ));
        Self {
            confirmed,
            total,
            task,
        }
    }

    /// Messages confirmed so far (in order: the first n).
    pub fn confirmed(&self) -> usize {
        self.confirmed.load(Ordering::Relaxed)
    }

    pub fn is_done(&self) -> bool {
        self.confirmed() == self.total
    }

    /// Waits until every message is confirmed.
    pub async fn finish(self) -> PublishReport {
        self.task.await.expect("the publisher failed")
    }
}

async fn publish_all(
    url: String,
    exchange: String,
    messages: Vec<(String, Vec<u8>)>,
    pace: Pace,
    confirmed: Arc<AtomicUsize>,
) -> PublishReport {
    let started = Instant::now();
    let mut report = PublishReport {
        messages: messages.len(),
        resent: 0,
        reconnects: 0,
        elapsed: Duration::ZERO,
    };
    let mut session: Option<(Connection, Channel)> = None;
    let mut next = 0;
    let mut last_error = String::new();
    let mut connections = 0;
    while next < messages.len() {
        assert!(
            started.elapsed() < PUBLISH_LIMIT,
            "publisher: {next} of {} confirmed after {PUBLISH_LIMIT:?}; last error: {last_error}",
            messages.len()
        );
        if session.is_none() {
            match open_confirmed_channel(&url).await {
                Ok(opened) => {
                    connections += 1;
                    session = Some(opened);
                }
                Err(e) => {
                    last_error = format!("{e:#}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            }
        }
        let (_, channel) = session.as_ref().unwrap();
        let chunk = &messages[next..(next + pace.chunk).min(messages.len())];
        match publish_chunk(channel, &exchange, chunk).await {
            Ok(()) => {
                next += chunk.len();
                confirmed.store(next, Ordering::Relaxed);
                tokio::time::sleep(pace.pause).await;
            }
            Err(e) => {
                last_error = format!("{e:#}");
                println!(
                    "publisher: {last_error}; publishing {} messages again",
                    chunk.len()
                );
                report.resent += chunk.len();
                if let Some((connection, _)) = session.take() {
                    let _ = connection.close(200, "publisher retrying".into()).await;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    if let Some((connection, channel)) = session {
        let _ = channel.close(200, "done".into()).await;
        let _ = connection.close(200, "done".into()).await;
    }
    report.reconnects = connections - 1;
    report.elapsed = started.elapsed();
    report
}

async fn open_confirmed_channel(url: &str) -> Result<(Connection, Channel)> {
    let connect = Connection::connect(url, ConnectionProperties::default());
    let connection = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .context("connecting timed out")?
        .context("connecting")?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

async fn publish_chunk(
    channel: &Channel,
    exchange: &str,
    chunk: &[(String, Vec<u8>)],
) -> Result<()> {
    let props = producer_properties();
    let publish = async {
        let mut confirms = Vec::with_capacity(chunk.len());
        for (key, body) in chunk {
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    key.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    props.clone(),
                )
                .await
                .context("publishing")?;
            confirms.push(confirm);
        }
        for confirm in futures_util::future::join_all(confirms).await {
            if !confirm.context("waiting for a confirm")?.is_ack() {
                bail!("the broker did not confirm a message");
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(15), publish)
        .await
        .context("no confirms within 15 s")?
}
