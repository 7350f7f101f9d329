//! The registry: which plugin each file of the plugins folder holds, which
//! plugins run (by name), and what failed to load and why. [`PluginRegistry::sync_file`]
//! brings one file's plugin in line with the file on disk: load, replace,
//! unload, or record the failure and keep the running version.
//!
//! Every change to the set of plugins or their subscriptions bumps a
//! generation that the pipeline watches to start, stop and re-bind
//! consumers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{LoadedPlugin, PluginEngine, PluginSlot};
use crate::store::now_ms;

/// A file in the plugins folder that could not be loaded.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LoadFailure {
    #[schema(value_type = String)]
    pub file: PathBuf,
    pub error: String,
    pub at_ms: i64,
}

/// What a file's size and modification time were when it was last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// What the registry knows of one file.
#[derive(Debug, Clone, Default)]
struct FileRecord {
    stamp: Option<Stamp>,
    /// The plugin (name, sha256) this file provides, if any.
    loaded: Option<(String, String)>,
    /// The latest content of the file failed to load: its sha256 and why.
    failed: Option<(String, LoadFailure)>,
}

/// One plugin's status, as `GET /plugins` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PluginStatus {
    pub name: String,
    pub version: String,
    pub sha256: String,
    #[schema(value_type = String)]
    pub file: PathBuf,
    pub world: &'static str,
    pub subscriptions: Vec<String>,
    pub views: Vec<String>,
    pub loaded_at_ms: i64,
    pub load_ms: f64,
    pub from_cache: bool,
    pub reloads: u64,
    pub events_applied: u64,
    /// Events skipped as already applied (their id), since the host started.
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub commits: u64,
    /// Batches run again because another writer (another host sharing the
    /// store, another version) committed the plugin's state first.
    pub conflicts: u64,
    /// The last file content that failed to replace this plugin, until a
    /// good one does.
    pub last_error: Option<LoadFailure>,
    /// The last warning (or error) the plugin itself logged, and how many
    /// it logged since the host started.
    pub last_warning: Option<super::warnings::Warning>,
    /// Producers only: how they poll and how it went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<ProducerStatus>,
}

