//! `switchyard plugin new <name> --lang rust|python|js [--producer]`:
//! writes a plugin project that builds at once, outside this repository:
//! the templates of `templates/` with the name filled in, and the guest SDK
//! and the WIT this binary carries ([`bundle`](super::bundle)) under
//! `switchyard/`, so the project depends on nothing but its language's
//! registry (crates.io, PyPI for componentize-py, npm for componentize-js).
//!
//! Every transformer gets the same `events.jsonl` (a transcript with
//! expectations, for `plugin test`): the three templates do the same.
//!
//! - Rust `demo/`: `Cargo.toml`, `src/lib.rs`, `switchyard/sdk-rust/` (the
//!   `switchyard-plugin` crate, its `wit/` included).
//! - Python: `app.py`, `switchyard-plugin.toml` (the [`MARKER`] `plugin
//!   build` reads), `switchyard/sdk-python/`, `switchyard/wit/`.
//! - JavaScript: `app.js`, `package.json` (componentize-js pinned, a `build`
//!   script writing `demo.wasm`) with its `package-lock.json`, the marker,
//!   `switchyard/sdk-js/`, `switchyard/wit/`.
//!
//! Producers are Rust-only: the Python and JavaScript SDKs cover the
//! transformer world.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::build::MARKER;
use super::bundle;

/// The language of a new project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
}

/// What to make.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// The plugin's name: its queue, its folder, its crate.
    pub name: String,
    pub language: Language,
    /// A producer instead of a transformer.
    pub producer: bool,
}

mod rust {
    pub const CARGO_TOML: &str = include_str!("templates/rust/Cargo.toml.tmpl");
    pub const TRANSFORMER: &str = include_str!("templates/rust/transformer.rs.tmpl");
    pub const PRODUCER: &str = include_str!("templates/rust/producer.rs.tmpl");
    pub const GITIGNORE: &str = include_str!("templates/rust/gitignore.tmpl");
}

mod python {
    pub const APP: &str = include_str!("templates/python/app.py.tmpl");
    pub const MARKER: &str = include_str!("templates/python/switchyard-plugin.toml.tmpl");
    pub const README: &str = include_str!("templates/python/README.md.tmpl");
    pub const GITIGNORE: &str = include_str!("templates/python/gitignore.tmpl");
}

mod js {
    pub const APP: &str = include_str!("templates/js/app.js.tmpl");
    pub const PACKAGE: &str = include_str!("templates/js/package.json.tmpl");
    pub const MARKER: &str = include_str!("templates/js/switchyard-plugin.toml.tmpl");
    pub const README: &str = include_str!("templates/js/README.md.tmpl");
    pub const GITIGNORE: &str = include_str!("templates/js/gitignore.tmpl");
}

/// The transcript every language's transformer template passes.
const EVENTS: &str = include_str!("templates/events.jsonl.tmpl");

/// The name `sdk/js/toolchain`'s lock file gives its root package.
const TOOLCHAIN_PACKAGE: &str = "switchyard-js-toolchain";

/// Writes the project `plugin` into `parent/<name>` (which must not exist
/// or be empty) and returns its folder.
pub fn create(parent: &Path, plugin: &NewPlugin) -> Result<PathBuf> {
    check_name(&plugin.name)?;
    if plugin.producer && plugin.language != Language::Rust {
        bail!(
            "--producer: producers are Rust-only for now (the Python and JavaScript SDKs \
             cover the transformer world); use --lang rust, or drop --producer"
        );
    }
    let dir = parent.join(&plugin.name);
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: choose another name or folder",
            dir.display()
        );
    }
    match plugin.language {
        Language::Rust => write_rust(&dir, plugin)?,
        Language::Python => write_python(&dir, &plugin.name)?,
        Language::Js => write_js(&dir, &plugin.name)?,
    }
    dir.canonicalize()
        .with_context(|| format!("finding {}", dir.display()))
}

fn write_rust(dir: &Path, plugin: &NewPlugin) -> Result<()> {
    let fill = |template: &str| {
        template.replace("{{name}}", &plugin.name).replace(
            "{{sdk_features}}",
            if plugin.producer {
                ", default-features = false, features = [\"producer\"]"
            } else {
                ""
            },
        )
    };
    write(dir, "Cargo.toml", &fill(rust::CARGO_TOML))?;
    write(dir, ".gitignore", rust::GITIGNORE)?;
    if plugin.producer {
        write(dir, "src/lib.rs", &fill(rust::PRODUCER))?;
    } else {
        write(dir, "src/lib.rs", &fill(rust::TRANSFORMER))?;
        write(dir, "events.jsonl", &fill(EVENTS))?;
    }
    let sdk = dir.join("switchyard").join("sdk-rust");
    for (path, text) in bundle::SDK_RUST {
        write(&sdk, path, text)?;
    }
    for (path, text) in bundle::WIT {
        write(&sdk.join("wit"), path, text)?;
    }
    Ok(())
}

