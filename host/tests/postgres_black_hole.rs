//! A database that goes silent: the packets of every connection the host
//! has to PostgreSQL are dropped (iptables, both ways: no FIN, no RST), as a
//! frozen network or database machine would. The host does not hang on
//! them: TCP keepalives and the TCP user timeout give each one up, `/health`
//! says 503 and why, new connections (not black-holed) carry on while the
//! old ones are still silent, and in the end every event is applied once.
//!
//! The store URL shortens the keepalive and user timeouts (5 s instead of
//! the defaults' 25-30 s) so that the test is short; the mechanism is the
//! same. The rules match only the host's own connections.

mod common;

use std::time::{Duration, Instant};

use common::backend::Backend;
use common::black_hole::{BlackHole, broker_ports_of_process};
use common::broker_lock::BrokerLock;
use common::workload::{FaultRun, Pace, settle};

const POSTGRES_PORT: u16 = 5432;
/// How long the host's database connections stay black-holed.
const SILENCE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_connection_is_given_up_and_replaced_under_load() {
    let _broker_up = BrokerLock::shared().await;
    let pace = Pace {
        chunk: 500,
        pause: Duration::from_millis(100),
    };
    let FaultRun {
        workload,
        mut host,
        publishing,
        ..
    } = FaultRun::start_with(Backend::Postgres, 15_000, 500, 100, 0, pace, |c| {
        let switchyard::store::Location::Postgres(url) = c.store_location().unwrap() else {
            panic!("a PostgreSQL store");
        };
        c.store = format!(
            "{url}?keepalives_idle=2&keepalives_interval=1&keepalives_retries=2&tcp_user_timeout=5"
        )
        .into();
    })
    .await;
    workload.wait_counted(&host, 2_000).await;
    let ports = broker_ports_of_process(host.pid(), POSTGRES_PORT);
    assert!(!ports.is_empty(), "the host has database connections");
    // Only observe while the rules are in place (a failed assertion would
    // leave them to the guards); assert once they are lifted.
    let counted_at_silence = workload.counted(&host).await;
    let holes: Vec<BlackHole> = ports
        .iter()
        .map(|p| BlackHole::drop_connection(*p, POSTGRES_PORT))
        .collect();
    let silent_since = Instant::now();
    let (mut unhealthy, mut flowing) = (None, None);
    let mut unanswered = 0;
    while silent_since.elapsed() < SILENCE {
        // A read may wait out a silent connection (the user timeout):
        // counted, not fatal.
        let at = silent_since.elapsed();
        match host.try_get("/health").await {
            Some((503, health)) if unhealthy.is_none() => unhealthy = Some((at, health)),
            Some(_) => {}
            None => unanswered += 1,
        }
        if let Some((200, total)) = host.try_get("/analytics/collections/counts/total").await {
            let counted = total["count"].as_u64().unwrap_or(0);
            if flowing.is_none() && counted > counted_at_silence + 1_000 {
                flowing = Some((at, counted));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for hole in holes {
        hole.lift();
    }
    let counted_at_lift = workload.counted(&host).await;
    println!(
        "black hole on {ports:?} for {SILENCE:?} from counter {counted_at_silence}; \
         503 {unhealthy:?}; flowing {flowing:?}; counter {counted_at_lift} when lifted; \
         {unanswered} /health requests unanswered within 10 s"
    );
    let (noticed, health) = unhealthy.expect("/health said 503 while the database was silent");
    assert!(
        health["error"]
            .as_str()
            .is_some_and(|e| e.contains("store unavailable")),
        "{health}"
    );
    assert!(
        noticed < Duration::from_secs(15),
        "noticed after {noticed:?}"
    );
    flowing.expect("events flowed again before the black hole was lifted");
    settle(&workload, &mut host, publishing, Duration::from_secs(10)).await;
    host.cleanup(common::workload::PLUGINS).await;
}
