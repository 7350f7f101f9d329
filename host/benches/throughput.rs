//! Throughput benchmark of Switchyard against the real RabbitMQ.
//!
//! What it measures, in one run:
//! - (a) broker baseline: a bare lapin consumer draining a durable queue with
//!   Switchyard's default prefetch (1000), acknowledging every 500 deliveries
//!   (Switchyard's batch size);
//! - (b) Switchyard end to end: the host started in-process with the `merge`
//!   plugin drains the same events, pre-published to its exchange, with a
//!   durable store commit per batch; timed from `start()` (plugin compile
//!   included) and from the first to the last applied event, with the CPU
//!   time the host process spent per event;
//! - (c) the ratio (b)/(a), target >= 0.6 on SQLite, >= 0.5 on PostgreSQL;
//! - the per-event cost of the merge logic compiled natively and run as the
//!   WebAssembly component through the host's plugin engine, target <= 3x;
//! - the peak resident memory of the process.
//!
//! Run it with `cargo xtask bench` (builds `plugins/merge.wasm`, checks the
//! broker), or `cargo bench -p switchyard --bench throughput` once the plugin
//! is built. Environment: `BENCH_EVENTS` (default 100000) for the number of
//! events, `BENCH_CUSTOMERS` and `BENCH_PRODUCTS` (default 1000 each) for
//! the customers and products they cycle over, `BENCH_ROUNDS` (default 3)
//! for the rounds of (a) and (b), `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`),
//! `BENCH_STORE` for (b)'s store: `sqlite` (default, a fresh file per
//! round) or `postgres` (`cargo xtask bench throughput --store postgres`:
//! a fresh database `sy_bench_...` per round on `SWITCHYARD_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432`, dropped after the round).
//! With PostgreSQL the host's CPU per event leaves out the server's.
//!
//! `BENCH_ONLY` runs one part alone, once, for a profiler: `baseline` (a),
//! `host` (b) on SQLite, or `core`: the batch core without a broker (the
//! events admitted and processed by `batch::process`, merge plugin, SQLite
//! store). `host/benches/profile.py` runs them under callgrind and breaks
//! the instructions per event down by area. `BENCH_ONLY=memory` runs
//! everything once and prints the resident memory after each stage and its
//! peak during it. `BENCH_ONLY=datasize` (`cargo xtask bench datasize`)
//! prints the cost per event against the size of the stored data and the
//! `data` view's time against the size of its answer (see
//! `throughput/datasize.rs`).

#[path = "../tests/common/broker_lock.rs"]
#[allow(dead_code)]
mod broker_lock;
#[path = "throughput/datasize.rs"]
mod datasize;
#[path = "../tests/common/service_lock.rs"]
#[allow(dead_code)]
mod service_lock;
// Each benchmark uses a part of it.
#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::StreamExt;
use lapin::Connection;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use tokio_util::sync::CancellationToken;

use support::broker::{
    amqp_url, connect, declare_durable_queue, declare_plugin, delete_plugin, delete_queue,
    publish_all,
};
use support::events::{DataSize, EventSource, Message};
use support::host::{PLUGIN, bench_config, merge_wasm, unique};
use support::measure::{cpu_seconds, median, peak_rss_mib, positive_env, status_mib};
use switchyard::Config;
use switchyard::batch::{self, Outcome};
use switchyard::config::StoreUrl;
use switchyard::plugins::bindings::Event;
use switchyard::plugins::{Instance, PluginEngine, PluginSlot};
use switchyard::store::Store;

/// Events published and consumed, unless `BENCH_EVENTS` says otherwise.
const DEFAULT_EVENTS: usize = 100_000;
/// Rounds of (a) and (b), unless `BENCH_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: usize = 3;
/// Events of the native vs WebAssembly comparison, and its rounds.
const MERGE_EVENTS: usize = 20_000;
const MERGE_ROUNDS: usize = 5;
/// How often the end-to-end run polls the store.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// The end-to-end run gives up when nothing is applied for this long.
const STALL_LIMIT: Duration = Duration::from_secs(60);

