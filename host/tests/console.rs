//! The web console in a real browser: Debian's chromium, driven by
//! playwright-core (`tests/browser/console.mjs`), opens the console of a
//! live host (real broker, real `merge` and `counter` plugins, and the
//! `crm-producer` polling an empty upstream), sees the plugins and the
//! producer's polls, watches merge's applied count rise while this test publishes
//! events, reads the dead letters with their reasons, reaches the replay
//! button by keyboard, is asked for the API token (a wrong one first),
//! sees the replayed event applied, pages through a collection holding a
//! customer whose key and name are made to break a page that would treat
//! them as HTML or URLs, and reads the page on a phone. Screenshots land in
//! `target/console-screenshots/` (`readme.png` is the README's
//! `docs/console.png`). A second pass, on a host whose reads need the
//! token, finds the page saying so and showing the plugins once the token
//! is entered.
//!
//! Needs `chromium` (Debian: `apt-get install chromium`) and the pinned
//! playwright-core that `cargo xtask test` installs under
//! `target/tools/browser/` (its path in `SWITCHYARD_TEST_BROWSER_MODULES`).
//! Never skipped: without them the test fails saying how to get them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::upstream::{Paging, Upstream};
use common::{TestBroker, TestHost, customer_event, eventually, plugin_file};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "console-test-token";
/// Merge events published while the page watches.
const FLOW: usize = 120;
/// Sorts before every other customer key, and would break a page that
/// pasted it into a URL or into HTML.
const DIRTY_KEY: &str = "!ç/ü?#&<b>x</b> 😀";
const DIRTY_NAME: &str = "<img src=x onerror=alert(1)> Zoë «ünïcødé»";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Chromium and the node_modules holding playwright-core, or a panic that
/// says how to install them.
fn browser_tools() -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("SWITCHYARD_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "{} not found: the console test drives Debian's chromium \
         (apt-get install chromium), or set SWITCHYARD_TEST_CHROMIUM",
        chromium.display()
    );
    let modules = std::env::var_os("SWITCHYARD_TEST_BROWSER_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/tools/browser/node_modules"));
    assert!(
        modules.join("playwright-core/index.mjs").exists(),
        "playwright-core is not installed in {}: run `cargo xtask test` \
         (it installs the version pinned in host/tests/browser/package-lock.json)",
        modules.display()
    );
    (chromium, modules)
}

/// The screenshots the main pass takes.
const SHOTS: [&str; 10] = [
    "00-overview.png",
    "01-plugins.png",
    "02-events-flowing.png",
    "03-dead-letters.png",
    "04-token.png",
    "05-replayed.png",
    "06-data.png",
    "07-phone.png",
    "08-phone-full.png",
    "readme.png",
];

/// The screenshot folder, without the files `names` (from a run before).
fn screenshots(names: &[&str]) -> PathBuf {
    let shots = workspace().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for name in names {
        let _ = std::fs::remove_file(shots.join(name));
    }
    shots
}

/// Runs `tests/browser/console.mjs` with `envs` (besides the token and the
/// browser's paths); when it prints `READY-FOR-EVENTS`, publishes [`FLOW`]
/// customer events through `broker` in rounds. Panics with the script's
/// output unless it ends with `step: done`.
async fn drive(envs: &[(&str, String)], broker: Option<&TestBroker>) {
    let (chromium, modules) = browser_tools();
    let stamp = "2026-11-29T08:00:00Z";
    let mut script = tokio::process::Command::new("node")
        .arg(workspace().join("host/tests/browser/console.mjs"))
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env("CONSOLE_TOKEN", TOKEN)
        .env("CONSOLE_SCREENSHOTS", screenshots(&[]))
        .env("CONSOLE_CHROMIUM", &chromium)
        .env("CONSOLE_MODULES", &modules)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Debian: apt-get install nodejs)");
    let stderr = script.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut output = String::new();
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("console.mjs: {line}");
            output.push_str(&line);
            output.push('\n');
            if line == "READY-FOR-EVENTS" {
                let broker = broker.expect("the script asked for events");
                // A flow, not a burst: rounds of events the page polls through.
                for round in 0..10 {
                    let batch: Vec<_> = (0..FLOW / 10)
                        .map(|i| {
                            let n = round * FLOW / 10 + i;
                            let id = format!("c{n:04}");
                            (
                                "customer.created".to_owned(),
                                customer_event(&format!("flow-{n}"), &id, &id, stamp),
                            )
                        })
                        .collect();
                    broker.publish_many(&batch).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        script.wait().await.unwrap()
    };
    let finished = tokio::time::timeout(Duration::from_secs(300), run).await;
    let Ok(status) = finished else {
        panic!("the browser script ran over 5 minutes:\n{output}");
    };
    let errors = errors.await.unwrap();
    assert!(
        status.success() && output.ends_with("step: done\n"),
        "the browser script failed ({status}):\n{output}\nstderr:\n{errors}"
    );
}

