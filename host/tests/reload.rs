//! Hot reload: a plugin file that lands, is replaced, goes bad or goes away
//! while events flow changes the running plugin between batches, and not
//! one event is lost or applied twice. Real broker, real `.wasm` files: the
//! `merge-variant` and `relay-variant` builds differ visibly from the
//! shipped ones (a `"build":"variant"` mark, an extra subscription).
//! What goes through the store (reloads under load, published events,
//! queue bindings) runs on each store backend.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::backend::Backend;
use common::{TestBroker, TestHost, customer_event, eventually, plugin_file};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Writes `src` beside the target and renames it in (an atomic replace).
fn replace_by_rename(dir: &Path, name: &str, src: &Path) {
    let partial = dir.join(format!(".{name}.wasm.partial"));
    std::fs::copy(src, &partial).unwrap();
    std::fs::rename(&partial, dir.join(format!("{name}.wasm"))).unwrap();
}

/// Overwrites the target in place, as `cp` does.
fn replace_in_place(dir: &Path, name: &str, src: &Path) {
    std::fs::write(
        dir.join(format!("{name}.wasm")),
        std::fs::read(src).unwrap(),
    )
    .unwrap();
}

async fn wait_version(host: &TestHost, plugin: &str, sha256: &str) {
    eventually(
        &format!("{plugin} to run version {}", &sha256[..12]),
        Duration::from_secs(60),
        || async { host.plugin(plugin).await["sha256"] == sha256 },
    )
    .await;
}

/// How many events the plugin file `sha256` of `merge` applied (within the
/// retention).
async fn applied_by_version(host: &TestHost, sha256: &str) -> u64 {
    let (_, versions) = host.get("/plugins/merge/versions").await;
    versions["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["sha256"] == sha256)
        .and_then(|v| v["events_applied"].as_u64())
        .unwrap_or(0)
}

async fn wait_error(host: &TestHost, plugin: &str, needle: &str) -> Value {
    let mut seen = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        seen = host.plugin(plugin).await["last_error"].clone();
        if seen["error"].as_str().is_some_and(|e| e.contains(needle)) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{plugin}: no last_error containing {needle:?}; last seen {seen}");
}

/// Every `{key, document}` of a collection, through the API's pages.
async fn all_documents(host: &TestHost, collection: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(key) => format!("/analytics/collections/{collection}?limit=1000&after={key}"),
            None => format!("/analytics/collections/{collection}?limit=1000"),
        };
        let (status, page) = host.get(&path).await;
        assert_eq!(status, 200, "{page}");
        docs.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return docs,
        }
    }
}

fn customer_events(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| {
            (
                "customer.created".to_string(),
                customer_event(
                    &format!("ev-{i}"),
                    &format!("c{i:06}"),
                    &format!("n{i}"),
                    "2026-11-24T08:00:00Z",
                ),
            )
        })
        .collect()
}

/// Publishes `events` in chunks with pauses, so that they flow for a while.
fn publish_slowly(
    broker: TestBroker,
    events: Vec<(String, Vec<u8>)>,
    pause: Duration,
) -> tokio::task::JoinHandle<TestBroker> {
    tokio::spawn(async move {
        for chunk in events.chunks(500) {
            broker.publish_many(chunk).await;
            tokio::time::sleep(pause).await;
        }
        broker
    })
}

per_backend!(
    replacing_merge_ten_times_under_load_applies_each_event_once_by_one_version,
    a_plugin_deleted_under_load_and_put_back_loses_nothing,
    a_published_event_reaches_the_next_plugin_and_a_loop_stops_at_the_hop_limit,
    changed_subscriptions_rebind_the_queue_without_losing_kept_keys,
);

