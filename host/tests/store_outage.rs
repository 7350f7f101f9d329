//! The store fails under the host: the SQLite file's file system fills up
//! while events flow. No event is dead-lettered or spends its retries
//! because of it: the host holds its batch, takes no more deliveries,
//! `/health` says why and the log says so once; once there is space again
//! every event is applied exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::broker_lock::BrokerLock;
use common::eventually;
use common::process::ChildHost;
use common::workload::{CustomerWorkload, PLUGINS, Pace, Publishing, settle, test_seed};

/// A small file system of the test's own (tmpfs), unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .status();
        assert!(
            mounted.as_ref().is_ok_and(|s| s.success()),
            "mounting a {mib} MiB tmpfs at {} failed ({mounted:?}): this test fills a file \
             system of its own and needs root (CI runs as root)",
            path.display()
        );
        Self { path, _dir: dir }
    }

    /// Fills the file system up with a file of its own; returns the file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let ballast = self.path.join("ballast");
        let mut file = std::fs::File::create(&ballast).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = file.sync_all();
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn health_error(body: &serde_json::Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_waited_out_and_every_event_applied_once() {
    let _broker_up = BrokerLock::shared().await;
    let disk = SmallDisk::mount(48);
    let mut rng = fastrand::Rng::with_seed(test_seed());
    let workload = CustomerWorkload::new(&mut rng, 12_000, 400, 100);
    let data = disk.path.join("data");
    let mut host = ChildHost::start_with(PLUGINS, |c| c.data = data.clone()).await;
    host.wait_healthy().await;
    let pace = Pace {
        chunk: 500,
        pause: Duration::from_millis(100),
    };
    let publishing = Publishing::start(&host.config, workload.messages.clone(), pace);
    workload.wait_counted(&host, 2_000).await;

    let ballast = disk.fill();
    eventually(
        "/health to say the store is out",
        Duration::from_secs(30),
        || async {
            let (status, body) = host.get("/health").await;
            status == 503 && health_error(&body).contains("store unavailable")
        },
    )
    .await;
    let (_, body) = host.get("/health").await;
    println!("while the disk is full: {body}");
    // A full disk may let a small commit through now and then: still one
    // outage, said once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        host.log_count("store outage:"),
        1,
        "said once\n{}",
        host.log_tail(20)
    );
    common::workload::assert_no_dead_letters(&host.config).await;

    std::fs::remove_file(&ballast).unwrap();
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
    // Every event once, no dead letter (settle checks both).
    settle(&workload, &mut host, publishing, Duration::from_secs(10)).await;
    assert!(Path::new(&data).exists());
    host.cleanup(PLUGINS).await;
    drop(disk);
}
