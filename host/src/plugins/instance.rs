//! One live plugin instance and the calls into it, each under a deadline
//! and a memory cap. A call that traps, times out or runs out of memory
//! costs that call only: the instance is replaced by a fresh one.

use anyhow::Context;
use wasmtime::{Engine, Store};

use super::access::Grants;
use super::bindings::{
    Action, CallMode, Event, HandleError, HostState, ProducedEvent, Producer, ProducerInfo,
    ProducerPre, PublishSink, Transformer, TransformerPre, ViewPage,
};
use super::deadline::Renewal;
use super::memory::MemoryCapExceeded;

/// What an [`Instance`] needs of a world's generated bindings: how to
/// instantiate them from their pre-instance.
pub trait World: Sized {
    type Pre;
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;
    fn engine(pre: &Self::Pre) -> &Engine;
}

impl World for Transformer {
    type Pre = TransformerPre<HostState>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }
    fn engine(pre: &Self::Pre) -> &Engine {
        pre.engine()
    }
}

impl World for Producer {
    type Pre = ProducerPre<HostState>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }
    fn engine(pre: &Self::Pre) -> &Engine {
        pre.engine()
    }
}

/// Why a plugin call produced no actions. The pipeline turns each into
/// acknowledge-and-dead-letter or requeue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin judged the event bad: dead-letter, never retry.
    #[error("{0}")]
    Reject(String),
    /// The plugin failed transiently.
    #[error("retry: {0}")]
    Retry(String),
    /// The store behind a `state` or `collections` import failed: not the
    /// event's fault (transient).
    #[error("{0}")]
    Store(crate::store::StoreError),
    /// The call ran past its deadline.
    #[error("timeout")]
    Timeout,
    /// The plugin grew its memory past its cap (recognised by the type of
    /// the limiter's error, see `plugins::memory`).
    #[error("{0}")]
    MemoryLimit(MemoryCapExceeded),
    /// The plugin trapped (panic, unreachable, bad output...).
    #[error("trap: {0}")]
    Trap(String),
}

impl CallError {
    /// Whether the event should be redelivered rather than dead-lettered.
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Retry(_) | CallError::Store(_))
    }
}

/// A store, its instance of world `W`, and what is needed to rebuild both.
pub struct Instance<W: World = Transformer> {
    store: Store<HostState>,
    bindings: W,
    pre: W::Pre,
    name: String,
    deadline_ticks: u64,
    /// The plugin's state generation (see `PluginSlot`) that this
    /// instance's cache of committed state reflects.
    cache_generation: u64,
}

impl<W: World> Instance<W> {
    pub(super) fn new(pre: W::Pre, state: HostState, deadline_ticks: u64) -> anyhow::Result<Self> {
        let (store, bindings) = instantiate(&pre, state, deadline_ticks)?;
        Ok(Self {
            store,
            bindings,
            pre,
            name: String::new(),
            deadline_ticks,
            cache_generation: 0,
        })
    }

    /// Names the instance after its plugin and gives it the plugin's grants
    /// and memory cap. An instance that already holds more memory than its
    /// cap (it was loaded under a larger one) is refused.
    pub(super) fn set_name(
        &mut self,
        name: &str,
        grants: Grants,
        memory_cap_bytes: usize,
    ) -> Result<(), MemoryCapExceeded> {
        name.clone_into(&mut self.name);
        let state = self.store.data_mut();
        state.rename(name);
        state.grant(grants);
        state.limits.set(name, memory_cap_bytes);
        match state.limits.over_cap() {
            Some(exceeded) => Err(exceeded),
            None => Ok(()),
        }
    }

    fn arm(&mut self, mode: CallMode) {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let data = self.store.data_mut();
        data.mode = mode;
        data.store_failure = None;
        data.renewal = Renewal::none();
    }

    /// Turns a wasmtime error into a [`CallError`] and, since the instance
    /// may be left half-way through anything, replaces it.
    fn failed(&mut self, error: wasmtime::Error) -> CallError {
        let store_failure = self.store.data_mut().store_failure.take();
        let cause = if let Some(error) = store_failure {
            CallError::Store(error)
        } else if matches!(
            error.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) {
            CallError::Timeout
        } else if let Some(exceeded) = error.downcast_ref::<MemoryCapExceeded>() {
            CallError::MemoryLimit(exceeded.clone())
        } else {
            CallError::Trap(root_message(&error))
        };
        if let Err(e) = self.reset() {
            tracing::error!(plugin = %self.name, error = %format!("{e:#}"), "cannot re-instantiate plugin");
        }
        cause
    }

    /// A fresh instance in a fresh store; the batch's uncommitted state
    /// writes carry over.
    fn reset(&mut self) -> anyhow::Result<()> {
        let mut state = self.store.data_mut().renewed();
        state.overlay.discard_event();
        let (store, bindings) = instantiate(&self.pre, state, self.deadline_ticks)?;
        self.store = store;
        self.bindings = bindings;
        Ok(())
    }
}

