//! The one `bindgen!` of the plugin contract (`wit/`) and the host side of
//! its imports: per-plugin state with a read-your-writes overlay, read-only
//! collections, and logging. Everything a plugin can reach is here.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::store::Store;

wasmtime::component::bindgen!({
    world: "transformer",
    path: "../wit",
    imports: { default: trappable },
});

// `self::`: in rustdoc builds a bare `switchyard` would also name this crate.
pub use self::switchyard::plugin::types::{Document, DocumentRef, Entry, OutgoingEvent};
use self::switchyard::plugin::{collections, log, state, types};

/// What a plugin call may do to state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// `handle`: state writes go to the overlay.
    Handle,
    /// `view` and `describe`: state is read-only.
    ReadOnly,
}

/// Uncommitted state writes of one plugin: those of the batch in progress
/// and, on top, those of the event being handled. `None` marks a delete.
#[derive(Debug, Default)]
pub struct StateOverlay {
    batch: HashMap<String, Option<Vec<u8>>>,
    event: HashMap<String, Option<Vec<u8>>>,
}

impl StateOverlay {
    fn lookup(&self, key: &str) -> Option<&Option<Vec<u8>>> {
        self.event.get(key).or_else(|| self.batch.get(key))
    }

    /// The event succeeded: its writes join the batch.
    pub fn keep_event(&mut self) {
        self.batch.extend(self.event.drain());
    }

    /// The event failed: its writes vanish.
    pub fn discard_event(&mut self) {
        self.event.clear();
    }

    /// The batch's writes, to commit; leaves the overlay empty.
    pub fn take_batch(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        self.event.clear();
        self.batch.drain().collect()
    }
}

/// The data of one plugin instance's wasmtime `Store`.
pub struct HostState {
    plugin: String,
    db: Arc<Store>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) overlay: StateOverlay,
    pub(crate) mode: CallMode,
    /// Set when an import failed because the store did: the trap that
    /// follows is a transient failure, not the event's fault.
    pub(crate) store_failure: Option<String>,
}

impl HostState {
    pub fn new(plugin: &str, db: Arc<Store>, memory_bytes: usize) -> Self {
        Self {
            plugin: plugin.to_owned(),
            db,
            // No preopened folders, no environment, no arguments, no sockets.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            overlay: StateOverlay::default(),
            mode: CallMode::ReadOnly,
            store_failure: None,
        }
    }

    pub fn db(&self) -> Arc<Store> {
        Arc::clone(&self.db)
    }

    pub fn rename(&mut self, plugin: &str) {
        plugin.clone_into(&mut self.plugin);
    }

    fn store_error(&mut self, what: &str, e: anyhow::Error) -> wasmtime::Error {
        let message = format!("store unavailable while {what}: {e:#}");
        self.store_failure = Some(message.clone());
        wasmtime::Error::msg(message)
    }

    fn writable(&self, what: &str) -> wasmtime::Result<()> {
        match self.mode {
            CallMode::Handle => Ok(()),
            CallMode::ReadOnly => Err(wasmtime::Error::msg(format!(
                "state.{what} is not allowed outside handle"
            ))),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        if let Some(value) = self.overlay.lookup(&key) {
            return Ok(value.clone());
        }
        match self.db.state_get(&self.plugin, &key) {
            Ok(value) => Ok(value),
            Err(e) => Err(self.store_error("reading state", e)),
        }
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        self.writable("set")?;
        self.overlay.event.insert(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.writable("delete")?;
        self.overlay.event.insert(key, None);
        Ok(())
    }
}

impl collections::Host for HostState {
    fn get(&mut self, collection: String, key: String) -> wasmtime::Result<Option<String>> {
        match self.db.document(&collection, &key) {
            Ok(doc) => Ok(doc),
            Err(e) => Err(self.store_error("reading a document", e)),
        }
    }

    fn scan(
        &mut self,
        collection: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Vec<Entry>> {
        // A plugin cannot make the host materialise an unbounded page.
        let limit = limit.min(10_000);
        match self.db.scan(&collection, after.as_deref(), limit) {
            Ok(page) => Ok(page
                .entries
                .into_iter()
                .map(|(key, json)| Entry { key, json })
                .collect()),
            Err(e) => Err(self.store_error("scanning a collection", e)),
        }
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        use log::Level;
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}
