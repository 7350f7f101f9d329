//! PostgreSQL goes away under load: every session of the host's database
//! is terminated (as a server restart or a failover does: `admin shutdown`)
//! and new ones are refused for a while, then it comes back. The host
//! waits: no dead letter, no retry spent, `/health` 503 with the reason,
//! one log line when the outage starts and one when it ends; then every
//! event is applied exactly once. Only this test's database goes away: the
//! server goes on serving the other tests.

mod common;

use std::time::Duration;

use common::backend::{Backend, test_server};
use common::broker_lock::BrokerLock;
use common::workload::{FaultRun, Pace, assert_no_dead_letters, settle};
use common::{eventually, off_reactor};

/// Runs `sql` on the test server's `postgres` database.
fn admin(sql: &str) {
    off_reactor(|| {
        let mut client =
            postgres::Client::connect(&format!("{}/postgres", test_server()), postgres::NoTls)
                .expect("PostgreSQL reachable");
        client
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_under_load_is_waited_out() {
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
    } = FaultRun::start(Backend::Postgres, 15_000, 500, 100, pace).await;
    let switchyard::store::Location::Postgres(url) = host.config.store_location().unwrap() else {
        panic!("the host's store is PostgreSQL");
    };
    let database = url.rsplit('/').next().unwrap().to_owned();
    workload.wait_counted(&host, 3_000).await;

    admin(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false;
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}';"
    ));
    eventually(
        "/health to say the store is out",
        Duration::from_secs(30),
        || async {
            let (status, body) = host.get("/health").await;
            status == 503
                && body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("store unavailable"))
        },
    )
    .await;
    let (_, body) = host.get("/health").await;
    println!("while the database is away: {body}");
    assert!(!body.to_string().contains("password"), "{body}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        host.log_count("store outage:"),
        1,
        "said once\n{}",
        host.log_tail(20)
    );
    assert_no_dead_letters(&host.config).await;

    admin(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"));
    eventually("the host to carry on", Duration::from_secs(30), || async {
        host.get("/health").await.0 == 200
    })
    .await;
    assert_eq!(
        host.log_count("store outage over"),
        1,
        "{}",
        host.log_tail(20)
    );
    settle(&workload, &mut host, publishing, Duration::from_secs(10)).await;
    host.cleanup(common::workload::PLUGINS).await;
}
