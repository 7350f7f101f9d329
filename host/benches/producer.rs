//! Producer benchmark: the `crm-producer` plugin walks an upstream of
//! 200,000 customers (15 MB of JSON), as a paginated listing and as one
//! answer, and the figures a user of a large upstream cares about are
//! printed: the first poll (every record new: events/s), an unchanged
//! re-poll, a poll where 1% changed, and the host's peak and final
//! resident memory.
//!
//! The host runs as a child process (the real binary, so that its memory is
//! its own) against the local RabbitMQ, on an exchange, queue prefix and
//! queue of this run's own, all deleted at the end; the benchmark binds a
//! queue to `customer.*` so that every event is really stored by the
//! broker. The upstream is the tests' scripted one, in this process.
//!
//! Run it with `cargo xtask bench producer`. Environment: `BENCH_RECORDS`
//! (default 200,000), `AMQP_URL`.

#[path = "../tests/common/broker_lock.rs"]
#[allow(dead_code)]
mod broker_lock;
#[path = "../tests/common/service_lock.rs"]
#[allow(dead_code)]
mod service_lock;
#[path = "../tests/common/upstream.rs"]
#[allow(dead_code)]
mod upstream;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};
use upstream::{Paging, Upstream};

const PAGE_SIZE: usize = 1_000;
const UNCHANGED_POLLS: usize = 3;

fn main() -> Result<()> {
    let records: usize = match std::env::var("BENCH_RECORDS") {
        Ok(v) => v.parse().context("BENCH_RECORDS must be a number")?,
        Err(_) => 200_000,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(records))
}

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The figures of one shape of upstream.
struct Figures {
    shape: &'static str,
    answer_bytes: usize,
    first_ms: i64,
    unchanged_ms: Vec<i64>,
    changed_ms: i64,
    changed: u64,
    start_mib: f64,
    peak_mib: f64,
    final_mib: f64,
}

async fn run(records: usize) -> Result<()> {
    // No test stops the broker under the benchmark.
    let _broker_up = broker_lock::BrokerLock::shared().await;
    let listing: Vec<Value> = (0..records)
        .map(|i| {
            json!({
                "id": format!("c{i:07}"),
                "name": format!("Customer {i}"),
                "email": format!("customer{i}@example.com"),
                "updatedAt": "2026-11-24T08:00:00Z",
            })
        })
        .collect();
    let answer_bytes = serde_json::to_vec(&listing)?.len();
    println!(
        "producer benchmark: {records} records ({:.1} MB as one answer), crm-producer, RabbitMQ at {}",
        answer_bytes as f64 / 1e6,
        redact(&amqp_url())
    );
    let mut all = Vec::new();
    for (i, (shape, paging)) in [
        ("paginated (page=N, 1,000 a page)", Paging::Page),
        ("one answer", Paging::None),
    ]
    .into_iter()
    .enumerate()
    {
        eprintln!("bench: upstream {}/2: {shape}", i + 1);
        let up = Upstream::start(listing.clone(), paging, 0).await;
        all.push(measure(shape, &up, paging, records, answer_bytes).await?);
    }
    println!();
    println!(
        "| upstream | first poll (all new) | events/s | unchanged re-poll (median of {UNCHANGED_POLLS}) | 1% changed | host RSS at start | peak | after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for f in &all {
        let mut unchanged = f.unchanged_ms.clone();
        unchanged.sort_unstable();
        println!(
            "| {} ({:.1} MB) | {:.2} s | {:.0} | {:.2} s | {:.2} s ({} events) | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
            f.shape,
            f.answer_bytes as f64 / 1e6,
            f.first_ms as f64 / 1e3,
            records as f64 / (f.first_ms as f64 / 1e3),
            unchanged[unchanged.len() / 2] as f64 / 1e3,
            f.changed_ms as f64 / 1e3,
            f.changed,
            f.start_mib,
            f.peak_mib,
            f.final_mib,
        );
    }
    println!("targets: peak RSS < 150 MiB; unchanged re-poll of 200,000 records < 2 s");
    Ok(())
}

