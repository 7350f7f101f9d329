//! A plugin file loaded as the host would load it, on a scratch store of
//! its own (a temporary folder, removed when dropped): what `plugin test`
//! runs events through and `plugin record` asks for its subscriptions.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use sha2::Digest;

use crate::Config;
use crate::plugins::{LoadedPlugin, PluginEngine};
use crate::store::Store;

/// The scratch store a plugin runs on, and its engine: keep it while the
/// plugin runs.
pub struct Scratch {
    // Dropped in this order: the engine, the store, the folder.
    _engine: PluginEngine,
    pub db: Store,
    _dir: ScratchDir,
}

impl Scratch {
    /// Loads the component `wasm`, read from `path`, with `config`'s plugin
    /// deadline and memory cap and no grants. Blocking.
    pub fn load(path: &Path, wasm: &[u8], config: &Config) -> Result<(LoadedPlugin, Self)> {
        let dir = ScratchDir::new()?;
        let db = Store::sqlite(&dir.0).context("opening the scratch store")?;
        let engine = PluginEngine::new(
            db.clone(),
            config.plugin_timeout(),
            config.plugin_memory_mib << 20,
            None,
            Default::default(),
        )?;
        let sha256 = hex::encode(sha2::Sha256::digest(wasm));
        let version = engine
            .load(path, wasm, &sha256)
            .with_context(|| format!("loading plugin {}", path.display()))?;
        let scratch = Self {
            _engine: engine,
            db,
            _dir: dir,
        };
        Ok((version, scratch))
    }

    /// Reads the file `path` and loads it. Blocking.
    pub fn load_file(path: &Path, config: &Config) -> Result<(LoadedPlugin, Self)> {
        let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::load(path, &wasm, config)
    }
}

/// A temporary folder, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-scratch-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the scratch folder {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