fn main() -> Result<()> {
    let n = positive_env("BENCH_EVENTS", DEFAULT_EVENTS)?;
    let size = DataSize::from_env()?;
    let wasm = merge_wasm()?;
    let amqp_url = amqp_url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let only = Only::from_env()?;
    // No test stops the broker under the run (see broker_lock.rs).
    let _broker_up = runtime.block_on(broker_lock::BrokerLock::shared());
    if only == Only::Datasize {
        return datasize::run(&runtime, &amqp_url, &wasm, n);
    }
    if only == Only::Memory {
        MEMORY_STAGES.store(true, Ordering::Relaxed);
        memory_stage("process start");
    }

    // Made as they are published, and again for each round.
    println!("{n} seed-format events over {size}");
    let mut events = EventSource::seed(n, size);
    // The core with the data set stored first, uncounted: what the
    // data-size figure costs per event, for the profiler.
    if only == Only::Core && std::env::var("BENCH_PRELOAD").as_deref() == Ok("1") {
        events.preload = true;
    }

    match only {
        Only::All | Only::Memory => {}
        Only::Datasize => unreachable!("handled above"),
        Only::Baseline => {
            let took = runtime.block_on(broker_baseline(&amqp_url, events))?;
            println!("(a) consumed {n} in {:.2} s", took.as_secs_f64());
            return Ok(());
        }
        Only::Host => {
            let sqlite = StoreUrl::from("sqlite");
            let e2e = runtime.block_on(switchyard_end_to_end(&amqp_url, &wasm, sqlite, events))?;
            println!("(b) applied {n} in {:.2} s", e2e.total.as_secs_f64());
            return Ok(());
        }
        Only::Core => {
            let all = events.iter().collect::<Vec<_>>();
            let took = batch_core(&all, events.warm(), &wasm)?;
            println!("batch core: applied {n} in {:.2} s", took.as_secs_f64());
            return Ok(());
        }
        Only::Merge => {
            callgrind_zero()?;
            let merge = merge_cost(&events.iter().collect::<Vec<_>>(), &wasm)?;
            println!(
                "merge per event: native {:.2} us, wasm {:.2} us ({:.1}x)",
                merge.native_us, merge.wasm_us, merge.ratio
            );
            return Ok(());
        }
    }

    // (a) and (b) alternate, so that both see the same machine noise; the
    // report quotes medians over the rounds.
    let rounds = if only == Only::Memory {
        1
    } else {
        round_count()?
    };
    let store = BenchStore::from_env()?;
    let mut results = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        eprintln!("bench: round {round}/{rounds}: (a) broker baseline");
        let baseline = runtime.block_on(broker_baseline(&amqp_url, events))?;
        println!("    consumed {n} in {:.2} s", baseline.as_secs_f64());
        memory_stage("(a) broker baseline");
        eprintln!("bench: round {round}/{rounds}: (b) switchyard end to end, {store}");
        // Made and dropped here, off the runtime (PostgreSQL's sync client).
        let round_store = RoundStore::new(&store)?;
        let e2e = runtime.block_on(switchyard_end_to_end(
            &amqp_url,
            &wasm,
            round_store.url(),
            events,
        ))?;
        drop(round_store);
        println!(
            "    applied {n} in {:.2} s from start(), first commit seen after {:.2} s",
            e2e.total.as_secs_f64(),
            e2e.first_at.as_secs_f64()
        );
        results.push(Round::new(n, baseline, &e2e));
    }

    eprintln!("bench: merge per event, native vs wasm ({MERGE_ROUNDS} rounds)");
    println!("merge per event, native vs wasm ({MERGE_ROUNDS} rounds, median)");
    let merge = merge_cost(&events.iter().take(MERGE_EVENTS).collect::<Vec<_>>(), &wasm)?;
    memory_stage("merge per event, native vs wasm (a second engine and compile)");

    report(n, &store, &results, &merge, run_peak_mib()?);
    Ok(())
}

