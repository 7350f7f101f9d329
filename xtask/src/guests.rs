//! Plugins written in Python and JavaScript: installs their pinned
//! toolchains under `target/tools/` (a venv with componentize-py, an npm
//! tree with componentize-js from `sdk/js/toolchain/package-lock.json`) and
//! builds `plugins/merge-py` and `plugins/merge-js` into
//! `target/test-plugins/merge-py.wasm` and `merge-js.wasm` (test fixtures,
//! not shipped). Nothing is installed globally; a missing `python3`,
//! `python3 -m venv`, `node` or `npm` stops the build naming the package to
//! install. A component newer than every file it is built from is kept.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

/// The componentize-py release the Python plugins are built with.
const COMPONENTIZE_PY: &str = "0.25.1";
/// The componentize-js release pinned by `sdk/js/toolchain/package.json`.
const COMPONENTIZE_JS: &str = "0.23.0";
/// WASI features the JavaScript runtime would import by default: a
/// transformer needs none of them (it logs through the world's `log`).
const JS_DISABLED_FEATURES: &[&str] = &["random", "clocks", "http", "fetch-event", "stdio"];

/// Builds both merges (each only when one of its inputs changed).
pub fn build(root: &Path) -> Result<()> {
    let out = root.join("target").join("test-plugins");
    std::fs::create_dir_all(&out)?;
    let wit = root.join("wit");

    let py_out = out.join("merge-py.wasm");
    let py_inputs = [
        root.join("plugins/merge-py"),
        root.join("sdk/python"),
        wit.clone(),
    ];
    if stale(&py_out, &py_inputs)? {
        let componentize = python_toolchain(root)?;
        build_into(&py_out, |partial| {
            let mut cmd = Command::new(&componentize);
            cmd.arg("-d")
                .arg(&wit)
                .args(["-w", "transformer", "componentize", "app", "-p"])
                .arg(root.join("plugins/merge-py"))
                .arg("-p")
                .arg(root.join("sdk/python"))
                .arg("-o")
                .arg(partial);
            cmd
        })?;
    }

    let js_out = out.join("merge-js.wasm");
    let js_inputs = [
        root.join("plugins/merge-js"),
        root.join("sdk/js"),
        wit.clone(),
    ];
    if stale(&js_out, &js_inputs)? {
        let cli = js_toolchain(root)?;
        build_into(&js_out, |partial| {
            let mut cmd = Command::new("node");
            // Relative imports (the SDK) resolve inside the working folder.
            cmd.current_dir(root)
                .arg(&cli)
                .args(["--wit", "wit", "--world-name", "transformer", "-d"])
                .args(JS_DISABLED_FEATURES)
                .arg("-o")
                .arg(partial)
                .arg("plugins/merge-js/app.js");
            cmd
        })?;
    }
    Ok(())
}

/// Runs the command `make(partial)` writing `partial`, then renames it to
/// `target`: a running host or test never sees half a component.
fn build_into(target: &Path, make: impl FnOnce(&Path) -> Command) -> Result<()> {
    let partial = target.with_extension("wasm.tmp");
    let mut cmd = make(&partial);
    let started = std::time::Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("building {} failed ({status})", target.display());
    }
    std::fs::rename(&partial, target)?;
    eprintln!(
        "xtask: {} ({:.1} s)",
        target.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether `target` is missing or older than a file under `inputs`.
fn stale(target: &Path, inputs: &[PathBuf]) -> Result<bool> {
    let Ok(built) = std::fs::metadata(target).and_then(|m| m.modified()) else {
        return Ok(true);
    };
    let mut newest = SystemTime::UNIX_EPOCH;
    for input in inputs {
        newest = newest.max(newest_under(input)?);
    }
    Ok(newest > built)
}

fn newest_under(path: &Path) -> Result<SystemTime> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_dir() {
        return Ok(meta.modified()?);
    }
    // Files only: a build writes __pycache__ into the source folders
    // (componentize-py's own Python ignores PYTHONDONTWRITEBYTECODE).
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "node_modules" || name == "__pycache__" {
            continue;
        }
        newest = newest.max(newest_under(&entry.path())?);
    }
    Ok(newest)
}

