//! The throughput benchmark's data-size figures (`BENCH_ONLY=datasize`,
//! `cargo xtask bench datasize`): does a host's cost grow with the data it
//! holds?
//!
//! - Cost per event against the data set: the store first gets every
//!   customer and product of the set (one event each, pre-published with
//!   the rest), then `BENCH_EVENTS` updates cycling over them; the events/s
//!   and the process's CPU per event are those of the updates alone (from
//!   the poll that saw the set applied to the last), for 100 customers and
//!   100 products against 100,000 customers and 10,000 products, the two
//!   alternating over `BENCH_ROUNDS` rounds; medians and their ratio.
//!   Target (issue 13): within 20%.
//! - `GET /analytics/data?limit=100` against the size of its answer: one
//!   host, 100 customers, then 500, 5,000 and 20,000 products; each page
//!   asked for once untimed, then timed 5 times (median), with its size.
//!   Every item repeats every product, so the answer grows with the
//!   products. The plugin's memory cap is raised to 1 GiB for this host:
//!   at the default 64 MiB the page of 20,000 products (about 100 MB in
//!   the guest) does not fit.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lapin::Connection;
use lapin::types::ShortString;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use super::support::broker::{connect, declare_plugin, delete_plugin, publish_all};
use super::support::events::{DataSize, EventSource, preload_event};
use super::support::host::{PLUGIN, bench_config};
use super::support::measure::median;
use super::{round_count, switchyard_end_to_end};
use switchyard::config::StoreUrl;

const SMALL: DataSize = DataSize {
    customers: 100,
    products: 100,
};
const LARGE: DataSize = DataSize {
    customers: 100_000,
    products: 10_000,
};
/// Customers of the `data` view's page, and the products it is timed at.
const PAGE_CUSTOMERS: usize = 100;
const PAGE_PRODUCTS: [usize; 3] = [500, 5_000, 20_000];
/// Timed requests per page size (after an untimed one).
const PAGE_REQUESTS: usize = 5;
const PAGE_MEMORY_MIB: usize = 1024;
/// How long loading a page size's products may take.
const LOAD_LIMIT: Duration = Duration::from_secs(120);

pub fn run(runtime: &Runtime, url: &str, wasm: &Path, n: usize) -> Result<()> {
    cost_against_size(runtime, url, wasm, n)?;
    runtime.block_on(page_against_size(url, wasm))
}

/// Events/s and CPU microseconds per event of one round.
type Cost = (f64, f64);

fn cost_against_size(runtime: &Runtime, url: &str, wasm: &Path, n: usize) -> Result<()> {
    let rounds = round_count()?;
    let (mut small, mut large): (Vec<Cost>, Vec<Cost>) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for (size, costs) in [(SMALL, &mut small), (LARGE, &mut large)] {
            eprintln!("bench: round {round}/{rounds}: {size} stored, then {n} updates");
            let events = EventSource {
                size,
                preload: true,
                n,
            };
            let e2e = runtime.block_on(switchyard_end_to_end(
                url,
                wasm,
                StoreUrl::from("sqlite"),
                events,
            ))?;
            let (rate, cpu_us) = e2e.after_warm_up(events.len() as u64);
            println!(
                "    {n} updates over {size}: {rate:.0} events/s, {cpu_us:.1} us CPU per event"
            );
            costs.push((rate, cpu_us));
        }
    }
    let med = |costs: &[Cost], f: fn(&Cost) -> f64| median(costs.iter().map(f).collect());
    let (small_rate, small_cpu) = (med(&small, |c| c.0), med(&small, |c| c.1));
    let (large_rate, large_cpu) = (med(&large, |c| c.0), med(&large, |c| c.1));
    println!();
    println!(
        "cost against data size, {n} updates after the data set is stored, SQLite, \
         median of {rounds} rounds:"
    );
    println!("  {SMALL}: {small_rate:>8.0} events/s, {small_cpu:>5.1} us CPU per event");
    println!("  {LARGE}: {large_rate:>8.0} events/s, {large_cpu:>5.1} us CPU per event");
    println!(
        "  ratio large/small: CPU per event {:.2}, events/s {:.2}; target: CPU within 20%",
        large_cpu / small_cpu,
        large_rate / small_rate
    );
    Ok(())
}

