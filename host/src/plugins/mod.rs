//! Plugins: the wasmtime engine, loading and validating `.wasm` components,
//! and what a loaded plugin is: a [`PluginSlot`] per name whose current
//! [`LoadedPlugin`] version can be replaced while it runs.
//!
//! This module runs WebAssembly; it does not know about brokers or HTTP.

pub mod access;
pub mod bindings;
pub mod cache;
pub mod check;
pub mod contract;
pub mod deadline;
pub mod http;
pub mod instance;
pub mod linker;
pub mod memory;
pub mod registry;
pub mod state_txn;
pub mod stdio;
pub mod tls;
pub mod warnings;
pub mod wasi;
pub mod watcher;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmtime::{Config as EngineConfig, Engine};

use crate::store::{Store, now_ms};
use access::Access;
use bindings::{HostState, Producer, ProducerPre, Transformer, TransformerPre};
use cache::{CompileCache, Source};
pub use instance::{CallError, Instance};
pub use linker::PluginWorld;
use linker::WorldLinkers;
pub use memory::{MEMORY_SETTING, MemoryCapExceeded};
use memory::{MemoryCap, MemoryCaps};
pub use registry::{LoadFailure, PluginRegistry};
use warnings::Warnings;

/// How often the epoch advances; plugin deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The worlds a plugin may implement, as `GET /plugins` names them.
pub const TRANSFORMER_WORLD: &str = "transformer";
pub const PRODUCER_WORLD: &str = "producer";

/// A producer setting the host reads itself: overrides the poll interval.
pub const POLL_INTERVAL_SETTING: &str = "poll-interval-ms";
/// A producer setting the host reads itself: the longest a poll may run
/// while it makes progress (see [`deadline`]).
pub const POLL_TIMEOUT_SETTING: &str = "poll-timeout-ms";
/// How long a poll may run, making progress, unless `poll-timeout-ms` says.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(300);

/// The shortest poll interval a producer may ask for.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The wasmtime engine and a linker per world shared by every plugin, plus
/// the sandbox limits each instance gets.
pub struct PluginEngine {
    engine: Engine,
    linkers: WorldLinkers,
    db: Store,
    cache: Option<CompileCache>,
    access: Access,
    warnings: Arc<Warnings>,
    deadline_ticks: u64,
    memory: MemoryCaps,
}