async fn replacing_merge_ten_times_under_load_applies_each_event_once_by_one_version(
    backend: Backend,
) {
    const EVENTS: usize = 20_000;
    let host = TestHost::start_on(backend, &["merge"]).await;
    host.wait_healthy().await;
    let (shipped, variant) = (plugin_file("merge"), plugin_file("merge-variant"));
    let (sha_shipped, sha_variant) = (sha256_of(&shipped), sha256_of(&variant));
    assert_ne!(sha_shipped, sha_variant);
    // Events flow through every swap: half a share is published (and
    // confirmed) right before each one, whatever the machine's speed. The
    // other half goes after the new version runs, and the round waits for
    // that version to apply some of it: so every version applies events
    // by construction, on a fast machine or a loaded one, and the rest
    // follows the last swap.
    let broker = TestBroker::connect(&host.config).await;
    let events = customer_events(0..EVENTS);
    let mut shares = events.chunks(EVENTS / 24);
    broker.publish_many(shares.next().unwrap()).await;
    host.wait_counts("merge", 1, 0).await;
    for round in 0..10 {
        broker.publish_many(shares.next().unwrap()).await;
        let (file, sha) = match round % 2 {
            0 => (&variant, &sha_variant),
            _ => (&shipped, &sha_shipped),
        };
        let before = applied_by_version(&host, sha).await;
        // Both ways users replace files: rename in, and copy over in place.
        if round % 4 < 2 {
            replace_by_rename(host.plugin_dir(), "merge", file);
        } else {
            replace_in_place(host.plugin_dir(), "merge", file);
        }
        wait_version(&host, "merge", sha).await;
        broker.publish_many(shares.next().unwrap()).await;
        eventually(
            &format!("round {round}: version {} to apply events", &sha[..12]),
            Duration::from_secs(120),
            || async { applied_by_version(&host, sha).await > before },
        )
        .await;
    }
    for rest in shares {
        broker.publish_many(rest).await;
    }
    broker.close().await;
    eventually("every event applied", Duration::from_secs(300), || async {
        host.applied_in_store("merge") >= EVENTS as u64
    })
    .await;

    // Exactly once, each by one version, and the counts per version add up.
    assert_eq!(host.applied_in_store("merge"), EVENTS as u64);
    let (_, versions) = host.get("/plugins/merge/versions").await;
    let per_version: HashMap<String, u64> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["sha256"].as_str().unwrap().to_owned(),
                v["events_applied"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(per_version.len(), 2, "{versions}");
    assert_eq!(per_version.values().sum::<u64>(), EVENTS as u64);
    assert!(per_version[&sha_shipped] > 0 && per_version[&sha_variant] > 0);
    // What each version wrote shows which one applied the event, and agrees
    // with the version recorded for it.
    let docs = all_documents(&host, "customers").await;
    assert_eq!(docs.len(), EVENTS, "one document per event");
    let by_variant = docs
        .iter()
        .filter(|d| d["document"]["build"] == "variant")
        .count() as u64;
    assert_eq!(by_variant, per_version[&sha_variant]);
    let plugin = host.plugin("merge").await;
    assert_eq!(plugin["reloads"], 10);
    assert_eq!(plugin["sha256"], sha_shipped.as_str());
    assert_eq!(plugin["last_error"], Value::Null);
    assert_eq!(plugin["events_applied"], EVENTS as u64);
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_leave_the_running_version_serving_until_a_good_one_lands() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let dir = host.plugin_dir().to_owned();
    let sha_shipped = sha256_of(&plugin_file("merge"));
    let broker = TestBroker::connect(&host.config).await;
    let mut sent = 0;
    let mut send_one = async |broker: &TestBroker| {
        broker
            .publish("customer.created", &customer_events(sent..sent + 1)[0].1)
            .await;
        sent += 1;
        host.wait_counts("merge", sent as u64, 0).await;
    };
    send_one(&broker).await;

    // Not WebAssembly at all.
    std::fs::write(dir.join("merge.wasm"), b"\0asm but not really").unwrap();
    let error = wait_error(&host, "merge", "not a WebAssembly component").await;
    assert!(error["at_ms"].as_i64().unwrap() > 0);
    assert_eq!(host.plugin("merge").await["sha256"], sha_shipped.as_str());
    send_one(&broker).await;

    // A real component of another world.
    replace_in_place(&dir, "merge", &plugin_file("not-a-transformer"));
    wait_error(&host, "merge", "does not implement the world").await;
    send_one(&broker).await;

    // Half a file, closed; the rest arrives a moment later.
    let variant = std::fs::read(plugin_file("merge-variant")).unwrap();
    let (head, tail) = variant.split_at(variant.len() / 2);
    std::fs::write(dir.join("merge.wasm"), head).unwrap();
    wait_error(&host, "merge", "not a WebAssembly component").await;
    assert_eq!(host.plugin("merge").await["sha256"], sha_shipped.as_str());
    send_one(&broker).await;
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("merge.wasm"))
            .unwrap();
        file.write_all(tail).unwrap();
    }
    let sha_variant = sha256_of(&plugin_file("merge-variant"));
    wait_version(&host, "merge", &sha_variant).await;
    let plugin = host.plugin("merge").await;
    assert_eq!(plugin["last_error"], Value::Null, "a good file clears it");
    assert_eq!(plugin["reloads"], 1, "failed files replaced nothing");
    send_one(&broker).await;
    let (_, doc) = host.get("/analytics/collections/customers/c000004").await;
    assert_eq!(doc["build"], "variant", "{doc}");
    let (_, doc) = host.get("/analytics/collections/customers/c000003").await;
    assert_eq!(doc.get("build"), None, "{doc}");
    let (_, listing) = host.get("/plugins").await;
    assert_eq!(listing["failed"], json!([]), "{listing}");
    broker.close().await;
    host.cleanup(&["merge"]).await;
}