/// Times the `data` view's first page as the products grow; the queues
/// and exchanges are removed afterwards whatever happens.
async fn page_against_size(url: &str, wasm: &Path) -> Result<()> {
    let dirs = tempfile::tempdir()?;
    let mut config = bench_config(url, wasm, StoreUrl::from("sqlite"), dirs.path())?;
    config.plugin_memory_mib = PAGE_MEMORY_MIB;
    let connection = connect(url).await?;
    let admin = connection.create_channel().await?;
    let result = async {
        declare_plugin(&connection, &admin, &config, PLUGIN).await?;
        let shutdown = CancellationToken::new();
        let running = switchyard::start(config.clone(), shutdown.clone()).await?;
        let result = time_pages(&connection, &config.exchange, &running).await;
        shutdown.cancel();
        running.wait().await;
        result
    }
    .await;
    delete_plugin(url, &config, PLUGIN).await;
    let _ = connection.close(200, ShortString::from("bye")).await;
    result
}

async fn time_pages(
    connection: &Connection,
    exchange: &str,
    running: &switchyard::Running,
) -> Result<()> {
    let plugin = running
        .registry
        .get(PLUGIN)
        .context("the merge plugin is not loaded")?;
    let http = reqwest::Client::new();
    let page = format!(
        "http://{}/analytics/data?limit={PAGE_CUSTOMERS}",
        running.http_addr
    );
    let (mut published, mut stored) = (0u64, 0usize);
    let mut rows = Vec::new();
    for products in PAGE_PRODUCTS {
        eprintln!("bench: the data view with {products} products");
        // The customers with the first products, then the products added
        // since, numbered as a preload of the whole set.
        let size = DataSize {
            customers: PAGE_CUSTOMERS,
            products,
        };
        let first = if stored == 0 {
            0
        } else {
            PAGE_CUSTOMERS + stored
        };
        let events = (first..PAGE_CUSTOMERS + products).map(|k| preload_event(k, size));
        published += (PAGE_CUSTOMERS + products - first) as u64;
        publish_all(connection, exchange, None, events).await?;
        stored = products;
        let started = Instant::now();
        while plugin.counters.applied.load(Ordering::Relaxed) < published {
            ensure!(
                started.elapsed() < LOAD_LIMIT,
                "{products} products not applied within {LOAD_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut times = Vec::with_capacity(PAGE_REQUESTS);
        let mut size = 0;
        for request in 0..=PAGE_REQUESTS {
            let started = Instant::now();
            let answer = http
                .get(&page)
                .send()
                .await
                .context("GET /analytics/data")?;
            let status = answer.status();
            let body = answer.bytes().await.context("reading the data page")?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            ensure!(
                status.is_success(),
                "GET {page} with {products} products: {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
            if request > 0 {
                times.push(ms);
            }
            size = body.len();
        }
        let (ms, mb) = (median(times), size as f64 / 1e6);
        println!(
            "    {products} products: {ms:.1} ms for {mb:.1} MB ({:.2} ms per MB)",
            ms / mb
        );
        rows.push((products, ms, mb));
    }
    println!();
    println!(
        "GET /analytics/data?limit={PAGE_CUSTOMERS} against its answer's size \
         ({PAGE_CUSTOMERS} customers, median of {PAGE_REQUESTS} requests):"
    );
    for (products, ms, mb) in rows {
        println!(
            "  {products:>6} products: {ms:>8.1} ms, {mb:>6.1} MB, {:>5.2} ms/MB",
            ms / mb
        );
    }
    Ok(())
}
