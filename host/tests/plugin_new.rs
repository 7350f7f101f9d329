//! `switchyard plugin new` end to end, as the real binary: a Rust project
//! made in a folder outside this repository builds with `plugin build`,
//! passes `plugin test` against the transcript it comes with, and loads
//! into a running host, which applies an event with it. A producer project
//! builds and loads as a producer.
//!
//! The projects' cargo target folder is `target/plugin-new` of this
//! workspace, so that runs after the first build incrementally.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;

fn switchyard(dir: &Path, args: &[&str]) -> Output {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-new");
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `plugin new` then `plugin build`: the component's path.
fn new_and_build(parent: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["plugin", "new", name, "--lang", "rust"];
    args.extend(extra);
    let made = ok(&switchyard(parent, &args), "plugin new");
    let project = PathBuf::from(made.trim());
    assert_eq!(project, parent.canonicalize().unwrap().join(name));
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
    let parent = tempfile::tempdir().unwrap();
    let wasm = new_and_build(parent.path(), "demo", &[]);
    let project = wasm.parent().unwrap();

    let tested = switchyard(project, &["plugin", "test", "demo.wasm", "events.jsonl"]);
    ok(&tested, "plugin test");
    let summary = String::from_utf8_lossy(&tested.stderr);
    assert!(summary.contains("5 of 5 expectations met"), "{summary}");

    // A host running it applies a live event.
    let host = common::TestHost::start(&[]).await;
    // Dropped in as an operator would: whole, by a rename.
    let partial = host.plugin_dir().join("demo.partial");
    std::fs::copy(&wasm, &partial).unwrap();
    std::fs::rename(&partial, host.plugin_dir().join("demo.wasm")).unwrap();
    common::eventually("demo to load", Duration::from_secs(60), || async {
        let (_, plugins) = host.get("/plugins").await;
        plugins["plugins"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "demo"))
    })
    .await;
    // Its queue is bound before it is consumed: publish once it is.
    let queue = host.config.queue_name("demo");
    common::eventually("demo's consumer", Duration::from_secs(60), || {
        consumers_of(&queue)
    })
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
    common::eventually("the document", Duration::from_secs(30), || async {
        let (status, doc) = host.get("/analytics/collections/demo/c7").await;
        status == 200 && doc == json!({"events": 1, "name": "Live"})
    })
    .await;
    broker.close().await;
    host.cleanup(&["demo"]).await;
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
    let wasm = new_and_build(parent.path(), "ticker", &["--producer"]);
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
