//! What the console's browser test (`host/tests/console.rs`) drives
//! chromium with: playwright-core at the version pinned by
//! `host/tests/browser/package-lock.json`, installed under
//! `target/tools/browser`. Chromium itself is Debian's (`.ci/run` installs
//! it; the test says how when it is missing): playwright-core cannot
//! download browsers here and is not asked to.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// The `node_modules` folder holding the pinned playwright-core.
pub fn install(root: &Path) -> Result<PathBuf> {
    let source = root.join("host").join("tests").join("browser");
    let tools = root.join("target").join("tools").join("browser");
    let modules = tools.join("node_modules");
    let entry = modules.join("playwright-core").join("index.mjs");
    crate::npm::install_locked(&source, &tools, &entry, "playwright-core")?;
    Ok(modules)
}