/// One part of the benchmark run alone (`BENCH_ONLY`), once, for a
/// profiler: `host/benches/profile.py` runs each under callgrind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    /// Everything, as reported.
    All,
    /// (a): a bare lapin consumer drains the events.
    Baseline,
    /// (b): the host drains them end to end (SQLite).
    Host,
    /// The batch core alone, no broker: the events admitted and processed
    /// by `batch::process` in batches of the default size, with the merge
    /// plugin and a SQLite store, as a consumer's batch worker would.
    Core,
    /// Cost against data size, and the `data` view's time against its
    /// answer's size (`throughput/datasize.rs`).
    Datasize,
    /// Everything, one round, with the resident memory at each stage.
    Memory,
    /// The merge logic alone, natively and through the plugin engine
    /// (no broker, no store commit), [`MERGE_ROUNDS`] rounds of each.
    Merge,
}

impl Only {
    fn from_env() -> Result<Self> {
        match std::env::var("BENCH_ONLY").as_deref() {
            Err(_) | Ok("") => Ok(Only::All),
            Ok("baseline") => Ok(Only::Baseline),
            Ok("host") => Ok(Only::Host),
            Ok("core") => Ok(Only::Core),
            Ok("datasize") => Ok(Only::Datasize),
            Ok("memory") => Ok(Only::Memory),
            Ok("merge") => Ok(Only::Merge),
            Ok(other) => {
                bail!("BENCH_ONLY={other:?}: baseline, host, core, datasize, memory or merge")
            }
        }
    }
}

/// Whether [`memory_stage`] prints (`BENCH_ONLY=memory`).
static MEMORY_STAGES: AtomicBool = AtomicBool::new(false);
/// The largest stage peak so far, KiB: the run's peak once they are reset.
static MEMORY_PEAK_KIB: AtomicU64 = AtomicU64::new(0);

/// The process's peak resident memory, MiB, [`memory_stage`]'s resets
/// notwithstanding.
fn run_peak_mib() -> Result<f64> {
    let stages = MEMORY_PEAK_KIB.load(Ordering::Relaxed) as f64 / 1024.0;
    Ok(peak_rss_mib()?.max(stages))
}

/// With `BENCH_ONLY=memory`: prints the resident memory now and its peak
/// since the previous stage, then lets the kernel count the peak afresh
/// (`/proc/self/clear_refs`), so that each stage's own peak shows.
fn memory_stage(stage: &str) {
    if !MEMORY_STAGES.load(Ordering::Relaxed) {
        return;
    }
    let (Ok(rss), Ok(peak)) = (status_mib("VmRSS"), peak_rss_mib()) else {
        return;
    };
    println!("    memory: {stage}: peak {peak:.0} MiB, {rss:.0} MiB resident after");
    MEMORY_PEAK_KIB.fetch_max((peak * 1024.0) as u64, Ordering::Relaxed);
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("warning: could not reset the peak RSS: {e}");
    }
}

/// Under callgrind (`BENCH_CALLGRIND=1`, set by `host/benches/profile.py`):
/// zeroes its counters, so that what it dumps at the end leaves out the
/// set-up (generating and publishing the events).
fn callgrind_zero() -> Result<()> {
    if std::env::var_os("BENCH_CALLGRIND").is_none() {
        return Ok(());
    }
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("callgrind_control")
        .args(["--zero", &pid])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running callgrind_control")?;
    ensure!(status.success(), "callgrind_control --zero {pid}: {status}");
    Ok(())
}

