//! Shared test harness: a Switchyard host started in-process against the
//! real RabbitMQ on loopback (with its own exchange and queue names, so
//! tests run in parallel), real `.wasm` plugins built by `cargo xtask
//! build`, and helpers to publish, read dead letters and query the API.
//!
//! For the fault tests: [`process`] runs the real binary as a child process
//! (to kill it), [`workload`] makes a large event stream with its expected
//! outcome and publishes it through broker outages, and [`broker_lock`]
//! keeps tests that need the broker up apart from one that stops it
//! ([`service_lock`] is the lock; PostgreSQL has one too, in [`backend`]).
//! [`upstream`] is a REST upstream for producers, scripted by the test.
//! [`backend`] chooses the store a host runs on (SQLite or a PostgreSQL
//! database of the test's own) and instantiates a test on each;
//! [`black_hole`] silences one connection to the broker (iptables).
#![allow(dead_code)]

pub mod backend;
pub mod black_hole;
pub mod broker_lock;
pub mod process;
pub mod service_lock;
pub mod upstream;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use switchyard::store::Store;
use switchyard::{Config, Running};

use backend::{Backend, TestStore};

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The built component of a plugin: shipped ones from `plugins/`, test
/// fixtures from `target/test-plugins/`.
pub fn plugin_file(name: &str) -> PathBuf {
    let root = workspace();
    let candidates = [
        root.join("plugins").join(format!("{name}.wasm")),
        root.join("target/test-plugins")
            .join(format!("{name}.wasm")),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!("{name}.wasm is not built: run `cargo xtask test` (or `cargo xtask build`)")
        })
}

/// The seed messages of the reference deployment: (routing key, body bytes).
pub fn seed_events() -> Vec<(String, Vec<u8>)> {
    let text = include_str!("../fixtures/seed-events.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let key = v["routing_key"].as_str().unwrap().to_owned();
            let body = match v.get("raw_body") {
                Some(raw) => raw.as_str().unwrap().as_bytes().to_vec(),
                None => serde_json::to_vec(&v["body"]).unwrap(),
            };
            (key, body)
        })
        .collect()
}

/// A name no other test (or test run) uses: for exchanges and queue prefixes.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The settings of a host under test: `plugins` copied into a plugins
/// folder under `dir`, its store `store` (SQLite: in `dir` too), the test
/// broker, and exchange and queue names of its own (prefixed `prefix`).
pub fn host_config(dir: &Path, plugins: &[&str], prefix: &str, store: &TestStore) -> Config {
    let plugin_dir = dir.join("plugins");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    for name in plugins {
        std::fs::copy(plugin_file(name), plugin_dir.join(format!("{name}.wasm"))).unwrap();
    }
    let mut config = Config::defaults();
    config.amqp_url = Some(amqp_url().into());
    config.plugins = plugin_dir;
    config.data = dir.join("data");
    config.store = store.url();
    config.exchange = unique(&format!("{prefix}-exchange"));
    config.queue_prefix = unique(prefix);
    config
}

/// A host under test plus the folders and broker names it owns.
pub struct TestHost {
    pub config: Config,
    pub running: Option<Running>,
    shutdown: CancellationToken,
    pub base: String,
    pub http: reqwest::Client,
    /// The test's own handle on the host's store, opened on first use.
    checks: OnceLock<Store>,
    _dirs: tempfile::TempDir,
    /// Nobody stops the broker under this host (see [`broker_lock`]).
    _broker_up: broker_lock::BrokerLock,
    /// Last: a PostgreSQL database is dropped once the host is gone.
    _store: TestStore,
}

impl TestHost {
    /// A host with the given plugins copied into its plugins folder, on the
    /// embedded store.
    pub async fn start(plugins: &[&str]) -> Self {
        Self::start_with(plugins, |_| {}).await
    }

    /// Like [`TestHost::start`], with settings changed by `adjust`.
    pub async fn start_with(plugins: &[&str], adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_on_with(Backend::Sqlite, plugins, adjust).await
    }

    /// Like [`TestHost::start`], on a store on `backend`.
    pub async fn start_on(backend: Backend, plugins: &[&str]) -> Self {
        Self::start_on_with(backend, plugins, |_| {}).await
    }

    /// Like [`TestHost::start_on`], with settings changed by `adjust`.
    pub async fn start_on_with(
        backend: Backend,
        plugins: &[&str],
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        // Logs go through the test harness: shown for a failing test only.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,lapin=warn"))
            .with_test_writer()
            .try_init();
        let broker_up = broker_lock::BrokerLock::shared().await;
        let dirs = tempfile::tempdir().unwrap();
        let store = TestStore::new(backend);
        let mut config = host_config(dirs.path(), plugins, "sy-test", &store);
        config.http = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        let mut host = Self {
            config,
            running: None,
            shutdown: CancellationToken::new(),
            base: String::new(),
            // No pooled connections: a server that refuses a large body
            // closes the connection, and a reused one would then fail the
            // next request for reasons the test is not about.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            checks: OnceLock::new(),
            _dirs: dirs,
            _broker_up: broker_up,
            _store: store,
        };
        host.boot().await;
        host
    }

