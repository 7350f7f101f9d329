//! Compiled plugins cached on disk by content hash, so that a restart (or a
//! reload back to a version seen before) does not compile again.
//!
//! An entry is named by the sha256 of the `.wasm` and a hash of the engine's
//! compatibility (wasmtime build and configuration). It holds what
//! `Component::serialize` wrote, then a trailer: the CRC-32 of those bytes
//! and a format tag. An entry from another build or configuration, an entry
//! of an older format, or one damaged on disk, is never deserialised: the
//! plugin is compiled and the entry written again.
//!
//! A sound entry is mapped from the file rather than read into memory
//! (`Component::deserialize_file`), so that wasmtime initialises instance
//! memory copy-on-write from the file's pages: an 18 MB Python component
//! compiles to ~50 MB, and copying and hashing that is what a restart
//! would otherwise spend its time on. The CRC-32 (hardware-assisted, ~10x
//! the speed of sha256 here) detects damage; it is no defence against
//! someone who can write the data folder, and neither was a hash stored
//! beside the data.

use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The last bytes of an entry: CRC-32 (little-endian) of the rest, and this.
const FORMAT_TAG: &[u8; 4] = b"sy1\n";
const TRAILER_LEN: u64 = 8;
/// Bytes read at a time while checking an entry.
const CHUNK: usize = 1 << 20;

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
        match is_intact(entry) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(entry = %entry.display(), "damaged compile cache entry ignored");
                return None;
            }
            // Absent (the usual miss) or unreadable: compile.
            Err(_) => return None,
        }
        // SAFETY: wasmtime requires that deserialised bytes come from
        // `serialize` of a compatible engine, since they are executable
        // code, and that a mapped file is not changed while mapped. This
        // entry was written by `write` below (its checksum matches, so it
        // is whole and unaltered since), under a name that carries this
        // engine's compatibility hash; wasmtime checks its version and
        // configuration header again and fails cleanly on a mismatch. Only
        // the host writes the data folder, and it never writes an entry in
        // place: it renames a new file over it, which leaves this mapping
        // on the old file. The trailer after wasmtime's ELF image is
        // outside every section, which is all wasmtime reads.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(engine, entry) };
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
        // Beside, then rename: a crash never leaves half an entry in place,
        // and a process that mapped the old entry keeps its own file.
        let partial = entry.with_extension("cwasm.tmp");
        let written = (|| {
            let mut file = File::create(&partial)?;
            file.write_all(&payload)?;
            file.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
            file.write_all(FORMAT_TAG)
        })();
        written.with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, entry)
            .with_context(|| format!("renaming {}", partial.display()))?;
        Ok(())
    }
}

/// Whether `entry` ends with this format's trailer and its CRC-32 matches
/// the bytes before it. Reads the file in chunks: nothing is kept.
fn is_intact(entry: &Path) -> std::io::Result<bool> {
    let mut file = File::open(entry)?;
    let len = file.metadata()?.len();
    if len <= TRAILER_LEN {
        return Ok(false);
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(len - TRAILER_LEN))?;
    file.read_exact(&mut trailer)?;
    if &trailer[4..] != FORMAT_TAG {
        return Ok(false);
    }
    let expected = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    file.seek(SeekFrom::Start(0))?;
    let mut payload = file.take(len - TRAILER_LEN);
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = payload.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(payload.limit() == 0 && hasher.finalize() == expected)
}
