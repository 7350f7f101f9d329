//! The `bindgen!`s of the plugin contract (`wit/`), one per world, and the
//! host side of its imports: per-plugin state with a read-your-writes
//! overlay, read-only collections, logging, settings, a producer's
//! `publish`, and (through [`super::http`]) granted outgoing HTTP.
//! Everything a plugin can reach is here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::access::Grants;
use super::deadline::{Progress, Renewal};
use super::http::GrantedHttp;
use super::linker::PluginWorld;
use super::memory::MemoryCap;
use super::stdio::LogName;
use super::warnings::Warnings;

use crate::store::{Store, StoreError};

wasmtime::component::bindgen!({
    world: "transformer",
    path: "../wit",
    imports: { default: trappable },
});

// `self::`: in rustdoc builds a bare `switchyard` would also name this crate.
pub use self::switchyard::plugin::types::{
    Document, DocumentRef, Entry, OutgoingEvent, ProducedEvent, ProducerInfo,
};
use self::switchyard::plugin::{collections, log, state, types};

/// The `producer` world. It shares the interfaces above (the same types and
/// `Host` implementations) and WASI's own.
pub mod producer {
    wasmtime::component::bindgen!({
        world: "producer",
        path: "../wit",
        imports: { default: trappable },
        require_store_data_send: true,
        with: {
            "switchyard:plugin/types": super::switchyard::plugin::types,
            "switchyard:plugin/state": super::switchyard::plugin::state,
            "switchyard:plugin/log": super::switchyard::plugin::log,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}
use producer::switchyard::plugin::{publish, settings};
pub use producer::{Producer, ProducerPre};

/// Where a producer's `publish` sends events during a poll: blocks until
/// they are confirmed (or applied, on the embedded bus); the error is the
/// plugin's to see.
pub type PublishSink = Box<dyn FnMut(Vec<ProducedEvent>) -> Result<(), String> + Send>;

/// What a plugin call may do to state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// `handle`: state writes go to the overlay.
    Handle,
    /// `view` and `describe`: state is read-only.
    ReadOnly,
}

/// A plugin's state as this instance sees it: the writes of the event being
/// handled, over those of the batch in progress, over a cache of committed
/// values, over the store. `None` marks a delete (or, in the cache, a key
/// known to be absent).
///
/// The cache is sound because it is tied to the store's state generation
/// of the plugin: a state transaction drops it when the generation moved
/// (another version, or another host, committed), and a commit that began
/// at an older generation fails (see `plugins::state_txn`).
#[derive(Debug, Default)]
pub struct StateOverlay {
    committed: HashMap<String, Option<Vec<u8>>>,
    batch: HashMap<String, Option<Vec<u8>>>,
    event: HashMap<String, Option<Vec<u8>>>,
    /// Whether the transaction in progress read or wrote any state.
    touched: bool,
}

/// Committed values cached per plugin before the cache starts over; bounds
/// its memory to roughly this many keys and values.
const COMMITTED_CACHE_KEYS: usize = 100_000;

impl StateOverlay {
    fn lookup(&self, key: &str) -> Option<&Option<Vec<u8>>> {
        self.event
            .get(key)
            .or_else(|| self.batch.get(key))
            .or_else(|| self.committed.get(key))
    }

    fn remember(&mut self, key: String, value: Option<Vec<u8>>) {
        if self.committed.len() >= COMMITTED_CACHE_KEYS {
            self.committed.clear();
        }
        self.committed.insert(key, value);
    }

    /// Forgets the cache of committed values (someone else committed).
    pub fn forget_committed(&mut self) {
        self.committed.clear();
    }

    /// A state transaction begins: nothing touched yet, no writes pending.
    pub fn begin(&mut self) {
        self.touched = false;
        self.event.clear();
        self.batch.clear();
    }

    /// Whether state was read or written since [`StateOverlay::begin`].
    pub fn touched(&self) -> bool {
        self.touched
    }

    /// The event succeeded: its writes join the batch.
    pub fn keep_event(&mut self) {
        self.batch.extend(self.event.drain());
    }

    /// The event failed: its writes vanish.
    pub fn discard_event(&mut self) {
        self.event.clear();
    }

    /// The batch's writes, to commit; leaves the batch empty.
    pub fn take_batch(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        self.event.clear();
        self.batch.drain().collect()
    }

    /// The writes taken by [`StateOverlay::take_batch`] are committed.
    pub fn committed(&mut self, writes: Vec<(String, Option<Vec<u8>>)>) {
        for (key, value) in writes {
            self.remember(key, value);
        }
    }
}

/// The data of one plugin instance's wasmtime `Store`.
pub struct HostState {
    plugin: String,
    world: PluginWorld,
    /// The name the plugin's stdout and stderr are logged under.
    log_name: LogName,
    db: Store,
    warnings: Arc<Warnings>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    /// Origins this plugin may reach, and its settings (from `--grant` and
    /// `--plugin-setting`).
    granted: GrantedHttp,
    settings: BTreeMap<String, String>,
    table: ResourceTable,
    pub(crate) limits: MemoryCap,
    pub(crate) overlay: StateOverlay,
    pub(crate) mode: CallMode,
    /// Set when an import failed because the store did: the trap that
    /// follows is a transient failure, not the event's fault.
    pub(crate) store_failure: Option<StoreError>,
    /// What the call in progress got done outside the guest, and whether
    /// that renews its deadline.
    pub(crate) progress: Progress,
    pub(crate) renewal: Renewal,
    /// During a poll: where `publish` sends events.
    pub(crate) publisher: Option<PublishSink>,
}

impl HostState {
    /// The state of an instance of `plugin`, a component of `world`, whose
    /// memory is held to `limits`.
    pub fn new(
        plugin: &str,
        world: PluginWorld,
        db: Store,
        warnings: Arc<Warnings>,
        limits: MemoryCap,
    ) -> Self {
        let log_name = LogName::new(plugin);
        Self {
            plugin: plugin.to_owned(),
            world,
            // No preopened folders, no environment, no arguments, no sockets;
            // output to the log (see `plugins::wasi`).
            wasi: super::wasi::deny_all(&log_name, &warnings),
            log_name,
            db,
            warnings,
            http: WasiHttpCtx::new(),
            granted: GrantedHttp {
                transformer: world == PluginWorld::Transformer,
                ..GrantedHttp::default()
            },
            settings: BTreeMap::new(),
            table: ResourceTable::new(),
            limits,
            overlay: StateOverlay::default(),
            mode: CallMode::ReadOnly,
            store_failure: None,
            progress: Progress::default(),
            renewal: Renewal::none(),
            publisher: None,
        }
    }

    /// A fresh state for a fresh instance of the same plugin: same store,
    /// memory cap and grants; the overlay (uncommitted writes, cache) moves
    /// over.
    pub fn renewed(&mut self) -> Self {
        let mut state = Self::new(
            &self.plugin,
            self.world,
            self.db.clone(),
            Arc::clone(&self.warnings),
            self.limits.renewed(),
        );
        state.progress = self.progress.clone();
        state.granted = self.granted.clone();
        state.settings = self.settings.clone();
        state.overlay = std::mem::take(&mut self.overlay);
        state
    }

    pub fn rename(&mut self, plugin: &str) {
        plugin.clone_into(&mut self.plugin);
        self.log_name.set(plugin);
    }

    /// Gives the plugin what the configuration grants it: a producer its
    /// origins and settings; a transformer nothing (it has no network, and
    /// reads no settings).
    pub fn grant(&mut self, grants: Grants) {
        let transformer = self.world == PluginWorld::Transformer;
        if transformer && !grants.origins.is_empty() {
            tracing::warn!(
                plugin = %self.plugin,
                "--grant ignored: transformers have no network"
            );
        }
        self.granted = GrantedHttp {
            plugin: self.plugin.clone(),
            origins: if transformer {
                Vec::new()
            } else {
                grants.origins
            },
            tls: grants.tls,
            progress: self.progress.clone(),
            transformer,
        };
        self.settings = grants.settings;
    }

    /// An import failed because the store did: remembered, so that the trap
    /// that follows is reported as the store's failure, not the event's.
    fn store_error(&mut self, what: &str, e: StoreError) -> wasmtime::Error {
        let error = e.doing(what);
        let message = error.to_string();
        self.store_failure = Some(error);
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

// One resource table for WASI and wasi:http: an answer's body stream is a
// wasi:io resource.
impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.granted,
        }
    }
}

impl settings::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.settings.get(&key).cloned())
    }
}

