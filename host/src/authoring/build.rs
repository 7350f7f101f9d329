//! `switchyard plugin build [DIR]`: finds what kind of plugin project a
//! folder holds, runs its toolchain, and leaves ONE component,
//! `DIR/<name>.wasm`, whose path it returns.
//!
//! - Rust (`Cargo.toml`): `cargo build --release --target wasm32-wasip2`,
//!   the component copied out of cargo's target folder, which plugin
//!   projects share (see [`shared_target_dir`]).
//! - Python (`app.py` and a [`MARKER`] saying `language = "python"`):
//!   `componentize-py` against the project's `switchyard/wit`, with the
//!   guest library `switchyard/sdk-python` on the path.
//! - JavaScript (`package.json` and a [`MARKER`] saying `language = "js"`):
//!   `npm run build`, which must write `<name>.wasm` (the scaffold's does,
//!   with componentize-js).
//!
//! A missing toolchain stops the build with the command that installs it.
//! Tool output goes to stderr; nothing but the component's path is
//! returned.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The file `switchyard plugin new` writes into Python and JavaScript
/// projects: `name`, `language` and `world`, one `key = "value"` a line.
pub const MARKER: &str = "switchyard-plugin.toml";

/// The Rust target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The componentize-py release the Python plugins are built with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// What a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectKind {
    Rust,
    Python,
    JavaScript,
}

/// The kind of project in `dir`, or why it is none.
pub fn detect(dir: &Path) -> Result<ProjectKind> {
    if dir.join("Cargo.toml").is_file() {
        return Ok(ProjectKind::Rust);
    }
    if dir.join("package.json").is_file() {
        return Ok(ProjectKind::JavaScript);
    }
    if dir.join("app.py").is_file() {
        return Ok(ProjectKind::Python);
    }
    bail!(
        "{} holds no plugin project: expected Cargo.toml (Rust), app.py (Python) or \
         package.json (JavaScript); `switchyard plugin new <name> --lang rust|python|js` makes one",
        dir.display()
    )
}

/// Builds the project in `dir` and returns the path of its component.
/// Blocking.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("finding {}", dir.display()))?;
    match detect(dir)? {
        ProjectKind::Rust => build_rust(dir),
        ProjectKind::Python => build_python(dir),
        ProjectKind::JavaScript => build_js(dir),
    }
}

/// The package and the file cargo names its component after.
struct CargoTarget {
    package: String,
    artifact: PathBuf,
}

fn build_rust(dir: &Path) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let target = cargo_target(&manifest)?;
    require_rust_target()?;
    let mut cargo = Command::new("cargo");
    cargo
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest);
    run(with_shared_target_dir(&mut cargo), "cargo build")?;
    let out = dir.join(format!("{}.wasm", target.package));
    install(&target.artifact, &out)?;
    Ok(out)
}

/// Asks `cargo metadata` which package `manifest` is and where its
/// component will be.
fn cargo_target(manifest: &Path) -> Result<CargoTarget> {
    let output = with_shared_target_dir(&mut Command::new("cargo"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| missing("cargo", "install Rust with rustup (https://rustup.rs)", e))?;
    if !output.status.success() {
        bail!("cargo metadata failed for {}", manifest.display());
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("finding {}", manifest.display()))?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m) == manifest)
        })
        .with_context(|| format!("{} defines no package", manifest.display()))?;
    let name = package["name"]
        .as_str()
        .context("a package without a name")?;
    let kinds = |t: &Value| -> Vec<String> {
        t["crate_types"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    };
    let targets: Vec<&Value> = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    // A cdylib is named after its crate with `_`; a binary keeps its name.
    let file = if let Some(lib) = targets
        .iter()
        .find(|t| kinds(t).iter().any(|k| k == "cdylib"))
    {
        format!(
            "{}.wasm",
            lib["name"].as_str().unwrap_or(name).replace('-', "_")
        )
    } else if let Some(bin) = targets.iter().find(|t| kinds(t).iter().any(|k| k == "bin")) {
        format!("{}.wasm", bin["name"].as_str().unwrap_or(name))
    } else {
        bail!(
            "package {name} builds no component: add `[lib] crate-type = [\"cdylib\"]` to {}",
            manifest.display()
        );
    };
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata names no target directory")?;
    Ok(CargoTarget {
        package: name.to_owned(),
        artifact: Path::new(target_dir)
            .join(WASM_TARGET)
            .join("release")
            .join(file),
    })
}