async fn a_plugin_deleted_under_load_and_put_back_loses_nothing(backend: Backend) {
    const EVENTS: usize = 8_000;
    let host = TestHost::start_on(backend, &["counter"]).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    let publisher = publish_slowly(
        broker,
        customer_events(0..EVENTS),
        Duration::from_millis(50),
    );
    host.wait_counts("counter", 1_000, 0).await;
    let file = host.plugin_dir().join("counter.wasm");
    std::fs::remove_file(&file).unwrap();
    eventually("counter unloaded", Duration::from_secs(10), || async {
        let (_, body) = host.get("/plugins").await;
        body["plugins"].as_array().unwrap().is_empty()
    })
    .await;
    // Unloaded, its consumer settles the batch in flight, then leaves the
    // queue: only then is the count final.
    let watcher = TestBroker::connect(&host.config).await;
    let queue = host.config.queue_name("counter");
    eventually("the consumer gone", Duration::from_secs(10), || async {
        watcher.consumers(&queue).await == 0
    })
    .await;
    watcher.close().await;
    let applied_while_gone = host.applied_in_store("counter");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        host.applied_in_store("counter"),
        applied_while_gone,
        "an unloaded plugin consumes nothing"
    );
    assert!(applied_while_gone < EVENTS as u64, "unloaded mid-stream");
    std::fs::copy(plugin_file("counter"), &file).unwrap();
    publisher.await.unwrap().close().await;
    eventually("every event applied", Duration::from_secs(60), || async {
        host.applied_in_store("counter") >= EVENTS as u64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host.applied_in_store("counter"), EVENTS as u64);
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(total, json!({ "count": EVENTS }), "each event once");
    host.cleanup(&["counter"]).await;
}

async fn a_published_event_reaches_the_next_plugin_and_a_loop_stops_at_the_hop_limit(
    backend: Backend,
) {
    let host = TestHost::start_on_with(backend, &["relay", "merge"], |c| c.max_hops = 3).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    // Stage one (relay) republishes a customer event; stage two (merge)
    // consumes it.
    let customer: Value = serde_json::from_slice(&customer_event(
        "crm-1",
        "c1",
        "ann",
        "2026-11-24T08:00:00Z",
    ))
    .unwrap();
    let wrapped = json!({ "eventId": "r-1", "to": "customer.created", "payload": customer });
    broker
        .publish("relay.legacy", &serde_json::to_vec(&wrapped).unwrap())
        .await;
    eventually("merge to store c1", Duration::from_secs(20), || async {
        host.get("/analytics/collections/customers/c1").await.0 == 200
    })
    .await;
    let (_, c1) = host.get("/analytics/collections/customers/c1").await;
    assert_eq!(c1["name"], "ann");

    // Relay sends an event to a key it subscribes to itself: round and round.
    broker
        .publish(
            "relay.loop",
            &serde_json::to_vec(&json!({ "eventId": "loop", "to": "relay.loop" })).unwrap(),
        )
        .await;
    let dead = broker
        .drain_exactly(&host.config.dead_letter_queue("relay"), 1)
        .await;
    let (key, body, headers) = &dead[0];
    assert_eq!(key, "relay.loop");
    let body: Value = serde_json::from_slice(body).unwrap();
    // Published with hop 4, past the limit of 3.
    assert_eq!(body["eventId"], "loop/relay/0/relay/0/relay/0/relay/0");
    let reason = &headers
        .iter()
        .find(|(k, _)| k == "x-switchyard-reason")
        .unwrap()
        .1;
    assert!(reason.starts_with("hop limit exceeded"), "{reason}");
    // The original and three republished generations were handled.
    let relayed = all_documents(&host, "relayed").await;
    let round_and_round = relayed
        .iter()
        .filter(|d| d["document"]["routingKey"] == "relay.loop")
        .count();
    assert_eq!(round_and_round, 1 + 3, "{relayed:?}");
    broker.close().await;
    host.cleanup(&["relay", "merge"]).await;
}

