//! The merge plugin in three languages behaves as one: the conformance
//! transcript `plugins/conformance/merge.jsonl` (events in, expected outcome,
//! actions and documents inline) through `switchyard plugin test` for
//! `merge.wasm`, `merge-py.wasm` and `merge-js.wasm`; the Python and
//! JavaScript merges loaded by a running host with events through the real
//! broker; and the Rust merge swapped for the Python one and back under
//! load, with the exact final state and every event applied once.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TestBroker, TestHost, customer_event, eventually, plugin_file, seed_events};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Mebibytes of instance memory the JavaScript merge gets. The transcript
/// ran within the host's 64 MiB default here (componentize-js 0.23, every
/// optional WASI feature disabled), but SpiderMonkey was measured at ~83 MB
/// on another workload (../shared/TOOLCHAIN.md): room to spare.
const JS_MEMORY_MIB: usize = 128;
/// A debug build compiles an 18 MB Python or 12 MB JavaScript component in
/// one to two minutes on a busy two-core machine.
const LOAD_LIMIT: Duration = Duration::from_secs(600);

fn transcript() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/conformance/merge.jsonl")
}

/// Runs the transcript through `plugin test` and compares every output line
/// with the input line's inline `expect` (outcome, actions and documents
/// equal as JSON; the expected reason a substring of the actual one).
fn run_transcript(plugin: &str, memory_mib: Option<usize>) {
    let wasm = plugin_file(plugin);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["plugin", "test"]).arg(&wasm).arg(transcript());
    if let Some(mib) = memory_mib {
        cmd.env("SWITCHYARD_PLUGIN_MEMORY_MIB", mib.to_string());
    }
    let output = cmd.output().expect("running switchyard plugin test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "switchyard plugin test {plugin}: {}\n{stderr}\n{stdout}",
        output.status
    );
    let inputs: Vec<Value> = std::fs::read_to_string(transcript())
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outputs: Vec<Value> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        outputs.len(),
        inputs.len(),
        "{plugin}: one output line per event\n{stdout}"
    );
    let mut wrong = Vec::new();
    for (input, actual) in inputs.iter().zip(&outputs) {
        let expect = &input["expect"];
        let reason_ok = match expect.get("reason").and_then(Value::as_str) {
            None => true,
            Some(part) => actual["reason"].as_str().is_some_and(|r| r.contains(part)),
        };
        if expect["outcome"] != actual["outcome"]
            || expect["actions"] != actual["actions"]
            || expect["documents"] != actual["documents"]
            || !reason_ok
        {
            wrong.push(format!(
                "line {}:\n  expected {expect}\n  got      {actual}",
                actual["n"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{plugin} differs from the transcript:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_transcript_covers_every_kind_of_outcome() {
    let text = std::fs::read_to_string(transcript()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |outcome: &str| {
        lines
            .iter()
            .filter(|l| l["expect"]["outcome"] == outcome)
            .count()
    };
    assert!(count("applied") >= 20 && count("rejected") >= 40, "{text}");
    assert_eq!(count("duplicate"), 1);
    let reasons: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["expect"]["reason"].as_str())
        .collect();
    for needle in [
        "invalid JSON",
        "missing eventId",
        "unsupported routing key",
        "\"stock\" must be an integer >= 0",
        "missing zone",
        "customer.id is required",
        "products[1] must be an object",
        "duplicate field",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no case for {needle}"
        );
    }
    // Every expectation names its outcome's fields and nothing else.
    for line in &lines {
        let expect = line["expect"].as_object().unwrap();
        let rejected = matches!(expect["outcome"].as_str(), Some("rejected" | "retry"));
        assert_eq!(expect.contains_key("reason"), rejected, "{line}");
    }
}

/// The timestamp parsers of the Python and JavaScript ports against the
/// Rust parser's test cases (`plugins/conformance/instants.json`), run by
/// the languages' own interpreters (`.ci/run` installs both).
#[test]
fn timestamp_ports_agree_with_the_rust_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (program, script) in [
        ("python3", "plugins/merge-py/instant_test.py"),
        ("node", "plugins/merge-js/instant.test.mjs"),
    ] {
        let output = Command::new(program)
            .arg(root.join(script))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap_or_else(|e| panic!("running {program} (install it: see .ci/run): {e}"));
        assert!(
            output.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The Python merge's ordinary-event path against its exact path on a
/// generated corpus (`plugins/merge-py/merge_rules_test.py`), run by python3
/// with the bindings the pinned componentize-py generates (`cargo xtask
/// build` installs it under `target/tools/py`).
#[test]
fn python_merge_fast_path_agrees_with_the_exact_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let componentize = root.join("target/tools/py/bin/componentize-py");
    let bindings = tempfile::tempdir().unwrap();
    let status = Command::new(&componentize)
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "transformer", "bindings"])
        .arg(bindings.path())
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (cargo xtask build installs it): {e}",
                componentize.display()
            )
        });
    assert!(status.success(), "componentize-py bindings: {status}");
    let path = std::env::join_paths([bindings.path(), &root.join("sdk/python")]).unwrap();
    let script = "plugins/merge-py/merge_rules_test.py";
    assert_script_passes(
        Command::new("python3")
            .arg(root.join(script))
            .env("PYTHONPATH", path)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        script,
    );
}

