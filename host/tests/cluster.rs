//! Several hosts on one PostgreSQL store and the same queues (competing
//! consumers): six SIGKILLs of random hosts during a stream with
//! duplicates and malformed events, events for one entity handled by two
//! hosts at once, a producer's poller killed in the middle of a walk, and
//! `GET /cluster`. Real processes, real broker, real database.

mod common;

use std::time::Duration;

use common::backend::Backend;
use common::broker_lock::BrokerLock;
use common::process::ChildHost;
use common::upstream::{Paging, Upstream};
use common::workload::{CustomerWorkload, PLUGINS, Pace, Publishing, dead_letters, test_seed};
use common::{eventually, off_reactor, plugin_entry};
use serde_json::{Value, json};
use switchyard::Config;

/// `n` hosts with `plugins` on one new PostgreSQL database, one exchange
/// and one queue prefix; `adjust` applies to each host's settings.
async fn cluster(n: usize, plugins: &[&str], adjust: impl Fn(&mut Config)) -> Vec<ChildHost> {
    let first = ChildHost::start_on_with(Backend::Postgres, plugins, &adjust).await;
    let shared = first.config.clone();
    let mut hosts = vec![first];
    for _ in 1..n {
        let host = ChildHost::start_with(plugins, |c| {
            adjust(c);
            c.store = shared.store.clone();
            c.exchange = shared.exchange.clone();
            c.queue_prefix = shared.queue_prefix.clone();
        })
        .await;
        hosts.push(host);
    }
    for host in &hosts {
        host.wait_healthy().await;
    }
    hosts
}

/// The id a host goes by (`GET /cluster`'s `this_host`).
async fn host_id(host: &ChildHost) -> String {
    host.get("/cluster").await.1["this_host"]
        .as_str()
        .expect("this_host")
        .to_owned()
}

/// How many events `plugin` applied, as the shared store says.
fn applied(store: &switchyard::store::Store, plugin: &str) -> u64 {
    off_reactor(|| store.blocking().applied_count(plugin).unwrap())
}

/// Stops every host, then deletes the shared queues (the database goes
/// with the first host).
async fn stop_all(mut hosts: Vec<ChildHost>, plugins: &[&str]) {
    for host in &mut hosts {
        if host.is_running() {
            let (status, _) = host.terminate(Duration::from_secs(30)).await;
            assert!(status.success(), "a host exited with {status}");
        }
    }
    let first = hosts.remove(0);
    drop(hosts);
    first.cleanup(plugins).await;
}

