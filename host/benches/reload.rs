//! Hot-reload benchmark against the real RabbitMQ: how long from a plugin
//! file landing in the plugins folder to the first batch handled by the new
//! version, and what reloads cost the events flowing meanwhile.
//!
//! The host runs in-process with `merge` (the plugin being reloaded) and
//! the `counter` fixture (a bystander) while a publisher sends a steady
//! stream of customer events that both consume. Three phases:
//!
//! 1. quiet: no reloads; the baseline rate of each plugin;
//! 2. cached: `merge` is replaced by the shipped and the `test-variant`
//!    build in turn (renamed in, as a deploy tool does); after the first two
//!    both are in the compile cache, as on a restart or a roll back;
//! 3. fresh: every file is new to the host (the shipped build with a
//!    distinct custom section appended), so each reload compiles.
//!
//! Latency is measured from the rename to the moment the new version's
//! first batch starts (the host records it per version); p50 and p99 per
//! phase. The rates of `merge` and `counter` in phases 2 and 3 are quoted
//! against phase 1 in the same run.
//!
//! Run it with `cargo xtask bench reload` (builds the plugins, checks the
//! broker). Environment: `BENCH_RELOADS` (default 40 per phase),
//! `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::types::ShortString;
use lapin::{BasicProperties, Connection, PublisherConfirm};
use tokio_util::sync::CancellationToken;

use switchyard::Config;
use switchyard::plugins::PluginSlot;
use switchyard::store::now_ms;

const DEFAULT_RELOADS: usize = 40;
/// How long the quiet phase measures.
const QUIET: Duration = Duration::from_secs(4);
/// Pause after a reload took effect before the next file lands.
const BETWEEN_RELOADS: Duration = Duration::from_millis(150);
/// Events the publisher sends per second (below what the host sustains
/// on 2 shared cores, so that a stall shows as a lower rate).
const PUBLISH_RATE: u64 = 8_000;
const CONFIRM_WINDOW: usize = 500;
const PLUGINS: [&str; 2] = ["merge", "counter"];

fn main() -> Result<()> {
    // The host's logs, when `RUST_LOG` asks for them.
    if std::env::var_os("RUST_LOG").is_some() {
        switchyard::telemetry::init(false);
    }
    let reloads = match std::env::var("BENCH_RELOADS") {
        Ok(v) => v.parse().context("BENCH_RELOADS must be a number")?,
        Err(_) => DEFAULT_RELOADS,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?
        .to_path_buf();
    let shipped = root.join("plugins/merge.wasm");
    let variant = root.join("target/test-plugins/merge-variant.wasm");
    let counter = root.join("target/test-plugins/counter.wasm");
    for f in [&shipped, &variant, &counter] {
        ensure!(
            f.exists(),
            "{} is missing: run `cargo xtask build`",
            f.display()
        );
    }
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&url, reloads, &shipped, &variant, &counter))
}

