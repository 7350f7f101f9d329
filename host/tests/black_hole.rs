//! A broker that goes silent: the packets of one connection are dropped
//! (iptables, both ways: no FIN, no RST), as a frozen NAT, firewall or
//! broker machine would. The AMQP heartbeat notices within two to two and
//! a half intervals: publisher confirms waiting on that connection fail,
//! `/health` says 503 and why, the host reconnects on a new connection
//! whose deliveries flow while the old one is still black-holed, and in
//! the end every event is applied exactly once.
//!
//! The rules match only the connection under test (its local port and the
//! broker's), so other tests keep using the broker meanwhile; they are
//! removed when the test ends, whatever happens.

mod common;

use std::time::{Duration, Instant};

use common::backend::Backend;
use common::black_hole::{BlackHole, broker_port_of_connection, broker_ports_of_process};
use common::broker_lock::BrokerLock;
use common::workload::{FaultRun, PLUGINS, Pace, settle};
use switchyard::broker::{Outgoing, Publisher, connect_to, watch::went_silent};
use switchyard::config::broker_address;

/// Heartbeat of the connections under test: short, so that the test is.
const HEARTBEAT_SECS: u16 = 2;
/// How long the host's connection stays black-holed.
const SILENCE: Duration = Duration::from_secs(60);
/// lapin gives a connection up once nothing was read for more than two
/// intervals, checking every half interval: 2 to 2.5 intervals after the
/// last frame. Plus a second for the test's own polling and scheduling.
const NOTICED_WITHIN: Duration = Duration::from_millis(2500 * HEARTBEAT_SECS as u64 + 1000);

const EVENTS: usize = 40_000;
const CUSTOMERS: usize = 1_000;
const DUPLICATES: usize = 200;
/// About 2,500 events/s: the stream goes on through the silence.
const PACE: Pace = Pace {
    chunk: 500,
    pause: Duration::from_millis(200),
};

