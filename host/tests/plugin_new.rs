//! `switchyard plugin new` end to end, as the real binary: a Rust, Python
//! or JavaScript project made in a folder outside this repository builds
//! with `plugin build`, passes `plugin test` against the transcript it
//! comes with, and loads into a running host, which applies an event with
//! it. A Rust producer project builds and loads as a producer.
//!
//! The Rust projects' cargo target folder is `target/plugin-new` of this
//! workspace, so that runs after the first build incrementally. The Python
//! and JavaScript toolchains are those `cargo xtask build` installs under
//! `target/tools/` (componentize-py on the PATH; `npm install` of a JS
//! project is served from the npm cache that install warmed): without them
//! these tests fail saying so, they do not skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;

/// A JavaScript instance's memory cap, in MiB: its engine does not fit the
/// 64 MiB default.
const JS_MEMORY_MIB: usize = 128;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn switchyard(dir: &Path, args: &[&str]) -> Output {
    switchyard_with(dir, args, &[])
}

/// Runs the binary in `dir`, with `target/tools/py/bin` first on the PATH
/// (componentize-py) and `env` set.
fn switchyard_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let path = std::env::join_paths(std::iter::once(python_tools()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", workspace().join("target/plugin-new"))
        .env("RUST_LOG", "off")
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Where `cargo xtask build` installs componentize-py.
fn python_tools() -> PathBuf {
    workspace().join("target/tools/py/bin")
}

/// Fails (never skips) unless `cargo xtask build` installed componentize-py.
fn require_python_toolchain() {
    assert!(
        python_tools().join("componentize-py").is_file(),
        "componentize-py is not in {}: run `cargo xtask build` first (it installs the \
         Python plugin toolchain there)",
        python_tools().display()
    );
}

/// `npm install` in a JavaScript project, from the npm cache where it can.
fn npm_install(project: &Path) {
    let out = Command::new("npm")
        .args([
            "install",
            "--prefer-offline",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(project)
        .output()
        .unwrap_or_else(|e| {
            panic!("npm does not run ({e}): install Node.js and npm, then run `cargo xtask build`")
        });
    assert!(
        out.status.success(),
        "npm install in {} failed: run `cargo xtask build` first (it installs the JavaScript \
         plugin toolchain and warms the npm cache):\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `plugin new` then `plugin build`: the component's path.
fn new_and_build(parent: &Path, name: &str, lang: &str, extra: &[&str]) -> PathBuf {
    match lang {
        "python" => require_python_toolchain(),
        "js" => {}
        _ => assert_eq!(lang, "rust"),
    }
    let mut args = vec!["plugin", "new", name, "--lang", lang];
    args.extend(extra);
    let made = ok(&switchyard(parent, &args), "plugin new");
    let project = PathBuf::from(made.trim());
    assert_eq!(project, parent.canonicalize().unwrap().join(name));
    if lang == "js" {
        npm_install(&project);
    }
    let built = ok(&switchyard(&project, &["plugin", "build"]), "plugin build");
    let wasm = PathBuf::from(built.trim());
    assert_eq!(wasm.parent(), Some(project.as_path()));
    assert_eq!(wasm.file_name().unwrap(), format!("{name}.wasm").as_str());
    let wasms: Vec<_> = std::fs::read_dir(&project)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension().is_some_and(|x| x == "wasm")).then_some(p)
        })
        .collect();
    assert_eq!(wasms.len(), 1, "one component: {wasms:?}");
    wasm
}

#[tokio::test]
async fn a_new_rust_transformer_builds_passes_its_transcript_and_loads_into_a_host() {
    transformer_end_to_end("rust", "demo", None).await;
}

#[tokio::test]
async fn a_new_python_transformer_builds_passes_its_transcript_and_loads_into_a_host() {
    transformer_end_to_end("python", "pydemo", None).await;
}

#[tokio::test]
async fn a_new_js_transformer_builds_passes_its_transcript_and_loads_into_a_host() {
    transformer_end_to_end("js", "jsdemo", Some(JS_MEMORY_MIB)).await;
}

/// `plugin new` → `plugin build` → `plugin test` against the project's own
/// transcript → a running host applies a live event with the component,
/// with a memory cap of `memory_mib` where given.
async fn transformer_end_to_end(lang: &str, name: &str, memory_mib: Option<usize>) {
    let parent = tempfile::tempdir().unwrap();
    let wasm = new_and_build(parent.path(), name, lang, &[]);
    let project = wasm.parent().unwrap();
    let file = format!("{name}.wasm");
    let memory = memory_mib.map(|m| m.to_string());
    let env: Vec<(&str, &str)> = memory
        .iter()
        .map(|m| ("SWITCHYARD_PLUGIN_MEMORY_MIB", m.as_str()))
        .collect();

    let tested = switchyard_with(project, &["plugin", "test", &file, "events.jsonl"], &env);
    ok(&tested, "plugin test");
    let summary = String::from_utf8_lossy(&tested.stderr);
    assert!(summary.contains("5 of 5 expectations met"), "{summary}");

    // Bodies the template's transcript never sends: every language's
    // template must refuse or accept them alike.
    let odd = [
        json!({"routing_key": "customer.created", "received_at_ms": 1, "body": {"eventId": "o1", "id": 42},
               "expect": {"outcome": "rejected", "reason": "id"}}),
        json!({"routing_key": "customer.created", "received_at_ms": 2, "body": {"eventId": "o2", "id": ""},
               "expect": {"outcome": "rejected", "reason": "empty"}}),
        json!({"routing_key": "customer.created", "received_at_ms": 3, "body": [1, 2],
               "expect": {"outcome": "rejected"}}),
        json!({"routing_key": "customer.updated", "received_at_ms": 4,
               "body": {"eventId": "o4", "id": "ç/ü 1", "name": null, "extra": {"deep": [1]}},
               "expect": {"outcome": "applied",
                          "actions": [{"upsert": {"collection": name, "key": "ç/ü 1",
                                                  "json": {"events": 1, "name": null}}}],
                          "documents": {format!("{name}/ç/ü 1"): {"events": 1, "name": null}}}}),
    ];
    let lines: Vec<String> = odd.iter().map(|l| l.to_string()).collect();
    std::fs::write(project.join("odd.jsonl"), lines.join("\n")).unwrap();
    let tested = switchyard_with(project, &["plugin", "test", &file, "odd.jsonl"], &env);
    ok(&tested, "plugin test odd.jsonl");
    let summary = String::from_utf8_lossy(&tested.stderr);
    assert!(summary.contains("4 of 4 expectations met"), "{summary}");

    // A host running it applies a live event.
    let host = common::TestHost::start_with(&[], |config| {
        if let Some(mib) = memory_mib {
            config
                .plugin_settings
                .push(format!("{name}.memory-mib={mib}"));
        }
    })
    .await;
    // Dropped in as an operator would: whole, by a rename.
    let partial = host.plugin_dir().join(format!("{name}.partial"));
    std::fs::copy(&wasm, &partial).unwrap();
    std::fs::rename(&partial, host.plugin_dir().join(&file)).unwrap();
    common::eventually(
        &format!("{name} to load"),
        Duration::from_secs(120),
        || async {
            let (_, plugins) = host.get("/plugins").await;
            plugins["plugins"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == name))
        },
    )
    .await;
    // Its queue is bound before it is consumed: publish once it is.
    let queue = host.config.queue_name(name);
    common::eventually(
        &format!("{name}'s consumer"),
        Duration::from_secs(60),
        || consumers_of(&queue),
    )
    .await;
    let broker = common::TestBroker::connect(&host.config).await;
    broker
        .publish(
            "customer.created",
            json!({"eventId": "live-1", "id": "c7", "name": "Live"})
                .to_string()
                .as_bytes(),
        )
        .await;
    let path = format!("/analytics/collections/{name}/c7");
    common::eventually("the document", Duration::from_secs(60), || async {
        let (status, doc) = host.get(&path).await;
        status == 200 && doc == json!({"events": 1, "name": "Live"})
    })
    .await;
    broker.close().await;
    host.cleanup(&[name]).await;
}

/// Whether `queue` exists and has a consumer (on a connection of its own:
/// a passive declare of a missing queue closes the channel).
async fn consumers_of(queue: &str) -> bool {
    let connection = lapin::Connection::connect(&common::amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await;
    let _ = connection.close(200, "done".into()).await;
    declared.is_ok_and(|q| q.consumer_count() > 0)
}

#[test]
fn a_new_rust_producer_builds_into_a_producer() {
    let parent = tempfile::tempdir().unwrap();
    let wasm = new_and_build(parent.path(), "ticker", "rust", &["--producer"]);
    let check = ok(
        &switchyard(parent.path(), &["plugin", "check", wasm.to_str().unwrap()]),
        "plugin check",
    );
    assert!(check.contains("producer"), "{check}");
    assert!(!wasm.parent().unwrap().join("events.jsonl").exists());
}

#[test]
fn a_name_that_cannot_name_a_queue_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let out = switchyard(
        parent.path(),
        &["plugin", "new", "My_Plugin", "--lang", "rust"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lowercase"));
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}

#[test]
fn a_python_or_js_producer_is_refused_as_rust_only() {
    for lang in ["python", "js"] {
        let parent = tempfile::tempdir().unwrap();
        let out = switchyard(
            parent.path(),
            &["plugin", "new", "ticker", "--lang", lang, "--producer"],
        );
        assert!(!out.status.success(), "{lang}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("producers are Rust-only"), "{lang}: {err}");
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
