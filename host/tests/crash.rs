//! Crash: the real binary is killed with SIGKILL at random moments while
//! tens of thousands of events flow, and started again each time. In the
//! end every event is applied exactly once (the `counter` fixture's total,
//! the ids each plugin recorded in the store) and the `merge` plugin's
//! customers are those of their latest events. On each store backend.

mod common;

use std::time::{Duration, Instant};

use common::backend::Backend;
use common::broker_lock::BrokerLock;
use common::workload::{FaultRun, PLUGINS, Pace, settle};

const EVENTS: usize = 30_000;
const CUSTOMERS: usize = 1_000;
const DUPLICATES: usize = 300;
const KILLS: usize = 8;
/// Events keep arriving while the host is killed and restarted.
const PACE: Pace = Pace {
    chunk: 500,
    pause: Duration::from_millis(100),
};

per_backend!(sigkill_at_random_moments_loses_nothing_and_applies_nothing_twice);

async fn sigkill_at_random_moments_loses_nothing_and_applies_nothing_twice(backend: Backend) {
    let _broker_up = BrokerLock::shared().await;
    let started = Instant::now();
    let FaultRun {
        mut rng,
        workload,
        mut host,
        publishing,
    } = FaultRun::start(backend, EVENTS, CUSTOMERS, DUPLICATES, PACE).await;

    let mut kills = 0;
    for point in workload.random_points(&mut rng, KILLS) {
        // Spread over the stream; a point already passed when the host
        // comes back kills it while it starts (connecting, declaring,
        // flushing its outbox). The jitter lands anywhere in a batch.
        workload.wait_counted(&host, point).await;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        let counted = workload.counted(&host).await;
        host.kill().await;
        kills += 1;
        host.restart().await;
        let recovered = workload.counted(&host).await;
        println!(
            "kill {kills} at counter {counted} (point {point}), {} messages confirmed; after restart the counter reads {recovered}",
            publishing.confirmed()
        );
        assert!(
            recovered >= counted,
            "committed work was lost: {counted} before the kill, {recovered} after"
        );
    }
    host.wait_healthy().await;

    let (published, _) = settle(&workload, &mut host, publishing, Duration::from_secs(10)).await;

    println!(
        "crash on {backend:?}: {kills} SIGKILLs, {} restarts; {} messages published ({} distinct events, {} duplicates, {} re-sent by the publisher) in {:.1?}; test took {:.1?}",
        host.starts - 1,
        published.messages,
        workload.distinct,
        workload.duplicates,
        published.resent,
        published.elapsed,
        started.elapsed()
    );
    host.cleanup(PLUGINS).await;
}
