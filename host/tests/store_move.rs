//! Moving a single host's install to PostgreSQL, end to end: a host on the
//! embedded store applies customer and inventory events, stops; `switchyard store copy`
//! moves its store into an empty PostgreSQL database; a host on that
//! database serves the same `/analytics/data`, and the same events sent
//! again are recognised as applied (nothing changes, nothing counts twice).

mod common;

use std::process::Command;
use std::time::Duration;

use common::backend::TestDatabase;
use common::{TestBroker, TestHost, customer_event, eventually, inventory_event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_store_is_served_by_a_postgres_host_that_skips_the_old_ids() {
    let plugins = ["merge", "counter"];
    let mut single = TestHost::start(&plugins).await;
    single.wait_healthy().await;
    let mut events = Vec::new();
    for i in 0..40 {
        let at = format!("2026-11-24T08:00:{:02}Z", i % 60);
        let body = customer_event(
            &format!("move-c{i}"),
            &format!("c{}", i % 15),
            &format!("n{i}"),
            &at,
        );
        events.push(("customer.updated".to_owned(), body));
    }
    for i in 0..10 {
        let body = inventory_event(
            &format!("move-p{i}"),
            &format!("p{i}"),
            "Thing",
            i,
            "2026-11-24T08:00:00Z",
        );
        events.push(("inventory.updated".to_owned(), body));
    }
    let broker = TestBroker::connect(&single.config).await;
    broker.publish_many(&events).await;
    single.wait_counts("merge", 50, 0).await;
    single.wait_counts("counter", 50, 0).await;
    let (_, data_before) = single.get("/analytics/data?limit=1000").await;
    let (_, count_before) = single.get("/analytics/collections/counts/total").await;
    single.stop().await;

    let database = TestDatabase::create();
    let copied = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["store", "copy", "--to", &database.url(), "--data"])
        .arg(&single.config.data)
        .env_remove("SWITCHYARD_STORE")
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );

    let (exchange, prefix) = (
        single.config.exchange.clone(),
        single.config.queue_prefix.clone(),
    );
    let moved = TestHost::start_with(&plugins, |c| {
        c.store = database.url().into();
        c.exchange = exchange;
        c.queue_prefix = prefix;
    })
    .await;
    moved.wait_healthy().await;
    let (_, data_after) = moved.get("/analytics/data?limit=1000").await;
    assert_eq!(data_after, data_before, "the same merged view");
    // The same events again: every id is known, nothing changes.
    broker.publish_many(&events).await;
    eventually("the events recognised", Duration::from_secs(30), || async {
        moved.plugin("merge").await["duplicates"] == 50
            && moved.plugin("counter").await["duplicates"] == 50
    })
    .await;
    let (_, count_after) = moved.get("/analytics/collections/counts/total").await;
    assert_eq!(count_after, count_before, "old ids skipped");
    assert_eq!(moved.get("/analytics/data?limit=1000").await.1, data_before);
    let counter = moved.plugin("counter").await;
    assert_eq!(counter["events_applied"], 0, "{counter}");
    broker.close().await;
    moved.cleanup(&plugins).await;
    single.cleanup(&plugins).await;
}