/// The JavaScript merge's ordinary-event path against its exact path on a
/// generated corpus (`plugins/merge-js/merge-rules.test.mjs`), run by Node.
#[test]
fn javascript_merge_fast_path_agrees_with_the_exact_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = "plugins/merge-js/merge-rules.test.mjs";
    assert_script_passes(Command::new("node").arg(root.join(script)), script);
}

/// The JavaScript SDK's JSON reader: its native fast path against its exact
/// reader on the transcript's bodies and dirty texts, run by Node.
#[test]
fn javascript_json_fast_path_agrees_with_the_exact_reader() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = "sdk/js/switchyard-plugin.test.mjs";
    assert_script_passes(Command::new("node").arg(root.join(script)), script);
}

/// Runs a repository test script (Python or Node) and fails with its
/// output unless it succeeds.
fn assert_script_passes(command: &mut Command, script: &str) {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {program} (install it: see .ci/run): {e}"));
    assert!(
        output.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn rust_merge_passes_the_transcript() {
    run_transcript("merge", None);
}

#[test]
fn python_merge_passes_the_transcript() {
    run_transcript("merge-py", None);
}

#[test]
fn javascript_merge_passes_the_transcript() {
    run_transcript("merge-js", Some(JS_MEMORY_MIB));
}

/// The seed events through the broker to a host running `plugin`, which
/// must give merge.rs's exact results: five applied (one older event
/// without effect), one redelivery skipped, four dead-lettered; the `data`
/// view paged one customer at a time.
async fn seed_events_through_the_broker(plugin: &str, memory_mib: Option<usize>, version: &str) {
    let host = TestHost::start_with(&[plugin], |config| {
        if let Some(mib) = memory_mib {
            config.plugin_memory_mib = mib;
        }
    })
    .await;
    eventually("the merge to load", LOAD_LIMIT, || async {
        host.get("/health").await.0 == 200
    })
    .await;
    let merge = host.plugin("merge").await;
    assert_eq!(merge["version"], version, "{merge}");
    let broker = TestBroker::connect(&host.config).await;
    broker.publish_many(&seed_events()).await;
    host.wait_counts("merge", 5, 4).await;

    let products = json!([
        {"id": "p1", "name": "Laptop", "stock": 10},
        {"id": "p6", "name": "GPU", "stock": 2},
    ]);
    let (status, first) = host.get("/analytics/data?limit=1").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first,
        json!({"items": [{"customer": {"id": "c1", "name": "crispin", "email": "crispin@test.com"}, "products": products}], "next": "c1"})
    );
    let (_, second) = host.get("/analytics/data?limit=1&after=c1").await;
    assert_eq!(
        second,
        json!({"items": [{"customer": {"id": "c2", "name": "luck", "email": "luck@test.com"}, "products": products}], "next": "c2"})
    );
    let (_, last) = host.get("/analytics/data?limit=1&after=c2").await;
    assert_eq!(last, json!({"items": [], "next": null}));

    let (_, c1) = host.get("/analytics/collections/customers/c1").await;
    assert_eq!(
        c1,
        json!({"id": "c1", "name": "crispin", "email": "crispin@test.com", "updatedAt": "2026-11-24T08:00:00.123456789Z"})
    );
    let (_, p6) = host.get("/analytics/collections/products/p6").await;
    assert_eq!(
        p6,
        json!({"id": "p6", "name": "GPU", "stock": 2, "updatedAt": "2026-11-24T08:00:02.250Z"})
    );
    let (status, _) = host.get("/analytics/collections/products/p2").await;
    assert_eq!(status, 404, "the event with stock \"lots\" changed nothing");

    let dead = broker
        .drain_exactly(&host.config.dead_letter_queue("merge"), 4)
        .await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, _, headers)| {
            headers
                .iter()
                .find(|(k, _)| k == "x-switchyard-reason")
                .map(|(_, v)| v.clone())
                .unwrap()
        })
        .collect();
    assert!(reasons[0].starts_with("invalid JSON"), "{reasons:?}");
    assert_eq!(reasons[1], "\"id\" is required");
    assert_eq!(
        reasons[2],
        "\"stock\" must be an integer >= 0, got \"lots\""
    );
    assert_eq!(reasons[3], "missing eventId");
    let merge = host.plugin("merge").await;
    assert_eq!(merge["events_applied"], 5);
    assert_eq!(merge["duplicates"], 1, "{merge}");
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_merge_applies_events_through_the_broker() {
    seed_events_through_the_broker("merge-py", None, "0.1.0-python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_merge_applies_events_through_the_broker() {
    seed_events_through_the_broker("merge-js", Some(JS_MEMORY_MIB), "0.1.0-javascript").await;
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Writes `src` beside `merge.wasm` in `dir` and renames it in.
fn swap_in(dir: &Path, src: &Path) {
    let partial = dir.join(".merge.wasm.partial");
    std::fs::copy(src, &partial).unwrap();
    std::fs::rename(&partial, dir.join("merge.wasm")).unwrap();
}

/// Customers `c000`..`c199` renamed again and again: event `i` names
/// customer `i % 200` `n<i>` at an instant `i` ms after the start, so the
/// final state is each customer's last event whatever the order of arrival.
fn rename_event(i: usize) -> (String, Vec<u8>) {
    let ms = i;
    let timestamp = format!(
        "2026-11-24T08:{:02}:{:02}.{:03}Z",
        ms / 60_000,
        ms / 1000 % 60,
        ms % 1000
    );
    let body = customer_event(
        &format!("swap-{i}"),
        &format!("c{:03}", i % 200),
        &format!("n{i}"),
        &timestamp,
    );
    ("customer.updated".to_owned(), body)
}

async fn applied_by_version(host: &TestHost) -> HashMap<String, u64> {
    let (_, versions) = host.get("/plugins/merge/versions").await;
    versions["versions"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|v| {
                    (
                        v["sha256"].as_str().unwrap().to_owned(),
                        v["events_applied"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_merge_swapped_for_python_and_back_under_load_applies_each_event_once() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let (rust, python) = (plugin_file("merge"), plugin_file("merge-py"));
    let (sha_rust, sha_python) = (sha256_of(&rust), sha256_of(&python));

    // Events flow in chunks until both swaps are done.
    let stop = Arc::new(AtomicBool::new(false));
    let broker = TestBroker::connect(&host.config).await;
    let publisher = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(Ordering::SeqCst) {
                let chunk: Vec<_> = (sent..sent + 100).map(rename_event).collect();
                broker.publish_many(&chunk).await;
                sent += chunk.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            broker.close().await;
            sent
        })
    };
    host.wait_counts("merge", 300, 0).await;

    swap_in(host.plugin_dir(), &python);
    eventually("the Python merge to take over", LOAD_LIMIT, || async {
        host.plugin("merge").await["sha256"] == sha_python
    })
    .await;
    eventually("the Python merge to apply events", LOAD_LIMIT, || async {
        applied_by_version(&host)
            .await
            .get(&sha_python)
            .copied()
            .unwrap_or(0)
            >= 300
    })
    .await;
    swap_in(host.plugin_dir(), &rust);
    eventually("the Rust merge to take over again", LOAD_LIMIT, || async {
        host.plugin("merge").await["sha256"] == sha_rust
    })
    .await;
    let before_stop = host.applied_in_store("merge");
    eventually(
        "the Rust merge to apply events again",
        LOAD_LIMIT,
        || async { host.applied_in_store("merge") >= before_stop + 300 },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let sent = publisher.await.unwrap();
    eventually("every event applied", Duration::from_secs(120), || async {
        host.applied_in_store("merge") >= sent as u64
    })
    .await;

    assert_eq!(
        host.applied_in_store("merge"),
        sent as u64,
        "each event once"
    );
    let per_version = applied_by_version(&host).await;
    assert_eq!(per_version.len(), 2, "{per_version:?}");
    assert_eq!(per_version.values().sum::<u64>(), sent as u64);
    assert!(per_version[&sha_python] > 0 && per_version[&sha_rust] > 0);
    let merge = host.plugin("merge").await;
    assert_eq!(merge["reloads"], 2);
    assert_eq!(merge["dead_lettered"], 0, "{merge}");

    // Exactly each customer's last event, whichever language applied it,
    // read from state the other language wrote.
    let mut expected = BTreeMap::new();
    for i in 0..sent {
        let (_, body) = rename_event(i);
        let body: Value = serde_json::from_slice(&body).unwrap();
        expected.insert(
            body["id"].as_str().unwrap().to_owned(),
            json!({"id": body["id"], "name": body["name"], "email": body["email"], "updatedAt": body["timestamp"]}),
        );
    }
    let mut actual = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(key) => format!("/analytics/collections/customers?limit=1000&after={key}"),
            None => "/analytics/collections/customers?limit=1000".to_owned(),
        };
        let (_, page) = host.get(&path).await;
        for item in page["items"].as_array().unwrap() {
            actual.insert(
                item["key"].as_str().unwrap().to_owned(),
                item["document"].clone(),
            );
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(actual, expected);
    host.cleanup(&["merge"]).await;
}
