//! The broker pushes back: under a memory alarm RabbitMQ blocks every
//! connection that publishes (`connection.blocked`) until the alarm
//! clears. The host says so: `/health` answers 503 with the broker's
//! reason, the log has one line when a connection's block starts and one
//! when it ends (not one per message), a producer's `/plugins` entry shows
//! it; and once the alarm clears everything finishes, each event applied
//! exactly once.
//!
//! The alarm blocks every publisher on this machine's broker, so this is
//! its own test binary holding the exclusive [`BrokerLock`] while it runs,
//! and the broker's watermark is put back even if the test fails.

mod common;

use std::time::Duration;

use common::broker_lock::{BrokerLock, MemoryAlarm};
use common::process::ChildHost;
use common::upstream::{Paging, Upstream};
use common::{TestBroker, eventually, plugin_entry};
use serde_json::{Value, json};

const PLUGINS: &[&str] = &["counter", "crm-producer"];
/// Events that fail twice: their second failure is sent to a retry queue
/// while the alarm is on, which blocks the pipeline's connection.
const FLAKY: usize = 50;
const EVENTS: usize = 2000;
/// Long enough for the alarm to be raised between an event's first and
/// second attempts.
const RETRY_DELAY_MS: u64 = 5000;
const REASON: &str = "low on memory";

fn customers(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({ "id": format!("c{i}"), "name": format!("n{i}"), "email": format!("n{i}@test.com") }))
        .collect()
}

fn event(id: String, extra: Value) -> (String, Vec<u8>) {
    let mut body = json!({ "eventId": id });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    ("test.event".to_owned(), serde_json::to_vec(&body).unwrap())
}

async fn counted(host: &ChildHost) -> u64 {
    match host.get("/analytics/collections/counts/total").await {
        (200, total) => total["count"].as_u64().expect("a count"),
        (404, _) => 0,
        (status, body) => panic!("counts/total: {status} {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_is_reported_while_it_lasts_and_nothing_is_lost() {
    let lock = BrokerLock::exclusive().await;
    println!("broker lock taken after {:.1?}", lock.waited());
    let upstream = Upstream::start(customers(5), Paging::None, 0).await;
    let mut host = ChildHost::start_with(PLUGINS, |c| {
        upstream.configure(c, "crm-producer", 300);
        c.retry_delay_ms = RETRY_DELAY_MS;
    })
    .await;
    host.wait_healthy().await;
    eventually("the first customers", Duration::from_secs(30), || async {
        counted(&host).await == 5
    })
    .await;

    let broker = TestBroker::connect(&host.config).await;
    let mut messages: Vec<_> = (0..FLAKY)
        .map(|i| event(format!("flaky-{i}"), json!({ "fail_times": "2" })))
        .collect();
    messages.extend((0..EVENTS).map(|i| event(format!("event-{i}"), json!({}))));
    broker.publish_many(&messages).await;
    broker.close().await;
    eventually(
        "every flaky event's first failure",
        Duration::from_secs(30),
        || async { host.log_count("event will be retried") == FLAKY },
    )
    .await;

    let alarm = MemoryAlarm::raise().await;
    // Changes upstream: the producer's next poll publishes them, and waits.
    upstream.set(customers(10));
    eventually(
        "/health to say the broker blocks publishing",
        Duration::from_secs(30),
        || async {
            let (status, health) = host.get("/health").await;
            status == 503 && health["error"] == format!("broker blocked publishing: {REASON}")
        },
    )
    .await;
    eventually(
        "the producer's entry to say its publishing is blocked",
        Duration::from_secs(30),
        || async {
            let producer = plugin_entry(&host.get("/plugins").await.1, "crm-producer");
            producer["producer"]["publishing_blocked"]["reason"] == REASON
        },
    )
    .await;
    // The pipeline's connection is blocked too once the flaky events'
    // second failures are sent to their retry queue.
    eventually(
        "both connections blocked",
        Duration::from_secs(30),
        || async { host.log_count("broker blocked publishing") == 2 },
    )
    .await;
    let during = counted(&host).await;
    let (_, health) = host.get("/health").await;
    println!("under the alarm: counter at {during}; /health {health}");
    alarm.clear().await;

    host.wait_healthy().await;
    let total = (5 + 5 + EVENTS + FLAKY) as u64;
    eventually("every event applied", Duration::from_secs(60), || async {
        counted(&host).await >= total
    })
    .await;
    let producer = plugin_entry(&host.get("/plugins").await.1, "crm-producer");
    assert_eq!(
        producer["producer"]["publishing_blocked"],
        Value::Null,
        "{producer}"
    );
    assert_eq!(
        (
            host.log_count("broker blocked publishing"),
            host.log_count("broker unblocked publishing")
        ),
        (2, 2),
        "one line when each connection's block starts, one when it ends\n{}",
        host.log_tail(40)
    );

    for line in host.log_lines("blocked publishing") {
        println!("{line}");
    }

    let (status, _) = host.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "the host exited with {status}");
    let store = host.open_store();
    assert_eq!(
        store.blocking().applied_count("counter").unwrap(),
        total,
        "each event applied once"
    );
    assert_eq!(counted_in_store(&store), total);
    let broker = TestBroker::connect(&host.config).await;
    let dead = broker
        .drain(&host.config.dead_letter_queue("counter"))
        .await;
    assert!(dead.is_empty(), "no dead letters: {dead:?}");
    broker.close().await;
    host.cleanup(PLUGINS).await;
}

/// The counter's committed count.
fn counted_in_store(store: &switchyard::store::Store) -> u64 {
    let count = store.blocking().state_get("counter", "count").unwrap();
    u64::from_le_bytes(count.expect("a count").try_into().unwrap())
}
