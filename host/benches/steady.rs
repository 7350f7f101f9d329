//! Steady-state benchmark: the host consuming while events keep arriving,
//! at a rate the broker sustains, and what a user of the API sees.
//!
//! 1. The broker's confirmed publish rate: bursts of 30,000 seed-format
//!    events, published persistently with confirms (at most 1,000 awaiting
//!    theirs) to a durable queue of the run's own; the median of 3.
//! 2. The host starts in-process (merge plugin, SQLite store, default
//!    settings, a tokio runtime of its own) and the benchmark publishes
//!    seed-format events to its exchange at 80% of that rate, paced by a
//!    token bucket refilled every millisecond, for `BENCH_SECONDS` (60).
//!    Tokens are kept, not dropped, when the publisher falls behind (on a
//!    busy machine it is descheduled now and then), and it catches up at
//!    twice the rate at most: the offered rate is the target on average.
//!
//! It prints:
//! - consumer lag, sampled every 100 ms from the plugin's applied counter
//!   (it goes up right after each durable commit): in messages, confirmed
//!   minus applied; in seconds, the age of the oldest event whose publish
//!   was confirmed and that is not applied yet (events are applied in the
//!   order the queue holds them); the largest over the run and the last;
//!   targets: under 1 s;
//! - latency from publish confirm to the document being readable through
//!   the HTTP API: 20 events a second are each a `customer.created` of a
//!   customer of its own (`s<k>`, name `steady-<k>`), and a task polls
//!   `GET /analytics/collections/customers/s<k>` as its confirm comes,
//!   then every 2 ms until the name shows, which bounds the resolution to
//!   about 2 ms (a document already readable at the confirm counts the
//!   time of that one request); p50, p99, max, and from the publish too;
//!   target p99 under 20 ms;
//! - events/s published and applied, and the host's CPU per event: the
//!   process's CPU time less the benchmark's own threads' (the main thread,
//!   its runtime `bench-*`, its broker connection's I/O thread), so the
//!   publisher and the pollers are left out; the API's answers to the
//!   pollers are in;
//! - the host's own histograms over the run (batch first delivery -> ack,
//!   commit, plugin call, batch size, the API's document GET), read from
//!   its `/metrics` before and after: where the confirm -> readable time
//!   goes.
//!
//! Every exchange and queue it declares is deleted at the end, also when
//! the run fails. Run it with `cargo xtask bench steady`, or `cargo bench -p
//! switchyard --bench steady` once the plugin is built. Environment:
//! `BENCH_SECONDS`, `AMQP_URL`, `BENCH_LINGER_MS` (the host's batch linger,
//! default the host's default).

#[path = "../tests/common/broker_lock.rs"]
#[allow(dead_code)]
mod broker_lock;
#[path = "steady/histograms.rs"]
mod histograms;
#[path = "../tests/common/service_lock.rs"]
#[allow(dead_code)]
mod service_lock;
// Each benchmark uses a part of it.
#[allow(dead_code)]
mod support;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{Channel, Connection, PublisherConfirm};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use support::broker::{
    amqp_url, connect, declare_durable_queue, declare_plugin, delete_plugin, delete_queue,
    persistent, publish_all,
};
use support::events::{DataSize, EventSource, Message, customer_event, seed_event};
use support::host::{PLUGIN, bench_config, merge_wasm, unique};
use support::measure::{HostCpu, median, positive_env, quantile};
use switchyard::config::StoreUrl;

const DEFAULT_SECONDS: usize = 60;
/// The broker's rate: events per burst, and bursts.
const CALIBRATION_EVENTS: usize = 30_000;
const CALIBRATION_ROUNDS: usize = 3;
/// The share of the broker's confirmed rate the benchmark publishes at.
const LOAD: f64 = 0.8;
/// Latency samples per second.
const SAMPLES_PER_SEC: f64 = 20.0;
/// How often the lag is sampled.
const LAG_EVERY: Duration = Duration::from_millis(100);
/// How often a latency sample's document is asked for.
const POLL_EVERY: Duration = Duration::from_millis(2);
/// A sample whose document does not show within this is counted missing.
const POLL_LIMIT: Duration = Duration::from_secs(30);
/// The token bucket's refill period, and how much faster than the rate it
/// may spend tokens to catch up.
const TICK: Duration = Duration::from_millis(1);
const CATCH_UP: f64 = 2.0;
/// Published messages awaiting their confirm at most; past that publishing
/// waits (and falls behind its schedule, which the report shows).
const WINDOW: usize = 10_000;
/// After publishing stops, how long the host may take to apply the rest.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Thread names: the benchmark's runtime, and the host's.
const BENCH_THREADS: &str = "bench-";
const HOST_THREADS: &str = "host-";