async fn changed_subscriptions_rebind_the_queue_without_losing_kept_keys(backend: Backend) {
    const EVENTS: usize = 4_000;
    let host = TestHost::start_on(backend, &["relay"]).await;
    host.wait_healthy().await;
    let bindings = || host.in_store(|db| db.queue_bindings("relay").unwrap());
    assert_eq!(bindings(), vec!["relay.#"]);
    let event = |id: &str| serde_json::to_vec(&json!({ "eventId": id })).unwrap();
    let broker = TestBroker::connect(&host.config).await;
    // `relay.#` stays bound across every version: these must all arrive.
    let steady: Vec<(String, Vec<u8>)> = (0..EVENTS)
        .map(|i| ("relay.steady".to_string(), event(&format!("s{i}"))))
        .collect();
    let publisher = publish_slowly(broker, steady, Duration::from_millis(40));
    let probe = TestBroker::connect(&host.config).await;

    let variant = plugin_file("relay-variant");
    replace_by_rename(host.plugin_dir(), "relay", &variant);
    wait_version(&host, "relay", &sha256_of(&variant)).await;
    eventually("relay2.# bound", Duration::from_secs(10), || async {
        bindings() == vec!["relay.#", "relay2.#"]
    })
    .await;
    probe.publish("relay2.added", &event("added")).await;
    eventually("relay2.added handled", Duration::from_secs(10), || async {
        host.get("/analytics/collections/relayed/added").await.0 == 200
    })
    .await;

    let shipped = plugin_file("relay");
    replace_by_rename(host.plugin_dir(), "relay", &shipped);
    wait_version(&host, "relay", &sha256_of(&shipped)).await;
    eventually("relay2.# unbound", Duration::from_secs(10), || async {
        bindings() == vec!["relay.#"]
    })
    .await;
    probe.publish("relay2.removed", &event("removed")).await;
    probe.publish("relay.after", &event("after")).await;
    eventually("relay.after handled", Duration::from_secs(10), || async {
        host.get("/analytics/collections/relayed/after").await.0 == 200
    })
    .await;
    // Same queue, so had relay2.removed been routed it would be in by now.
    let (status, _) = host.get("/analytics/collections/relayed/removed").await;
    assert_eq!(status, 404, "an unbound key no longer reaches the plugin");

    publisher.await.unwrap().close().await;
    probe.close().await;
    eventually("every steady event", Duration::from_secs(60), || async {
        host.applied_in_store("relay") >= EVENTS as u64 + 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host.applied_in_store("relay"), EVENTS as u64 + 2);
    host.cleanup(&["relay"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_uses_the_compile_cache_and_ignores_a_damaged_entry() {
    let mut host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    assert_eq!(host.plugin("merge").await["from_cache"], false);
    host.restart().await;
    host.wait_healthy().await;
    assert_eq!(host.plugin("merge").await["from_cache"], true);

    let cache = host.config.compile_cache();
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entries[0], bytes).unwrap();
    host.restart().await;
    host.wait_healthy().await;
    assert_eq!(
        host.plugin("merge").await["from_cache"],
        false,
        "a damaged entry is recompiled, never loaded"
    );
    let broker = TestBroker::connect(&host.config).await;
    broker
        .publish("customer.created", &customer_events(0..1)[0].1)
        .await;
    host.wait_counts("merge", 1, 0).await;
    broker.close().await;
    host.restart().await;
    host.wait_healthy().await;
    assert_eq!(host.plugin("merge").await["from_cache"], true, "rewritten");
    host.cleanup(&["merge"]).await;
}
