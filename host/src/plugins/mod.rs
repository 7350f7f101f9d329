//! Plugins: the wasmtime engine, loading and validating `.wasm` components,
//! and the registry of what is loaded (and what failed to load, and why).
//!
//! This module runs WebAssembly; it does not know about brokers or HTTP.

pub mod bindings;
pub mod instance;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config as EngineConfig, Engine};

use crate::store::{Store, now_ms};
use bindings::{HostState, Transformer, TransformerPre};
pub use instance::{CallError, Instance};

/// How often the epoch advances; plugin deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime engine and linker shared by every plugin, plus the sandbox
/// limits each instance gets.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    db: Arc<Store>,
    deadline_ticks: u64,
    memory_bytes: usize,
}

impl PluginEngine {
    /// An engine whose plugin calls are interrupted after `timeout` and whose
    /// instances may grow to `memory_bytes`. Starts the epoch ticker thread
    /// (it stops when the engine is dropped).
    pub fn new(db: Arc<Store>, timeout: Duration, memory_bytes: usize) -> Result<Self> {
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
            engine,
            linker,
            db,
            deadline_ticks,
            memory_bytes,
        })
    }

    /// Compiles, instantiates and describes the plugin in `path`. Blocking
    /// (compiling takes tens of milliseconds): call it off the reactor.
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin> {
        let bytes = std::fs::read(path).context("reading the file")?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let component = Component::new(&self.engine, &bytes)
            .map_err(anyhow::Error::from)
            .context("not a WebAssembly component")?;
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
            sha256,
            file: path.to_owned(),
            loaded_at_ms: now_ms(),
            counters: Counters::default(),
            outbox_pending: AtomicBool::new(false),
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

/// What a plugin has done since it was loaded.
#[derive(Debug, Default)]
pub struct Counters {
    pub applied: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Store commits (batches that applied at least one event).
    pub commits: AtomicU64,
}

/// A plugin ready to run.
pub struct LoadedPlugin {
    pub name: String,
    pub info: bindings::PluginInfo,
    /// sha256 of the file, hex: the version recorded with applied events.
    pub sha256: String,
    pub file: PathBuf,
    pub loaded_at_ms: i64,
    pub counters: Counters,
    outbox_pending: AtomicBool,
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
    /// view) at a time, which also serialises every writer of this plugin's
    /// state. Blocking.
    pub fn instance(&self) -> MutexGuard<'_, Instance> {
        // A panic while holding the lock cannot leave the instance worse
        // than a trap does; keep serving.
        self.instance.lock().unwrap_or_else(|p| p.into_inner())
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

    pub fn serves_view(&self, view: &str) -> bool {
        self.info.views.iter().any(|v| v == view)
    }
}

/// A file in the plugins folder that could not be loaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadFailure {
    pub file: PathBuf,
    pub error: String,
    pub at_ms: i64,
}

/// What is loaded, by name, and what failed.
#[derive(Default)]
pub struct PluginRegistry {
    plugins: RwLock<BTreeMap<String, Arc<LoadedPlugin>>>,
    failures: RwLock<Vec<LoadFailure>>,
}

impl PluginRegistry {
    /// Loads every `*.wasm` directly inside `dir`, in name order. A file
    /// that fails is logged and recorded; the others still load. Blocking.
    pub fn load_dir(engine: &PluginEngine, dir: &Path) -> Result<Self> {
        let registry = Self::default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading plugins folder {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        files.sort();
        for file in files {
            let loaded = engine
                .load(&file)
                .and_then(|plugin| registry.insert(plugin));
            match loaded {
                Ok(plugin) => tracing::info!(
                    plugin = %plugin.name,
                    version = %plugin.info.version,
                    sha256 = %&plugin.sha256[..12],
                    subscriptions = ?plugin.info.subscriptions,
                    file = %file.display(),
                    "plugin loaded"
                ),
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::error!(file = %file.display(), %error, "plugin not loaded");
                    registry
                        .failures
                        .write()
                        .expect("registry poisoned")
                        .push(LoadFailure {
                            file,
                            error,
                            at_ms: now_ms(),
                        });
                }
            }
        }
        Ok(registry)
    }

    fn insert(&self, plugin: LoadedPlugin) -> Result<Arc<LoadedPlugin>> {
        let mut plugins = self.plugins.write().expect("registry poisoned");
        if let Some(other) = plugins.get(&plugin.name) {
            bail!(
                "plugin name {:?} is already used by {}",
                plugin.name,
                other.file.display()
            );
        }
        let plugin = Arc::new(plugin);
        plugins.insert(plugin.name.clone(), Arc::clone(&plugin));
        Ok(plugin)
    }

    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins
            .read()
            .expect("registry poisoned")
            .get(name)
            .cloned()
    }

    /// Every loaded plugin, in name order.
    pub fn all(&self) -> Vec<Arc<LoadedPlugin>> {
        self.plugins
            .read()
            .expect("registry poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub fn failures(&self) -> Vec<LoadFailure> {
        self.failures.read().expect("registry poisoned").clone()
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
