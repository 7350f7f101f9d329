//! Transient failures and dead letters you can act on: an event that fails
//! transiently is retried after a growing delay (without holding up the
//! rest of the queue) until it succeeds or its attempts run out; a dead
//! letter says why, how often and since when; `switchyard dlq list` shows
//! them and `switchyard dlq replay` sends them through the fixed plugin.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestBroker, TestHost, eventually, plugin_file};
use serde_json::{Value, json};

fn event(id: &str, extra: Value) -> (String, Vec<u8>) {
    let mut body = json!({ "eventId": id });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    ("test.event".to_string(), serde_json::to_vec(&body).unwrap())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no header {name} in {headers:?}"))
}

/// Runs `switchyard dlq <args>` against the test host's broker and names.
fn dlq(host: &TestHost, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("dlq")
        .args(args)
        .env("AMQP_URL", host.config.amqp_url())
        .env("SWITCHYARD_QUEUE_PREFIX", &host.config.queue_prefix)
        .env("SWITCHYARD_EXCHANGE", &host.config.exchange)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_with_backoff_until_it_succeeds() {
    let host = TestHost::start_with(&["counter"], |c| {
        c.max_attempts = 4;
        c.retry_delay_ms = 1000;
    })
    .await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    let started = Instant::now();
    broker
        .publish_many(&[event("flaky", json!({ "fail_times": "2" }))])
        .await;
    // The queue keeps flowing while the flaky event waits.
    let others: Vec<_> = (0..500)
        .map(|i| event(&format!("other-{i}"), json!({})))
        .collect();
    broker.publish_many(&others).await;
    host.wait_counts("counter", 500, 0).await;
    let others_done = started.elapsed();
    host.wait_counts("counter", 501, 0).await;
    let flaky_done = started.elapsed();
    // Two waits, 1 s then 2 s, before the third attempt succeeded.
    assert!(
        flaky_done >= Duration::from_secs(3),
        "retried after {flaky_done:?}: the backoff did not wait"
    );
    assert!(flaky_done < Duration::from_secs(10), "took {flaky_done:?}");
    assert!(
        others_done < Duration::from_secs(3),
        "the other events waited for the flaky one ({others_done:?})"
    );
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(total, json!({ "count": 501 }));
    let plugin = host.plugin("counter").await;
    assert_eq!(plugin["dead_lettered"], 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        broker
            .drain(&host.config.dead_letter_queue("counter"))
            .await
            .is_empty()
    );
    broker.close().await;
    host.cleanup(&["counter"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_end_in_the_dlq_with_their_story_and_replay_through_the_fixed_plugin() {
    let host = TestHost::start_with(&["counter"], |c| {
        c.max_attempts = 3;
        c.retry_delay_ms = 100;
    })
    .await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    broker
        .publish_many(&[
            event("always-retry", json!({ "misbehave": "retry" })),
            event("rejected", json!({ "reject": "no such customer" })),
            event("fine", json!({})),
        ])
        .await;
    host.wait_counts("counter", 1, 1).await;
    eventually(
        "the retried event to give up",
        Duration::from_secs(20),
        || async { host.plugin("counter").await["dead_lettered"] == 2 },
    )
    .await;

    // Listing leaves them where they are.
    let listed = dlq(&host, &["list", "counter", "--json"]);
    let letters: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{listed}");
    let gave_up = letters
        .iter()
        .find(|l| l["event_id"] == "always-retry")
        .unwrap();
    assert_eq!(gave_up["attempts"], 3);
    assert_eq!(gave_up["routing_key"], "test.event", "original key kept");
    assert!(
        gave_up["reason"]
            .as_str()
            .unwrap()
            .ends_with("(gave up after 3 attempts)"),
        "{gave_up}"
    );
    assert!(gave_up["first_failed_at_ms"].as_i64() < gave_up["failed_at_ms"].as_i64());
    let rejected = letters
        .iter()
        .find(|l| l["event_id"] == "rejected")
        .unwrap();
    assert_eq!(rejected["reason"], "no such customer");
    assert_eq!(rejected["attempts"], 1);
    let text = dlq(&host, &["list", "counter"]);
    assert!(text.starts_with("2 dead letters in"), "{text}");
    let (status, page) = host.get("/plugins/counter/dlq?limit=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 2);
    assert_eq!(
        page["items"][0]["event_id"], letters[0]["event_id"],
        "oldest first"
    );
    assert!(text.contains("no such customer"), "{text}");

    // The headers of a dead letter, as any AMQP tool sees them.
    let dead = broker
        .drain_exactly(&host.config.dead_letter_queue("counter"), 2)
        .await;
    for (key, body, headers) in &dead {
        assert_eq!(key, "test.event");
        let original: Value = serde_json::from_slice(body).unwrap();
        assert!(original["eventId"] == "always-retry" || original["eventId"] == "rejected");
        assert_eq!(header(headers, "x-switchyard-plugin"), "counter");
        assert_eq!(
            header(headers, "x-switchyard-plugin-version").len(),
            64,
            "a sha256"
        );
    }
    // Drained to read them: send both again through the unfixed plugin.
    broker
        .publish_many(&[
            event("always-retry", json!({ "misbehave": "retry" })),
            event("rejected", json!({ "reject": "no such customer" })),
        ])
        .await;
    eventually("both failed again", Duration::from_secs(20), || async {
        host.plugin("counter").await["dead_lettered"] == 4
    })
    .await;

    // Fix the plugin, then replay: each applied once.
    let fixed = plugin_file("counter-variant");
    std::fs::copy(&fixed, host.plugin_dir().join("counter.wasm")).unwrap();
    eventually("the fixed counter", Duration::from_secs(20), || async {
        host.plugin("counter").await["version"]
            .as_str()
            .is_some_and(|v| v.ends_with("+fixed"))
    })
    .await;
    let out = dlq(&host, &["replay", "counter"]);
    assert_eq!(out.trim(), "replayed 2 dead letters of counter");
    host.wait_counts("counter", 3, 4).await;
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(total, json!({ "count": 3 }));
    // Nothing left, and a second replay (through the admin API) changes
    // nothing.
    let (status, replayed) = host
        .post("/plugins/counter/dlq/replay", "application/json", "")
        .await;
    assert_eq!(
        (status, &replayed["replayed"]),
        (200, &json!(0)),
        "{replayed}"
    );
    broker
        .publish_many(&[event("rejected", json!({ "reject": "no such customer" }))])
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(
        total,
        json!({ "count": 3 }),
        "a replayed event is not applied twice"
    );
    broker.close().await;
    host.cleanup(&["counter"]).await;
}
