//! Plugins built against the released contract `switchyard:plugin@0.1.0`
//! (kept in `tests/fixtures/wit-0.1.0/`, see its README) load and run on
//! this host, which speaks 0.1.1: a transformer counts the seed events, a
//! producer polls an upstream. Real broker, real `.wasm` files.

mod common;

use std::path::Path;
use std::time::Duration;

use common::upstream::{Paging, Upstream};
use common::{TestBroker, TestHost, eventually, producer_stat, seed_events};
use serde_json::json;

fn released(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wit-0.1.0")
        .join(format!("{name}.wasm"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_built_against_0_1_0_load_and_run() {
    let crm = Upstream::start(
        vec![json!({"id": "c1", "name": "Ann", "email": "ann@test.com"})],
        Paging::None,
        0,
    )
    .await;
    let host = TestHost::start_with(&[], |c| crm.configure(c, "crm-producer", 200)).await;
    for name in ["counter", "crm-producer"] {
        std::fs::copy(
            released(name),
            host.plugin_dir().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    eventually("both loaded", Duration::from_secs(30), || async {
        let (_, plugins) = host.get("/plugins").await;
        plugins["plugins"].as_array().is_some_and(|p| p.len() == 2)
    })
    .await;
    host.wait_healthy().await;
    // The counter subscribes to everything: the seed events and the
    // producer's one event.
    let broker = TestBroker::connect(&host.config).await;
    let seed = seed_events();
    broker.publish_many(&seed).await;
    broker.close().await;
    let distinct = seed
        .iter()
        .filter_map(|(_, body)| serde_json::from_slice::<serde_json::Value>(body).ok())
        .filter_map(|b| b["eventId"].as_str().map(str::to_owned))
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    host.wait_counts("counter", distinct + 1, 0).await;
    // The producer's counters move when its poll ends, after its event was
    // confirmed (and may already be counted above): waited for, not read.
    eventually(
        "the producer's poll counted",
        Duration::from_secs(30),
        || async {
            let producer = host.plugin("crm-producer").await;
            producer_stat(&producer, "events_published") >= 1
        },
    )
    .await;
    let producer = host.plugin("crm-producer").await;
    assert_eq!(producer["world"], "producer");
    assert_eq!(
        producer_stat(&producer, "events_published"),
        1,
        "{producer}"
    );
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(total["count"], distinct + 1, "{total}");
    host.cleanup(&["counter", "crm-producer"]).await;
}