/// Runs `events` through the batch core ([`Only::Core`]); the time taken
/// once the plugin is loaded and the first `warm` events are applied.
fn batch_core(events: &[Message], warm: usize, wasm: &Path) -> Result<Duration> {
    let config = Config::defaults();
    let data = tempfile::tempdir()?;
    let db = Store::sqlite(data.path())?;
    let engine = PluginEngine::new(
        db.clone(),
        config.plugin_timeout(),
        config.plugin_memory_mib * 1024 * 1024,
        None,
        Default::default(),
    )?;
    let bytes = std::fs::read(wasm).context("reading merge.wasm")?;
    let slot = PluginSlot::new(
        engine
            .load(wasm, &bytes, "bench")
            .context("loading merge.wasm")?,
    );
    let version = slot.current();
    let (warm, measured) = events.split_at(warm);
    let mut started = Instant::now();
    for (part, events) in [warm, measured].into_iter().enumerate() {
        if part == 1 {
            callgrind_zero()?;
            started = Instant::now();
        }
        core_batches(&slot, &version, &db, &config, events)?;
    }
    Ok(started.elapsed())
}

fn core_batches(
    slot: &PluginSlot,
    version: &std::sync::Arc<switchyard::plugins::LoadedPlugin>,
    db: &Store,
    config: &Config,
    events: &[Message],
) -> Result<()> {
    for chunk in events.chunks(config.batch_size.max(1)) {
        let received = switchyard::store::now_ms() as u64;
        let admitted: Vec<_> = chunk
            .iter()
            .map(|m| {
                batch::admit(
                    m.routing_key,
                    m.body.as_bytes(),
                    0,
                    config.max_hops,
                    received,
                )
            })
            .collect();
        let processed = batch::process(slot, version, db, &admitted)?;
        ensure!(
            processed.outcomes.iter().all(|o| *o == Outcome::Applied),
            "not every event was applied: {:?}",
            processed.outcomes.iter().find(|o| **o != Outcome::Applied)
        );
    }
    Ok(())
}

fn host_count() -> Result<usize> {
    positive_env("BENCH_HOSTS", 1)
}

fn round_count() -> Result<usize> {
    positive_env("BENCH_ROUNDS", DEFAULT_ROUNDS)
}

// ---------------------------------------------------------------------------
// Store of (b)

/// Where (b) commits: `BENCH_STORE`.
enum BenchStore {
    Sqlite,
    /// A server where this user may create databases.
    Postgres {
        server: String,
    },
}

impl BenchStore {
    fn from_env() -> Result<Self> {
        match std::env::var("BENCH_STORE").as_deref() {
            Err(_) | Ok("sqlite") => Ok(BenchStore::Sqlite),
            Ok("postgres") => Ok(BenchStore::Postgres {
                server: std::env::var("SWITCHYARD_TEST_POSTGRES")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
            }),
            Ok(other) => bail!("BENCH_STORE={other:?}: sqlite or postgres"),
        }
    }
}

impl std::fmt::Display for BenchStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchStore::Sqlite => write!(f, "SQLite (synchronous=FULL)"),
            BenchStore::Postgres { server } => {
                write!(f, "PostgreSQL ({})", switchyard::config::redact_url(server))
            }
        }
    }
}

/// The store of one round: a fresh SQLite file (in the round's folder), or
/// a fresh PostgreSQL database, dropped with this (blocking: drop it off
/// the runtime).
enum RoundStore {
    Sqlite,
    Postgres { server: String, name: String },
}

impl RoundStore {
    fn new(store: &BenchStore) -> Result<Self> {
        match store {
            BenchStore::Sqlite => Ok(RoundStore::Sqlite),
            BenchStore::Postgres { server } => {
                let name = unique("sy_bench").replace('-', "_");
                postgres_admin(server, &format!("CREATE DATABASE {name}"))?;
                Ok(RoundStore::Postgres {
                    server: server.clone(),
                    name,
                })
            }
        }
    }

    fn url(&self) -> StoreUrl {
        match self {
            RoundStore::Sqlite => StoreUrl::from("sqlite"),
            RoundStore::Postgres { server, name } => StoreUrl::from(format!("{server}/{name}")),
        }
    }
}