fn main() -> Result<()> {
    let duration = Duration::from_secs(positive_env("BENCH_SECONDS", DEFAULT_SECONDS)? as u64);
    let wasm = merge_wasm()?;
    let url = amqp_url();
    // The host runs on a runtime of its own, so that its threads' CPU time
    // can be told from the publisher's and the pollers'. The benchmark's
    // threads must outlive the run (see `HostCpu`).
    let bench_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-rt")
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()?;
    let host_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("host-rt")
        .enable_all()
        .build()?;
    bench_rt.block_on(run(host_rt.handle().clone(), &url, &wasm, duration))
}

async fn run(host_rt: Handle, url: &str, wasm: &Path, duration: Duration) -> Result<()> {
    let _broker_up = broker_lock::BrokerLock::shared().await;
    println!("load average at start: {}", load_average());
    let connection = connect(url).await?;
    let admin = connection.create_channel().await?;

    eprintln!("bench: the broker's confirmed publish rate ({CALIBRATION_ROUNDS} bursts)");
    println!(
        "broker: {CALIBRATION_ROUNDS} bursts of {CALIBRATION_EVENTS} persistent events, \
         confirmed, to a durable queue"
    );
    let broker_rate = broker_rate(&connection, &admin).await?;

    let dirs = tempfile::tempdir()?;
    let mut config = bench_config(url, wasm, StoreUrl::from("sqlite"), dirs.path())?;
    // To weigh the linger against the tail latency; the default otherwise.
    if let Ok(ms) = std::env::var("BENCH_LINGER_MS") {
        config.batch_linger_ms = ms
            .parse()
            .with_context(|| format!("BENCH_LINGER_MS={ms:?}: milliseconds"))?;
    }
    let rate = LOAD * broker_rate;
    eprintln!(
        "bench: publishing at {rate:.0}/s for {} s while the host consumes",
        duration.as_secs()
    );
    let result = async {
        declare_plugin(&connection, &admin, &config, PLUGIN).await?;
        steady(&host_rt, &connection, config.clone(), rate, duration).await
    }
    .await;
    delete_plugin(url, &config, PLUGIN).await;
    let _ = connection.close(200, ShortString::from("bye")).await;
    let report = result?;
    report.print(broker_rate, rate, duration);
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// The median confirmed rate of [`CALIBRATION_ROUNDS`] bursts to a queue
/// of the run's own, deleted afterwards whatever happens.
async fn broker_rate(connection: &Connection, admin: &Channel) -> Result<f64> {
    let queue = unique("switchyard-bench-steady-rate");
    declare_durable_queue(admin, &queue, "calibration").await?;
    let events = EventSource::seed(CALIBRATION_EVENTS, DataSize::DEFAULT);
    let result = async {
        let mut rates = Vec::with_capacity(CALIBRATION_ROUNDS);
        for _ in 0..CALIBRATION_ROUNDS {
            rates.push(publish_all(connection, "", Some(&queue), events.iter()).await?);
        }
        Ok(median(rates))
    }
    .await;
    delete_queue(admin, &queue).await;
    result
}

// ---------------------------------------------------------------------------
// The run

/// What the run measured.
struct Report {
    published: u64,
    /// Over the publishing window.
    applied_in_window: u64,
    window: Duration,
    /// After publishing stopped, until every event was applied.
    drain: Duration,
    lag: Vec<Lag>,
    /// Confirm to readable, and publish to readable, milliseconds.
    from_confirm_ms: Vec<f64>,
    from_publish_ms: Vec<f64>,
    /// Samples readable at their first poll, right after the confirm.
    before_confirm: usize,
    /// Samples never seen within [`POLL_LIMIT`].
    missing: usize,
    host_cpu: f64,
    bench_cpu: f64,
    /// The host's threads by name, CPU seconds since `start()`.
    host_threads: Vec<(String, f64)>,
    dead_lettered: u64,
    /// Store commits over the whole run.
    commits: u64,
    /// The host's histograms over the window and drain: what each times,
    /// whether in seconds, the buckets.
    histograms: Vec<(&'static str, bool, histograms::Buckets)>,
    linger_ms: u64,
    batch_size: usize,
}

/// One lag sample.
struct Lag {
    messages: u64,
    seconds: f64,
}

/// Confirmed events whose application has not been seen yet: the confirm
/// time of each, oldest first, and how many were dropped from the front.
#[derive(Default)]
struct ConfirmLog {
    dropped: u64,
    times: VecDeque<Instant>,
}

impl ConfirmLog {
    /// The lag when `applied` events are applied: drops what is applied.
    fn lag(&mut self, applied: u64, now: Instant) -> Lag {
        while self.dropped < applied && self.times.pop_front().is_some() {
            self.dropped += 1;
        }
        let confirmed = self.dropped + self.times.len() as u64;
        Lag {
            messages: confirmed.saturating_sub(applied),
            seconds: self
                .times
                .front()
                .filter(|_| applied < confirmed)
                .map_or(0.0, |t| now.duration_since(*t).as_secs_f64()),
        }
    }
}

/// A latency sample whose confirm came: when, and its poller.
struct Sample {
    k: usize,
    confirmed: Instant,
    seen: JoinHandle<Option<Seen>>,
}

/// When a sample's document showed, and at which poll.
struct Seen {
    at: Instant,
    polls: u32,
}

async fn steady(
    host_rt: &Handle,
    connection: &Connection,
    config: switchyard::Config,
    rate: f64,
    duration: Duration,
) -> Result<Report> {
    let cpu = HostCpu::new(BENCH_THREADS, HOST_THREADS)?;
    let shutdown = CancellationToken::new();
    let exchange = config.exchange.clone();
    let (linger_ms, batch_size) = (config.batch_linger_ms, config.batch_size);
    let running = host_rt
        .spawn(switchyard::start(config, shutdown.clone()))
        .await??;
    let result = async {
        if let Some(failure) = running.registry.failures().first() {
            bail!("the merge plugin did not load: {}", failure.error);
        }
        let plugin = running
            .registry
            .get(PLUGIN)
            .context("the merge plugin is not loaded")?;
        let applied = move || plugin.counters.applied.load(Ordering::Relaxed);
        let base = format!("http://{}", running.http_addr);
        let http = reqwest::Client::new();
        let before = histograms::scrape(&http, &base).await?;
        let mut report =
            measure(connection, &exchange, &base, &applied, &cpu, rate, duration).await?;
        let after = histograms::scrape(&http, &base).await?;
        report.histograms = histograms::FAMILIES
            .iter()
            .map(|(family, label, what)| {
                let was = histograms::buckets(&before, family, label);
                let now = histograms::buckets(&after, family, label);
                (
                    *what,
                    family.ends_with("_seconds"),
                    histograms::since(&now, &was),
                )
            })
            .collect();
        Ok(report)
    }
    .await;
    let counter = |f: fn(&switchyard::plugins::Counters) -> &std::sync::atomic::AtomicU64| {
        running
            .registry
            .get(PLUGIN)
            .map_or(0, |p| f(&p.counters).load(Ordering::Relaxed))
    };
    let (dead_lettered, commits) = (counter(|c| &c.dead_lettered), counter(|c| &c.commits));
    // Before the stop: the broker connections' threads end with it.
    let host_threads = cpu.host_threads();
    shutdown.cancel();
    host_rt.spawn(running.wait()).await?;
    let mut report = result?;
    report.dead_lettered = dead_lettered;
    report.commits = commits;
    report.linger_ms = linger_ms;
    report.batch_size = batch_size;
    report.host_threads = host_threads?;
    Ok(report)
}

/// Publishes at `rate` for `duration`, then waits for the rest to be
/// applied; samples lag and latency meanwhile.
async fn measure(
    connection: &Connection,
    exchange: &str,
    base: &str,
    applied: &(impl Fn() -> u64 + Sync),
    cpu: &HostCpu,
    rate: f64,
    duration: Duration,
) -> Result<Report> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let http = reqwest::Client::new();
    let log = Arc::new(Mutex::new(ConfirmLog::default()));
    let (confirms, pending) = mpsc::unbounded_channel();
    let confirmer = tokio::spawn(confirm_all(
        pending,
        Arc::clone(&log),
        http,
        base.to_owned(),
    ));
    let stop_lag = CancellationToken::new();
    let lag_log = Arc::clone(&log);
    let stop = stop_lag.clone();
    let mut lags = Vec::new();
    let lag_watch = async {
        let mut tick = tokio::time::interval(LAG_EVERY);
        while !stop.is_cancelled() {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            let count = applied();
            lags.push(lag_log.lock().expect("the log").lag(count, Instant::now()));
        }
    };

    let (cpu0, applied0, started) = (cpu.split()?, applied(), Instant::now());
    let publishing = async {
        let result = publish_paced(&channel, exchange, rate, duration, confirms).await;
        stop_lag.cancel();
        result
    };
    let (published, ()) = tokio::join!(publishing, lag_watch);
    let (published, sent) = published?;
    let (cpu1, applied1, window) = (cpu.split()?, applied(), started.elapsed());
    let samples = confirmer.await??;

    let drain_started = Instant::now();
    while applied() < published {
        ensure!(
            drain_started.elapsed() < DRAIN_LIMIT,
            "{} of {published} events applied {DRAIN_LIMIT:?} after publishing stopped",
            applied()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = drain_started.elapsed();
    let _ = channel.close(200, ShortString::from("published")).await;

    let sent: HashMap<usize, Instant> = sent.into_iter().collect();
    let (mut from_confirm_ms, mut from_publish_ms) = (Vec::new(), Vec::new());
    let (mut before_confirm, mut missing) = (0, sent.len() - samples.len());
    for sample in samples {
        let Some(seen) = sample.seen.await? else {
            missing += 1;
            continue;
        };
        if seen.polls == 1 {
            before_confirm += 1;
        }
        let ms = |from: Instant| seen.at.saturating_duration_since(from).as_secs_f64() * 1e3;
        from_confirm_ms.push(ms(sample.confirmed));
        from_publish_ms.extend(sent.get(&sample.k).map(|s| ms(*s)));
    }
    Ok(Report {
        published,
        applied_in_window: applied1 - applied0,
        window,
        drain,
        lag: lags,
        from_confirm_ms,
        from_publish_ms,
        before_confirm,
        missing,
        host_cpu: cpu1.0 - cpu0.0,
        bench_cpu: cpu1.1 - cpu0.1,
        host_threads: Vec::new(),
        dead_lettered: 0,
        commits: 0,
        histograms: Vec::new(),
        linger_ms: 0,
        batch_size: 0,
    })
}

/// A published event handed to [`confirm_all`]: its confirm, its place in
/// the window, and its sample number if it is one.
type Pending = (PublisherConfirm, OwnedSemaphorePermit, Option<usize>);

/// Publishes seed-format events at `rate` for `duration`, one in
/// `rate / SAMPLES_PER_SEC` a latency sample; how many it published, and
/// when each sample was.
async fn publish_paced(
    channel: &Channel,
    exchange: &str,
    rate: f64,
    duration: Duration,
    confirms: mpsc::UnboundedSender<Pending>,
) -> Result<(u64, Vec<(usize, Instant)>)> {
    let window = Arc::new(Semaphore::new(WINDOW));
    let sample_every = ((rate / SAMPLES_PER_SEC).round() as usize).max(1);
    let per_tick = (CATCH_UP * rate * TICK.as_secs_f64()).max(1.0);
    let props = persistent();
    let mut samples = Vec::new();
    let mut tokens = 0.0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut last = started;
    let mut i = 0usize;
    while started.elapsed() < duration {
        tick.tick().await;
        let now = Instant::now();
        tokens += rate * now.duration_since(last).as_secs_f64();
        last = now;
        let mut spent = 0.0;
        while tokens >= 1.0 && spent < per_tick {
            tokens -= 1.0;
            spent += 1.0;
            let sample = i.is_multiple_of(sample_every).then_some(i / sample_every);
            let message: Message = match sample {
                Some(k) => customer_event(i, &format!("s{k}"), &format!("steady-{k}")),
                None => seed_event(i, DataSize::DEFAULT),
            };
            let permit = Arc::clone(&window).acquire_owned().await?;
            let sent = Instant::now();
            let confirm = channel
                .basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(message.routing_key),
                    BasicPublishOptions::default(),
                    message.body.as_bytes(),
                    props.clone(),
                )
                .await
                .context("publishing")?;
            if confirms.send((confirm, permit, sample)).is_err() {
                bail!("the confirm task stopped");
            }
            if let Some(k) = sample {
                samples.push((k, sent));
            }
            i += 1;
        }
    }
    Ok((i as u64, samples))
}

/// Awaits each confirm in publishing order and logs when it came; starts
/// each sample's poller then (polling from the publish on would ask the
/// host thousands of times a second once confirms lag).
async fn confirm_all(
    mut pending: mpsc::UnboundedReceiver<Pending>,
    log: Arc<Mutex<ConfirmLog>>,
    http: reqwest::Client,
    base: String,
) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    while let Some((confirm, permit, sample)) = pending.recv().await {
        let confirmation = confirm.await.context("awaiting a publisher confirm")?;
        ensure!(confirmation.is_ack(), "the broker refused a message");
        let confirmed = Instant::now();
        log.lock().expect("the log").times.push_back(confirmed);
        if let Some(k) = sample {
            let seen = tokio::spawn(poll_document(http.clone(), base.clone(), k));
            samples.push(Sample { k, confirmed, seen });
        }
        drop(permit);
    }
    Ok(samples)
}

/// Asks for sample `k`'s customer at once, then every [`POLL_EVERY`]
/// until its name shows.
async fn poll_document(http: reqwest::Client, base: String, k: usize) -> Option<Seen> {
    let url = format!("{base}/analytics/collections/customers/s{k}");
    let marker = format!("steady-{k}");
    let started = Instant::now();
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls = 0;
    while started.elapsed() < POLL_LIMIT {
        tick.tick().await;
        polls += 1;
        let Ok(answer) = http.get(&url).send().await else {
            continue;
        };
        if answer.status().is_success()
            && let Ok(text) = answer.text().await
            && text.contains(&marker)
        {
            return Some(Seen {
                at: Instant::now(),
                polls,
            });
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Report

impl Report {
    fn print(&self, broker_rate: f64, rate: f64, duration: Duration) {
        let secs = self.window.as_secs_f64();
        let max_lag = self.lag.iter().map(|l| l.seconds).fold(0.0, f64::max);
        let max_lag_msgs = self.lag.iter().map(|l| l.messages).max().unwrap_or(0);
        let (end_s, end_msgs) = self
            .lag
            .last()
            .map_or((0.0, 0), |l| (l.seconds, l.messages));
        let sorted = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v
        };
        let confirm = sorted(&self.from_confirm_ms);
        let publish = sorted(&self.from_publish_ms);
        let pct = |v: &[f64]| {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                quantile(v, 0.5),
                quantile(v, 0.99),
                v.last().copied().unwrap_or(f64::NAN)
            )
        };
        println!();
        println!(
            "steady state, {} s at {:.0}% of the broker's confirmed publish rate \
             ({broker_rate:.0} msg/s, median of {CALIBRATION_ROUNDS} bursts): target {rate:.0} events/s",
            duration.as_secs(),
            LOAD * 100.0
        );
        println!(
            "  published {} ({:.0}/s), applied {} in the window ({:.0} events/s), \
             the rest {:.2} s after publishing stopped; {} dead-lettered; {} commits \
             ({:.0} events per batch)",
            self.published,
            self.published as f64 / secs,
            self.applied_in_window,
            self.applied_in_window as f64 / secs,
            self.drain.as_secs_f64(),
            self.dead_lettered,
            self.commits,
            self.published as f64 / self.commits.max(1) as f64
        );
        println!(
            "  consumer lag (every {} ms, {} samples): max {max_lag:.3} s / {max_lag_msgs} messages; \
             at the end {end_s:.3} s / {end_msgs} messages; target < 1 s",
            LAG_EVERY.as_millis(),
            self.lag.len()
        );
        println!(
            "  publish confirm -> readable through the API ({} samples, polled every {} ms): {}; \
             target p99 < 20 ms",
            confirm.len(),
            POLL_EVERY.as_millis(),
            pct(&confirm)
        );
        println!(
            "      publish -> readable: {}; {} already readable when their confirm came; {} never seen",
            pct(&publish),
            self.before_confirm,
            self.missing
        );
        let applied = self.applied_in_window.max(1) as f64;
        println!(
            "  host CPU per event: {:.1} us ({:.1} s over {secs:.1} s, the API's answers to the \
             pollers included); the benchmark's publisher and pollers: {:.1} us per event",
            self.host_cpu * 1e6 / applied,
            self.host_cpu,
            self.bench_cpu * 1e6 / applied
        );
        let threads: Vec<String> = self
            .host_threads
            .iter()
            .map(|(name, cpu)| format!("{name} {cpu:.1} s"))
            .collect();
        println!(
            "      host threads since start(), compile included: {}",
            threads.join(", ")
        );
        println!(
            "  the host's histograms over the window and drain (GET /metrics before and after; \
             linear within buckets bounded 1, 2.5, 5, 10, 25, 50, 100 ms...); batch size {}, \
             linger {} ms:",
            self.batch_size, self.linger_ms
        );
        for (what, seconds, buckets) in &self.histograms {
            let unit = if *seconds { 1e3 } else { 1.0 };
            let (p50, n) = histograms::quantile(buckets, 0.5);
            let (p99, _) = histograms::quantile(buckets, 0.99);
            let max = histograms::max_bound(buckets);
            let suffix = if *seconds { " ms" } else { "" };
            println!(
                "    {what}: p50 {:.1}{suffix}, p99 {:.1}{suffix}, max <= {:.1}{suffix} ({n})",
                p50 * unit,
                p99 * unit,
                max * unit
            );
        }
    }
}

/// `/proc/loadavg`'s three averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
