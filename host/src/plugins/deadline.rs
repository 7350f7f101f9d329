//! When a plugin call is stopped. Every call runs under the epoch deadline
//! (`SWITCHYARD_PLUGIN_TIMEOUT_MS`); a producer's poll may outlive it as
//! long as it makes [`Progress`] (an HTTP request sent, an answer's bytes
//! arriving, a `publish`), each renewing the deadline, up to the poll's own
//! limit. A guest that computes for a whole deadline without progress is
//! stopped as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

/// A count of the things a plugin's call got done outside the guest;
/// shared by the instance's store and its HTTP hooks.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What happens when a call reaches its deadline.
#[derive(Debug, Default)]
pub struct Renewal {
    /// Set for a call that may renew its deadline: until when, by how much.
    renewable: Option<Renewable>,
}

#[derive(Debug)]
struct Renewable {
    progress: Progress,
    seen: u64,
    ticks: u64,
    until: Instant,
}

impl Renewal {
    /// The deadline of the call in progress is final.
    pub fn none() -> Self {
        Self::default()
    }

    /// The deadline is renewed by `ticks` whenever `progress` moved since
    /// the last renewal, for at most `limit` from now.
    pub fn on_progress(progress: &Progress, ticks: u64, limit: Duration) -> Self {
        Self {
            renewable: Some(Renewable {
                progress: progress.clone(),
                seen: progress.get(),
                ticks,
                until: Instant::now() + limit,
            }),
        }
    }

    /// Called by wasmtime when the deadline is reached.
    pub fn on_deadline(&mut self) -> UpdateDeadline {
        match &mut self.renewable {
            Some(r) if r.progress.get() != r.seen && Instant::now() < r.until => {
                r.seen = r.progress.get();
                UpdateDeadline::Continue(r.ticks)
            }
            _ => UpdateDeadline::Interrupt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renewed(r: &mut Renewal) -> bool {
        matches!(r.on_deadline(), UpdateDeadline::Continue(5))
    }

    #[test]
    fn a_deadline_is_renewed_only_after_progress_and_within_the_limit() {
        assert!(!renewed(&mut Renewal::none()));
        let progress = Progress::default();
        let mut r = Renewal::on_progress(&progress, 5, Duration::from_secs(60));
        assert!(!renewed(&mut r), "no progress yet");
        progress.bump();
        assert!(renewed(&mut r));
        assert!(!renewed(&mut r), "the same progress renews once");
        progress.bump();
        assert!(renewed(&mut r));
        let mut spent = Renewal::on_progress(&progress, 5, Duration::ZERO);
        progress.bump();
        assert!(!renewed(&mut spent), "past the limit");
    }
}
