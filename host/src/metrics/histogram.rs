//! A fixed-bucket histogram that many threads record into without a lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets of a duration histogram, in seconds: 100 us
/// to 10 s, about three per decade.
pub const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds of the buckets of a batch-size histogram, in events.
pub const EVENTS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// Observations counted per bucket (not cumulative: the exposition adds
/// them up), with their sum in millionths of the unit.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// A histogram of durations, in seconds.
    pub fn seconds() -> Self {
        Self::new(SECONDS)
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add((value.max(0.0) * 1e6).round() as u64, Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// `(upper bound, cumulative count)` per bucket, the count of all
    /// observations (the `+Inf` bucket) and their sum.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| {
                running += n.load(Relaxed);
                (bound, running)
            })
            .collect();
        // Read after the buckets: +Inf is never below the last bucket.
        let count = self.count.load(Relaxed).max(running);
        (buckets, count, self.sum_micros.load(Relaxed) as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_overflow_counts_only_in_inf() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 3.0, 50.0] {
            h.observe(v);
        }
        let (buckets, count, sum) = h.snapshot();
        assert_eq!(buckets, vec![(1.0, 2), (10.0, 3)]);
        assert_eq!(count, 4);
        assert!((sum - 54.5).abs() < 1e-9);
    }
}