    pub fn plugin_dir(&self) -> &Path {
        &self.config.plugins
    }

    async fn boot(&mut self) {
        self.shutdown = CancellationToken::new();
        let running = switchyard::start(self.config.clone(), self.shutdown.clone())
            .await
            .expect("host starts");
        self.base = format!("http://{}", running.http_addr);
        self.running = Some(running);
    }

    /// Graceful stop: the batch in flight is committed and acknowledged.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(30), running.wait())
                .await
                .expect("host stops within 30 s");
        }
    }

    /// Stop, then start again on the same data and plugins.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.boot().await;
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `/health` says 200 (broker connected, plugins loaded).
    pub async fn wait_healthy(&self) {
        let base = self.base.clone();
        let http = self.http.clone();
        eventually(
            "the host to become healthy",
            Duration::from_secs(30),
            || {
                let (base, http) = (base.clone(), http.clone());
                async move {
                    http.get(format!("{base}/health"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 200)
                }
            },
        )
        .await;
    }

    /// A plugin's entry in `GET /plugins`.
    pub async fn plugin(&self, name: &str) -> Value {
        plugin_entry(&self.get("/plugins").await.1, name)
    }

    /// Waits for `n` more polls of producer `plugin` than it has made now.
    pub async fn wait_polls(&self, plugin: &str, n: u64) {
        let start = producer_stat(&self.plugin(plugin).await, "polls");
        eventually(
            &format!("{n} polls of {plugin}"),
            Duration::from_secs(30),
            || async { producer_stat(&self.plugin(plugin).await, "polls") >= start + n },
        )
        .await;
    }

    /// Waits until a plugin has applied and dead-lettered at least these
    /// many events (counters since this host started).
    pub async fn wait_counts(&self, plugin: &str, applied: u64, dead: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let p = self.plugin(plugin).await;
            let (a, d) = (
                p["events_applied"].as_u64().unwrap(),
                p["dead_lettered"].as_u64().unwrap(),
            );
            if a >= applied && d >= dead {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{plugin}: applied {a}/{applied}, dead-lettered {d}/{dead}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many events the plugin has applied, as recorded in the store.
    pub fn applied_in_store(&self, plugin: &str) -> u64 {
        self.in_store(|db| db.applied_count(plugin).unwrap())
    }

    /// Runs `f` on the host's store, through the test's own handle on it
    /// (the host may be stopped).
    pub fn in_store<T: Send>(
        &self,
        f: impl FnOnce(&dyn switchyard::store::Backend) -> T + Send,
    ) -> T {
        off_reactor(|| {
            let store = self.checks.get_or_init(|| open_store(&self.config));
            f(store.blocking())
        })
    }

    /// Deletes this test's queues and exchanges from the broker.
    pub async fn cleanup(mut self, plugins: &[&str]) {
        self.stop().await;
        delete_topology(&self.config, plugins).await;
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shutdown.cancel();
            delete_topology_after_failure(&self.config, self.running.take());
        }
    }
}

/// Opens the store of a host with `config` (blocking: see [`off_reactor`]).
pub fn open_store(config: &Config) -> Store {
    let location = config.store_location().expect("a valid --store");
    Store::open_blocking(&location).expect("opening the host's store")
}

/// Runs blocking store work `f` on a thread of its own and waits for it:
/// PostgreSQL's synchronous client cannot run on a tokio worker, where
/// test bodies do. A panic in `f` (a failed assertion) goes on in the
/// caller.
pub fn off_reactor<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Deletes, as a failed test unwinds, the queues and exchanges its host
/// declared for the plugins in its plugins folder, so that a failure leaves
/// nothing on the shared broker. An in-process host (`running`) is waited
/// for first: it would declare them again. On a thread with a runtime of
/// its own (the test's is the one unwinding), for 10 s at most; best effort.
pub fn delete_topology_after_failure(config: &Config, running: Option<Running>) {
    let plugins: Vec<String> = std::fs::read_dir(&config.plugins)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let wasm = path.extension().is_some_and(|e| e == "wasm");
            wasm.then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    let config = config.clone();
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let names: Vec<&str> = plugins.iter().map(String::as_str).collect();
        let cleanup = async {
            if let Some(running) = running {
                running.wait().await;
            }
            delete_topology(&config, &names).await
        };
        // The timer is made inside the runtime: it needs its clock.
        let _ = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), cleanup).await });
    })
    .join();
}

