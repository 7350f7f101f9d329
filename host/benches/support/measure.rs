//! Measurements of the benchmark's own process, from `/proc`: CPU time
//! (all of it, or the host's threads alone), resident memory, and the
//! small statistics the reports quote.

use std::collections::HashSet;

use anyhow::{Context, Result, ensure};

/// A positive count from the environment, or `default`.
pub fn positive_env(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => {
            let n: usize = text
                .trim()
                .parse()
                .with_context(|| format!("{name}={text:?} is not a count"))?;
            ensure!(n > 0, "{name} must be at least 1");
            Ok(n)
        }
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The value at `q` (0 to 1) of `sorted`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// User plus system CPU time of this process so far (threads that have
/// exited included), in seconds.
pub fn cpu_seconds() -> Result<f64> {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat")?)
}

/// utime + stime of a `/proc/.../stat` line, in seconds.
fn stat_cpu(stat: &str) -> Result<f64> {
    // Fields after the command name (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("unreadable /proc/self/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// The threads of this process: id, name and CPU seconds.
pub fn threads() -> Result<Vec<(u32, String, f64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A thread may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map(|(name, _)| name.to_owned())
            .unwrap_or_default();
        out.push((tid, name, stat_cpu(&stat)?));
    }
    Ok(out)
}

/// The CPU time of this process less that of the benchmark's own threads:
/// those alive when it is made whose name does not start with
/// `host_prefix` (the main thread, the benchmark's runtime, its broker
/// connections' I/O threads), and any later thread whose name starts with
/// `bench_prefix` (the benchmark's runtime names its threads so). The rest
/// is the host's: its runtime's threads (`host_prefix`) and every thread
/// that started later (its broker connections', the plugin engine's).
pub struct HostCpu {
    bench_threads: HashSet<u32>,
    bench_prefix: &'static str,
}

impl HostCpu {
    pub fn new(bench_prefix: &'static str, host_prefix: &'static str) -> Result<Self> {
        let bench_threads = threads()?
            .into_iter()
            .filter(|(_, name, _)| !name.starts_with(host_prefix))
            .map(|(tid, _, _)| tid)
            .collect();
        Ok(Self {
            bench_threads,
            bench_prefix,
        })
    }

    fn is_bench(&self, tid: u32, name: &str) -> bool {
        self.bench_threads.contains(&tid) || name.starts_with(self.bench_prefix)
    }

    /// (host seconds, benchmark seconds) so far. Threads of the benchmark
    /// must outlive the measurement (their time would count as the host's
    /// once they exit).
    pub fn split(&self) -> Result<(f64, f64)> {
        let total = cpu_seconds()?;
        let bench: f64 = threads()?
            .into_iter()
            .filter(|(tid, name, _)| self.is_bench(*tid, name))
            .map(|(_, _, cpu)| cpu)
            .sum();
        Ok((total - bench, bench))
    }

    /// The host's live threads grouped by name, CPU seconds each, most
    /// first.
    pub fn host_threads(&self) -> Result<Vec<(String, f64)>> {
        let mut by_name: Vec<(String, f64)> = Vec::new();
        for (tid, name, cpu) in threads()? {
            if self.is_bench(tid, &name) {
                continue;
            }
            match by_name.iter_mut().find(|(n, _)| *n == name) {
                Some((_, total)) => *total += cpu,
                None => by_name.push((name, cpu)),
            }
        }
        by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(by_name)
    }
}

/// `field` (`VmHWM`, `VmRSS`, ...) of `/proc/self/status`, in MiB.
pub fn status_mib(field: &str) -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(kib / 1024.0)
}

/// VmHWM of this process, in MiB.
pub fn peak_rss_mib() -> Result<f64> {
    status_mib("VmHWM")
}
