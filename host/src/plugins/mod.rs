//! Plugins: the wasmtime engine, loading and validating `.wasm` components,
//! and what a loaded plugin is: a [`PluginSlot`] per name whose current
//! [`LoadedPlugin`] version can be replaced while it runs.
//!
//! This module runs WebAssembly; it does not know about brokers or HTTP.

pub mod bindings;
pub mod cache;
pub mod instance;
pub mod registry;
pub mod watcher;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config as EngineConfig, Engine};

use crate::store::{Store, now_ms};
use bindings::{HostState, Transformer, TransformerPre};
use cache::{CompileCache, Source};
pub use instance::{CallError, Instance};
pub use registry::{LoadFailure, PluginRegistry};

/// How often the epoch advances; plugin deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The worlds a plugin may implement, as `GET /plugins` names them.
pub const TRANSFORMER_WORLD: &str = "transformer";

/// The wasmtime engine and linker shared by every plugin, plus the sandbox
/// limits each instance gets.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    db: Arc<Store>,
    cache: Option<CompileCache>,
    deadline_ticks: u64,
    memory_bytes: usize,
}

impl PluginEngine {
    /// An engine whose plugin calls are interrupted after `timeout` and whose
    /// instances may grow to `memory_bytes`; compiled plugins are cached in
    /// `cache_dir` when given. Starts the epoch ticker thread (it stops when
    /// the engine is dropped).
    pub fn new(
        db: Arc<Store>,
        timeout: Duration,
        memory_bytes: usize,
        cache_dir: Option<&Path>,
    ) -> Result<Self> {
        let mut config = EngineConfig::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        // Rust's std makes every wasip2 guest import wasi:cli and wasi:io; the
        // context behind them grants nothing (see `HostState::new`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Transformer::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("switchyard-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch thread")?;
        let deadline_ticks = (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        Ok(Self {
            cache: cache_dir.map(|dir| CompileCache::new(dir, &engine)),
            engine,
            linker,
            db,
            deadline_ticks,
            memory_bytes,
        })
    }

    /// Compiles (or takes from the cache), links, instantiates and describes
    /// the component `wasm` read from `path`, whose sha256 is `sha256`.
    /// Blocking: call it off the reactor.
    pub fn load(&self, path: &Path, wasm: &[u8], sha256: &str) -> Result<LoadedPlugin> {
        let started = Instant::now();
        let (component, source) = match &self.cache {
            Some(cache) => cache.component(&self.engine, sha256, wasm)?,
            None => (
                wasmtime::component::Component::new(&self.engine, wasm)
                    .map_err(anyhow::Error::from)
                    .context("not a WebAssembly component")?,
                Source::Compiled,
            ),
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(TransformerPre::new)
            .map_err(anyhow::Error::from)
            .context("does not implement the world switchyard:plugin/transformer@0.1.0")?;
        let state = HostState::new("", Arc::clone(&self.db), self.memory_bytes);
        let mut instance = Instance::new(pre, state, self.deadline_ticks, self.memory_bytes)?;
        let info = instance.describe().context("describe() failed")?;
        validate_name(&info.name)?;
        if info.subscriptions.is_empty() {
            bail!("plugin {:?} subscribes to nothing", info.name);
        }
        for key in &info.subscriptions {
            if key.is_empty() || key.len() > 255 {
                bail!("plugin {:?} has an invalid subscription {key:?}", info.name);
            }
        }
        instance.set_name(&info.name);
        Ok(LoadedPlugin {
            name: info.name.clone(),
            info,
            world: TRANSFORMER_WORLD,
            sha256: sha256.to_owned(),
            file: path.to_owned(),
            loaded_at_ms: now_ms(),
            load_ms: started.elapsed().as_secs_f64() * 1e3,
            from_cache: source == Source::Cache,
            first_batch_at_ms: AtomicI64::new(0),
            instance: Mutex::new(instance),
        })
    }
}

/// A plugin name names queues and URLs: lowercase letters, digits and `-`.
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!("plugin name {name:?} must be 1-64 lowercase letters, digits or '-'");
    }
    Ok(())
}