const EVENTS: usize = 30_000;
const CUSTOMERS: usize = 1_000;
const DUPLICATES: usize = 300;
const MALFORMED: usize = 300;
const KILLS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_killed_at_random_apply_every_event_once() {
    let _broker_up = BrokerLock::shared().await;
    let mut rng = fastrand::Rng::with_seed(test_seed());
    let mut workload = CustomerWorkload::new(&mut rng, EVENTS, CUSTOMERS, DUPLICATES);
    workload.add_malformed(&mut rng, MALFORMED);
    let mut hosts = cluster(3, PLUGINS, |_| {}).await;
    let pace = Pace {
        chunk: 500,
        pause: Duration::from_millis(50),
    };
    let publishing = Publishing::start(&hosts[0].config, workload.messages.clone(), pace);
    for (n, point) in workload
        .random_points(&mut rng, KILLS)
        .into_iter()
        .enumerate()
    {
        let victim = rng.usize(..hosts.len());
        // Any live host reads the shared store.
        let watcher = (victim + 1) % hosts.len();
        workload.wait_counted(&hosts[watcher], point).await;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        hosts[victim].kill().await;
        println!("kill {} of host {victim} at counter {point}", n + 1);
        hosts[victim].restart().await;
    }
    for host in &hosts {
        host.wait_healthy().await;
    }
    publishing.finish().await;
    workload
        .wait_applied(&hosts[0], Duration::from_secs(120))
        .await;
    for host in &hosts {
        workload.assert_api_state(host).await;
    }
    for plugin in PLUGINS {
        let letters = dead_letters(&hosts[0].config, plugin, MALFORMED).await;
        let mut distinct = letters.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), MALFORMED, "{plugin}: each bad event once");
    }
    let conflicts: u64 = {
        let mut sum = 0;
        for host in &hosts {
            let (_, plugins) = host.get("/plugins").await;
            sum += plugin_entry(&plugins, "counter")["conflicts"]
                .as_u64()
                .unwrap_or(0);
        }
        sum
    };
    println!("batches run again after a conflict (counter, since the last starts): {conflicts}");
    workload.assert_store(&hosts[0].open_store());
    stop_all(hosts, PLUGINS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customer_on_two_hosts_at_once_ends_as_its_latest_event() {
    let _broker_up = BrokerLock::shared().await;
    // Small batches: the two hosts take turns on the same customer.
    let hosts = cluster(2, &["merge"], |c| c.batch_size = 5).await;
    let mut rng = fastrand::Rng::with_seed(test_seed());
    const EVENTS: usize = 2_000;
    let mut order: Vec<usize> = (0..EVENTS).collect();
    rng.shuffle(&mut order);
    let messages: Vec<(String, Vec<u8>)> = order
        .iter()
        .map(|&i| {
            let body = common::customer_event(
                &format!("same-{i}"),
                "c1",
                &format!("v{i}"),
                &format!(
                    "2026-11-24T08:{:02}:{:02}.{:03}Z",
                    i / 60_000,
                    i / 1000 % 60,
                    i % 1000
                ),
            );
            ("customer.updated".to_owned(), body)
        })
        .collect();
    let publishing = Publishing::start(
        &hosts[0].config,
        messages,
        Pace {
            chunk: 100,
            pause: Duration::from_millis(10),
        },
    );
    publishing.finish().await;
    let latest = format!("v{}", EVENTS - 1);
    let store = hosts[0].open_store();
    eventually("every event merged", Duration::from_secs(60), || async {
        applied(&store, "merge") == EVENTS as u64
    })
    .await;
    for host in &hosts {
        let (_, doc) = host.get("/analytics/collections/customers/c1").await;
        assert_eq!(
            doc["name"],
            latest.as_str(),
            "the latest timestamp wins: {doc}"
        );
    }
    let mut handled = Vec::new();
    for host in &hosts {
        let (_, plugins) = host.get("/plugins").await;
        let merge = plugin_entry(&plugins, "merge");
        handled.push((merge["events_applied"].clone(), merge["conflicts"].clone()));
    }
    println!("(applied, conflicts) per host: {handled:?}");
    assert!(
        handled
            .iter()
            .all(|(applied, _)| applied.as_u64() > Some(0)),
        "both hosts took part: {handled:?}"
    );
    stop_all(hosts, &["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_is_polled_by_one_host_and_taken_over_when_it_dies() {
    let _broker_up = BrokerLock::shared().await;
    const RECORDS: usize = 3_000;
    let records: Vec<Value> = (0..RECORDS)
        .map(|i| json!({"id": format!("c{i:04}"), "name": format!("n{i}"), "email": format!("n{i}@test.com")}))
        .collect();
    let crm = Upstream::start(records, Paging::Page, 0).await;
    let plugins = ["crm-producer", "merge"];
    let interval_ms = 1_000;
    let mut hosts = cluster(2, &plugins, |c| {
        crm.configure(c, "crm-producer", interval_ms);
        c.plugin_settings.push("crm-producer.page-size=250".into());
    })
    .await;
    // One host polls; the other says which.
    let ids = [host_id(&hosts[0]).await, host_id(&hosts[1]).await];
    let poller = async |hosts: &[ChildHost]| {
        let (_, plugins) = hosts[0].get("/plugins").await;
        plugin_entry(&plugins, "crm-producer")["producer"]["polled_by"]
            .as_str()
            .map(str::to_owned)
    };
    let reached = crm.hold_page(6).await;
    tokio::time::timeout(Duration::from_secs(60), reached)
        .await
        .expect("a walk reaches page 6");
    let polling = poller(&hosts).await.expect("someone polls");
    let victim = ids
        .iter()
        .position(|id| *id == polling)
        .expect("a known host");
    let survivor = 1 - victim;
    // Mid-walk: pages 1-5 handed over (and being merged), nothing of the
    // walk committed on the producer's side.
    hosts[victim].kill().await;
    let killed_at = std::time::Instant::now();
    crm.release();
    eventually(
        "the other host to take the producer over",
        Duration::from_secs(30),
        || async { poller(&hosts[survivor..]).await.as_deref() == Some(ids[survivor].as_str()) },
    )
    .await;
    let took = killed_at.elapsed();
    println!("taken over {took:?} after the kill (poll interval {interval_ms} ms)");
    assert!(
        took < Duration::from_millis(2 * interval_ms + 1_000),
        "taken over within two poll intervals: {took:?}"
    );
    let store = hosts[survivor].open_store();
    eventually(
        "every record merged once",
        Duration::from_secs(60),
        || async { applied(&store, "merge") == RECORDS as u64 },
    )
    .await;
    // A change after the takeover arrives once too.
    crm.edit(|r| r[7]["name"] = json!("changed"));
    eventually("the change merged", Duration::from_secs(20), || async {
        hosts[survivor]
            .get("/analytics/collections/customers/c0007")
            .await
            .1["name"]
            == "changed"
    })
    .await;
    assert_eq!(applied(&store, "merge"), RECORDS as u64 + 1);
    // The victim comes back; both are listed, with what they run.
    hosts[victim].restart().await;
    hosts[victim].wait_healthy().await;
    let (_, cluster) = hosts[victim].get("/cluster").await;
    let listed: Vec<&str> = cluster["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&ids[survivor].as_str()), "{cluster}");
    let survivor_entry = cluster["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == ids[survivor].as_str())
        .unwrap();
    assert_eq!(survivor_entry["alive"], true, "{cluster}");
    assert!(
        survivor_entry["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "merge" && p["sha256"].as_str().is_some_and(|s| s.len() == 64)),
        "{cluster}"
    );
    stop_all(hosts, &plugins).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_active_consumer_plugin_runs_on_one_host_and_fails_over() {
    let _broker_up = BrokerLock::shared().await;
    let plugins = ["counter"];
    let mut hosts = cluster(2, &plugins, |c| {
        c.plugin_settings
            .push("counter.consumers=single-active".into());
    })
    .await;
    let events = |range: std::ops::Range<usize>| -> Vec<(String, Vec<u8>)> {
        range
            .map(|i| {
                let body =
                    common::customer_event(&format!("sac-{i}"), "c1", "n", "2026-11-24T08:00:00Z");
                ("customer.updated".to_owned(), body)
            })
            .collect()
    };
    let pace = Pace {
        chunk: 100,
        pause: Duration::from_millis(10),
    };
    Publishing::start(&hosts[0].config, events(0..1_000), pace)
        .finish()
        .await;
    let store = hosts[0].open_store();
    eventually("1,000 counted", Duration::from_secs(30), || async {
        applied(&store, "counter") == 1_000
    })
    .await;
    let mut applied_by = Vec::new();
    for host in &hosts {
        let (_, plugins) = host.get("/plugins").await;
        applied_by.push(
            plugin_entry(&plugins, "counter")["events_applied"]
                .as_u64()
                .unwrap(),
        );
    }
    assert!(
        applied_by.contains(&0) && applied_by.contains(&1_000),
        "one host consumed, the other stood by: {applied_by:?}"
    );
    let active = applied_by.iter().position(|n| *n == 1_000).unwrap();
    hosts[active].kill().await;
    Publishing::start(&hosts[1 - active].config, events(1_000..1_500), pace)
        .finish()
        .await;
    eventually(
        "the stand-by takes over",
        Duration::from_secs(30),
        || async { applied(&store, "counter") == 1_500 },
    )
    .await;
    let (_, listing) = hosts[1 - active].get("/plugins").await;
    assert_eq!(plugin_entry(&listing, "counter")["events_applied"], 500);
    hosts[active].restart().await;
    stop_all(hosts, &plugins).await;
}
