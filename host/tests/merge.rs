//! The merge plugin end to end: seed-format events in through the real
//! broker, exact merged state out through the API; dead letters with
//! reasons; older events never overwrite newer state.

mod common;

use common::{TestBroker, TestHost, customer_event, inventory_event, seed_events};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_events_give_the_exact_merged_view_and_dead_letter_the_bad_ones() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    broker.publish_many(&seed_events()).await;

    // 5 distinct valid events (one of them older: applied, no effect), one
    // redelivery skipped, 4 bad ones dead-lettered.
    host.wait_counts("merge", 5, 4).await;

    let (status, data) = host.get("/analytics/data").await;
    assert_eq!(status, 200);
    let products = json!([
        {"id": "p1", "name": "Laptop", "stock": 10},
        {"id": "p6", "name": "GPU", "stock": 2},
    ]);
    assert_eq!(
        data,
        json!({
            "items": [
                {"customer": {"id": "c1", "name": "crispin", "email": "crispin@test.com"}, "products": products},
                {"customer": {"id": "c2", "name": "luck", "email": "luck@test.com"}, "products": products},
            ],
            "next": null,
        })
    );

    let (status, c1) = host.get("/analytics/collections/customers/c1").await;
    assert_eq!(status, 200);
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
    let (_, products) = host.get("/analytics/collections/products").await;
    assert_eq!(products["items"].as_array().unwrap().len(), 2);

    let dead = broker
        .drain_exactly(&host.config.dead_letter_queue("merge"), 4)
        .await;
    let reason = |i: usize| {
        dead[i]
            .2
            .iter()
            .find(|(k, _)| k == "x-switchyard-reason")
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert!(reason(0).starts_with("invalid JSON"), "{}", reason(0));
    assert!(reason(1).contains("\"id\""), "{}", reason(1));
    assert!(reason(2).contains("stock"), "{}", reason(2));
    assert_eq!(reason(3), "missing eventId");
    for (key, _, headers) in &dead {
        assert_eq!(
            key,
            if key.starts_with("inventory") {
                "inventory.updated"
            } else {
                "customer.created"
            }
        );
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "x-switchyard-plugin" && v == "merge")
        );
    }
    assert_eq!(
        dead[0].1, br#"{"id": "c3", "name": "frank""#,
        "the original body is kept"
    );

    let merge = host.plugin("merge").await;
    assert_eq!(merge["events_applied"], 5);
    assert_eq!(merge["dead_lettered"], 4);
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_event_arriving_after_a_newer_one_changes_nothing() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    // ".5Z" is later than "Z" although it sorts before it as text.
    broker
        .publish(
            "inventory.updated",
            &inventory_event("e1", "p1", "Laptop", 7, "2026-11-24T08:00:00.5Z"),
        )
        .await;
    broker
        .publish(
            "inventory.updated",
            &inventory_event("e2", "p1", "Laptop", 99, "2026-11-24T08:00:00Z"),
        )
        .await;
    broker
        .publish(
            "customer.created",
            &customer_event("e3", "c1", "ann", "2026-11-24T09:00:00Z"),
        )
        .await;
    broker
        .publish(
            "customer.updated",
            &customer_event("e4", "c1", "old-ann", "2026-11-24T08:59:59.999999999Z"),
        )
        .await;
    host.wait_counts("merge", 4, 0).await;
    let (_, p1) = host.get("/analytics/collections/products/p1").await;
    assert_eq!(p1["stock"], 7);
    let (_, c1) = host.get("/analytics/collections/customers/c1").await;
    assert_eq!(c1["name"], "ann");
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_event_is_dead_lettered_with_its_reason() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    broker
        .publish(
            "customer.created",
            &customer_event("ok-1", "c1", "ann", "2026-11-24T08:00:00Z"),
        )
        .await;
    host.wait_counts("merge", 1, 0).await;
    let bad: Vec<(&str, &[u8], &str)> = vec![
        ("customer.created", b"not json at all", "invalid JSON"),
        ("customer.created", br#"{"id":"c1","name":"x","email":"x@y","timestamp":"2026-11-24T10:00:00Z"}"#, "missing eventId"),
        ("customer.created", br#"{"eventId":"b1","name":"x","email":"x@y","timestamp":"2026-11-24T10:00:00Z"}"#, "id"),
        ("customer.created", br#"{"eventId":"b2","id":5,"name":"x","email":"x@y","timestamp":"2026-11-24T10:00:00Z"}"#, "id"),
        ("inventory.updated", br#"{"eventId":"b3","id":"p2","name":"Phone","stock":"lots","timestamp":"2026-11-24T10:00:00Z"}"#, "stock"),
    ];
    for (key, body, _) in &bad {
        broker.publish(key, body).await;
    }
    host.wait_counts("merge", 1, bad.len() as u64).await;
    let dead = broker
        .drain_exactly(&host.config.dead_letter_queue("merge"), bad.len())
        .await;
    for ((_, body, expected), (_, dead_body, headers)) in bad.iter().zip(&dead) {
        assert_eq!(dead_body.as_slice(), *body);
        let reason = &headers
            .iter()
            .find(|(k, _)| k == "x-switchyard-reason")
            .unwrap()
            .1;
        assert!(
            reason.contains(expected),
            "reason {reason:?} should mention {expected:?}"
        );
    }
    let (_, c1) = host.get("/analytics/collections/customers/c1").await;
    assert_eq!(c1["name"], "ann", "valid state untouched");
    let (status, _) = host.get("/analytics/collections/products/p2").await;
    assert_eq!(status, 404);
    host.cleanup(&["merge"]).await;
}