/// Deletes the queues and exchanges a host with `config` declared for
/// `plugins`, and its exchange.
pub async fn delete_topology(config: &Config, plugins: &[&str]) {
    let broker = TestBroker::connect(config).await;
    for p in plugins {
        let retry_queues = config
            .retry_delays_ms()
            .into_iter()
            .map(|ms| config.retry_queue(p, ms));
        for q in [config.queue_name(p), config.dead_letter_queue(p)]
            .into_iter()
            .chain(retry_queues)
        {
            let _ = broker
                .channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let dlx = config.dead_letter_exchange(p);
        let _ = broker
            .channel
            .exchange_delete(dlx.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = broker
        .channel
        .exchange_delete(
            config.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await;
    broker.close().await;
}

/// A test's own AMQP connection, to publish like the existing producers do
/// and to read dead letters.
pub struct TestBroker {
    connection: Connection,
    pub channel: Channel,
    exchange: String,
}

impl TestBroker {
    pub async fn connect(config: &Config) -> Self {
        let connection = Connection::connect(config.amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ reachable (cargo xtask test says how to get one)");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self {
            connection,
            channel,
            exchange: config.exchange.clone(),
        }
    }

    /// Closes the channel, then the connection (dropping them races the two).
    pub async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }

    /// Publishes as the Spring producers do (JSON, persistent, `__TypeId__`)
    /// and waits for the broker's confirm.
    pub async fn publish(&self, routing_key: &str, body: &[u8]) {
        self.publish_many(&[(routing_key.to_owned(), body.to_vec())])
            .await;
    }

    pub async fn publish_many(&self, messages: &[(String, Vec<u8>)]) {
        let props = producer_properties();
        let mut confirms = Vec::new();
        for (key, body) in messages {
            let confirm = self
                .channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    key.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    props.clone(),
                )
                .await
                .unwrap();
            confirms.push(confirm);
        }
        for c in futures_util::future::join_all(confirms).await {
            assert!(c.unwrap().is_ack(), "broker refused a test message");
        }
    }

    /// How many consumers `queue` has now.
    pub async fn consumers(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"))
            .consumer_count()
    }

    /// Takes every message now in `queue`: (routing key, body, headers as strings).
    pub async fn drain(&self, queue: &str) -> Vec<(String, Vec<u8>, Vec<(String, String)>)> {
        let mut out = Vec::new();
        while let Some(msg) = self
            .channel
            .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let d = msg.delivery;
            let headers = d
                .properties
                .headers()
                .clone()
                .unwrap_or_default()
                .inner()
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        AMQPValue::LongString(s) => {
                            String::from_utf8_lossy(s.as_bytes()).into_owned()
                        }
                        other => format!("{other:?}"),
                    };
                    (k.to_string(), v)
                })
                .collect();
            out.push((d.routing_key.to_string(), d.data, headers));
        }
        out
    }

    /// Waits until `queue` holds `n` messages, then takes them.
    pub async fn drain_exactly(
        &self,
        queue: &str,
        n: usize,
    ) -> Vec<(String, Vec<u8>, Vec<(String, String)>)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(self.drain(queue).await);
            assert!(
                Instant::now() < deadline,
                "{queue}: {} of {n} messages",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        got.extend(self.drain(queue).await);
        assert_eq!(got.len(), n, "{queue} holds more messages than expected");
        got
    }
}

/// The message properties of the existing Spring producers: JSON,
/// persistent, `__TypeId__`.
pub fn producer_properties() -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "__TypeId__".into(),
        AMQPValue::LongString("java.util.HashMap".into()),
    );
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("UTF-8".into())
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// Every document of a collection (up to 1000), in key order, read with
/// `get` (a host's `GET`).
pub async fn documents(get: impl AsyncFn(&str) -> (u16, Value), collection: &str) -> Vec<Value> {
    let (status, page) = get(&format!("/analytics/collections/{collection}?limit=1000")).await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["document"].clone())
        .collect()
}

/// A plugin's entry in a `GET /plugins` answer.
pub fn plugin_entry(plugins: &Value, name: &str) -> Value {
    plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("plugin {name} not loaded: {plugins}"))
}

/// A producer's counter (`polls`, `events_published`...) in its entry.
pub fn producer_stat(plugin: &Value, field: &str) -> u64 {
    plugin["producer"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no producer.{field} in {plugin}"))
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A customer event in the wire format of the existing CRM producer.
pub fn customer_event(event_id: &str, id: &str, name: &str, timestamp: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id, "name": name, "email": format!("{name}@test.com"),
        "eventId": event_id, "eventType": "customer.created", "timestamp": timestamp,
    }))
    .unwrap()
}

/// An inventory event in the wire format of the existing inventory producer.
pub fn inventory_event(
    event_id: &str,
    id: &str,
    name: &str,
    stock: i64,
    timestamp: &str,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "eventId": event_id, "eventType": "inventory.updated", "timestamp": timestamp,
        "id": id, "name": name, "stock": stock,
    }))
    .unwrap()
}
