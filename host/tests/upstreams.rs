//! Producers against upstreams that are not our demo ones: records changed
//! back to an earlier content, the existing CRM's own listing (an id listed
//! twice, no `updatedAt`) with unreadable records added, paginated listings
//! in every supported shape, an answer over the size cap, a walk that
//! fails or is killed half-way, and producer state written by the previous
//! release. Real broker, real `.wasm` files, the merge plugin downstream.

mod common;

use std::time::Duration;

use common::broker_lock::BrokerLock;
use common::process::ChildHost;
use common::upstream::{Paging, Upstream};
use common::{TestHost, documents, eventually, plugin_entry, producer_stat};
use serde_json::{Value, json};

fn customer(id: &str, name: &str) -> Value {
    json!({ "id": id, "name": name, "email": format!("{}@test.com", name.to_lowercase()) })
}

fn product(id: &str, name: &str, stock: u64) -> Value {
    json!({ "id": id, "name": name, "stock": stock })
}

fn customers(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| customer(&format!("c{i:04}"), &format!("name{i}")))
        .collect()
}

async fn field(host: &TestHost, path: &str, field: &str) -> Value {
    host.get(path).await.1[field].clone()
}

async fn change_back(with_updated_at: bool) {
    let stamp = |t: &str, mut r: Value| {
        if with_updated_at {
            r["updatedAt"] = json!(t);
        }
        r
    };
    let ann = stamp("2026-11-24T08:00:00Z", customer("c1", "Ann"));
    let bob = stamp("2026-11-24T09:00:00.5Z", customer("c1", "Bob"));
    let five = stamp("2026-11-24T08:00:00Z", product("p1", "Laptop", 5));
    let three = stamp("2026-11-24T09:00:00.5Z", product("p1", "Laptop", 3));
    let crm = Upstream::start(vec![ann.clone()], Paging::None, 0).await;
    let inventory = Upstream::start(vec![five.clone()], Paging::None, 0).await;
    let plugins = ["crm-producer", "inventory-producer", "merge"];
    let host = TestHost::start_with(&plugins, |c| {
        crm.configure(c, "crm-producer", 200);
        inventory.configure(c, "inventory-producer", 200);
    })
    .await;
    host.wait_healthy().await;
    let state = async || {
        (
            field(&host, "/analytics/collections/customers/c1", "name").await,
            field(&host, "/analytics/collections/products/p1", "stock").await,
        )
    };
    for (c1, p1, name, stock) in [
        (&ann, &five, "Ann", 5),
        (&bob, &three, "Bob", 3),
        // Back to the first content, `updatedAt` included (an upstream
        // restored from its data file).
        (&ann, &five, "Ann", 5),
    ] {
        crm.set(vec![c1.clone()]);
        inventory.set(vec![p1.clone()]);
        eventually(
            &format!("{name} and stock {stock} downstream"),
            Duration::from_secs(20),
            || async { state().await == (json!(name), json!(stock)) },
        )
        .await;
    }
    host.wait_polls("crm-producer", 2).await;
    host.wait_polls("inventory-producer", 2).await;
    assert_eq!(state().await, (json!("Ann"), json!(5)));
    for p in ["crm-producer", "inventory-producer"] {
        assert_eq!(
            producer_stat(&host.plugin(p).await, "events_published"),
            3,
            "{p}"
        );
    }
    assert_eq!(
        host.applied_in_store("merge"),
        6,
        "three changes of two records"
    );
    host.cleanup(&plugins).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_changed_back_to_an_earlier_content_is_applied_again() {
    change_back(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_changed_back_with_its_earlier_updated_at_is_applied_again() {
    change_back(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_existing_crms_listing_is_merged_with_its_last_c5_and_said_wrong_once() {
    // The existing CRM service's own listing (no `updatedAt`, `c5` twice),
    // with two records no producer can use added.
    let listing = vec![
        customer("c1", "crispin"),
        customer("c2", "luck"),
        customer("c3", "amara"),
        customer("c5", "david"),
        json!({ "name": "no id at all", "email": "x@test.com" }),
        customer("c4", "mirela"),
        json!("c6"),
        customer("c5", "Rugaju"),
    ];
    let crm = Upstream::start(listing, Paging::None, 0).await;
    let plugins = ["crm-producer", "merge"];
    let host = TestHost::start_with(&plugins, |c| crm.configure(c, "crm-producer", 200)).await;
    host.wait_healthy().await;
    eventually("five customers merged", Duration::from_secs(20), || async {
        documents(async |p| host.get(p).await, "customers")
            .await
            .len()
            == 5
    })
    .await;
    let (_, data) = host.get("/analytics/data?limit=100").await;
    let names: Vec<&str> = data["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["customer"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["crispin", "luck", "amara", "mirela", "Rugaju"],
        "{data}"
    );

    host.wait_polls("crm-producer", 4).await;
    let producer = host.plugin("crm-producer").await;
    assert_eq!(producer_stat(&producer, "failed_polls"), 0, "{producer}");
    assert_eq!(
        producer_stat(&producer, "events_published"),
        5,
        "no flip-flop between the two c5: {producer}"
    );
    let warning = &producer["last_warning"];
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"c5\" 2 times"), "{producer}");
    assert!(message.contains("2 record(s) skipped"), "{producer}");
    assert_eq!(
        warning["count"], 1,
        "said once, not at every poll: {producer}"
    );
    assert_eq!(host.applied_in_store("merge"), 5);
    host.cleanup(&plugins).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_listings_are_walked_in_every_supported_shape() {
    for paging in [Paging::Page, Paging::Offset, Paging::Cursor, Paging::Link] {
        let records = customers(53);
        let crm = Upstream::start(records, paging, 10).await;
        let plugins = ["crm-producer", "merge"];
        let host = TestHost::start_with(&plugins, |c| crm.configure(c, "crm-producer", 200)).await;
        host.wait_healthy().await;
        eventually(
            &format!("53 customers through {paging:?} pages"),
            Duration::from_secs(30),
            || async { host.applied_in_store("merge") == 53 },
        )
        .await;
        host.wait_polls("crm-producer", 2).await;
        // A change on the last page is the only event of the next walks.
        crm.edit(|r| r[52] = customer("c0052", "Zed"));
        eventually("the change merged", Duration::from_secs(20), || async {
            field(&host, "/analytics/collections/customers/c0052", "name").await == "Zed"
        })
        .await;
        host.wait_polls("crm-producer", 2).await;
        let producer = host.plugin("crm-producer").await;
        assert_eq!(
            producer_stat(&producer, "events_published"),
            54,
            "{paging:?}: {producer}"
        );
        assert_eq!(
            producer_stat(&producer, "failed_polls"),
            0,
            "{paging:?}: {producer}"
        );
        assert_eq!(
            documents(async |p| host.get(p).await, "customers")
                .await
                .len(),
            53
        );
        host.cleanup(&plugins).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_size_cap_fails_the_poll_and_names_the_setting() {
    let crm = Upstream::start(customers(2_000), Paging::None, 0).await;
    let plugins = ["crm-producer", "merge"];
    let host = TestHost::start_with(&plugins, |c| {
        crm.configure(c, "crm-producer", 200);
        c.plugin_settings
            .push("crm-producer.max-answer-bytes=20000".into());
    })
    .await;
    host.wait_healthy().await;
    eventually("a refused answer", Duration::from_secs(20), || async {
        host.plugin("crm-producer").await["producer"]["last_poll_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than 20000 bytes (setting max-answer-bytes"))
    })
    .await;
    // What was read before the cap went out (events of a failed poll are
    // published again by the next: harmless), but no state was committed.
    let store = switchyard::store::Store::sqlite(&host.config.data).unwrap();
    assert_eq!(
        store
            .blocking()
            .state_get("crm-producer", "seen/c0000")
            .unwrap(),
        None
    );
    host.cleanup(&plugins).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_that_fails_half_way_publishes_again_and_is_applied_once() {
    // Pages of 300: the walk hands its first 500 events over during page 2.
    let crm = Upstream::start(customers(1_200), Paging::Page, 0).await;
    // They go out twice before page 3 answers.
    crm.fail_page(3, 2);
    let plugins = ["crm-producer", "merge"];
    let host = TestHost::start_with(&plugins, |c| {
        crm.configure(c, "crm-producer", 200);
        c.plugin_settings.push("crm-producer.page-size=300".into());
    })
    .await;
    host.wait_healthy().await;
    eventually("1,200 customers", Duration::from_secs(60), || async {
        host.applied_in_store("merge") == 1_200
    })
    .await;
    host.wait_polls("crm-producer", 2).await;
    let producer = host.plugin("crm-producer").await;
    assert_eq!(producer_stat(&producer, "failed_polls"), 2, "{producer}");
    assert_eq!(
        producer_stat(&producer, "events_published"),
        500 + 500 + 1_200,
        "{producer}"
    );
    assert!(
        producer["producer"]["last_poll_error"].is_null(),
        "{producer}"
    );
    assert_eq!(
        host.applied_in_store("merge"),
        1_200,
        "each record applied once"
    );
    host.cleanup(&plugins).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_in_the_middle_of_a_walk_applies_every_record_once() {
    // A child-process host holds no broker lock of its own.
    let _broker_up = BrokerLock::shared().await;
    let crm = Upstream::start(customers(2_000), Paging::Page, 0).await;
    let reached = crm.hold_page(5).await;
    let plugins = ["crm-producer", "merge"];
    let mut host = ChildHost::start_with(&plugins, |c| {
        crm.configure(c, "crm-producer", 200);
        c.plugin_settings.push("crm-producer.page-size=250".into());
    })
    .await;
    tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .expect("the walk reaches page 5");
    // Pages 1-4 are published (1,000 events, handed over during the walk)
    // and being merged; nothing of the walk is committed on the producer's
    // side.
    host.kill().await;
    crm.release();
    host.restart().await;
    host.wait_healthy().await;
    eventually("2,000 customers", Duration::from_secs(60), || async {
        host.open_store().blocking().applied_count("merge").unwrap() == 2_000
    })
    .await;
    // The walk hands its pages over as it goes: merge can apply the last
    // of them before the poll ends and is counted.
    let published = || async {
        let (_, plugins_now) = host.get("/plugins").await;
        let producer = plugin_entry(&plugins_now, "crm-producer");
        (producer_stat(&producer, "events_published"), producer)
    };
    eventually(
        "the restarted host's walk counted",
        Duration::from_secs(60),
        || async { published().await.0 >= 2_000 },
    )
    .await;
    let (count, producer) = published().await;
    assert_eq!(count, 2_000, "{producer}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    host.kill().await;
    let store = host.open_store();
    assert_eq!(store.blocking().applied_count("merge").unwrap(), 2_000);
    assert!(
        store
            .blocking()
            .document("customers", "c1999")
            .unwrap()
            .is_some()
    );
    host.cleanup(&plugins).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_of_the_previous_release_carries_on_without_a_flood() {
    let mut records = customers(5);
    let crm = Upstream::start(records.clone(), Paging::None, 0).await;
    let plugins = ["crm-producer", "merge"];
    let mut host =
        TestHost::start_with(&["merge"], |c| crm.configure(c, "crm-producer", 200)).await;
    // The previous release's producer (built against the 0.1.0 contract)
    // polls first and writes its state format.
    let old = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wit-0.1.0/crm-producer.wasm");
    let file = host.plugin_dir().join("crm-producer.wasm");
    let partial = host.plugin_dir().join(".crm-producer.wasm.partial");
    std::fs::copy(&old, &partial).unwrap();
    std::fs::rename(&partial, &file).unwrap();
    eventually(
        "the old producer's events merged",
        Duration::from_secs(30),
        || async { host.applied_in_store("merge") == 5 },
    )
    .await;
    host.wait_polls("crm-producer", 1).await;
    let store = switchyard::store::Store::sqlite(&host.config.data).unwrap();
    let old_state = store
        .blocking()
        .state_get("crm-producer", "seen/c0000")
        .unwrap()
        .unwrap();
    assert_eq!(
        old_state.len(),
        16,
        "the old format: the content hash alone"
    );
    host.stop().await;
    // Upgrade: the new build, on the old state.
    std::fs::copy(common::plugin_file("crm-producer"), &file).unwrap();
    host.restart().await;
    host.wait_healthy().await;
    host.wait_polls("crm-producer", 3).await;
    assert_eq!(
        producer_stat(&host.plugin("crm-producer").await, "events_published"),
        0,
        "no re-publication of unchanged records after the upgrade"
    );
    // A -> B -> A after the upgrade reaches downstream each time.
    let first = records[2].clone();
    for name in ["Changed", "name2"] {
        records[2]["name"] = json!(name);
        crm.set(records.clone());
        eventually(name, Duration::from_secs(20), || async {
            field(&host, "/analytics/collections/customers/c0002", "name").await == name
        })
        .await;
    }
    assert_eq!(records[2], first);
    assert_eq!(host.applied_in_store("merge"), 7);
    host.cleanup(&plugins).await;
}
