//! Quorum queues (`--queue-type quorum`): the plugin, retry and dead-letter
//! queues are declared as quorum queues, and everything the classic ones
//! do still holds: events are applied once, retried after their delay
//! (the TTL of a quorum retry queue expires them back into the plugin's
//! queue), dead-lettered with their story, listed and replayed. A queue
//! that already exists with the other type is refused with a message that
//! says how to move, and the host carries on by itself once it is gone.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::ChildHost;
use common::{TestBroker, TestHost, eventually, plugin_file};
use lapin::options::QueueDeleteOptions;
use serde_json::{Value, json};
use switchyard::config::QueueType;

fn event(id: &str, extra: Value) -> (String, Vec<u8>) {
    let mut body = json!({ "eventId": id });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    ("test.event".to_string(), serde_json::to_vec(&body).unwrap())
}

/// The type (`classic`, `quorum`) of each queue whose name starts with
/// `prefix`, as the broker lists them.
fn queue_types(prefix: &str) -> Vec<(String, String)> {
    let out = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name", "type"])
        .output()
        .expect("rabbitmqctl is installed with RabbitMQ");
    let mut queues: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(name, _)| name.starts_with(&format!("{prefix}.")))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect();
    queues.sort();
    queues
}

/// Runs `switchyard dlq <args>` against the test host's broker and names.
fn dlq(host: &TestHost, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("dlq")
        .args(args)
        .env("AMQP_URL", host.config.amqp_url())
        .env("SWITCHYARD_QUEUE_PREFIX", &host.config.queue_prefix)
        .env("SWITCHYARD_QUEUE_TYPE", "quorum")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "switchyard dlq {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn event_ids(listed: &str) -> Vec<String> {
    let mut ids: Vec<String> = listed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event_id"].to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_quorum_queues_events_apply_retry_dead_letter_and_replay() {
    let host = TestHost::start_with(&["counter"], |c| {
        c.queue_type = QueueType::Quorum;
        c.max_attempts = 3;
        c.retry_delay_ms = 500;
    })
    .await;
    host.wait_healthy().await;
    let prefix = host.config.queue_prefix.clone();
    let c = &host.config;
    let mut expected: Vec<(String, String)> = [
        c.queue_name("counter"),
        c.dead_letter_queue("counter"),
        c.retry_queue("counter", 500),
        c.retry_queue("counter", 1000),
    ]
    .into_iter()
    .map(|q| (q, "quorum".to_owned()))
    .collect();
    expected.sort();
    assert_eq!(queue_types(&prefix), expected);

    let broker = TestBroker::connect(&host.config).await;
    let mut messages = vec![
        event("flaky", json!({ "fail_times": "2" })),
        event("always-retry", json!({ "misbehave": "retry" })),
        event("rejected", json!({ "reject": "no such customer" })),
    ];
    messages.extend((0..500).map(|i| event(&format!("other-{i}"), json!({}))));
    messages.push(event("other-7", json!({})));
    broker.publish_many(&messages).await;
    // 500 others and the flaky one (third attempt, after 0.5 s then 1 s);
    // the rejected one at once, the one that always retries after three.
    host.wait_counts("counter", 501, 2).await;
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(total, json!({ "count": 501 }), "each applied once");

    // Listing leaves them in the quorum dead-letter queue, twice over.
    let listed = dlq(&host, &["list", "counter", "--json"]);
    let ids = event_ids(&listed);
    assert_eq!(ids, ["\"always-retry\"", "\"rejected\""], "{listed}");
    assert_eq!(
        event_ids(&dlq(&host, &["list", "counter", "--json"])),
        ids,
        "still there"
    );
    let gave_up = listed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["event_id"] == "always-retry")
        .unwrap();
    assert_eq!(gave_up["attempts"], 3, "{gave_up}");
    let (status, page) = host.get("/plugins/counter/dlq").await;
    assert_eq!((status, &page["total"]), (200, &json!(2)), "{page}");
    let first = serde_json::from_str::<Value>(listed.lines().next().unwrap()).unwrap();
    assert_eq!(
        page["items"][0]["event_id"], first["event_id"],
        "oldest first, listing after listing: {page}"
    );

    // The fixed plugin takes both back.
    std::fs::copy(
        plugin_file("counter-variant"),
        host.plugin_dir().join("counter.wasm"),
    )
    .unwrap();
    eventually("the fixed counter", Duration::from_secs(20), || async {
        host.plugin("counter").await["version"]
            .as_str()
            .is_some_and(|v| v.ends_with("+fixed"))
    })
    .await;
    let out = dlq(&host, &["replay", "counter"]);
    assert_eq!(out.trim(), "replayed 2 dead letters of counter");
    eventually("both replayed", Duration::from_secs(20), || async {
        host.get("/analytics/collections/counts/total").await.1 == json!({ "count": 503 })
    })
    .await;
    assert!(
        broker
            .drain(&host.config.dead_letter_queue("counter"))
            .await
            .is_empty()
    );
    assert_eq!(host.applied_in_store("counter"), 503);
    broker.close().await;
    host.cleanup(&["counter"]).await;
}

/// What the host says about `queues` (the plugin's queue first) of type
/// `existing` when `--queue-type` is the other one.
fn how_to_move(queues: &[String], existing: &str, wanted: &str) -> String {
    format!(
        "queue {} is {existing} but --queue-type is {wanted}: drain it (run with --queue-type \
         {existing} until it holds no message) and delete it (rabbitmqctl delete_queue {}), and \
         so for {} ({existing} too), or keep --queue-type {existing}",
        queues[0],
        queues[0],
        queues[1..].join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_of_the_other_type_are_refused_with_how_to_move() {
    // A classic host declared its queues, and stopped.
    let mut host = ChildHost::start(&["counter"]).await;
    host.wait_healthy().await;
    host.terminate(Duration::from_secs(20)).await;
    let c = &host.config;
    let mut queues = vec![c.queue_name("counter"), c.dead_letter_queue("counter")];
    queues.extend(
        c.retry_delays_ms()
            .into_iter()
            .map(|ms| c.retry_queue("counter", ms)),
    );
    let prefix = c.queue_prefix.clone();

    // Started again with quorum queues: it consumes nothing and says why.
    host.config.queue_type = QueueType::Quorum;
    host.restart().await;
    let said = how_to_move(&queues, "classic", "quorum");
    eventually("/health to say why", Duration::from_secs(30), || async {
        let (status, health) = host.get("/health").await;
        status == 503 && health["error"] == format!("broker not connected: {said}")
    })
    .await;
    assert!(host.log_count(&said) >= 1, "{}", host.log_tail(20));

    // As told: the queues go, and the host carries on by itself.
    let broker = TestBroker::connect(&host.config).await;
    for queue in &queues {
        broker
            .channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    host.wait_healthy().await;
    let types = queue_types(&prefix);
    assert_eq!(types.len(), queues.len(), "{types:?}");
    assert!(types.iter().all(|(_, kind)| kind == "quorum"), "{types:?}");

    // And back: a classic host finds quorum queues.
    host.terminate(Duration::from_secs(20)).await;
    host.config.queue_type = QueueType::Classic;
    host.restart().await;
    let said = how_to_move(&queues, "quorum", "classic");
    eventually("/health to say why", Duration::from_secs(30), || async {
        let (status, health) = host.get("/health").await;
        status == 503 && health["error"] == format!("broker not connected: {said}")
    })
    .await;
    broker.close().await;
    host.cleanup(&["counter"]).await;
}
