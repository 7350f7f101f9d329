//! The plugin sandbox: a plugin that traps, loops forever or allocates
//! without end costs one dead-lettered event with the reason; its instance
//! is replaced and the events around it are applied exactly once.

mod common;

use std::time::Instant;

use common::{TestBroker, TestHost};
use serde_json::json;

fn event(id: &str, extra: serde_json::Value) -> (String, Vec<u8>) {
    let mut body = json!({"eventId": id, "id": "x"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    ("test.event".to_string(), serde_json::to_vec(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_a_loop_and_a_memory_hog_each_cost_one_dead_letter() {
    // `relay` (subscribed to `relay.#`) is a well-behaved bystander.
    let host = TestHost::start_with(&["counter", "relay"], |c| {
        c.plugin_timeout_ms = 200;
        c.plugin_memory_mib = 16;
    })
    .await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    let started = Instant::now();
    broker
        .publish_many(&[
            event("good-1", json!({})),
            event("trap", json!({"misbehave": "trap"})),
            event("good-2", json!({})),
            event("spin", json!({"misbehave": "spin"})),
            event("good-3", json!({})),
            event("hog", json!({"misbehave": "hog"})),
            event("good-4", json!({})),
        ])
        .await;
    let bystander: Vec<(String, Vec<u8>)> = (0..2_000)
        .map(|i| {
            let body = json!({ "eventId": format!("bystander-{i}") });
            ("relay.calm".to_string(), serde_json::to_vec(&body).unwrap())
        })
        .collect();
    broker.publish_many(&bystander).await;
    host.wait_counts("counter", 4 + 2_000, 3).await;
    // The bystander went on while the counter's instance was replaced three
    // times and a call hung for its full deadline.
    host.wait_counts("relay", 2_000, 0).await;
    assert_eq!(host.plugin("relay").await["dead_lettered"], 0);
    // The loop was cut by the 200 ms deadline, not left to run.
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );

    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(
        total,
        json!({"count": 4 + 2_000}),
        "the good events applied once each (the counter also counts the bystander's)"
    );
    let dead = broker
        .drain_exactly(&host.config.dead_letter_queue("counter"), 3)
        .await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, _, h)| {
            h.iter()
                .find(|(k, _)| k == "x-switchyard-reason")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert!(reasons[0].starts_with("trap:"), "{reasons:?}");
    assert_eq!(reasons[1], "timeout");
    assert!(
        reasons[2].starts_with("memory limit:")
            && reasons[2].contains("cap of 16 MiB")
            && reasons[2].contains("--plugin-setting counter.memory-mib="),
        "{reasons:?}"
    );
    host.cleanup(&["counter", "relay"]).await;
}
