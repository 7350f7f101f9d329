//! The delivery promise: duplicates applied once, a restart mid-stream
//! loses nothing and applies nothing twice. The `counter` fixture plugin
//! makes double application visible: its count would exceed the events sent.
//! On each store backend.

mod common;

use common::backend::Backend;
use common::{TestBroker, TestHost, customer_event};
use serde_json::json;

per_backend!(
    the_same_event_id_delivered_twice_is_applied_once,
    a_restart_mid_stream_loses_nothing_and_applies_nothing_twice,
);

async fn the_same_event_id_delivered_twice_is_applied_once(backend: Backend) {
    let host = TestHost::start_on(backend, &["counter"]).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    let event = customer_event("same-id", "c1", "ann", "2026-11-24T08:00:00Z");
    // In one batch and across batches.
    broker
        .publish_many(&vec![("customer.created".to_string(), event.clone()); 3])
        .await;
    broker
        .publish(
            "customer.created",
            &customer_event("other-id", "c2", "bob", "2026-11-24T08:00:00Z"),
        )
        .await;
    host.wait_counts("counter", 2, 0).await;
    broker.publish("customer.created", &event).await;
    broker
        .publish(
            "customer.created",
            &customer_event("last-id", "c3", "cy", "2026-11-24T08:00:00Z"),
        )
        .await;
    host.wait_counts("counter", 3, 0).await;
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(total, json!({"count": 3}));
    assert_eq!(host.plugin("counter").await["events_applied"], 3);
    host.cleanup(&["counter"]).await;
}

async fn a_restart_mid_stream_loses_nothing_and_applies_nothing_twice(backend: Backend) {
    const EVENTS: usize = 6000;
    let mut host = TestHost::start_on(backend, &["counter", "merge"]).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    let events: Vec<(String, Vec<u8>)> = (0..EVENTS)
        .map(|i| {
            let ts = format!(
                "2026-11-24T08:{:02}:{:02}.{:03}Z",
                i / 60000 % 60,
                i / 1000 % 60,
                i % 1000
            );
            (
                "customer.updated".to_string(),
                customer_event(
                    &format!("ev-{i}"),
                    &format!("c{}", i % 50),
                    &format!("n{i}"),
                    &ts,
                ),
            )
        })
        .collect();
    let (first, second) = events.split_at(EVENTS / 2);
    broker.publish_many(first).await;
    // Stop while the first half is still being consumed.
    host.wait_counts("counter", 200, 0).await;
    host.restart().await;
    let applied_before_restart = host.applied_in_store("counter");
    assert!(
        applied_before_restart >= 200,
        "committed work survives: {applied_before_restart}"
    );
    host.wait_healthy().await;
    broker.publish_many(second).await;
    // Redeliver a slice of what was already applied, as a producer retry would.
    broker.publish_many(&events[..100]).await;

    common::eventually(
        "every event applied",
        std::time::Duration::from_secs(90),
        || async {
            host.applied_in_store("counter") >= EVENTS as u64
                && host.applied_in_store("merge") >= EVENTS as u64
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(host.applied_in_store("counter"), EVENTS as u64);
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(
        total,
        json!({"count": EVENTS}),
        "each event applied exactly once"
    );
    // The latest event of each customer wins: customer c7 last got event 5957.
    let (_, c7) = host.get("/analytics/collections/customers/c7").await;
    assert_eq!(c7["name"], "n5957");
    let (_, page) = host
        .get("/analytics/collections/customers?limit=1000")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    host.cleanup(&["counter", "merge"]).await;
}
