//! Whether the store answers, as this host last found it. Whoever meets a
//! store failure that is not the data's fault (an outage) says so here and
//! whoever then succeeds says so too; the log gets one line when an outage
//! starts and one when it ends, never one per event, and `/health` answers
//! 503 with the reason meanwhile.
//!
//! An outage ends at the first success [`QUIET`] after its last failure: a
//! store that fails now and then (a full disk lets a small commit through
//! and refuses the next) is one outage, not many.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{StoreError, now_ms};

/// How long after its last failure a success ends an outage.
pub const QUIET: Duration = Duration::from_secs(2);

/// The store's health: the outage in progress (`None` while it answers),
/// and how many store calls have failed since the host started.
#[derive(Debug, Default)]
pub struct StoreHealth(Mutex<Option<Outage>>, AtomicU64);

/// An outage in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub reason: String,
    pub since_ms: i64,
    pub last_failure_ms: i64,
}

impl StoreHealth {
    /// The store failed with `error`.
    pub fn failed(&self, error: &StoreError) {
        self.1.fetch_add(1, Ordering::Relaxed);
        let mut outage = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *outage {
            Some(o) => {
                o.reason = error.to_string();
                o.last_failure_ms = now_ms();
            }
            None => {
                tracing::error!(
                    error = %error,
                    "store outage: what needs the store waits until it answers again"
                );
                *outage = Some(Outage {
                    reason: error.to_string(),
                    since_ms: now_ms(),
                    last_failure_ms: now_ms(),
                });
            }
        }
    }

    /// The store answered.
    pub fn answered(&self) {
        let mut outage = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let quiet = QUIET.as_millis() as i64;
        if let Some(o) = outage.take_if(|o| now_ms() - o.last_failure_ms >= quiet) {
            tracing::info!(
                lasted_ms = now_ms() - o.since_ms,
                "store outage over: the store answers again"
            );
        }
    }

    /// Store calls that failed since the host started (each batch attempt
    /// during an outage counts once).
    pub fn failures(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }

    /// The outage in progress, if any.
    pub fn outage(&self) -> Option<Outage> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_lasts_from_the_first_failure_to_the_next_answer() {
        let health = StoreHealth::default();
        assert_eq!(health.outage(), None);
        health.failed(&StoreError::Unavailable("disk full".into()));
        let since = health.outage().unwrap().since_ms;
        health.failed(&StoreError::Unavailable("still full".into()));
        let outage = health.outage().unwrap();
        assert_eq!(outage.since_ms, since, "the same outage");
        assert_eq!(outage.reason, "store unavailable: still full");
        health.answered();
        assert!(health.outage().is_some(), "a success right after a failure");
        std::thread::sleep(QUIET);
        health.answered();
        assert_eq!(health.outage(), None);
    }
}