impl Drop for RoundStore {
    fn drop(&mut self) {
        if let RoundStore::Postgres { server, name } = self
            && let Err(e) = postgres_admin(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
        {
            eprintln!("warning: could not drop database {name}: {e:#}");
        }
    }
}

/// Runs `sql` on `server`'s `postgres` database.
fn postgres_admin(server: &str, sql: &str) -> Result<()> {
    let mut client = postgres::Client::connect(&format!("{server}/postgres"), postgres::NoTls)
        .with_context(|| {
            format!(
                "PostgreSQL must be reachable at {} (cargo xtask bench --store postgres checks it)",
                switchyard::config::redact_url(server)
            )
        })?;
    client.batch_execute(sql).with_context(|| sql.to_owned())?;
    Ok(())
}

// ---------------------------------------------------------------------------
// (a) Broker baseline

/// Time for a bare consumer to receive every event; the queue is removed
/// afterwards whatever happens.
async fn broker_baseline(url: &str, events: EventSource) -> Result<Duration> {
    let connection = connect(url).await?;
    let admin = connection.create_channel().await?;
    let queue = unique("switchyard-bench-baseline");
    declare_durable_queue(&admin, &queue, "baseline").await?;
    let result = async {
        publish_all(&connection, "", Some(&queue), events.iter()).await?;
        callgrind_zero()?;
        consume_all(&connection, &queue, events.len()).await
    }
    .await;
    delete_queue(&admin, &queue).await;
    let _ = connection.close(200, ShortString::from("bye")).await;
    result
}

/// Consumes `n` deliveries like Switchyard's consumer would, minus the
/// work: same prefetch, one multiple ack per batch and a final one.
async fn consume_all(connection: &Connection, queue: &str, n: usize) -> Result<Duration> {
    let defaults = Config::defaults();
    let batch = defaults.batch_size.max(1);
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(defaults.prefetch, BasicQosOptions::default())
        .await?;
    let started = Instant::now();
    let mut consumer = channel
        .basic_consume(
            ShortString::from(queue),
            ShortString::from("switchyard-bench-baseline"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let (mut received, mut last_tag, mut unacked) = (0, 0, 0);
    while received < n {
        let delivery = consumer
            .next()
            .await
            .context("the broker cancelled the baseline consumer")?
            .context("receiving a delivery")?;
        received += 1;
        unacked += 1;
        last_tag = delivery.delivery_tag;
        if unacked == batch {
            channel
                .basic_ack(last_tag, BasicAckOptions { multiple: true })
                .await?;
            unacked = 0;
        }
    }
    if unacked > 0 {
        channel
            .basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await?;
    }
    let elapsed = started.elapsed();
    let _ = channel.close(200, ShortString::from("done")).await;
    Ok(elapsed)
}

// ---------------------------------------------------------------------------
// (b) Switchyard end to end

/// When the end-to-end run saw what, counted from `start()`, and what it
/// cost.
struct EndToEnd {
    /// The first poll that found applied events...
    first_at: Duration,
    /// ...and how many it found.
    first_count: u64,
    /// The poll that found all of them.
    total: Duration,
    /// CPU time of this process (the host, and the bench's polling) from
    /// `start()` to then.
    cpu: Duration,
    /// Batches run again because another host committed first.
    conflicts: u64,
    /// The first poll that found the warm-up events applied (see
    /// [`run_host`]): when, how many it found, and the process's CPU
    /// seconds then...
    warm_at: Duration,
    warm_count: u64,
    warm_cpu: f64,
    /// ...and at the end.
    end_cpu: f64,
}

impl EndToEnd {
    /// Events per second and CPU microseconds per event of the events
    /// applied after the warm-up ones.
    fn after_warm_up(&self, n: u64) -> (f64, f64) {
        let events = n.saturating_sub(self.warm_count).max(1) as f64;
        let secs = self
            .total
            .saturating_sub(self.warm_at)
            .as_secs_f64()
            .max(1e-9);
        (events / secs, (self.end_cpu - self.warm_cpu) * 1e6 / events)
    }
}

/// Pre-publishes every event to a fresh exchange and plugin queue, starts
/// the host and waits until all are applied, the preloaded ones noted;
/// removes the queues and exchanges afterwards whatever happens.
async fn switchyard_end_to_end(
    url: &str,
    wasm: &Path,
    store: StoreUrl,
    events: EventSource,
) -> Result<EndToEnd> {
    let dirs = tempfile::tempdir()?;
    let config = bench_config(url, wasm, store, dirs.path())?;
    let connection = connect(url).await?;
    let admin = connection.create_channel().await?;
    let result = async {
        declare_plugin(&connection, &admin, &config, PLUGIN).await?;
        publish_all(&connection, &config.exchange, None, events.iter()).await?;
        memory_stage("events published");
        callgrind_zero()?;
        run_host(config.clone(), events.len() as u64, events.warm() as u64).await
    }
    .await;
    // Its queue, dead-letter queue and retry queues: the broker is left as
    // the bench found it.
    delete_plugin(url, &config, PLUGIN).await;
    let _ = connection.close(200, ShortString::from("bye")).await;
    result
}

/// Starts `BENCH_HOSTS` hosts on `config`'s store and queues (each with
/// folders and an id of its own), waits for `n` applied events between
/// them, noting when `warm` were, stops them.
async fn run_host(config: Config, n: u64, warm: u64) -> Result<EndToEnd> {
    let hosts = host_count()?;
    let shutdown = CancellationToken::new();
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let mut running = Vec::with_capacity(hosts);
    for i in 0..hosts {
        let mut config = config.clone();
        if hosts > 1 {
            config.data = config.data.join(format!("host-{i}"));
            config.host_id = Some(format!("bench-{i}"));
        }
        running.push(switchyard::start(config, shutdown.clone()).await?);
    }
    memory_stage("start(): store opened, plugin compiled and loaded");
    let failure = running
        .iter()
        .find_map(|r| r.registry.failures().first().cloned());
    let progress = match failure {
        Some(failure) => Err(anyhow::anyhow!(
            "the merge plugin did not load: {}",
            failure.error
        )),
        None => wait_applied(&running, n, warm, started).await,
    };
    let end_cpu = cpu_seconds()?;
    let cpu = end_cpu - cpu_before;
    let progress = progress.map(|p| EndToEnd {
        cpu: Duration::from_secs_f64(cpu.max(0.0)),
        end_cpu,
        ..p
    });
    memory_stage("consuming, until every event was applied");
    if let Ok(p) = &progress {
        println!(
            "    host CPU {cpu:.2} s over {:.2} s ({:.0} us per event, {hosts} host(s) together)",
            p.total.as_secs_f64(),
            cpu * 1e6 / n as f64
        );
    }
    shutdown.cancel();
    for r in running {
        r.wait().await;
    }
    memory_stage("host stopped");
    progress
}

/// Polls the plugin's applied counter every [`POLL_EVERY`] until `n`
/// events are applied, then checks the store agrees.
///
/// The counter goes up right after each batch's durable commit, so it
/// tells the same time as `applied_count` would; polling the store itself
/// (a `COUNT(*)` that takes up to ~25 ms at 100,000 rows) kept a CPU busy
/// and lowered the measured rate by 5 to 10%.
async fn wait_applied(
    running: &[switchyard::Running],
    n: u64,
    warm: u64,
    started: Instant,
) -> Result<EndToEnd> {
    let plugins = running
        .iter()
        .map(|r| {
            r.registry
                .get(PLUGIN)
                .context("the merge plugin is not loaded")
        })
        .collect::<Result<Vec<_>>>()?;
    let sum = |f: fn(&switchyard::plugins::Counters) -> u64| -> u64 {
        plugins.iter().map(|p| f(&p.counters)).sum()
    };
    let applied = || sum(|c| c.applied.load(Ordering::Relaxed));
    let mut first: Option<(Duration, u64)> = None;
    let mut warmed: Option<(Duration, u64, f64)> = None;
    let (mut last_count, mut last_change) = (0, Instant::now());
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tick.tick().await;
        let count = applied();
        let at = started.elapsed();
        if count > 0 && first.is_none() {
            first = Some((at, count));
        }
        if count >= warm && warmed.is_none() {
            warmed = Some((at, count, cpu_seconds()?));
        }
        if count >= n {
            let stored = running[0]
                .db
                .call(move |db| db.applied_count(PLUGIN))
                .await?;
            ensure!(
                stored == n,
                "the store holds {stored} applied events, expected {n}"
            );
            let commits = sum(|c| c.commits.load(Ordering::Relaxed));
            let conflicts = sum(|c| c.conflicts.load(Ordering::Relaxed));
            println!(
                "    {commits} commits, {:.0} events per batch on average; {conflicts} batches \
                 run again after a conflict ({:.1} per 1,000 events)",
                n as f64 / commits.max(1) as f64,
                conflicts as f64 * 1000.0 / n as f64
            );
            let (first_at, first_count) = first.unwrap_or((at, count));
            let (warm_at, warm_count, warm_cpu) = warmed.unwrap_or((at, count, 0.0));
            return Ok(EndToEnd {
                first_at,
                first_count,
                total: at,
                cpu: Duration::ZERO,
                conflicts,
                warm_at,
                warm_count,
                warm_cpu,
                end_cpu: 0.0,
            });
        }
        if count != last_count {
            (last_count, last_change) = (count, Instant::now());
        } else if last_change.elapsed() > STALL_LIMIT {
            let dead = sum(|c| c.dead_lettered.load(Ordering::Relaxed));
            bail!("no progress for {STALL_LIMIT:?}: {count} of {n} applied, {dead} dead-lettered");
        }
    }
}

// ---------------------------------------------------------------------------
// Merge logic, native vs WebAssembly

/// Median microseconds per event of each build.
struct MergeCost {
    events: usize,
    native_us: f64,
    wasm_us: f64,
    /// Median of the per-round ratios wasm / native.
    ratio: f64,
}

fn merge_cost(events: &[Message], wasm: &Path) -> Result<MergeCost> {
    let inputs: Vec<Event> = events
        .iter()
        .map(|m| Event {
            id: m.event_id.clone(),
            routing_key: m.routing_key.to_owned(),
            body: m.body.clone(),
            received_at_ms: 0,
        })
        .collect();
    // Native and WebAssembly rounds alternate so that both see the same
    // machine noise.
    let data = tempfile::tempdir()?;
    let db = Store::sqlite(data.path())?;
    let engine = PluginEngine::new(
        db,
        Duration::from_secs(10),
        64 << 20,
        None,
        Default::default(),
    )?;
    let bytes = std::fs::read(wasm).context("reading merge.wasm")?;
    let plugin = engine
        .load(wasm, &bytes, "bench")
        .context("loading merge.wasm")?;
    let mut instance = plugin.transformer().context("merge is a transformer")?;
    let (mut native, mut wasm) = (Vec::new(), Vec::new());
    for _ in 0..MERGE_ROUNDS {
        native.push(native_round(&inputs));
        wasm.push(wasm_round(&mut instance, &inputs));
    }
    let ratios = native.iter().zip(&wasm).map(|(n, w)| w / n).collect();
    Ok(MergeCost {
        events: inputs.len(),
        native_us: median(native),
        wasm_us: median(wasm),
        ratio: median(ratios),
    })
}

/// One pass over `events` with fresh state; microseconds per event.
/// Never inlined: the profiler finds its cost under its name.
#[inline(never)]
fn native_round(events: &[Event]) -> f64 {
    let mut state: HashMap<String, Vec<u8>> = HashMap::new();
    let started = Instant::now();
    for ev in events {
        match switchyard_merge::handle(&mut state, &ev.routing_key, &ev.body, 0) {
            Ok(actions) => drop(black_box(actions)),
            Err(e) => panic!("native merge failed on {}: {e}", ev.id),
        }
    }
    per_event_us(started.elapsed(), events.len())
}

/// One pass through the host's plugin engine, state kept in the instance's
/// in-memory overlay (emptied before the round, untimed); microseconds per
/// event. Never inlined: the profiler finds its cost under its name.
#[inline(never)]
fn wasm_round(instance: &mut Instance, events: &[Event]) -> f64 {
    instance.take_state_writes();
    let started = Instant::now();
    for ev in events {
        match instance.handle(ev) {
            Ok(actions) => drop(black_box(actions)),
            Err(e) => panic!("wasm merge failed on {}: {e}", ev.id),
        }
        instance.finish_event(true);
    }
    per_event_us(started.elapsed(), events.len())
}

fn per_event_us(elapsed: Duration, events: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / events.max(1) as f64
}

// ---------------------------------------------------------------------------
// Report

/// Rates of one round, events per second.
struct Round {
    baseline: f64,
    /// From `start()`, plugin compile included.
    total: f64,
    /// From the first commit seen to the last.
    steady: f64,
    /// The host process's CPU per event, microseconds.
    cpu_us: f64,
    /// Batches run again after a conflict, per 1,000 events.
    conflicts_per_1000: f64,
}

impl Round {
    fn new(n: usize, baseline: Duration, e2e: &EndToEnd) -> Self {
        let rate = |events: f64, time: Duration| events / time.as_secs_f64().max(1e-9);
        Self {
            baseline: rate(n as f64, baseline),
            total: rate(n as f64, e2e.total),
            steady: rate(
                (n as u64 - e2e.first_count) as f64,
                e2e.total.saturating_sub(e2e.first_at),
            ),
            cpu_us: e2e.cpu.as_secs_f64() * 1e6 / n.max(1) as f64,
            conflicts_per_1000: e2e.conflicts as f64 * 1000.0 / n.max(1) as f64,
        }
    }
}

fn report(n: usize, store: &BenchStore, rounds: &[Round], merge: &MergeCost, rss_mib: f64) {
    let med = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let target = match store {
        BenchStore::Sqlite => 0.6,
        BenchStore::Postgres { .. } => 0.5,
    };
    println!();
    println!(
        "throughput, {n} events, store {store}, {} host(s), median of {} rounds ({} events per merge round):",
        host_count().unwrap_or(1),
        rounds.len(),
        merge.events
    );
    println!(
        "  (a) broker baseline (bare lapin, prefetch 1000, ack/500): {:>8.0} msg/s",
        med(|r| r.baseline)
    );
    println!(
        "  (b) switchyard end to end (merge plugin, durable):        {:>8.0} events/s \
         (from start(), plugin compile included)",
        med(|r| r.total)
    );
    println!(
        "      first to last commit:                                 {:>8.0} events/s",
        med(|r| r.steady)
    );
    println!(
        "      host CPU per event:                                   {:>8.1} us{}",
        med(|r| r.cpu_us),
        match store {
            BenchStore::Sqlite => "",
            BenchStore::Postgres { .. } => " (the PostgreSQL server's not included)",
        }
    );
    println!(
        "      batches run again after a conflict:                   {:>8.1} per 1,000 events",
        med(|r| r.conflicts_per_1000)
    );
    println!(
        "  (c) ratio (b)/(a): {:.2} (per round: {}), target >= {target}",
        med(|r| r.total / r.baseline),
        rounds
            .iter()
            .map(|r| format!("{:.2}", r.total / r.baseline))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  merge per event: native {:.2} us, wasm {:.2} us (ratio {:.2}, target <= 3)",
        merge.native_us, merge.wasm_us, merge.ratio
    );
    println!("  peak RSS: {rss_mib:.0} MiB");
}