fn event(routing_key: &str, body: serde_json::Value) -> (String, Vec<u8>) {
    (routing_key.to_owned(), serde_json::to_vec(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_console_shows_the_plugins_a_rising_count_and_replays_a_dead_letter() {
    let shots = screenshots(&SHOTS);
    // A producer polling an upstream with nothing to publish: its polls
    // show, and the counts the page is checked against stay exact.
    let upstream = Upstream::start(Vec::new(), Paging::None, 0).await;
    let host = TestHost::start_with(&["merge", "counter", "crm-producer"], |c| {
        c.api_token = Some(TOKEN.into());
        upstream.configure(c, "crm-producer", 500);
    })
    .await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    // A dead letter for each plugin, and the dirty customer. counter
    // (subscribed to `#`) applies both customer events.
    let stamp = "2026-11-29T08:00:00Z";
    broker
        .publish_many(&[
            event(
                "test.event",
                json!({ "eventId": "console-rejected", "reject": "no such customer" }),
            ),
            (
                "customer.created".into(),
                customer_event("console-bad", "", "nobody", stamp),
            ),
            (
                "customer.created".into(),
                customer_event("console-dirty", DIRTY_KEY, DIRTY_NAME, stamp),
            ),
        ])
        .await;
    host.wait_counts("merge", 1, 1).await;
    host.wait_counts("counter", 2, 1).await;

    // The fixed counter, which applies what its predecessor rejected.
    std::fs::copy(
        plugin_file("counter-variant"),
        host.plugin_dir().join("counter.wasm"),
    )
    .unwrap();
    eventually("the fixed counter", Duration::from_secs(30), || async {
        host.plugin("counter").await["version"]
            .as_str()
            .is_some_and(|v| v.ends_with("+fixed"))
    })
    .await;

    drive(
        &[
            ("CONSOLE_URL", format!("{}/", host.base)),
            ("CONSOLE_FLOW", FLOW.to_string()),
            ("CONSOLE_MERGE_BEFORE", "1".into()),
            ("CONSOLE_COUNTER_BEFORE", "2".into()),
            ("CONSOLE_DIRTY_KEY", DIRTY_KEY.into()),
            ("CONSOLE_DIRTY_NAME", DIRTY_NAME.into()),
        ],
        Some(&broker),
    )
    .await;

    // What the page showed is what the host holds.
    let merge = host.plugin("merge").await;
    assert_eq!(merge["events_applied"], 1 + FLOW as u64);
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(total, json!({ "count": 3 + FLOW as u64 }));
    for shot in SHOTS {
        let len = std::fs::metadata(shots.join(shot))
            .unwrap_or_else(|e| panic!("screenshot {shot}: {e}"))
            .len();
        assert!(len > 1000, "{shot} is {len} bytes");
    }
    broker.close().await;
    host.cleanup(&["merge", "counter"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_with_protected_reads_the_console_asks_for_the_token_then_shows_the_plugins() {
    screenshots(&["09-protected-reads.png"]);
    let host = TestHost::start_with(&["merge"], |c| {
        c.api_token = Some(TOKEN.into());
        c.protect_reads = true;
    })
    .await;
    host.wait_healthy().await;
    drive(
        &[
            ("CONSOLE_URL", format!("{}/", host.base)),
            ("CONSOLE_MODE", "protected-reads".into()),
        ],
        None,
    )
    .await;
    host.cleanup(&["merge"]).await;
}
