//! An advisory lock, one file per shared service on this machine (the
//! broker, the PostgreSQL server), taken with `flock(2)` as the `flock(1)`
//! command does: tests that need the service up hold it shared, a test
//! that stops or restarts the service holds it alone. Test binaries run
//! side by side (`cargo xtask test` runs two at a time), so this, not the
//! order of the binaries, keeps a restart away from the other tests.

use std::fs::{File, OpenOptions, TryLockError};
use std::time::{Duration, Instant};

/// How long a test waits for a lock before it gives up.
const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// A held lock; released when dropped (closing the file releases it).
pub struct ServiceLock {
    _file: File,
    /// How long it took to get.
    pub waited: Duration,
}

impl ServiceLock {
    /// Takes the lock on `path`, waiting (asynchronously) for holders of
    /// the other kind; `service` names it in the waiting message.
    pub async fn take(path: &str, exclusive: bool, service: &str) -> Self {
        let file = open(path);
        let started = Instant::now();
        let mut told = false;
        loop {
            if try_take(&file, exclusive, path) {
                return Self {
                    _file: file,
                    waited: started.elapsed(),
                };
            }
            if !told {
                tell_waiting(path, exclusive, service);
                told = true;
            }
            assert!(
                started.elapsed() < WAIT_LIMIT,
                "{path} still held after {WAIT_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Like [`ServiceLock::take`] shared, for a caller outside any runtime
    /// or one that may block its thread while it waits.
    pub fn shared_blocking(path: &str, service: &str) -> Self {
        let file = open(path);
        let started = Instant::now();
        let mut told = false;
        while !try_take(&file, false, path) {
            if !told {
                tell_waiting(path, false, service);
                told = true;
            }
            assert!(
                started.elapsed() < WAIT_LIMIT,
                "{path} still held after {WAIT_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Self {
            _file: file,
            waited: started.elapsed(),
        }
    }
}

fn open(path: &str) -> File {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {path}: {e}"))
}

/// One non-blocking attempt.
fn try_take(file: &File, exclusive: bool, path: &str) -> bool {
    let attempt = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match attempt {
        Ok(()) => true,
        Err(TryLockError::WouldBlock) => false,
        Err(TryLockError::Error(e)) => panic!("locking {path}: {e}"),
    }
}

fn tell_waiting(path: &str, exclusive: bool, service: &str) {
    let other = if exclusive {
        format!("tests that need {service} up")
    } else {
        format!("a test that stops {service}")
    };
    println!("waiting for {path}, held by {other}");
}