async fn measure(
    shape: &'static str,
    up: &Upstream,
    paging: Paging,
    records: usize,
    answer_bytes: usize,
) -> Result<Figures> {
    let dirs = tempfile::tempdir()?;
    let plugins = dirs.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::copy(
        root.join("plugins/crm-producer.wasm"),
        plugins.join("crm-producer.wasm"),
    )
    .context("plugins/crm-producer.wasm is not built: run `cargo xtask bench producer`")?;
    let tag = format!(
        "sy-bench-producer-{}-{}",
        std::process::id(),
        paging_tag(paging)
    );
    let (exchange, queue) = (format!("{tag}.exchange"), format!("{tag}.events"));
    let broker = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
    let channel = broker.create_channel().await?;
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "customer.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut settings = vec![
        format!("crm-producer.base-url={}", up.origin()),
        "crm-producer.poll-interval-ms=500".to_owned(),
    ];
    if paging == Paging::Page {
        settings.push("crm-producer.pagination=page".into());
        settings.push(format!("crm-producer.page-size={PAGE_SIZE}"));
    }
    let log = std::fs::File::create(dirs.path().join("host.log"))?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("run")
        .env("AMQP_URL", amqp_url())
        .env("SWITCHYARD_GRANTS", format!("crm-producer={}", up.origin()))
        .env("SWITCHYARD_PLUGIN_SETTINGS", settings.join(","))
        .env("NO_COLOR", "1")
        .args(["--http", &format!("127.0.0.1:{port}")])
        .arg("--plugins")
        .arg(&plugins)
        .arg("--data")
        .arg(dirs.path().join("data"))
        .args(["--exchange", &exchange, "--queue-prefix", &tag])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting the switchyard binary")?;
    let pid = child.id().context("child pid")?;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/plugins");
    let measured = async {
        let start_mib = started_rss(&http, &url, pid).await?;
        let first = next_poll(&http, &url, 0).await?;
        if first.1 != records as u64 {
            bail!("the first poll published {} events, not {records}", first.1);
        }
        let mut unchanged_ms = Vec::new();
        let mut at = first.2;
        for _ in 0..UNCHANGED_POLLS {
            let (took, published, when) = next_poll(&http, &url, at).await?;
            if published != 0 {
                bail!("an unchanged re-poll published {published}");
            }
            unchanged_ms.push(took);
            at = when;
        }
        // 1% of the records change.
        up.edit(|r| {
            for i in (0..r.len()).step_by(100) {
                r[i]["name"] = json!(format!("Changed {i}"));
            }
        });
        // The poll running now may have read part of the listing before it.
        let mut changed = next_poll(&http, &url, at).await?;
        if changed.1 != records.div_ceil(100) as u64 {
            changed = next_poll(&http, &url, changed.2).await?;
        }
        Ok::<_, anyhow::Error>(Figures {
            shape,
            answer_bytes,
            first_ms: first.0,
            unchanged_ms,
            changed_ms: changed.0,
            changed: changed.1,
            start_mib,
            peak_mib: rss_mib(pid, "VmHWM")?,
            final_mib: rss_mib(pid, "VmRSS")?,
        })
    }
    .await;
    let _ = child.kill().await;
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    let _ = broker.close(200, "done".into()).await;
    if measured.is_err() {
        let log = std::fs::read_to_string(dirs.path().join("host.log")).unwrap_or_default();
        eprintln!("host log (tail):\n{}", tail(&log, 30));
    }
    measured
}

fn paging_tag(p: Paging) -> &'static str {
    match p {
        Paging::None => "one",
        _ => "paged",
    }
}

/// Waits for a successful poll that ended after `after_ms`: (took_ms,
/// published, at_ms).
async fn next_poll(http: &reqwest::Client, url: &str, after_ms: i64) -> Result<(i64, u64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(resp) = http.get(url).send().await
            && let Ok(body) = resp.json::<Value>().await
            && let Some(p) = body["plugins"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["name"] == "crm-producer"))
        {
            let last = &p["producer"]["last_poll"];
            if let (Some(at), Some(took), Some(published)) = (
                last["at_ms"].as_i64(),
                last["took_ms"].as_i64(),
                last["published"].as_u64(),
            ) && at > after_ms
            {
                return Ok((took, published, at));
            }
            if let Some(e) = p["producer"]["last_poll_error"]["error"].as_str() {
                bail!("a poll failed: {e}");
            }
        }
        if Instant::now() > deadline {
            bail!("no poll within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The host's resident memory once its API answers (plugins loaded, the
/// first poll just starting).
async fn started_rss(http: &reqwest::Client, url: &str, pid: u32) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while http.get(url).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("the host's API did not answer within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rss_mib(pid, "VmRSS")
}

/// A memory figure of `/proc/<pid>/status`, in MiB.
fn rss_mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}