fn write_python(dir: &Path, name: &str) -> Result<()> {
    let fill = |template: &str| template.replace("{{name}}", name);
    write(dir, "app.py", &fill(python::APP))?;
    write(dir, MARKER, &fill(python::MARKER))?;
    write(dir, "README.md", &fill(python::README))?;
    write(dir, ".gitignore", python::GITIGNORE)?;
    write(dir, "events.jsonl", &fill(EVENTS))?;
    let switchyard = dir.join("switchyard");
    write_all(&switchyard.join("sdk-python"), bundle::SDK_PYTHON)?;
    write_all(&switchyard.join("wit"), bundle::WIT)
}

fn write_js(dir: &Path, name: &str) -> Result<()> {
    let fill = |template: &str| template.replace("{{name}}", name);
    write(dir, "app.js", &fill(js::APP))?;
    write(dir, "package.json", &fill(js::PACKAGE))?;
    write(dir, MARKER, &fill(js::MARKER))?;
    // The toolchain's lock, so that `npm install` gets what the SDK was
    // built and tested with.
    let lock = bundle::SDK_JS
        .iter()
        .find(|(path, _)| *path == "toolchain/package-lock.json")
        .map(|(_, text)| text.replace(&format!("\"{TOOLCHAIN_PACKAGE}\""), &format!("\"{name}\"")))
        .expect("the JS SDK bundles its toolchain's lock file");
    write(dir, "package-lock.json", &lock)?;
    write(dir, "README.md", &fill(js::README))?;
    write(dir, ".gitignore", js::GITIGNORE)?;
    write(dir, "events.jsonl", &fill(EVENTS))?;
    let switchyard = dir.join("switchyard");
    write_all(&switchyard.join("sdk-js"), bundle::SDK_JS)?;
    write_all(&switchyard.join("wit"), bundle::WIT)
}

/// Writes every `(path, text)` of `files` under `dir`.
fn write_all(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    for (path, text) in files {
        write(dir, path, text)?;
    }
    Ok(())
}

/// Writes `text` to `dir/relative`, making folders.
fn write(dir: &Path, relative: &str, text: &str) -> Result<()> {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// A plugin name names its queue, its folder and its crate: 1-64
/// lowercase letters, digits or `-`, starting with a letter.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!(
            "plugin name {name:?} must be 1-64 lowercase letters, digits or '-', starting with a letter"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("demo").is_ok());
        assert!(check_name("crm-sync2").is_ok());
        for bad in ["", "Demo", "2fast", "a_b", "a b", "../x", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn templates_have_no_placeholder_left() {
        let plugin = NewPlugin {
            name: "demo".into(),
            language: Language::Rust,
            producer: true,
        };
        let dir = std::env::temp_dir().join(format!("switchyard-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let made = create(&dir, &plugin).unwrap();
        for file in ["Cargo.toml", "src/lib.rs"] {
            let text = std::fs::read_to_string(made.join(file)).unwrap();
            assert!(!text.contains("{{"), "{file}: {text}");
        }
        assert!(made.join("switchyard/sdk-rust/wit/worlds.wit").is_file());
        let again = create(&dir, &plugin).unwrap_err().to_string();
        assert!(again.contains("is not empty"), "{again}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn python_and_js_projects_are_whole_and_pin_the_toolchain() {
        let dir =
            std::env::temp_dir().join(format!("switchyard-scaffold-pj-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (language, files) in [
            (
                Language::Python,
                &["app.py", MARKER, "README.md", "events.jsonl"][..],
            ),
            (
                Language::Js,
                &[
                    "app.js",
                    MARKER,
                    "package.json",
                    "package-lock.json",
                    "README.md",
                    "events.jsonl",
                ][..],
            ),
        ] {
            let name = format!("demo-{language:?}").to_lowercase();
            let plugin = NewPlugin {
                name: name.clone(),
                language,
                producer: false,
            };
            let made = create(&dir, &plugin).unwrap();
            for file in files {
                let text = std::fs::read_to_string(made.join(file)).unwrap();
                assert!(!text.contains("{{"), "{file}: {text}");
            }
            assert!(made.join("switchyard/wit/worlds.wit").is_file());
            if language == Language::Js {
                // The project's dependencies are the toolchain's, so that its
                // lock file (the toolchain's, renamed) holds.
                let read = |path: &Path| -> serde_json::Value {
                    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
                };
                let project = read(&made.join("package.json"));
                let toolchain = read(&made.join("switchyard/sdk-js/toolchain/package.json"));
                assert_eq!(project["dependencies"], toolchain["dependencies"]);
                let lock = read(&made.join("package-lock.json"));
                assert_eq!(lock["name"], name.as_str());
                assert_eq!(lock["packages"][""]["name"], name.as_str());
            }
            let producer = NewPlugin {
                name: "ticker".into(),
                language,
                producer: true,
            };
            let refused = create(&dir, &producer).unwrap_err().to_string();
            assert!(refused.contains("Rust-only"), "{refused}");
            assert!(!dir.join("ticker").exists());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
