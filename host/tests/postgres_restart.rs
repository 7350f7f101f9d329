//! PostgreSQL restarted under load (`pg_ctlcluster ... restart`, the whole
//! server): the host waits (no dead letter, no retry spent), `/health`
//! says why while it is down, the log says so once when the outage starts
//! and once when it ends, and then every event is applied exactly once.
//!
//! Alone in its test binary: it restarts the server every PostgreSQL test
//! uses, holding the PostgreSQL lock alone (test binaries run side by side;
//! every other test database holds that lock shared).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::backend::{Backend, PostgresRestartLock};
use common::broker_lock::BrokerLock;
use common::workload::{FaultRun, Pace, assert_no_dead_letters, settle};

/// Restarts the local PostgreSQL cluster (Debian's `pg_ctlcluster`).
fn restart_postgres() {
    let versions = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster (/etc/postgresql): this test restarts it");
    let version = versions
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .expect("a PostgreSQL version under /etc/postgresql");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster (Debian's postgresql-common) restarts the server");
    assert!(
        status.success(),
        "pg_ctlcluster {version} main restart: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_is_waited_out() {
    let _broker_up = BrokerLock::shared().await;
    let restart_lock = PostgresRestartLock::take().await;
    println!("PostgreSQL lock taken after {:.1?}", restart_lock.waited());
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
    workload.wait_counted(&host, 3_000).await;

    // /health is watched while the server restarts.
    let watch = {
        let (base, http) = (host.base.clone(), host.http.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut seen = None;
            while started.elapsed() < Duration::from_secs(20) {
                if let Ok(resp) = http.get(format!("{base}/health")).send().await
                    && resp.status().as_u16() == 503
                {
                    let body: serde_json::Value = resp.json().await.unwrap_or_default();
                    if body["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("store unavailable"))
                    {
                        seen = Some(body);
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    let restarted = Instant::now();
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();
    println!("PostgreSQL restarted in {:?}", restarted.elapsed());
    let seen = watch.await.unwrap();
    println!("/health while it restarted: {seen:?}");
    assert!(seen.is_some(), "/health said 503 with the store's reason");

    // Carries on by itself, every event once, no dead letter.
    settle(&workload, &mut host, publishing, Duration::from_secs(10)).await;
    assert_eq!(
        host.log_count("store outage:"),
        1,
        "said once\n{}",
        host.log_tail(30)
    );
    assert_eq!(
        host.log_count("store outage over"),
        1,
        "{}",
        host.log_tail(30)
    );
    assert_no_dead_letters(&host.config).await;
    host.cleanup(common::workload::PLUGINS).await;
}