impl Instance<Transformer> {
    /// One page of a read-side view. `Ok(Err(_))` is the plugin's answer to
    /// a bad request.
    pub fn view(
        &mut self,
        name: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Result<ViewPage, String>, CallError> {
        self.arm(CallMode::ReadOnly);
        match self.bindings.call_view(&mut self.store, name, after, limit) {
            Ok(answer) => Ok(answer),
            Err(e) => Err(self.failed(e)),
        }
    }

    pub fn describe(&mut self) -> Result<super::bindings::PluginInfo, CallError> {
        self.arm(CallMode::ReadOnly);
        match self.bindings.call_describe(&mut self.store) {
            Ok(info) => Ok(info),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Handles one event. Its state writes stay pending until
    /// [`Instance::finish_event`] says whether the event is applied.
    pub fn handle(&mut self, event: &Event) -> Result<Vec<Action>, CallError> {
        self.arm(CallMode::Handle);
        match self.bindings.call_handle(&mut self.store, event) {
            Ok(Ok(actions)) => Ok(actions),
            Ok(Err(HandleError::Reject(reason))) => Err(CallError::Reject(reason)),
            Ok(Err(HandleError::Retry(reason))) => Err(CallError::Retry(reason)),
            Err(e) => Err(self.failed(e)),
        }
    }
}

impl Instance<Producer> {
    pub fn describe(&mut self) -> Result<ProducerInfo, CallError> {
        self.arm(CallMode::ReadOnly);
        match self.bindings.call_describe(&mut self.store) {
            Ok(info) => Ok(info),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// One poll, whose `publish` calls go to `sink` and which may run up
    /// to `limit` while it makes progress. Its state writes wait in the
    /// batch overlay for [`Instance::take_state_writes`]; a failed poll's
    /// are discarded.
    pub fn poll(
        &mut self,
        sink: PublishSink,
        limit: std::time::Duration,
    ) -> Result<Vec<ProducedEvent>, CallError> {
        self.arm(CallMode::Handle);
        let data = self.store.data_mut();
        data.renewal = Renewal::on_progress(&data.progress, self.deadline_ticks, limit);
        data.publisher = Some(sink);
        let called = self.bindings.call_poll(&mut self.store);
        let data = self.store.data_mut();
        data.publisher = None;
        data.renewal = Renewal::none();
        let result = match called {
            Ok(Ok(events)) => Ok(events),
            Ok(Err(reason)) => Err(CallError::Retry(reason)),
            Err(e) => Err(self.failed(e)),
        };
        self.finish_event(result.is_ok());
        if result.is_err() {
            drop(self.take_state_writes());
        }
        result
    }
}

impl<W: World> Instance<W> {
    /// The last handled event is applied (`true`: its state writes join the
    /// batch's) or not (`false`: they vanish).
    pub fn finish_event(&mut self, applied: bool) {
        let overlay = &mut self.store.data_mut().overlay;
        if applied {
            overlay.keep_event();
        } else {
            overlay.discard_event();
        }
    }

    /// The batch's state writes, for the commit.
    pub fn take_state_writes(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        self.store.data_mut().overlay.take_batch()
    }

    /// A state transaction begins at the plugin's state `generation` (see
    /// `plugins::state_txn`): the cache of committed state is dropped if it
    /// was filled at another one, and nothing is pending or touched.
    pub(super) fn begin_state(&mut self, generation: u64) {
        let overlay = &mut self.store.data_mut().overlay;
        if self.cache_generation != generation {
            overlay.forget_committed();
            self.cache_generation = generation;
        }
        overlay.begin();
    }

    /// Whether the transaction in progress read or wrote state.
    pub(super) fn state_touched(&self) -> bool {
        self.store.data().overlay.touched()
    }

    /// Drops the cache of committed state: it may be stale (a commit
    /// failed, perhaps because another writer came first).
    pub(super) fn forget_cache(&mut self) {
        self.store.data_mut().overlay.forget_committed();
    }

    /// The writes from [`Instance::take_state_writes`] are committed as the
    /// plugin's state `generation`: later reads are served from memory.
    pub(super) fn state_committed(
        &mut self,
        writes: Vec<(String, Option<Vec<u8>>)>,
        generation: u64,
    ) {
        self.store.data_mut().overlay.committed(writes);
        self.cache_generation = generation;
    }
}

fn instantiate<W: World>(
    pre: &W::Pre,
    state: HostState,
    deadline_ticks: u64,
) -> anyhow::Result<(Store<HostState>, W)> {
    let mut store = Store::new(W::engine(pre), state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_callback(|mut store| Ok(store.data_mut().renewal.on_deadline()));
    // Instantiation runs the component's start code: it gets a deadline too.
    store.set_epoch_deadline(deadline_ticks);
    let bindings = W::instantiate(pre, &mut store)
        .map_err(anyhow::Error::from)
        .context("instantiating the component")?;
    Ok((store, bindings))
}

/// The innermost message of an error chain: for a guest panic this is the
/// trap code ("wasm `unreachable` instruction executed"), not the backtrace.
fn root_message(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    error
        .chain()
        .last()
        .map(|e| e.to_string())
        .unwrap_or_else(|| error.to_string())
}
