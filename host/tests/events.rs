//! `GET /events/{eventId}`: an event's journey through the plugins of a
//! live host, on the real broker with the real merge and relay plugins
//! (applied, dead-lettered with the reason, published by a plugin, never
//! seen; ids with `/`, unicode, over-long), and on the embedded bus.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;

use common::upstream::{Paging, Upstream};
use common::{TestBroker, TestHost, customer_event, eventually};

const PLUGINS: [&str; 2] = ["merge", "relay"];
/// Most messages one search of a dead-letter queue looks at (README).
const SEARCH_LIMIT: usize = 10_000;

/// The journey of `id`, asked with the id percent-encoded.
async fn journey(host: &TestHost, id: &str) -> Value {
    let (status, body) = host.get(&format!("/events/{}", encode(id))).await;
    assert_eq!(status, 200, "{id}: {body}");
    assert_eq!(body["eventId"], id);
    body
}

/// Percent-encodes everything but unreserved characters.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The entry of `plugin` in a journey.
fn entry<'a>(journey: &'a Value, plugin: &str) -> &'a Value {
    journey["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin"] == plugin)
        .unwrap_or_else(|| panic!("no {plugin} in {journey}"))
}

/// Waits until `plugin`'s part of `id`'s journey has `status`.
async fn wait_status(host: &TestHost, id: &str, plugin: &str, status: &str) -> Value {
    eventually(
        &format!("{plugin} to report {status} for {id}"),
        Duration::from_secs(30),
        || async { entry(&journey(host, id).await, plugin)["status"] == status },
    )
    .await;
    journey(host, id).await
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|t| {
        t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.starts_with("20")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_journey_on_the_broker() {
    let host = TestHost::start(&PLUGINS).await;
    host.wait_healthy().await;
    let plugins = host.get("/plugins").await.1;
    let sha = |name: &str| common::plugin_entry(&plugins, name)["sha256"].clone();
    let version = |name: &str| common::plugin_entry(&plugins, name)["version"].clone();

    // Ids our fixtures never use: unicode, spaces, and slashes.
    let applied = "ev applied/ünïcode ✓";
    let relayed = "ev/relayed 🚀";
    let rejected = "ev-rejected";
    let broker = TestBroker::connect(&host.config).await;
    broker
        .publish(
            "customer.created",
            &customer_event(applied, "c1", "ann", "2026-01-01T00:00:00Z"),
        )
        .await;
    let payload = json!({ "id": "c2", "name": "bob", "email": "bob@test.com",
        "eventType": "customer.created", "timestamp": "2026-01-01T00:00:00Z" });
    broker
        .publish(
            "relay.in",
            json!({ "eventId": relayed, "to": "customer.created", "payload": payload })
                .to_string()
                .as_bytes(),
        )
        .await;
    broker
        .publish(
            "relay.in",
            json!({ "eventId": rejected, "to": "x", "payload": 5 })
                .to_string()
                .as_bytes(),
        )
        .await;
    // An id past the limit: dead-lettered by the host before any plugin.
    let too_long = "x".repeat(1025);
    broker
        .publish(
            "relay.in",
            json!({ "eventId": too_long }).to_string().as_bytes(),
        )
        .await;
    broker.close().await;

    // Applied by merge, never seen by relay.
    let j = wait_status(&host, applied, "merge", "applied").await;
    let merge = entry(&j, "merge");
    assert_eq!(merge["sha256"], sha("merge"), "{j}");
    assert_eq!(merge["version"], version("merge"), "{j}");
    assert!(is_rfc3339(&merge["appliedAt"]), "{j}");
    assert_eq!(entry(&j, "relay")["status"], "not-seen", "{j}");
    assert_eq!(j["published"], json!([]));
    assert_eq!(j["complete"], true, "{j}");

    // Applied by relay, which published an event because of it, which
    // merge applied in turn.
    let child = format!("{relayed}/relay/0");
    let j = wait_status(&host, relayed, "relay", "applied").await;
    assert_eq!(entry(&j, "relay")["version"], version("relay"), "{j}");
    assert_eq!(entry(&j, "merge")["status"], "not-seen", "{j}");
    let published = j["published"].as_array().unwrap();
    assert_eq!(published.len(), 1, "{j}");
    assert_eq!(published[0]["eventId"], child.as_str());
    assert_eq!(published[0]["plugin"], "relay");
    assert_eq!(published[0]["routingKey"], "customer.created");
    assert!(is_rfc3339(&published[0]["committedAt"]), "{j}");
    let j = wait_status(&host, &child, "merge", "applied").await;
    assert_eq!(entry(&j, "relay")["status"], "not-seen", "{j}");
    // The same id with its slashes left raw in the path.
    let (status, raw) = host
        .get(&format!("/events/{}/relay/0", encode(relayed)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(raw["eventId"], child.as_str());
    assert_eq!(entry(&raw, "merge")["status"], "applied");

    // Dead-lettered by relay, with the plugin's reason; still in the queue.
    let dead_letters = || async { host.get("/plugins/relay/dlq").await.1 };
    eventually("both dead letters", Duration::from_secs(30), || async {
        dead_letters().await["total"] == 2
    })
    .await;
    let j = wait_status(&host, rejected, "relay", "dead-lettered").await;
    let relay = entry(&j, "relay");
    assert_eq!(relay["reason"], "payload must be an object", "{j}");
    assert_eq!(relay["sha256"], sha("relay"), "{j}");
    assert_eq!(relay["version"], version("relay"), "{j}");
    assert_eq!(relay["attempts"], 1, "{j}");
    assert!(is_rfc3339(&relay["failedAt"]), "{j}");
    assert_eq!(entry(&j, "merge")["status"], "not-seen");
    assert_eq!(j["complete"], true, "{j}");
    let again = journey(&host, rejected).await;
    assert_eq!(entry(&again, "relay")["status"], "dead-lettered");
    let dlq = dead_letters().await;
    assert_eq!(dlq["total"], 2, "the search took nothing out: {dlq}");

    // Never seen by anyone: 200, every plugin not-seen.
    let j = journey(&host, "never-sent").await;
    let statuses: Vec<_> = j["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["plugin"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("merge", "not-seen"), ("relay", "not-seen")]);
    assert_eq!(j["complete"], true);

    // Not an id: a 400 that says why.
    let (status, body) = host.get(&format!("/events/{too_long}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("1025 bytes long, over the limit of 1024"),
        "{body}"
    );
    let (status, body) = host.get("/events/").await;
    assert_eq!(status, 400, "{body}");
    // The over-long id never reached relay: dead-lettered, saying why.
    let letters = dlq["items"].as_array().unwrap();
    assert!(
        letters.iter().any(|l| l["reason"]
            .as_str()
            .is_some_and(|r| r.contains("eventId is 1025 bytes long"))),
        "{dlq}"
    );
    host.cleanup(&PLUGINS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_journey_on_the_embedded_bus() {
    // A customer merge takes, and one whose name is a number: rejected.
    let upstream = Upstream::start(
        vec![
            json!({ "id": "c1", "name": "ann", "email": "ann@test.com" }),
            json!({ "id": "c2", "name": 42, "email": "bob@test.com" }),
        ],
        Paging::None,
        0,
    )
    .await;
    let mut host = TestHost::start_with(&["merge", "crm-producer"], |c| {
        upstream.configure(c, "crm-producer", 300);
        c.bus = switchyard::config::Bus::Embedded;
        // Nothing listens there: the journey must not need it.
        c.amqp_url = Some("amqp://guest:guest@127.0.0.1:1/%2f".into());
    })
    .await;
    host.wait_healthy().await;

    // The dead letter the embedded bus kept in the store.
    eventually("the rejected customer", Duration::from_secs(30), || async {
        host.get("/plugins/merge/dlq").await.1["total"] == 1
    })
    .await;
    let (_, dlq) = host.get("/plugins/merge/dlq").await;
    let dead_id = dlq["items"][0]["event_id"].as_str().unwrap().to_owned();
    let j = journey(&host, &dead_id).await;
    let merge = entry(&j, "merge");
    assert_eq!(merge["status"], "dead-lettered", "{j}");
    assert!(
        merge["reason"].as_str().unwrap().contains("name"),
        "the plugin's reason: {j}"
    );
    assert!(is_rfc3339(&merge["failedAt"]), "{j}");
    assert_eq!(j["complete"], true);
    let statuses: Vec<_> = j["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["merge"], "producers consume no events: {j}");

    // An event written through the API, applied by merge.
    let (status, written) = host
        .http
        .post(format!("{}/analytics/data", host.base))
        .header("idempotency-key", "k/1 x")
        .json(
            &json!({ "customer": { "id": "c9", "name": "cy", "email": "cy@test.com" },
                       "products": [] }),
        )
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 200);
    let written: Value = written.json().await.unwrap();
    let id = written["eventId"].as_str().unwrap();
    assert_eq!(id, "api/k/1 x");
    let j = journey(&host, id).await;
    assert_eq!(entry(&j, "merge")["status"], "applied", "{j}");
    assert!(is_rfc3339(&entry(&j, "merge")["appliedAt"]), "{j}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_dead_letter_queue_is_searched_in_part_and_left_whole() {
    use lapin::BasicProperties;
    use lapin::options::BasicPublishOptions;

    let host = TestHost::start(&PLUGINS).await;
    host.wait_healthy().await;
    // More dead letters than one search looks at: the first is the one
    // asked for, the last one too (past the bound).
    let n = SEARCH_LIMIT + 1;
    let dlq = host.config.dead_letter_queue("relay");
    let broker = TestBroker::connect(&host.config).await;
    let mut confirms = Vec::with_capacity(n);
    for i in 0..n {
        let id = if i == 0 || i == n - 1 {
            "needle"
        } else {
            "hay"
        };
        let body = json!({ "eventId": id, "i": i }).to_string();
        confirms.push(
            broker
                .channel
                .basic_publish(
                    "".into(),
                    dlq.as_str().into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .unwrap(),
        );
    }
    for c in futures_util::future::join_all(confirms).await {
        assert!(c.unwrap().is_ack());
    }
    broker.close().await;

    let j = journey(&host, "needle").await;
    let relay = entry(&j, "relay");
    assert_eq!(relay["status"], "dead-lettered", "the oldest is found: {j}");
    let search = &relay["deadLetterSearch"];
    assert_eq!(search["complete"], false, "{j}");
    assert_eq!(search["inQueue"], n, "{j}");
    let searched = search["searched"].as_u64().unwrap();
    assert!(
        (1..n as u64).contains(&searched),
        "cut at the bound or the time limit: {j}"
    );
    assert_eq!(j["complete"], false);
    assert!(
        entry(&j, "merge").get("deadLetterSearch").is_none(),
        "merge's empty queue was searched whole: {j}"
    );
    let (_, listed) = host.get("/plugins/relay/dlq?limit=1").await;
    assert_eq!(listed["total"], n, "nothing taken out: {listed}");
    assert_eq!(listed["items"][0]["event_id"], "needle", "order kept");
    host.cleanup(&PLUGINS).await;
}

/// An id PostgreSQL could not index (over 2.7 kB, incompressible) used to
/// fail every commit of its batch, and the batch ran again for ever: now
/// such an id is dead-lettered before the plugin, and the queue flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_too_long_to_index_is_dead_lettered_on_postgres() {
    let host = TestHost::start_on(common::backend::Backend::Postgres, &PLUGINS).await;
    host.wait_healthy().await;
    // Hex of a hash chain: nothing for PostgreSQL to compress.
    let huge: String = (0u32..)
        .flat_map(|i| hex::encode(sha2::Sha256::digest(i.to_be_bytes())).into_bytes())
        .take(3000)
        .map(char::from)
        .collect();
    let broker = TestBroker::connect(&host.config).await;
    let customer = |id: &str, c: &str| {
        (
            "customer.created".to_owned(),
            customer_event(id, c, "ann", "2026-01-01T00:00:00Z"),
        )
    };
    // Merge keeps customers by their own id: the event id is only
    // recorded as applied.
    broker
        .publish_many(&[customer(&huge, "c1"), customer("after-the-huge-one", "c2")])
        .await;
    broker.close().await;
    let j = wait_status(&host, "after-the-huge-one", "merge", "applied").await;
    assert_eq!(j["complete"], true, "{j}");
    let (_, dlq) = host.get("/plugins/merge/dlq").await;
    assert_eq!(dlq["total"], 1, "{dlq}");
    assert!(
        dlq["items"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("eventId is 3000 bytes long, over the limit of 1024"),
        "{dlq}"
    );
    let (status, health) = host.get("/health").await;
    assert_eq!(status, 200, "the store never failed: {health}");
    host.cleanup(&PLUGINS).await;
}