/// The cargo target folder every plugin project builds in when the user
/// names none (`CARGO_TARGET_DIR` or `CARGO_BUILD_TARGET_DIR` unset):
/// `switchyard/cargo-target` under `XDG_CACHE_HOME` or `~/.cache`. A new
/// project's dependencies (the SDK, wit-bindgen, serde) then come compiled
/// from the last one: a cold release build of them took 64-76 s on two
/// busy cores, a build with them compiled 2-3 s.
pub fn shared_target_dir() -> Option<PathBuf> {
    let named = |var| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    if named("CARGO_TARGET_DIR") || named("CARGO_BUILD_TARGET_DIR") {
        return None;
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(cache.join("switchyard").join("cargo-target"))
}

fn with_shared_target_dir(cargo: &mut Command) -> &mut Command {
    if let Some(dir) = shared_target_dir() {
        cargo.env("CARGO_TARGET_DIR", dir);
    }
    cargo
}

/// Fails, naming the command that installs it, without the Rust target.
fn require_rust_target() -> Result<()> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| missing("rustc", "install Rust with rustup (https://rustup.rs)", e))?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .is_dir()
    {
        bail!(
            "the Rust target {WASM_TARGET} is not installed: run `rustup target add {WASM_TARGET}`"
        );
    }
    Ok(())
}

fn build_python(dir: &Path) -> Result<PathBuf> {
    let marker = read_marker(dir, "python")?;
    let wit = dir.join("switchyard").join("wit");
    let sdk = dir.join("switchyard").join("sdk-python");
    for needed in [&wit, &sdk] {
        if !needed.is_dir() {
            bail!(
                "{} is missing: `switchyard plugin new` writes it (or `switchyard plugin wit {}` for the WIT)",
                needed.display(),
                wit.display()
            );
        }
    }
    let out = dir.join(format!("{}.wasm", marker.name));
    let partial = dir.join(format!(".{}.wasm.partial", marker.name));
    run(
        Command::new("componentize-py")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-d")
            .arg(&wit)
            .args(["-w", &marker.world, "componentize", "app", "-p"])
            .arg(dir)
            .arg("-p")
            .arg(&sdk)
            .arg("-o")
            .arg(&partial),
        "componentize-py",
    )
    .map_err(|e| {
        if e.downcast_ref::<Missing>().is_some() {
            anyhow::anyhow!(
                "componentize-py is not installed: run `pip install componentize-py=={COMPONENTIZE_PY}` \
                 (in a virtual environment: `python3 -m venv .venv && . .venv/bin/activate` first)"
            )
        } else {
            e
        }
    })?;
    std::fs::rename(&partial, &out).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

fn build_js(dir: &Path) -> Result<PathBuf> {
    let marker = read_marker(dir, "js")?;
    if !dir.join("node_modules").is_dir() {
        bail!(
            "the JavaScript toolchain is not installed in {}: run `npm install` there",
            dir.display()
        );
    }
    let out = dir.join(format!("{}.wasm", marker.name));
    // So that a build script that writes nothing is caught below.
    match std::fs::remove_file(&out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing the old {}", out.display()));
        }
        _ => {}
    }
    run(
        Command::new("npm").args(["run", "build"]).current_dir(dir),
        "npm run build",
    )
    .map_err(|e| {
        if e.downcast_ref::<Missing>().is_some() {
            anyhow::anyhow!("npm is not installed: install Node.js 18 or later with npm")
        } else {
            e
        }
    })?;
    if !out.is_file() {
        bail!(
            "`npm run build` did not write {}: its build script must",
            out.display()
        );
    }
    Ok(out)
}

/// What [`MARKER`] says.
struct Marker {
    name: String,
    world: String,
}

fn read_marker(dir: &Path, language: &str) -> Result<Marker> {
    let path = dir.join(MARKER);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {}: a {language} plugin project names itself there \
             (`switchyard plugin new` writes it)",
            path.display()
        )
    })?;
    let field = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    let name = field("name").with_context(|| format!("{} has no `name`", path.display()))?;
    let world = field("world").unwrap_or_else(|| "transformer".into());
    if !matches!(world.as_str(), "transformer" | "producer") {
        bail!(
            "{}: world must be \"transformer\" or \"producer\", not {world:?}",
            path.display()
        );
    }
    Ok(Marker { name, world })
}

/// A tool that is not installed.
#[derive(Debug, thiserror::Error)]
#[error("{tool} is not installed: {install}")]
struct Missing {
    tool: String,
    install: String,
}

fn missing(tool: &str, install: &str, error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        Missing {
            tool: tool.into(),
            install: install.into(),
        }
        .into()
    } else {
        anyhow::Error::new(error).context(format!("running {tool}"))
    }
}

/// Runs `cmd` with its output on stderr; `Err` names `what` failed.
fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd
        .stdout(std::io::stderr())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| missing(&program, &format!("install {program}"), e))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Copies `built` to `out`, beside then renamed: a host watching the
/// folder never loads half a file.
fn install(built: &Path, out: &Path) -> Result<()> {
    let partial = out.with_extension("wasm.partial");
    std::fs::copy(built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
