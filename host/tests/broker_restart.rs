//! Broker restart: `rabbitmqctl stop_app` while events flow. Meanwhile the
//! host says 503 on `/health` and keeps serving reads; after `start_app` it
//! reconnects and carries on, the publisher sends again what the broker
//! never confirmed, and in the end nothing is lost or applied twice.
//!
//! Stopping the broker disrupts every test using it on this machine, so
//! this is its own test binary (cargo runs binaries one at a time), it
//! holds the exclusive [`BrokerLock`] throughout (the other fault tests
//! hold it shared), and the broker is started again even if the test
//! fails. On each store backend (the two take the lock in turn).

mod common;

use std::time::{Duration, Instant};

use common::backend::Backend;
use common::broker_lock::{BrokerLock, BrokerStopped};
use common::workload::{FaultRun, PLUGINS, Pace, settle};

const EVENTS: usize = 20_000;
const CUSTOMERS: usize = 1_000;
const DUPLICATES: usize = 200;
/// How long the broker stays stopped.
const OUTAGE: Duration = Duration::from_secs(5);
/// Slow enough that the stream outlasts the outage.
const PACE: Pace = Pace {
    chunk: 500,
    pause: Duration::from_millis(150),
};

per_backend!(a_broker_restart_under_load_loses_nothing_and_applies_nothing_twice);

async fn a_broker_restart_under_load_loses_nothing_and_applies_nothing_twice(backend: Backend) {
    let lock = BrokerLock::exclusive().await;
    println!("broker lock taken after {:.1?}", lock.waited());
    let started = Instant::now();
    let FaultRun {
        mut rng,
        workload,
        mut host,
        publishing,
    } = FaultRun::start(backend, EVENTS, CUSTOMERS, DUPLICATES, PACE).await;

    let point = rng.u64(EVENTS as u64 / 10..EVENTS as u64 / 4);
    workload.wait_counted(&host, point).await;
    let confirmed_at_stop = publishing.confirmed();
    let stopped_at = Instant::now();
    let stopped = BrokerStopped::stop().await;
    println!(
        "broker stopped at counter {} (point {point}), {confirmed_at_stop} messages confirmed; stop_app took {:.1?}",
        workload.counted(&host).await,
        stopped_at.elapsed()
    );

    // While the broker is away: unhealthy, but reads are served.
    common::eventually("/health to say 503", Duration::from_secs(15), || async {
        host.get("/health").await.0 == 503
    })
    .await;
    let (_, health) = host.get("/health").await;
    println!("health during the outage: {health}");
    assert!(
        health["error"]
            .as_str()
            .is_some_and(|e| e.contains("broker")),
        "{health}"
    );
    let during = workload.counted(&host).await;
    for path in [
        "/plugins",
        "/analytics/collections/customers?limit=10",
        "/analytics/collections/counts/total",
        "/analytics/data?limit=10",
    ] {
        let (status, body) = host.get(path).await;
        assert_eq!(status, 200, "GET {path} during the outage: {body}");
    }
    tokio::time::sleep(OUTAGE.saturating_sub(stopped_at.elapsed())).await;
    let restarting = Instant::now();
    stopped.start().await;
    let outage = stopped_at.elapsed();
    println!(
        "broker started again after an outage of {outage:.1?} (start_app took {:.1?}); counter was {during} meanwhile",
        restarting.elapsed()
    );

    host.wait_healthy().await;
    let (_, health) = host.get("/health").await;
    assert!(
        health["connections"].as_u64() >= Some(2),
        "the host reconnected: {health}"
    );
    println!(
        "host healthy again {:.1?} after start_app, after {} failed connection attempts",
        restarting.elapsed(),
        host.log_count("broker unavailable")
    );

    let (published, _) = settle(&workload, &mut host, publishing, Duration::from_secs(10)).await;
    if confirmed_at_stop < workload.messages.len() {
        assert!(
            published.reconnects >= 1,
            "the publisher was mid-stream, so it had to reconnect: {published:?}"
        );
    }

    println!(
        "broker restart on {backend:?}: 1 broker restart ({outage:.1?} down); {} messages published ({} distinct events, {} duplicates, {} re-sent after {} publisher reconnects) in {:.1?}; test took {:.1?}",
        published.messages,
        workload.distinct,
        workload.duplicates,
        published.resent,
        published.reconnects,
        published.elapsed,
        started.elapsed()
    );
    host.cleanup(PLUGINS).await;
}