/// `target/tools/py/bin/componentize-py` at the pinned version, installing
/// it into its venv when missing.
fn python_toolchain(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target").join("tools").join("py");
    let bin = venv.join("bin");
    let componentize = bin.join("componentize-py");
    if version_of(&componentize, &["--version"]).is_some_and(|v| v.contains(COMPONENTIZE_PY)) {
        return Ok(componentize);
    }
    if version_of(Path::new("python3"), &["--version"]).is_none() {
        bail!(
            "python3 is not installed; the Python plugins need it \
             (Debian: apt-get install python3 python3-venv python3-pip)"
        );
    }
    if !bin.join("pip").exists() {
        eprintln!("xtask: making a Python venv in {}", venv.display());
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("running python3 -m venv")?;
        if !status.success() || !bin.join("pip").exists() {
            let _ = std::fs::remove_dir_all(&venv);
            bail!(
                "python3 -m venv failed: install the venv module and pip \
                 (Debian: apt-get install python3-venv python3-pip)"
            );
        }
    }
    eprintln!(
        "xtask: installing componentize-py {COMPONENTIZE_PY} into {}",
        venv.display()
    );
    let status = Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("componentize-py=={COMPONENTIZE_PY}"))
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install componentize-py=={COMPONENTIZE_PY} failed (is PyPI reachable?)");
    }
    Ok(componentize)
}

/// The componentize-js command-line script at the pinned version, installed
/// with `npm ci` from `sdk/js/toolchain` into `target/tools/js`.
fn js_toolchain(root: &Path) -> Result<PathBuf> {
    let source = root.join("sdk").join("js").join("toolchain");
    let tools = root.join("target").join("tools").join("js");
    let package = tools.join("node_modules/@bytecodealliance/componentize-js");
    let cli = package.join("src").join("cli.js");
    if version_of(Path::new("node"), &["--version"]).is_none() {
        bail!(
            "node is not installed; the JavaScript plugins need Node.js 18 or later \
             and npm (Debian: apt-get install nodejs npm)"
        );
    }
    crate::npm::install_locked(
        &source,
        &tools,
        &cli,
        &format!("componentize-js {COMPONENTIZE_JS}"),
    )?;
    let pinned = std::fs::read_to_string(package.join("package.json"))
        .is_ok_and(|p| p.contains(&format!("\"version\": \"{COMPONENTIZE_JS}\"")));
    if !pinned {
        bail!(
            "{} is not componentize-js {COMPONENTIZE_JS}: sdk/js/toolchain/package-lock.json \
             and guests.rs disagree",
            package.display()
        );
    }
    Ok(cli)
}

/// The first line `program args` prints, or `None` when it cannot run.
fn version_of(program: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    Some(text.lines().next().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_is_stale_when_missing_or_older_than_an_input() {
        let dir = std::env::temp_dir().join(format!("xtask-guests-{}", std::process::id()));
        let inputs = dir.join("src");
        std::fs::create_dir_all(inputs.join("deep")).unwrap();
        let target = dir.join("out.wasm");
        assert!(stale(&target, std::slice::from_ref(&inputs)).unwrap());
        std::fs::write(inputs.join("deep/a.py"), "x").unwrap();
        std::fs::write(&target, "wasm").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&target)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!stale(&target, std::slice::from_ref(&inputs)).unwrap());
        std::fs::File::options()
            .write(true)
            .open(inputs.join("deep/a.py"))
            .unwrap()
            .set_modified(later + std::time::Duration::from_secs(5))
            .unwrap();
        assert!(stale(&target, std::slice::from_ref(&inputs)).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
