//! Dead letters exactly once: malformed events in a stream that the host
//! is SIGKILLed in the middle of, again and again, each end up in each
//! subscribed plugin's dead-letter queue exactly once, while every valid
//! event is applied exactly once. (The dead letters of a batch, its retries
//! and its ack go out in one AMQP transaction: a redelivered bad event was
//! never dead-lettered.) On each store backend.

mod common;

use std::time::Duration;

use common::backend::Backend;
use common::broker_lock::BrokerLock;
use common::workload::{FaultRun, Pace, dead_letters};

const EVENTS: usize = 20_000;
const CUSTOMERS: usize = 500;
const DUPLICATES: usize = 200;
const MALFORMED: usize = 600;
const KILLS: usize = 3;
const PACE: Pace = Pace {
    chunk: 500,
    pause: Duration::from_millis(100),
};

per_backend!(malformed_events_are_dead_lettered_once_across_sigkills);

async fn malformed_events_are_dead_lettered_once_across_sigkills(backend: Backend) {
    let _broker_up = BrokerLock::shared().await;
    let FaultRun {
        mut rng,
        workload,
        mut host,
        publishing,
    } = FaultRun::start_with_malformed(backend, EVENTS, CUSTOMERS, DUPLICATES, MALFORMED, PACE)
        .await;
    for (n, point) in workload
        .random_points(&mut rng, KILLS)
        .into_iter()
        .enumerate()
    {
        workload.wait_counted(&host, point).await;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        host.kill().await;
        host.restart().await;
        println!("kill {} at counter {point}", n + 1);
    }
    host.wait_healthy().await;
    publishing.finish().await;
    workload.wait_applied(&host, Duration::from_secs(90)).await;
    workload.assert_api_state(&host).await;
    // Every bad event reached the dead letters of both plugins (counter
    // takes `#`, merge `customer.*`), once.
    for plugin in ["counter", "merge"] {
        let letters = dead_letters(&host.config, plugin, MALFORMED).await;
        let mut bodies: Vec<&Vec<u8>> = letters.iter().collect();
        bodies.sort();
        bodies.dedup();
        assert_eq!(
            bodies.len(),
            MALFORMED,
            "{plugin}: {} dead letters, {} distinct, for {MALFORMED} malformed events",
            letters.len(),
            bodies.len()
        );
    }
    let (status, _) = host.terminate(Duration::from_secs(10)).await;
    assert!(status.success());
    workload.assert_store(&host.open_store());
    host.cleanup(common::workload::PLUGINS).await;
}
