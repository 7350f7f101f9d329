//! A plugin instance's memory cap: the [`MemoryCap`] resource limiter that
//! refuses growth past the cap with a typed [`MemoryCapExceeded`] error, and
//! the caps per plugin (`--plugin-setting <plugin>.memory-mib=N`, else
//! `SWITCHYARD_PLUGIN_MEMORY_MIB`).
//!
//! The cap counts every linear memory of an instance together (language
//! runtimes may have several). A refused growth traps the call; the caller
//! recognises the trap by downcasting to [`MemoryCapExceeded`], never by
//! its text.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use wasmtime::ResourceLimiter;

/// The plugin setting that overrides the memory cap for one plugin.
pub const MEMORY_SETTING: &str = "memory-mib";

/// Table elements one instance may have: each costs host memory outside
/// the cap, so a guest cannot grow tables without end either.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

const MIB: usize = 1 << 20;

/// A plugin's memory grew past its cap. The trap of the call carries it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "memory limit: the plugin asked for {asked_mib} MiB, over its cap of {cap_mib} MiB \
     (raise it with --plugin-setting {plugin}.{MEMORY_SETTING}=<MiB>)"
)]
pub struct MemoryCapExceeded {
    pub plugin: String,
    pub cap_mib: usize,
    /// The instance's memory, all memories together, had the growth been
    /// allowed (rounded up).
    pub asked_mib: usize,
}

/// The resource limiter of one instance's store.
#[derive(Debug, Clone)]
pub struct MemoryCap {
    plugin: String,
    cap_bytes: usize,
    /// Bytes of linear memory the instance holds, all memories together.
    used: usize,
    /// The growth last allowed, taken back if it then failed.
    last_growth: usize,
}

impl MemoryCap {
    pub fn new(plugin: &str, cap_bytes: usize) -> Self {
        Self {
            plugin: plugin.to_owned(),
            cap_bytes,
            used: 0,
            last_growth: 0,
        }
    }

    /// The same cap for a fresh instance (nothing used yet).
    pub fn renewed(&self) -> Self {
        Self::new(&self.plugin, self.cap_bytes)
    }

    /// Names the plugin and sets its own cap. Memory already held is kept:
    /// see [`MemoryCap::over_cap`].
    pub fn set(&mut self, plugin: &str, cap_bytes: usize) {
        plugin.clone_into(&mut self.plugin);
        self.cap_bytes = cap_bytes;
    }

    /// The error to report if the instance already holds more than its cap
    /// (it started under a larger one).
    pub fn over_cap(&self) -> Option<MemoryCapExceeded> {
        (self.used > self.cap_bytes).then(|| self.exceeded(self.used))
    }

    pub fn cap_bytes(&self) -> usize {
        self.cap_bytes
    }

    /// Bytes of linear memory the instance holds.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    fn exceeded(&self, asked: usize) -> MemoryCapExceeded {
        MemoryCapExceeded {
            plugin: self.plugin.clone(),
            cap_mib: self.cap_bytes / MIB,
            asked_mib: asked.div_ceil(MIB),
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used.saturating_add(growth);
        if total > self.cap_bytes {
            return Err(wasmtime::Error::new(self.exceeded(total)));
        }
        self.used = total;
        self.last_growth = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self.used.saturating_sub(self.last_growth);
        self.last_growth = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The memory cap of each plugin: the default, and the plugins whose
/// `memory-mib` setting overrides it.
#[derive(Debug, Clone)]
pub struct MemoryCaps {
    default_bytes: usize,
    by_plugin: BTreeMap<String, usize>,
}

impl MemoryCaps {
    /// `default_bytes` for every plugin, except those whose `settings`
    /// (by plugin) carry a valid `memory-mib`; an invalid one is an error
    /// that names it.
    pub fn new<'a>(
        default_bytes: usize,
        settings: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) -> Result<Self> {
        let mut by_plugin = BTreeMap::new();
        for (plugin, settings) in settings {
            if let Some(value) = settings.get(MEMORY_SETTING) {
                let mib = match value.parse::<usize>() {
                    Ok(mib) if (1..=65_536).contains(&mib) => mib,
                    _ => bail!(
                        "plugin setting {plugin}.{MEMORY_SETTING}={value:?} must be a whole \
                         number of MiB from 1 to 65536"
                    ),
                };
                by_plugin.insert(plugin.to_owned(), mib * MIB);
            }
        }
        Ok(Self {
            default_bytes,
            by_plugin,
        })
    }

    /// The cap of `plugin`.
    pub fn for_plugin(&self, plugin: &str) -> usize {
        self.by_plugin
            .get(plugin)
            .copied()
            .unwrap_or(self.default_bytes)
    }

    /// Whether `plugin`'s cap comes from its own setting.
    pub fn is_set_for(&self, plugin: &str) -> bool {
        self.by_plugin.contains_key(plugin)
    }

    /// The largest cap of any plugin: a plugin is loaded under it, since
    /// its name (and so its own cap) is known only once it has described
    /// itself.
    pub fn largest(&self) -> usize {
        self.by_plugin
            .values()
            .copied()
            .fold(self.default_bytes, usize::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_cap_across_memories_is_a_typed_error() {
        let mut cap = MemoryCap::new("hog", 4 * MIB);
        assert!(cap.memory_growing(0, 2 * MIB, None).unwrap());
        // A second memory counts with the first.
        assert!(cap.memory_growing(0, MIB, None).unwrap());
        let error = cap.memory_growing(2 * MIB, 4 * MIB, None).unwrap_err();
        let exceeded = error.downcast_ref::<MemoryCapExceeded>().unwrap();
        assert_eq!((exceeded.cap_mib, exceeded.asked_mib), (4, 5));
        assert!(exceeded.to_string().contains("hog.memory-mib"));
        // A growth allowed and then failed is taken back.
        assert!(cap.memory_growing(MIB, 2 * MIB, None).unwrap());
        cap.memory_grow_failed(wasmtime::Error::msg("no")).unwrap();
        assert_eq!(cap.used_bytes(), 3 * MIB);
        cap.set("hog", 2 * MIB);
        assert_eq!(cap.over_cap().unwrap().asked_mib, 3);
    }

    #[test]
    fn caps_come_from_the_plugin_setting_or_the_default() {
        let js: BTreeMap<String, String> = [(MEMORY_SETTING.into(), "128".into())].into();
        let other: BTreeMap<String, String> = [("base-url".into(), "x".into())].into();
        let caps = MemoryCaps::new(64 * MIB, [("merge-js", &js), ("crm", &other)]).unwrap();
        assert_eq!(caps.for_plugin("merge-js"), 128 * MIB);
        assert_eq!(caps.for_plugin("crm"), 64 * MIB);
        assert_eq!(caps.largest(), 128 * MIB);
        for bad in ["0", "-1", "1.5", "lots", "65537"] {
            let s: BTreeMap<String, String> = [(MEMORY_SETTING.into(), bad.into())].into();
            let error = MemoryCaps::new(64 * MIB, [("p", &s)]).unwrap_err();
            assert!(error.to_string().contains("p.memory-mib"), "{bad}");
        }
    }
}
