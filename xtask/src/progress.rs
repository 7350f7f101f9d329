//! What `cargo xtask` says while it works, on stderr in plain lines (no
//! bar, no colour, no carriage return: the same in a terminal and a log):
//! the step it is on (`xtask: [2/5] building the Python and JavaScript
//! plugins`), a line every [`EVERY`] while a step runs long without a word
//! of its own, and how long each step took.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How often a long step says it is still running.
pub const EVERY: Duration = Duration::from_secs(15);

/// The numbered steps of one task.
pub struct Steps {
    total: usize,
    next: usize,
    started: Instant,
}

impl Steps {
    pub fn new(total: usize) -> Self {
        Self {
            total,
            next: 0,
            started: Instant::now(),
        }
    }

    /// Runs the next step, `what`, saying so when it starts, every
    /// [`EVERY`] while it runs, and when it ends.
    pub fn run<T>(&mut self, what: &str, work: impl FnOnce() -> T) -> T {
        self.next += 1;
        let label = format!("[{}/{}] {what}", self.next, self.total);
        eprintln!("xtask: {label}...");
        let began = Instant::now();
        let done = while_running(&label, work);
        eprintln!("xtask: {label}: took {}", elapsed(began.elapsed()));
        done
    }

    /// Like [`Steps::run`], for work that prints its own progress (tests,
    /// benchmarks): no "still" lines in between.
    pub fn run_talking<T>(&mut self, what: &str, work: impl FnOnce() -> T) -> T {
        self.next += 1;
        let label = format!("[{}/{}] {what}", self.next, self.total);
        eprintln!("xtask: {label}...");
        let began = Instant::now();
        let done = work();
        eprintln!("xtask: {label}: took {}", elapsed(began.elapsed()));
        done
    }

    /// Says how long the whole task took.
    pub fn finish(&self) {
        eprintln!("xtask: done in {}", elapsed(self.started.elapsed()));
    }
}

/// Runs `work`, printing `xtask: still <label> (<time>)` every [`EVERY`]
/// until it returns.
pub fn while_running<T>(label: &str, work: impl FnOnce() -> T) -> T {
    let (finished, wait) = mpsc::channel::<()>();
    let began = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(EVERY) {
                eprintln!("xtask: still {label} ({})", elapsed(began.elapsed()));
            }
        });
        let done = work();
        drop(finished);
        done
    })
}

/// `42 s`, `3 min 07 s`.
pub fn elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} min {:02} s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(elapsed(Duration::from_millis(4_300)), "4.3 s");
        assert_eq!(elapsed(Duration::from_secs(187)), "3 min 07 s");
    }

    #[test]
    fn a_step_returns_what_its_work_returns() {
        let mut steps = Steps::new(2);
        assert_eq!(steps.run("adding", || 1 + 1), 2);
        assert_eq!(while_running("waiting", || "done"), "done");
    }
}