impl PluginEngine {
    /// An engine whose plugin calls are interrupted after `timeout` and whose
    /// instances may grow to `memory_bytes` (unless a plugin's `memory-mib`
    /// setting in `access` says otherwise); compiled plugins are cached in
    /// `cache_dir` when given; `access` says what each plugin may reach.
    /// Starts the epoch ticker thread (it stops when the engine is dropped).
    pub fn new(
        db: Store,
        timeout: Duration,
        memory_bytes: usize,
        cache_dir: Option<&Path>,
        access: Access,
    ) -> Result<Self> {
        let mut config = EngineConfig::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let memory = MemoryCaps::new(memory_bytes, access.settings())?;
        let linkers = WorldLinkers::new(&engine)?;
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
            access,
            warnings: Arc::default(),
            engine,
            linkers,
            db,
            deadline_ticks,
            memory,
        })
    }

    /// The memory cap of `plugin`, in bytes, and whether its own
    /// `memory-mib` setting set it.
    pub fn memory_cap(&self, plugin: &str) -> (usize, bool) {
        (
            self.memory.for_plugin(plugin),
            self.memory.is_set_for(plugin),
        )
    }

    /// The last warning each plugin logged.
    pub fn warnings(&self) -> &Warnings {
        &self.warnings
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
        let mut phases = LoadPhases::new(started);
        phases.lap("component");
        let world = PluginWorld::of(&component, &self.engine)?;
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let linked = self
            .linkers
            .for_world(world)
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "a {} imports what the host does not offer it (see `switchyard plugin wit` \
                     for what each world may import)",
                    world.name()
                )
            })?;
        phases.lap("link");
        // The plugin's own cap is known once it has named itself: until then
        // it runs under the largest cap of any plugin.
        let state = HostState::new(
            "",
            world,
            self.db.clone(),
            Arc::clone(&self.warnings),
            MemoryCap::new("", self.memory.largest()),
        );
        let (info, runtime) = match world {
            PluginWorld::Transformer => {
                let pre = TransformerPre::new(linked).map_err(|e| {
                    anyhow::Error::from(e)
                        .context("does not implement the world switchyard:plugin/transformer@0.1.x")
                })?;
                let mut instance: Instance<Transformer> =
                    Instance::new(pre, state, self.deadline_ticks)?;
                phases.lap("instantiate");
                let info = instance.describe().context("describe() failed")?;
                phases.lap("describe");
                validate_name(&info.name)?;
                if info.subscriptions.is_empty() {
                    bail!("plugin {:?} subscribes to nothing", info.name);
                }
                for key in &info.subscriptions {
                    if key.is_empty() || key.len() > 255 {
                        bail!("plugin {:?} has an invalid subscription {key:?}", info.name);
                    }
                }
                instance.set_name(
                    &info.name,
                    self.access.for_plugin(&info.name),
                    self.memory.for_plugin(&info.name),
                )?;
                (info, Runtime::Transformer(Mutex::new(instance)))
            }
            PluginWorld::Producer => {
                let pre = ProducerPre::new(linked).map_err(|e| {
                    anyhow::Error::from(e)
                        .context("does not implement the world switchyard:plugin/producer@0.1.x")
                })?;
                let mut instance: Instance<Producer> =
                    Instance::new(pre, state, self.deadline_ticks)?;
                phases.lap("instantiate");
                let described = instance.describe().context("describe() failed")?;
                phases.lap("describe");
                validate_name(&described.name)?;
                let grants = self.access.for_plugin(&described.name);
                // The operator's setting wins over the plugin's own interval.
                let interval_ms = match grants.settings.get(POLL_INTERVAL_SETTING) {
                    Some(ms) => ms.parse().with_context(|| {
                        format!(
                            "setting {POLL_INTERVAL_SETTING}={ms:?} is not a number of milliseconds"
                        )
                    })?,
                    None => u64::from(described.poll_interval_ms),
                };
                let interval = Duration::from_millis(interval_ms);
                let poll_timeout = match grants.settings.get(POLL_TIMEOUT_SETTING) {
                    Some(ms) => Duration::from_millis(ms.parse().with_context(|| {
                        format!(
                            "setting {POLL_TIMEOUT_SETTING}={ms:?} is not a number of milliseconds"
                        )
                    })?),
                    None => DEFAULT_POLL_TIMEOUT,
                };
                let cap = self.memory.for_plugin(&described.name);
                instance.set_name(&described.name, grants, cap)?;
                let info = bindings::PluginInfo {
                    name: described.name,
                    version: described.version,
                    subscriptions: Vec::new(),
                    views: Vec::new(),
                };
                let runtime = Runtime::Producer {
                    instance: Mutex::new(instance),
                    interval: interval.max(MIN_POLL_INTERVAL),
                    poll_timeout,
                };
                (info, runtime)
            }
        };
        tracing::debug!(
            plugin = %info.name, file = %path.display(), from_cache = source == Source::Cache,
            phases = %phases, "plugin load phases"
        );
        Ok(LoadedPlugin {
            name: info.name.clone(),
            memory_cap_bytes: self.memory.for_plugin(&info.name),
            info,
            world: world.name(),
            imports,
            sha256: sha256.to_owned(),
            file: path.to_owned(),
            loaded_at_ms: now_ms(),
            load_ms: started.elapsed().as_secs_f64() * 1e3,
            from_cache: source == Source::Cache,
            first_batch_at_ms: AtomicI64::new(0),
            runtime,
        })
    }
}

/// Where the time of a plugin load went, in milliseconds per phase, for
/// the debug log: `component=41.2 link=0.3 instantiate=2.1 describe=0.4`.
struct LoadPhases {
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl LoadPhases {
    fn new(started: Instant) -> Self {
        Self {
            last: started,
            laps: Vec::new(),
        }
    }

    /// The phase `name` ends now.
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.laps
            .push((name, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }
}

impl std::fmt::Display for LoadPhases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, ms)) in self.laps.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={ms:.1}")?;
        }
        Ok(())
    }
}

/// A version's live instance, of its world.
enum Runtime {
    Transformer(Mutex<Instance<Transformer>>),
    Producer {
        instance: Mutex<Instance<Producer>>,
        interval: Duration,
        poll_timeout: Duration,
    },
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
    /// Events handed to the batch core, redeliveries included.
    pub received: AtomicU64,
    pub applied: AtomicU64,
    /// Events judged bad by the batch core (host checks, reject, trap).
    pub rejected: AtomicU64,
    /// Events the plugin failed transiently, each attempt.
    pub retried: AtomicU64,
    /// Instances replaced after a trap, a timeout or the memory cap.
    pub restarts: AtomicU64,
    /// Events skipped because the plugin had applied their id before.
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Store commits (batches that applied at least one event).
    pub commits: AtomicU64,
    /// Batches run again because another writer (another host, another
    /// version) committed the plugin's state first.
    pub conflicts: AtomicU64,
    /// A producer's polls, those that failed, and the events published.
    pub polls: AtomicU64,
    pub failed_polls: AtomicU64,
    pub published: AtomicU64,
    pub timings: crate::metrics::PluginTimings,
}

