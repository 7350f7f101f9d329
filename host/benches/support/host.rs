//! The host as the benchmarks run it in-process: the merge plugin alone,
//! fresh exchange and queue names, folders of the run's own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use switchyard::Config;
use switchyard::config::StoreUrl;

/// The plugin the benchmarks run.
pub const PLUGIN: &str = "merge";

/// The built merge component; `cargo xtask build` makes it.
pub fn merge_wasm() -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/merge.wasm");
    ensure!(
        path.exists(),
        "{} is missing: run `cargo xtask build` (or `cargo xtask bench`)",
        path.display()
    );
    Ok(path)
}

/// Names that no other run (or test) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A host configuration of its own: fresh names, folders in `dirs`, the
/// store at `store`, the merge plugin alone.
pub fn bench_config(url: &str, wasm: &Path, store: StoreUrl, dirs: &Path) -> Result<Config> {
    let plugins = dirs.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(wasm, plugins.join("merge.wasm")).context("copying merge.wasm")?;
    let mut config = Config::defaults();
    config.amqp_url = Some(url.into());
    config.http = "127.0.0.1:0".parse()?;
    config.plugins = plugins;
    config.data = dirs.join("data");
    config.store = store;
    config.exchange = unique("switchyard-bench-exchange");
    config.queue_prefix = unique("switchyard-bench");
    Ok(config)
}