/// A producer's polling, as `GET /plugins` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ProducerStatus {
    pub poll_interval_ms: u64,
    pub polls: u64,
    pub failed_polls: u64,
    pub events_published: u64,
    /// The last failed poll's reason and time, until a poll succeeds.
    pub last_poll_error: Option<PollError>,
    /// The last successful poll: when, how long it took, what it published.
    pub last_poll: Option<super::PollRecord>,
    /// The host that polls it (holds its lease), among hosts sharing a store.
    pub polled_by: Option<String>,
    /// While the broker blocks the producer's publishing (a memory or disk
    /// alarm): the broker's reason and since when; its polls wait.
    pub publishing_blocked: Option<BlockedPublishing>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BlockedPublishing {
    pub reason: String,
    pub since_ms: i64,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PollError {
    pub error: String,
    pub at_ms: i64,
}

/// What is loaded, by name, and which file holds what.
pub struct PluginRegistry {
    engine: PluginEngine,
    dir: PathBuf,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
    /// Also serialises every load, replace and unload (held while a file
    /// compiles and its `describe()` runs).
    files: Mutex<BTreeMap<PathBuf, FileRecord>>,
    /// A copy of `files` as the last load, replace or unload left it: what
    /// `GET /plugins` reads, never waiting on a load in progress.
    published: RwLock<BTreeMap<PathBuf, FileRecord>>,
    changes: watch::Sender<u64>,
}

impl PluginRegistry {
    /// A registry of the plugins in `dir`; nothing is loaded until
    /// [`PluginRegistry::scan`].
    pub fn new(engine: PluginEngine, dir: &Path) -> Self {
        Self {
            engine,
            dir: dir.to_owned(),
            slots: RwLock::default(),
            files: Mutex::default(),
            published: RwLock::default(),
            changes: watch::Sender::new(0),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `path` names a plugin file: `*.wasm` directly in the folder,
    /// not hidden (editors and copy tools write hidden temporary files).
    pub fn is_plugin_file(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.as_path())
            && path.extension().is_some_and(|e| e == "wasm")
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
    }

    /// Syncs every plugin file whose size or modification time changed
    /// since it was read, in name order, and unloads the plugins of files
    /// that are gone. Blocking.
    pub fn scan(&self) -> Result<()> {
        let mut present: Vec<(PathBuf, Stamp)> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading plugins folder {}", self.dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| self.is_plugin_file(p))
            .filter_map(|p| {
                let meta = std::fs::metadata(&p).ok()?;
                meta.is_file().then(|| (p, Stamp::of(&meta)))
            })
            .collect();
        present.sort_by(|a, b| a.0.cmp(&b.0));
        let known: BTreeMap<PathBuf, Option<Stamp>> = self
            .files()
            .iter()
            .map(|(p, r)| (p.clone(), r.stamp))
            .collect();
        for (path, stamp) in &present {
            if known.get(path) != Some(&Some(*stamp)) {
                self.sync_file(path);
            }
        }
        for path in known.keys() {
            if !present.iter().any(|(p, _)| p == path) {
                self.sync_file(path);
            }
        }
        Ok(())
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, FileRecord>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the plugin of `path` in line with the file: loads a new or
    /// changed file (replacing the version it held), unloads the plugin of
    /// a deleted one. A file that fails to load leaves the running version
    /// untouched and is recorded. Blocking (compiles).
    pub fn sync_file(&self, path: &Path) {
        let mut files = self.files();
        let unloaded = self.sync_locked(&mut files, path, false);
        if unloaded {
            // A file that lost a name clash may load now.
            let waiting: Vec<PathBuf> = files
                .iter()
                .filter(|(_, r)| r.loaded.is_none() && r.failed.is_some())
                .map(|(p, _)| p.clone())
                .collect();
            for other in waiting {
                self.sync_locked(&mut files, &other, true);
            }
        }
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = files.clone();
    }

    /// The files as the last load, replace or unload left them.
    fn published(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<PathBuf, FileRecord>> {
        self.published.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns whether a plugin was unloaded.
    fn sync_locked(
        &self,
        files: &mut BTreeMap<PathBuf, FileRecord>,
        path: &Path,
        retry: bool,
    ) -> bool {
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file());
        let Some(meta) = meta else {
            let Some(record) = files.remove(path) else {
                return false;
            };
            return match record.loaded {
                Some((name, _)) => {
                    self.unload(&name, "its file was removed");
                    true
                }
                None => false,
            };
        };
        let record = files.entry(path.to_owned()).or_default();
        record.stamp = Some(Stamp::of(&meta));
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                let failure = self.failure(path, format!("reading the file: {e}"));
                record.failed = Some((String::new(), failure));
                return false;
            }
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let unchanged = record.loaded.as_ref().is_some_and(|(_, s)| *s == sha256)
            || (!retry && record.failed.as_ref().is_some_and(|(s, _)| *s == sha256));
        if unchanged {
            // Touched, or copied again with the same content.
            if record.loaded.as_ref().is_some_and(|(_, s)| *s == sha256) {
                record.failed = None;
            }
            return false;
        }
        let loaded = self.engine.load(path, &bytes, &sha256).and_then(|version| {
            let holder = files.iter().find(|(p, r)| {
                *p != path && r.loaded.as_ref().is_some_and(|(n, _)| *n == version.name)
            });
            match holder {
                Some((other, _)) => Err(anyhow::anyhow!(
                    "plugin name {:?} is already used by {}",
                    version.name,
                    other.display()
                )),
                None => Ok(version),
            }
        });
        let record = files.get_mut(path).expect("recorded above");
        match loaded {
            Err(e) => {
                let failure = self.failure(path, format!("{e:#}"));
                match &record.loaded {
                    Some((name, _)) => tracing::error!(
                        plugin = %name, file = %path.display(), error = %failure.error,
                        "new plugin file not loaded; the running version stays"
                    ),
                    None => {
                        tracing::error!(file = %path.display(), error = %failure.error, "plugin not loaded")
                    }
                }
                record.failed = Some((sha256, failure));
                false
            }
            Ok(version) => {
                let name = version.name.clone();
                let previous = record.loaded.replace((name.clone(), sha256));
                record.failed = None;
                let mut unloaded = false;
                if let Some((old_name, _)) = previous.filter(|(n, _)| *n != name) {
                    self.unload(&old_name, "its file now holds another plugin");
                    unloaded = true;
                }
                self.install(version);
                unloaded
            }
        }
    }

    fn failure(&self, path: &Path, error: String) -> LoadFailure {
        LoadFailure {
            file: path.to_owned(),
            error,
            at_ms: now_ms(),
        }
    }

    fn install(&self, version: LoadedPlugin) {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let (name, sha) = (version.name.clone(), version.sha256.clone());
        let (subscriptions, from_cache, load_ms) = (
            version.info.subscriptions.clone(),
            version.from_cache,
            version.load_ms,
        );
        match slots.get(&name) {
            Some(slot) => {
                let old = slot.replace(version);
                tracing::info!(
                    plugin = %name, sha256 = %&sha[..12], replaced = %&old.sha256[..12],
                    ?subscriptions, from_cache, load_ms = format!("{load_ms:.1}"),
                    "plugin reloaded"
                );
            }
            None => {
                let file = version.file.display().to_string();
                slots.insert(name.clone(), Arc::new(PluginSlot::new(version)));
                tracing::info!(
                    plugin = %name, sha256 = %&sha[..12], ?subscriptions, %file,
                    from_cache, load_ms = format!("{load_ms:.1}"),
                    "plugin loaded"
                );
            }
        }
        drop(slots);
        self.changes.send_modify(|g| *g += 1);
    }

    fn unload(&self, name: &str, why: &str) {
        let removed = self
            .slots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if removed.is_some() {
            tracing::info!(plugin = %name, why, "plugin unloaded; its queue keeps its messages");
            self.changes.send_modify(|g| *g += 1);
        }
    }

    /// A receiver that sees a new value whenever plugins are loaded,
    /// replaced or unloaded.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn get(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every loaded plugin, in name order.
    pub fn all(&self) -> Vec<Arc<PluginSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Files that hold no running plugin because they failed to load.
    pub fn failures(&self) -> Vec<LoadFailure> {
        self.published()
            .values()
            .filter(|r| r.loaded.is_none())
            .filter_map(|r| r.failed.as_ref().map(|(_, f)| f.clone()))
            .collect()
    }

    /// Every loaded plugin's status, in name order.
    pub fn status(&self) -> Vec<PluginStatus> {
        let files = self.published();
        self.all()
            .into_iter()
            .map(|slot| {
                let version = slot.current();
                let last_error = files
                    .values()
                    .find(|r| r.loaded.as_ref().is_some_and(|(n, _)| *n == slot.name))
                    .and_then(|r| r.failed.as_ref().map(|(_, f)| f.clone()));
                PluginStatus {
                    name: slot.name.clone(),
                    version: version.info.version.clone(),
                    sha256: version.sha256.clone(),
                    file: version.file.clone(),
                    world: version.world,
                    subscriptions: version.info.subscriptions.clone(),
                    views: version.info.views.clone(),
                    loaded_at_ms: version.loaded_at_ms,
                    load_ms: version.load_ms,
                    from_cache: version.from_cache,
                    reloads: slot.reloads.load(Relaxed),
                    events_applied: slot.counters.applied.load(Relaxed),
                    duplicates: slot.counters.duplicates.load(Relaxed),
                    dead_lettered: slot.counters.dead_lettered.load(Relaxed),
                    commits: slot.counters.commits.load(Relaxed),
                    conflicts: slot.counters.conflicts.load(Relaxed),
                    last_error,
                    last_warning: self.engine.warnings().last(&slot.name),
                    producer: version.poll_interval().map(|interval| ProducerStatus {
                        poll_interval_ms: interval.as_millis() as u64,
                        polls: slot.counters.polls.load(Relaxed),
                        failed_polls: slot.counters.failed_polls.load(Relaxed),
                        events_published: slot.counters.published.load(Relaxed),
                        last_poll_error: slot
                            .poll_error()
                            .map(|(error, at_ms)| PollError { error, at_ms }),
                        last_poll: slot.last_poll(),
                        polled_by: slot.poller(),
                        publishing_blocked: slot
                            .publishing_blocked()
                            .map(|(reason, since_ms)| BlockedPublishing { reason, since_ms }),
                    }),
                }
            })
            .collect()
    }
}