/// One version of a plugin, ready to run: a compiled component, its
/// description and its live instance.
pub struct LoadedPlugin {
    pub name: String,
    pub info: bindings::PluginInfo,
    /// The world the component implements.
    pub world: &'static str,
    /// The interfaces the component imports (`wasi:cli/stdout@0.2.3`...).
    pub imports: Vec<String>,
    /// The most memory its instance may hold, in bytes.
    pub memory_cap_bytes: usize,
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
    runtime: Runtime,
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
    /// Exclusive use of a transformer's instance: one batch (or one API
    /// write, or one view) at a time. `None` for a producer. Blocking.
    pub fn transformer(&self) -> Option<MutexGuard<'_, Instance<Transformer>>> {
        match &self.runtime {
            // A panic while holding the lock cannot leave the instance worse
            // than a trap does; keep serving.
            Runtime::Transformer(i) => Some(i.lock().unwrap_or_else(|p| p.into_inner())),
            Runtime::Producer { .. } => None,
        }
    }

    /// Exclusive use of a producer's instance; `None` for a transformer.
    pub fn producer(&self) -> Option<MutexGuard<'_, Instance<Producer>>> {
        match &self.runtime {
            Runtime::Producer { instance, .. } => {
                Some(instance.lock().unwrap_or_else(|p| p.into_inner()))
            }
            Runtime::Transformer(_) => None,
        }
    }

    pub fn is_producer(&self) -> bool {
        matches!(self.runtime, Runtime::Producer { .. })
    }

    /// A producer's time between polls.
    pub fn poll_interval(&self) -> Option<Duration> {
        match self.runtime {
            Runtime::Producer { interval, .. } => Some(interval),
            Runtime::Transformer(_) => None,
        }
    }

    /// The longest a producer's poll may run while it makes progress.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.runtime {
            Runtime::Producer { poll_timeout, .. } => Some(poll_timeout),
            Runtime::Transformer(_) => None,
        }
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
    pub counters: Counters,
    /// How many times a new version replaced the running one.
    pub reloads: AtomicU64,
    outbox_pending: AtomicBool,
    /// A producer's last failed poll, until one succeeds: why, and when.
    poll_error: Mutex<Option<(String, i64)>>,
    /// A producer's last successful poll.
    last_poll: Mutex<Option<PollRecord>>,
    /// The host that holds the producer's lease (polls it), as last seen.
    poller: Mutex<Option<String>>,
    /// While the broker blocks a producer's publishing: its reason, and
    /// since when (Unix ms).
    publishing_blocked: Mutex<Option<(String, i64)>>,
}

/// A successful poll, as `GET /plugins` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PollRecord {
    /// When it ended (Unix ms).
    pub at_ms: i64,
    /// How long it took, publishing and the state commit included.
    pub took_ms: i64,
    /// Events it published.
    pub published: u64,
}

impl PluginSlot {
    pub fn new(version: LoadedPlugin) -> Self {
        Self {
            name: version.name.clone(),
            current: RwLock::new(Arc::new(version)),
            writer: Mutex::new(()),
            counters: Counters::default(),
            reloads: AtomicU64::new(0),
            outbox_pending: AtomicBool::new(false),
            poll_error: Mutex::new(None),
            last_poll: Mutex::new(None),
            poller: Mutex::new(None),
            publishing_blocked: Mutex::new(None),
        }
    }

    /// The broker blocks this producer's publishing for `reason`, or
    /// (`None`) no longer does.
    pub fn set_publishing_blocked(&self, reason: Option<&str>) {
        *self
            .publishing_blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = reason.map(|r| (r.to_owned(), now_ms()));
    }

    /// While the broker blocks this producer's publishing: why, and since
    /// when (Unix ms).
    pub fn publishing_blocked(&self) -> Option<(String, i64)> {
        self.publishing_blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_poll_error(&self, error: String) {
        *self.poll_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((error, now_ms()));
    }

    /// A poll succeeded: no error to show, and this was it.
    pub fn poll_succeeded(&self, poll: PollRecord) {
        *self.poll_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.last_poll.lock().unwrap_or_else(|p| p.into_inner()) = Some(poll);
    }

    /// Records which host holds the producer's lease.
    pub fn set_poller(&self, host: String) {
        *self.poller.lock().unwrap_or_else(|p| p.into_inner()) = Some(host);
    }

    /// The host that polls this producer, as last seen.
    pub fn poller(&self) -> Option<String> {
        self.poller
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A producer's last successful poll.
    pub fn last_poll(&self) -> Option<PollRecord> {
        *self.last_poll.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A producer's last failed poll (reason, Unix ms), until one succeeds.
    pub fn poll_error(&self) -> Option<(String, i64)> {
        self.poll_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
