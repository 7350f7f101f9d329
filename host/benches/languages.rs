//! The merge plugin in each language, in one run: native Rust (the same
//! logic linked into the benchmark), Rust WASM, Python WASM
//! (componentize-py) and JavaScript WASM (componentize-js). Per build:
//! component size, compile time (no cache), load time from the compile
//! cache (what a restart costs), time per event through the host's engine
//! (median of rounds), and the instance's linear memory after the rounds.
//!
//! `cargo xtask bench languages` builds the plugins first. Environment:
//! `BENCH_EVENTS` (default 5000) events per round, `BENCH_ROUNDS`
//! (default 5), `BENCH_EXTRA` more components to measure the same way, as
//! `label=file.wasm` separated by `;` (a file relative to the repository
//! root), such as a language's per-call floor.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use switchyard::plugins::bindings::Event;
use switchyard::plugins::{LoadedPlugin, PluginEngine};
use switchyard::store::Store;

/// Enough for SpiderMonkey's heap: the cap is not what is measured.
const MEMORY_CAP: usize = 512 << 20;

fn main() -> Result<()> {
    let events = generate(env_usize("BENCH_EVENTS", 5_000));
    let rounds = env_usize("BENCH_ROUNDS", 5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut builds: Vec<(String, PathBuf)> = vec![
        ("Rust WASM".into(), root.join("plugins/merge.wasm")),
        (
            "Python WASM".into(),
            root.join("target/test-plugins/merge-py.wasm"),
        ),
        (
            "JS WASM".into(),
            root.join("target/test-plugins/merge-js.wasm"),
        ),
    ];
    builds.extend(extra_builds(&root)?);
    println!(
        "merge per event: {} events x {rounds} rounds (median), seed-format customers and products",
        events.len()
    );
    eprintln!("bench: native, {rounds} rounds");
    let native = median((0..rounds).map(|_| native_round(&events)).collect());
    println!(
        "{:<16} {:>10} {:>10} {:>12} {:>12} {:>10} {:>9}",
        "build", "us/event", "x native", "size", "compile ms", "cached ms", "mem MiB"
    );
    println!(
        "{:<16} {native:>10.2} {:>10.2} {:>12} {:>12} {:>10} {:>9}",
        "native", 1.0, "-", "-", "-", "-"
    );
    for (i, (name, file)) in builds.iter().enumerate() {
        eprintln!(
            "bench: build {}/{}: {name}, {rounds} rounds",
            i + 1,
            builds.len()
        );
        let m = measure(file, &events, rounds)
            .with_context(|| format!("{name} ({})", file.display()))?;
        println!(
            "{name:<16} {:>10.2} {:>10.2} {:>12} {:>12.0} {:>10.1} {:>9.1}",
            m.per_event_us,
            m.per_event_us / native,
            m.size,
            m.compile_ms,
            m.cached_ms,
            m.memory_bytes as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}

struct Measured {
    size: u64,
    compile_ms: f64,
    cached_ms: f64,
    per_event_us: f64,
    memory_bytes: usize,
}

fn engine(dir: &Path, cache: Option<&Path>) -> Result<PluginEngine> {
    let db = Store::sqlite(dir)?;
    PluginEngine::new(
        db,
        Duration::from_secs(30),
        MEMORY_CAP,
        cache,
        Default::default(),
    )
}

fn load(engine: &PluginEngine, file: &Path, wasm: &[u8]) -> Result<LoadedPlugin> {
    use sha2::Digest;
    let sha256 = hex::encode(sha2::Sha256::digest(wasm));
    engine.load(file, wasm, &sha256)
}

fn measure(file: &Path, events: &[Event], rounds: usize) -> Result<Measured> {
    let wasm = std::fs::read(file).context("reading the component (cargo xtask build makes it)")?;
    let dirs = tempfile::tempdir()?;
    // Compiled from scratch: a first start, or a new version.
    let fresh = engine(dirs.path(), None)?;
    let compile_ms = load(&fresh, file, &wasm)?.load_ms;
    // From the compile cache: what a restart or a swap back costs.
    let cache = dirs.path().join("cache");
    let cached = engine(dirs.path(), Some(&cache))?;
    load(&cached, file, &wasm)?;
    let cached_ms = median(
        (0..3)
            .map(|_| load(&cached, file, &wasm).map(|p| p.load_ms))
            .collect::<Result<_>>()?,
    );
    let plugin = load(&cached, file, &wasm)?;
    let mut instance = plugin.transformer().context("merge is a transformer")?;
    let mut times = Vec::new();
    for round in 1..=rounds {
        eprintln!("bench:     round {round}/{rounds}");
        instance.take_state_writes();
        let started = Instant::now();
        for event in events {
            let actions = instance
                .handle(event)
                .map_err(|e| anyhow::anyhow!("event {}: {e}", event.id))?;
            black_box(actions);
            instance.finish_event(true);
        }
        times.push(started.elapsed().as_secs_f64() * 1e6 / events.len() as f64);
    }
    Ok(Measured {
        size: wasm.len() as u64,
        compile_ms,
        cached_ms,
        per_event_us: median(times),
        memory_bytes: instance.memory_bytes(),
    })
}

fn native_round(events: &[Event]) -> f64 {
    let mut state: HashMap<String, Vec<u8>> = HashMap::new();
    let started = Instant::now();
    for event in events {
        let actions = switchyard_merge::handle(&mut state, &event.routing_key, &event.body, 0)
            .unwrap_or_else(|e| panic!("native merge failed on {}: {e}", event.id));
        black_box(actions);
    }
    started.elapsed().as_secs_f64() * 1e6 / events.len() as f64
}

/// Alternating customer and inventory events over 1,000 of each, in the
/// existing producers' wire format, timestamps one millisecond apart.
fn generate(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let id = format!("00000000-0000-4000-8000-{i:012x}");
            let at = format!(
                "2026-11-24T08:{:02}:{:02}.{:03}Z",
                i / 60_000 % 60,
                i / 1000 % 60,
                i % 1000
            );
            let entity = (i / 2) % 1000;
            let (routing_key, body) = if i % 2 == 0 {
                (
                    "customer.created",
                    serde_json::json!({
                        "id": format!("c{entity}"), "name": format!("customer-{entity:04}"),
                        "email": format!("customer-{entity:04}@example.com"), "eventId": id,
                        "eventType": "customer.created", "timestamp": at,
                    }),
                )
            } else {
                (
                    "inventory.updated",
                    serde_json::json!({
                        "eventId": id, "eventType": "inventory.updated", "timestamp": at,
                        "id": format!("p{entity}"), "name": format!("product-{entity:04}"),
                        "stock": (i * 37) % 1000,
                    }),
                )
            };
            Event {
                id,
                routing_key: routing_key.into(),
                body: body.to_string(),
                received_at_ms: 0,
            }
        })
        .collect()
}

/// The `BENCH_EXTRA` components: `label=file` pairs separated by `;`.
fn extra_builds(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let Ok(extra) = std::env::var("BENCH_EXTRA") else {
        return Ok(Vec::new());
    };
    extra
        .split(';')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (label, file) = item
                .split_once('=')
                .with_context(|| format!("BENCH_EXTRA item {item:?} is not label=file.wasm"))?;
            Ok((label.trim().to_string(), root.join(file.trim())))
        })
        .collect()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