/// What a plugin has done since the host started, across its versions.
#[derive(Debug, Default)]
pub struct Counters {
    pub applied: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Store commits (batches that applied at least one event).
    pub commits: AtomicU64,
}

/// One version of a plugin, ready to run: a compiled component, its
/// description and its live instance.
pub struct LoadedPlugin {
    pub name: String,
    pub info: bindings::PluginInfo,
    /// The world the component implements.
    pub world: &'static str,
    /// sha256 of the file, hex: the version recorded with applied events.
    pub sha256: String,
    pub file: PathBuf,
    pub loaded_at_ms: i64,
    /// Milliseconds from reading the file to a described instance.
    pub load_ms: f64,
    /// Whether the compiled code came from the compile cache.
    pub from_cache: bool,
    /// When this version first handled a batch (0: not yet).
    first_batch_at_ms: AtomicI64,
    instance: Mutex<Instance>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl LoadedPlugin {
    /// Exclusive use of the instance: one batch (or one API write, or one
    /// view) at a time. Blocking.
    pub fn instance(&self) -> MutexGuard<'_, Instance> {
        // A panic while holding the lock cannot leave the instance worse
        // than a trap does; keep serving.
        self.instance.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn serves_view(&self, view: &str) -> bool {
        self.info.views.iter().any(|v| v == view)
    }

    /// Records that this version handles a batch now (the first time counts).
    pub fn note_batch(&self) {
        let _ = self.first_batch_at_ms.compare_exchange(
            0,
            now_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// When this version first handled a batch, if it has.
    pub fn first_batch_at_ms(&self) -> Option<i64> {
        match self.first_batch_at_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at),
        }
    }
}

/// A plugin by name: its current version, which a reload replaces between
/// batches, and what outlives versions (counters, the state writer lock).
pub struct PluginSlot {
    pub name: String,
    current: RwLock<Arc<LoadedPlugin>>,
    /// Held while a batch (or API write) of any version is applied and
    /// committed: one writer of the plugin's state at a time.
    writer: Mutex<()>,
    /// Bumped by each state commit, so that an instance whose cache of
    /// committed state predates another version's commit drops it.
    state_generation: AtomicU64,
    pub counters: Counters,
    /// How many times a new version replaced the running one.
    pub reloads: AtomicU64,
    outbox_pending: AtomicBool,
}

impl PluginSlot {
    pub fn new(version: LoadedPlugin) -> Self {
        Self {
            name: version.name.clone(),
            current: RwLock::new(Arc::new(version)),
            writer: Mutex::new(()),
            state_generation: AtomicU64::new(0),
            counters: Counters::default(),
            reloads: AtomicU64::new(0),
            outbox_pending: AtomicBool::new(false),
        }
    }

    /// The version that handles the next batch.
    pub fn current(&self) -> Arc<LoadedPlugin> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Makes `version` current; a batch in flight finishes on the old one.
    pub fn replace(&self, version: LoadedPlugin) -> Arc<LoadedPlugin> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *current, Arc::new(version));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        old
    }

    /// Exclusive right to write this plugin's state, whichever version
    /// writes. Take it before the version's instance. Blocking.
    pub fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state_generation(&self) -> u64 {
        self.state_generation.load(Ordering::Acquire)
    }

    /// A state commit happened (call with the writer lock held); returns
    /// the new generation.
    pub fn state_committed(&self) -> u64 {
        self.state_generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Marks that events of this plugin wait in the outbox (written outside
    /// its consumer, by the HTTP API).
    pub fn note_outbox(&self) {
        self.outbox_pending.store(true, Ordering::Relaxed);
    }

    /// Whether events were noted since the last call.
    pub fn take_outbox_flag(&self) -> bool {
        self.outbox_pending.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_queue_safe() {
        assert!(validate_name("merge").is_ok());
        assert!(validate_name("crm-producer2").is_ok());
        for bad in ["", "Merge", "a.b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
