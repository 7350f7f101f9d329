//! Node packages pinned by a committed `package-lock.json`, installed with
//! `npm ci` into a folder of their own under `target/tools/` (nothing
//! global). A folder whose lock is the committed one and whose expected
//! file exists is kept as it is.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Installs the packages of `source` (its `package.json` and
/// `package-lock.json`) into `tools` unless they are already there;
/// `expected` (a path under `tools`) must exist afterwards. `what` names
/// them in messages.
pub fn install_locked(source: &Path, tools: &Path, expected: &Path, what: &str) -> Result<()> {
    let lock = std::fs::read(source.join("package-lock.json"))
        .with_context(|| format!("reading {}", source.join("package-lock.json").display()))?;
    let installed = std::fs::read(tools.join("package-lock.json")).ok();
    if installed.as_deref() == Some(&lock[..]) && expected.exists() {
        return Ok(());
    }
    if !runs("npm") {
        bail!("npm is not installed; {what} needs it (Debian: apt-get install nodejs npm)");
    }
    std::fs::create_dir_all(tools)?;
    std::fs::copy(source.join("package.json"), tools.join("package.json"))?;
    std::fs::write(tools.join("package-lock.json"), &lock)?;
    eprintln!("xtask: installing {what} into {}", tools.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(tools)
        .status()
        .context("running npm ci")?;
    if !status.success() || !expected.exists() {
        // A failed install must not pass for a good one next time.
        let _ = std::fs::remove_file(tools.join("package-lock.json"));
        bail!(
            "npm ci in {} failed (is the npm registry reachable?)",
            tools.display()
        );
    }
    Ok(())
}

/// Whether `program --version` runs.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
