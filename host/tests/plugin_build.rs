//! `switchyard plugin build`, as the real binary: a folder that is no
//! project, and projects whose toolchain is missing, are refused with what
//! to do, each naming the command that installs it; a JS build script that
//! writes no component is caught. (Projects that build
//! are the scaffolds of `plugin new`, built end to end in `plugin_new.rs`.)

use std::path::Path;
use std::process::{Command, Output};

fn build(dir: &Path, path_var: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["plugin", "build"]).arg(dir);
    if let Some(path) = path_var {
        cmd.env("PATH", path);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_folder_without_a_project_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a plugin").unwrap();
    let out = build(dir.path(), None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds no plugin project"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("switchyard plugin new"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_python_project_without_componentize_py_names_the_pip_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("app.py"), "").unwrap();
    std::fs::write(
        d.join("switchyard-plugin.toml"),
        "name = \"py-demo\"\nlanguage = \"python\"\nworld = \"transformer\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("switchyard/wit")).unwrap();
    std::fs::create_dir_all(d.join("switchyard/sdk-python")).unwrap();
    // A PATH with no componentize-py on it.
    let out = build(d, Some("/nonexistent"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("componentize-py is not installed: run `pip install componentize-py==0.25.1`"),
        "{err}"
    );
}

#[test]
fn a_js_project_without_node_modules_says_npm_install() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("package.json"), "{}").unwrap();
    std::fs::write(d.join("switchyard-plugin.toml"), "name = \"js-demo\"\n").unwrap();
    let out = build(d, None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("run `npm install` there"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_rust_project_without_cargo_says_how_to_install_rust() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    let out = build(dir.path(), Some("/nonexistent"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cargo is not installed: install Rust with rustup"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_js_build_script_that_writes_no_component_is_caught_even_over_an_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("package.json"),
        r#"{"name": "js-demo", "private": true, "scripts": {"build": "node -e 0"}}"#,
    )
    .unwrap();
    std::fs::write(d.join("switchyard-plugin.toml"), "name = \"js-demo\"\n").unwrap();
    std::fs::create_dir(d.join("node_modules")).unwrap();
    // A component from an earlier build must not pass for this one's.
    std::fs::write(d.join("js-demo.wasm"), "stale").unwrap();
    let out = build(d, None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("did not write") && stderr(&out).contains("js-demo.wasm"),
        "{}",
        stderr(&out)
    );
}
