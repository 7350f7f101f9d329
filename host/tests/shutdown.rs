//! Graceful shutdown under load: SIGTERM while events flow makes the real
//! binary finish the batches in flight and exit with success within a
//! bounded time; started again, it carries on, and in the end nothing is
//! lost or applied twice. On each store backend.

mod common;

use std::time::{Duration, Instant};

use common::backend::Backend;
use common::broker_lock::BrokerLock;
use common::workload::{FaultRun, PLUGINS, Pace, settle};

const EVENTS: usize = 20_000;
const CUSTOMERS: usize = 1_000;
const DUPLICATES: usize = 200;
const SIGTERMS: usize = 3;
/// The longest a SIGTERM may take to stop the host.
const EXIT_LIMIT: Duration = Duration::from_secs(10);
/// Faster than the host consumes: a backlog builds, so a SIGTERM finds
/// batches in flight.
const PACE: Pace = Pace {
    chunk: 500,
    pause: Duration::from_millis(20),
};

per_backend!(sigterm_under_load_exits_cleanly_and_loses_nothing);

async fn sigterm_under_load_exits_cleanly_and_loses_nothing(backend: Backend) {
    let _broker_up = BrokerLock::shared().await;
    let started = Instant::now();
    let FaultRun {
        mut rng,
        workload,
        mut host,
        publishing,
    } = FaultRun::start(backend, EVENTS, CUSTOMERS, DUPLICATES, PACE).await;

    let mut exits = Vec::new();
    for point in workload.random_points(&mut rng, SIGTERMS) {
        workload.wait_counted(&host, point).await;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        let counted = workload.counted(&host).await;
        let (status, took) = host.terminate(EXIT_LIMIT).await;
        println!(
            "SIGTERM {} at counter {counted} (point {point}), {} messages confirmed: exited with {status} after {took:.2?}",
            exits.len() + 1,
            publishing.confirmed()
        );
        assert!(status.success(), "SIGTERM made the host exit with {status}");
        exits.push(took);
        host.restart().await;
        let recovered = workload.counted(&host).await;
        assert!(
            recovered >= counted,
            "committed work was lost: {counted} before the stop, {recovered} after"
        );
        host.wait_healthy().await;
    }

    let (published, took) = settle(&workload, &mut host, publishing, EXIT_LIMIT).await;
    exits.push(took);
    assert_eq!(
        host.log_count("shutting down"),
        exits.len(),
        "each SIGTERM was handled as a shutdown"
    );

    println!(
        "shutdown on {backend:?}: {} SIGTERMs under load (+1 at the end), all exited with success, slowest in {:.2?}; {} restarts; {} messages published ({} distinct events, {} duplicates) in {:.1?}; test took {:.1?}",
        SIGTERMS,
        exits.iter().max().unwrap(),
        host.starts - 1,
        published.messages,
        workload.distinct,
        workload.duplicates,
        published.elapsed,
        started.elapsed()
    );
    host.cleanup(PLUGINS).await;
}
