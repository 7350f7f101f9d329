//! `switchyard plugin check`: loads a `.wasm` file as the host would and
//! describes it: what it declares, the memory cap that applies, and each
//! WASI import with what the host gives its world for it.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::Digest;

use super::access::Access;
use super::wasi::verdict;
use super::{LoadedPlugin, MEMORY_SETTING, PluginEngine, PluginWorld};
use crate::store::Store;

/// What `check` needs of the host's configuration.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub timeout: Duration,
    /// The default memory cap, in MiB.
    pub memory_mib: usize,
    /// `--plugin-setting` entries (`<plugin>.<key>=<value>`).
    pub plugin_settings: Vec<String>,
}

/// Loads `file` (in a scratch store, removed afterwards) and returns the
/// report `plugin check` prints.
pub fn check(file: &Path, config: &CheckConfig) -> Result<String> {
    let scratch = std::env::temp_dir().join(format!("switchyard-check-{}", std::process::id()));
    let loaded = (|| {
        let db = Store::sqlite(&scratch)?;
        let access = Access::from_config(&[], &config.plugin_settings)?;
        let engine = PluginEngine::new(db, config.timeout, config.memory_mib << 20, None, access)?;
        let wasm = std::fs::read(file).context("reading the file")?;
        let sha256 = hex::encode(sha2::Sha256::digest(&wasm));
        let plugin = engine.load(file, &wasm, &sha256)?;
        let (_, own_setting) = engine.memory_cap(&plugin.name);
        anyhow::Ok((plugin, own_setting))
    })()
    .with_context(|| format!("loading plugin {}", file.display()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (plugin, own_setting) = loaded?;
    Ok(report(&plugin, own_setting))
}

/// The report of a loaded plugin; `own_setting`: its memory cap comes from
/// its `memory-mib` setting.
pub fn report(plugin: &LoadedPlugin, own_setting: bool) -> String {
    let mut out = String::new();
    let out = &mut out;
    line(out, "name", &plugin.name);
    line(out, "version", &plugin.info.version);
    line(out, "world", plugin.world);
    line(out, "sha256", &plugin.sha256);
    if let Some(interval) = plugin.poll_interval() {
        line(out, "polls every", &format!("{} ms", interval.as_millis()));
    } else {
        line(out, "subscriptions", &plugin.info.subscriptions.join(", "));
    }
    line(out, "views", &plugin.info.views.join(", "));
    let cap_mib = plugin.memory_cap_bytes >> 20;
    let source = if own_setting {
        format!("from --plugin-setting {}.{MEMORY_SETTING}", plugin.name)
    } else {
        format!(
            "the default, SWITCHYARD_PLUGIN_MEMORY_MIB; --plugin-setting {}.{MEMORY_SETTING}=<MiB> to change",
            plugin.name
        )
    };
    line(out, "memory cap", &format!("{cap_mib} MiB ({source})"));
    let world = if plugin.is_producer() {
        PluginWorld::Producer
    } else {
        PluginWorld::Transformer
    };
    let mut wasi: Vec<(&str, String)> = plugin
        .imports
        .iter()
        .filter_map(|name| Some((name.as_str(), verdict(world, name)?.to_string())))
        .collect();
    wasi.sort();
    if wasi.is_empty() {
        line(out, "wasi imports", "none");
    } else {
        line(
            out,
            "wasi imports",
            &format!("{} (what a {} gets)", wasi.len(), world.name()),
        );
        let width = wasi.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, verdict) in wasi {
            let _ = writeln!(out, "  {name:<width$}  {verdict}");
        }
    }
    std::mem::take(out)
}

/// One `label: value` line, the values aligned.
fn line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "{:<15}{value}", format!("{label}:"));
}