async fn run(
    url: &str,
    reloads: usize,
    shipped: &Path,
    variant: &Path,
    counter: &Path,
) -> Result<()> {
    let dirs = tempfile::tempdir()?;
    let plugins = dirs.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(shipped, plugins.join("merge.wasm"))?;
    std::fs::copy(counter, plugins.join("counter.wasm"))?;
    let mut config = Config::defaults();
    config.amqp_url = Some(url.into());
    config.http = "127.0.0.1:0".parse()?;
    config.plugins = plugins.clone();
    config.data = dirs.path().join("data");
    let stamp = now_ms();
    config.exchange = format!("switchyard-bench-reload-{stamp}");
    config.queue_prefix = format!("switchyard-bench-reload-{stamp}");

    let shutdown = CancellationToken::new();
    let running = switchyard::start(config.clone(), shutdown.clone()).await?;
    let merge = running.registry.get("merge").context("merge not loaded")?;
    let bystander = running
        .registry
        .get("counter")
        .context("counter not loaded")?;
    ensure!(
        running.registry.failures().is_empty(),
        "plugins failed to load: {:?}",
        running.registry.failures()
    );

    let connection =
        Arc::new(switchyard::broker::connect(&config, "switchyard-bench-publisher").await?);
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = tokio::spawn(publish_steadily(
        connection,
        config.exchange.clone(),
        Arc::clone(&publishing),
    ));
    // Let the consumers start and reach a steady state.
    let warmed_up = wait_until(Duration::from_secs(30), || {
        publisher.is_finished() || merge.counters.applied.load(Ordering::Relaxed) > 2_000
    })
    .await;
    if publisher.is_finished() {
        let ended = publisher.await?;
        bail!("the publisher stopped: {:?}", ended.err());
    }
    warmed_up?;

    println!("phase 1: quiet for {QUIET:?}");
    let quiet = rates(&merge, &bystander, || tokio::time::sleep(QUIET)).await;
    println!("    merge {:.0} ev/s, counter {:.0} ev/s", quiet.0, quiet.1);

    println!("phase 2: {reloads} reloads alternating two builds (compile cache)");
    let mut cached = Vec::new();
    let cached_rates = rates(&merge, &bystander, || async {
        for i in 0..reloads {
            eprintln!("bench: cached reload {}/{reloads}", i + 1);
            let src = if i % 2 == 0 { variant } else { shipped };
            let bytes = std::fs::read(src).expect("plugin file");
            cached.push(reload(&plugins, &merge, &bytes).await.expect("reload"));
        }
    })
    .await;

    println!("phase 3: {reloads} reloads of files new to the host (compiled each time)");
    let mut fresh = Vec::new();
    let base = std::fs::read(shipped)?;
    let fresh_rates = rates(&merge, &bystander, || async {
        for i in 0..reloads {
            eprintln!("bench: fresh reload {}/{reloads}", i + 1);
            let bytes = with_custom_section(&base, &format!("{stamp}-{i}"));
            fresh.push(reload(&plugins, &merge, &bytes).await.expect("reload"));
        }
    })
    .await;

    publishing.store(false, Ordering::Relaxed);
    let (connection, published) = publisher.await??;
    println!("published {published} events in all");
    report(&cached, &fresh, quiet, cached_rates, fresh_rates);

    shutdown.cancel();
    running.wait().await;
    let admin = connection.create_channel().await?;
    for p in PLUGINS {
        for q in switchyard::broker::queue_type::plugin_queues(&config, p) {
            let _ = admin
                .queue_delete(q.name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let dlx = config.dead_letter_exchange(p);
        let _ = admin
            .exchange_delete(dlx.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = admin
        .exchange_delete(
            config.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await;
    let _ = admin.close(200, ShortString::from("bye")).await;
    let _ = connection.close(200, ShortString::from("bye")).await;
    Ok(())
}

/// One reload: milliseconds from the file landing to the new version's
/// first batch, and of that, the load (compile or cache, instantiate,
/// describe).
struct Reload {
    latency_ms: f64,
    load_ms: f64,
}

/// Lands `bytes` as `merge.wasm` (written beside, renamed in) and waits
/// for the new version's first batch.
async fn reload(dir: &Path, merge: &PluginSlot, bytes: &[u8]) -> Result<Reload> {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(bytes));
    let partial = dir.join(".merge.wasm.partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, dir.join("merge.wasm"))?;
    let landed = now_ms();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current = merge.current();
        if current.sha256 == sha
            && let Some(first) = current.first_batch_at_ms()
        {
            tokio::time::sleep(BETWEEN_RELOADS).await;
            return Ok(Reload {
                latency_ms: (first - landed) as f64,
                load_ms: current.load_ms,
            });
        }
        if Instant::now() > deadline {
            bail!("version {} never handled a batch", &sha[..12]);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The component with a custom section appended: same code, new sha256.
fn with_custom_section(component: &[u8], tag: &str) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"switchyard-bench";
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section
    leb128(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// Runs `during` and returns the events per second merge and counter
/// applied meanwhile.
async fn rates<F, Fut>(merge: &PluginSlot, counter: &PluginSlot, during: F) -> (f64, f64)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let applied = |s: &PluginSlot| s.counters.applied.load(Ordering::Relaxed);
    let (m0, c0, t0) = (applied(merge), applied(counter), Instant::now());
    during().await;
    let secs = t0.elapsed().as_secs_f64();
    (
        (applied(merge) - m0) as f64 / secs,
        (applied(counter) - c0) as f64 / secs,
    )
}

/// Publishes customer events at [`PUBLISH_RATE`] with confirms until told
/// to stop; returns the connection and how many it sent.
async fn publish_steadily(
    connection: Arc<Connection>,
    exchange: String,
    publishing: Arc<AtomicBool>,
) -> Result<(Arc<Connection>, u64)> {
    let channel = connection.create_channel().await?;
    // The host declares it too; whoever comes first creates it.
    switchyard::broker::declare_exchange(&channel, &exchange).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let props = BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2);
    let mut pending: VecDeque<PublisherConfirm> = VecDeque::new();
    let started = Instant::now();
    let mut sent: u64 = 0;
    while publishing.load(Ordering::Relaxed) {
        let due = started.elapsed().as_secs_f64() * PUBLISH_RATE as f64;
        if (sent as f64) >= due {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        if pending.len() >= CONFIRM_WINDOW
            && let Some(confirm) = pending.pop_front()
        {
            ensure!(confirm.await?.is_ack(), "the broker refused a message");
        }
        let body = format!(
            r#"{{"id":"c{}","name":"n{sent}","email":"n{sent}@bench.test","eventId":"bench-{sent}","eventType":"customer.updated","timestamp":"2026-11-25T10:00:00Z"}}"#,
            sent % 1000
        );
        pending.push_back(
            channel
                .basic_publish(
                    ShortString::from(exchange.as_str()),
                    ShortString::from("customer.updated"),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    props.clone(),
                )
                .await?,
        );
        sent += 1;
    }
    while let Some(confirm) = pending.pop_front() {
        ensure!(confirm.await?.is_ack(), "the broker refused a message");
    }
    let _ = channel.close(200, ShortString::from("done")).await;
    Ok((connection, sent))
}

async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(
    cached: &[Reload],
    fresh: &[Reload],
    quiet: (f64, f64),
    cached_rates: (f64, f64),
    fresh_rates: (f64, f64),
) {
    println!();
    println!("reload latency, file landed -> first batch of the new version (ms)");
    println!("| phase | reloads | p50 | p99 | max | load p50 (compile/cache + describe) |");
    println!("|---|---|---|---|---|---|");
    for (name, reloads) in [("cached (2 builds)", cached), ("fresh (compiled)", fresh)] {
        let values: Vec<f64> = reloads.iter().map(|r| r.latency_ms).collect();
        let loads: Vec<f64> = reloads.iter().map(|r| r.load_ms).collect();
        let max = values.iter().copied().fold(0.0, f64::max);
        println!(
            "| {name} | {} | {:.0} | {:.0} | {max:.0} | {:.0} |",
            values.len(),
            percentile(&values, 50.0),
            percentile(&values, 99.0),
            percentile(&loads, 50.0)
        );
    }
    println!();
    println!("events applied per second (publisher steady at {PUBLISH_RATE}/s)");
    println!("| phase | merge | ratio to quiet | counter (bystander) | ratio to quiet |");
    println!("|---|---|---|---|---|");
    for (name, (m, c)) in [
        ("quiet", quiet),
        ("cached reloads", cached_rates),
        ("fresh reloads", fresh_rates),
    ] {
        println!(
            "| {name} | {m:.0} | {:.2} | {c:.0} | {:.2} |",
            m / quiet.0,
            c / quiet.1
        );
    }
}
