//! A plugin's state transaction: the one way a batch of events, a
//! producer's poll or a view reads a plugin's state and commits what it
//! did, whoever calls (the broker consumer, the embedded bus, the HTTP API,
//! the producer scheduler).
//!
//! [`StateTxn::begin`] takes the plugin's writer lock (one writer per host,
//! whichever version of the plugin), reads the plugin's state generation
//! from the store and drops the instance's cache of committed state if it
//! was filled at another generation: another version of the plugin, or
//! another host sharing the store, committed since. [`StateTxn::commit`]
//! commits the batch with the generation it began at when the plugin read
//! or wrote state; the store moves the generation on, or refuses the commit
//! with a conflict if another writer moved it first (what the plugin read
//! may be stale). Nothing is then written and the caller runs the work
//! again from fresh state. This is why hosts sharing a store never lose
//! each other's state updates: every commit that read or wrote a plugin's
//! state is checked against every other, in the store's transaction.
//!
//! Dropped without a commit, a transaction discards its writes.

use std::sync::MutexGuard;

use super::PluginSlot;
use super::instance::{Instance, World};
use crate::store::{BatchCommit, OutboxEntry, Store, StoreError};

/// A plugin's state, locked for this host and synced to the store's
/// generation; committed once.
pub struct StateTxn<'a, W: World> {
    // Released in this order: the instance, then the writer lock (taken in
    // the other order).
    instance: MutexGuard<'a, Instance<W>>,
    _writer: MutexGuard<'a, ()>,
    generation: u64,
    committed: bool,
}

impl<'a, W: World> StateTxn<'a, W> {
    /// Begins a transaction on `slot`'s state with the instance `instance`
    /// hands over (`None` if the version has no instance of this world).
    /// Blocking.
    pub fn begin(
        slot: &'a PluginSlot,
        db: &Store,
        instance: impl FnOnce() -> Option<MutexGuard<'a, Instance<W>>>,
    ) -> Result<Option<Self>, StoreError> {
        let writer = slot.writer();
        let Some(mut instance) = instance() else {
            return Ok(None);
        };
        let generation = db.blocking().state_generation(&slot.name)?;
        instance.begin_state(generation);
        Ok(Some(Self {
            instance,
            _writer: writer,
            generation,
            committed: false,
        }))
    }

    /// The plugin's instance, to call.
    pub fn instance(&mut self) -> &mut Instance<W> {
        &mut self.instance
    }

    /// Commits `batch` with the state writes of the transaction, checked
    /// against the generation it began at if state was read or written. A
    /// [`StoreError::Conflict`] means another writer came first: run the
    /// work again in a new transaction.
    pub fn commit(
        mut self,
        db: &Store,
        mut batch: BatchCommit,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.committed = true;
        batch.state = self.instance.take_state_writes();
        let touched = self.instance.state_touched();
        batch.state_generation = touched.then_some(self.generation);
        match db.blocking().commit_batch(&batch) {
            Ok(outbox) => {
                let generation = self.generation + u64::from(touched);
                self.instance.state_committed(batch.state, generation);
                Ok(outbox)
            }
            Err(e) => {
                self.instance.forget_cache();
                Err(e)
            }
        }
    }
}

impl<W: World> Drop for StateTxn<'_, W> {
    fn drop(&mut self) {
        if !self.committed {
            drop(self.instance.take_state_writes());
        }
    }
}