impl types::Host for HostState {}

impl publish::Host for HostState {
    fn publish(&mut self, events: Vec<ProducedEvent>) -> wasmtime::Result<Result<(), String>> {
        if self.mode != CallMode::Handle {
            return Ok(Err("publish is only allowed during poll".into()));
        }
        let Some(sink) = self.publisher.as_mut() else {
            return Ok(Err("publish is only allowed during poll".into()));
        };
        self.progress.bump();
        let sent = sink(events);
        self.progress.bump();
        Ok(sent)
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.overlay.touched = true;
        if let Some(value) = self.overlay.lookup(&key) {
            return Ok(value.clone());
        }
        // A plugin call runs on a blocking thread.
        match self.db.blocking().state_get(&self.plugin, &key) {
            Ok(value) => {
                self.overlay.remember(key, value.clone());
                Ok(value)
            }
            Err(e) => Err(self.store_error("reading state", e)),
        }
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        self.writable("set")?;
        self.overlay.touched = true;
        self.overlay.event.insert(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.writable("delete")?;
        self.overlay.touched = true;
        self.overlay.event.insert(key, None);
        Ok(())
    }
}

impl collections::Host for HostState {
    fn get(&mut self, collection: String, key: String) -> wasmtime::Result<Option<String>> {
        match self.db.blocking().document(&collection, &key) {
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
        match self
            .db
            .blocking()
            .scan(&collection, after.as_deref(), limit)
        {
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
            Level::Warn => {
                tracing::warn!(plugin, "{message}");
                self.warnings.note(plugin, &message);
            }
            Level::Error => {
                tracing::error!(plugin, "{message}");
                self.warnings.note(plugin, &message);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::StateOverlay;

    fn get(o: &StateOverlay, key: &str) -> Option<Option<Vec<u8>>> {
        o.lookup(key).cloned()
    }

    #[test]
    fn event_writes_are_seen_at_once_and_vanish_with_a_failed_event() {
        let mut o = StateOverlay::default();
        o.event.insert("k".into(), Some(vec![1]));
        assert_eq!(get(&o, "k"), Some(Some(vec![1])), "read-your-writes");
        o.discard_event();
        assert_eq!(get(&o, "k"), None);
        o.event.insert("k".into(), Some(vec![2]));
        o.keep_event();
        o.event.insert("k".into(), None);
        assert_eq!(get(&o, "k"), Some(None), "a delete hides the batch's value");
        o.discard_event();
        assert_eq!(get(&o, "k"), Some(Some(vec![2])));
    }

    #[test]
    fn committed_writes_are_cached_and_uncommitted_ones_are_not() {
        let mut o = StateOverlay::default();
        o.event.insert("a".into(), Some(vec![1]));
        o.keep_event();
        let writes = o.take_batch();
        assert_eq!(get(&o, "a"), None, "taken for commit, not yet committed");
        o.committed(writes);
        assert_eq!(get(&o, "a"), Some(Some(vec![1])));
        o.event.insert("b".into(), Some(vec![2]));
        o.keep_event();
        drop(o.take_batch()); // the commit failed
        assert_eq!(get(&o, "b"), None);
    }
}