fn broker_port() -> u16 {
    let address = broker_address(&common::amqp_url());
    let port = address.rsplit_once(':').map(|(_, p)| p.parse().unwrap());
    port.expect("the broker's port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_confirms_on_a_silent_connection_fail_within_two_heartbeats() {
    let _broker_up = BrokerLock::shared().await;
    let name = format!("switchyard test silent publisher {}", std::process::id());
    let connection = connect_to(&common::amqp_url(), HEARTBEAT_SECS, &name)
        .await
        .unwrap();
    assert_eq!(connection.configuration().heartbeat(), HEARTBEAT_SECS);
    let publisher = Publisher::open(&connection).await.unwrap();
    // Unroutable through the default exchange: confirmed, kept nowhere.
    let message = || {
        let body = b"{}".to_vec();
        Outgoing::json_event("", "switchyard.test.nowhere", body, Default::default())
    };
    publisher.publish_all(&[message()]).await.unwrap();

    let hole = BlackHole::drop_connection(broker_port_of_connection(&name), broker_port());
    let silent_since = Instant::now();
    let published = tokio::time::timeout(
        Duration::from_secs(60),
        publisher.publish_all(&[message(), message()]),
    )
    .await;
    let failed_after = silent_since.elapsed();
    hole.lift();

    let error = match published {
        Err(_) => panic!("the confirms still waited after 60 s of silence"),
        Ok(Ok(())) => panic!("confirmed although the broker could not be reached"),
        Ok(Err(e)) => e,
    };
    println!("publishing on a silent connection failed after {failed_after:.1?}: {error:#}");
    assert!(
        went_silent(&error),
        "the failure says the heartbeat was missed: {error:#}"
    );
    assert!(
        failed_after <= NOTICED_WITHIN,
        "noticed after {failed_after:?}, heartbeat {HEARTBEAT_SECS} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_connection_is_noticed_and_replaced_under_load() {
    let _broker_up = BrokerLock::shared().await;
    let started = Instant::now();
    let FaultRun {
        rng: _,
        workload,
        mut host,
        publishing,
    } = FaultRun::start_with(
        Backend::Sqlite,
        EVENTS,
        CUSTOMERS,
        DUPLICATES,
        0,
        PACE,
        |c| {
            c.heartbeat_secs = HEARTBEAT_SECS;
        },
    )
    .await;
    workload.wait_counted(&host, EVENTS as u64 / 10).await;
    let ports = broker_ports_of_process(host.pid(), broker_port());
    let [port] = ports[..] else {
        panic!("expected one broker connection of the host, found ports {ports:?}");
    };

    // While the rules are in place, only observe (a failed assertion would
    // leave them to the guard): the assertions come once they are lifted.
    let hole = BlackHole::drop_connection(port, broker_port());
    let silent_since = Instant::now();
    let counted_at_silence = workload.counted(&host).await;
    let mut unhealthy = None;
    let mut reconnected = None;
    let mut flowing = None;
    let mut last_health = serde_json::Value::Null;
    while silent_since.elapsed() < SILENCE {
        let (status, health) = host.get("/health").await;
        let at = silent_since.elapsed();
        if status == 503 && unhealthy.is_none() {
            unhealthy = Some((at, health.clone()));
        }
        if status == 200 && unhealthy.is_some() && reconnected.is_none() {
            reconnected = Some((at, health.clone()));
        }
        let counted = workload.counted(&host).await;
        if reconnected.is_some() && flowing.is_none() && counted > counted_at_silence + 1000 {
            flowing = Some((at, counted));
        }
        last_health = health;
        if flowing.is_some() {
            // Seen what there is to see; the rules stay until SILENCE.
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let new_ports = broker_ports_of_process(host.pid(), broker_port());
    let counted_at_lift = workload.counted(&host).await;
    hole.lift();
    println!(
        "black hole on port {port} for {SILENCE:?} from counter {counted_at_silence}; \
         503 {:?}; healthy again {:?}; flowing {:?}; counter {counted_at_lift} when lifted; \
         connections to the broker then: {new_ports:?}",
        unhealthy.as_ref().map(|(at, h)| (at, h["error"].clone())),
        reconnected
            .as_ref()
            .map(|(at, h)| (at, h["connections"].clone())),
        flowing,
    );

    let (noticed, health) = unhealthy.expect("/health never said 503 while the broker was silent");
    assert!(
        noticed <= NOTICED_WITHIN,
        "/health said 503 after {noticed:?}; heartbeat {HEARTBEAT_SECS} s"
    );
    let error = health["error"].as_str().unwrap_or_default();
    assert!(error.contains("the broker went silent"), "{health}");
    let (back, health) = reconnected.unwrap_or_else(|| {
        panic!("the host did not reconnect within {SILENCE:?}; last /health: {last_health}")
    });
    assert!(
        health["connections"].as_u64() >= Some(2),
        "a new connection: {health}"
    );
    let (flowed, _) = flowing.expect("events flowed again before the black hole was lifted");
    assert!(
        !new_ports.contains(&port) && !new_ports.is_empty(),
        "the host consumed on a new connection ({new_ports:?}), not on port {port}"
    );
    assert_eq!(
        host.log_count("the broker went silent"),
        1,
        "the log says it once\n{}",
        host.log_tail(40)
    );

    let (published, _) = settle(&workload, &mut host, publishing, Duration::from_secs(10)).await;
    println!(
        "black hole: heartbeat {HEARTBEAT_SECS} s; 503 after {noticed:.1?}, healthy on a new \
         connection after {back:.1?}, events flowing after {flowed:.1?}, all while the old \
         connection stayed black-holed ({SILENCE:?}); {} messages published ({} distinct \
         events, {} duplicates, {} re-sent); test took {:.1?}",
        published.messages,
        workload.distinct,
        workload.duplicates,
        published.resent,
        started.elapsed()
    );
    host.cleanup(PLUGINS).await;
}
