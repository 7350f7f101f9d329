//! Compiled plugins cached on disk by content hash, so that a restart (or a
//! reload back to a version seen before) does not compile again.
//!
//! An entry is named by the sha256 of the `.wasm` and a hash of the engine's
//! compatibility (wasmtime build and configuration), and starts with the
//! sha256 of its own payload. An entry from another build or configuration,
//! or one damaged on disk, is never deserialised: the plugin is compiled
//! and the entry written again.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes of the payload checksum at the start of an entry.
const DIGEST_LEN: usize = 32;

/// Where compiled components are kept, for one engine.
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Compiled,
}

impl CompileCache {
    pub fn new(dir: &Path, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn entry(&self, wasm_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_sha256}-{}.cwasm", self.engine_key))
    }

    /// The component for `wasm` (whose sha256 is `wasm_sha256`): from the
    /// cache when a sound entry exists, else compiled and cached. Blocking.
    pub fn component(
        &self,
        engine: &Engine,
        wasm_sha256: &str,
        wasm: &[u8],
    ) -> Result<(Component, Source)> {
        let entry = self.entry(wasm_sha256);
        if let Some(component) = self.read(engine, &entry) {
            return Ok((component, Source::Cache));
        }
        let component = Component::new(engine, wasm)
            .map_err(anyhow::Error::from)
            .context("not a WebAssembly component")?;
        if let Err(e) = self.write(&component, &entry) {
            tracing::warn!(entry = %entry.display(), error = %format!("{e:#}"), "compiled plugin not cached");
        }
        Ok((component, Source::Compiled))
    }

    fn read(&self, engine: &Engine, entry: &Path) -> Option<Component> {
        let bytes = std::fs::read(entry).ok()?;
        let intact = bytes.len() > DIGEST_LEN
            && Sha256::digest(&bytes[DIGEST_LEN..]).as_slice() == &bytes[..DIGEST_LEN];
        if !intact {
            tracing::warn!(entry = %entry.display(), "damaged compile cache entry ignored");
            return None;
        }
        // SAFETY: wasmtime requires that deserialised bytes come from
        // `serialize` of a compatible engine, since they are executable
        // code. This entry was written by `write` below (its checksum
        // matches, so it is whole and unaltered since), under a name that
        // carries this engine's compatibility hash; wasmtime checks its
        // version and configuration header again and fails cleanly on a
        // mismatch. Only the host writes the data folder.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes[DIGEST_LEN..]) };
        match component {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(entry = %entry.display(), error = %e, "compile cache entry rejected");
                None
            }
        }
    }

    fn write(&self, component: &Component, entry: &Path) -> Result<()> {
        let payload = component
            .serialize()
            .map_err(anyhow::Error::from)
            .context("serialising the component")?;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut bytes = Vec::with_capacity(DIGEST_LEN + payload.len());
        bytes.extend_from_slice(&Sha256::digest(&payload));
        bytes.extend_from_slice(&payload);
        // Beside, then rename: a crash never leaves half an entry in place.
        let partial = entry.with_extension("cwasm.tmp");
        std::fs::write(&partial, &bytes)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, entry)
            .with_context(|| format!("renaming {}", partial.display()))?;
        Ok(())
    }
}
