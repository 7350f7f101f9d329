//! The process's own resources, as Prometheus names them (`process_`).

use super::exposition::Exposition;

/// Resident memory and CPU time from `/proc/self` (Linux); nothing elsewhere.
pub fn metrics(page: &mut Exposition) {
    if let Some(rss) = resident_bytes() {
        page.gauges(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            [(&[][..], rss as f64)],
        );
    }
    if let Some(cpu) = cpu_seconds() {
        page.counter_f64(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            cpu,
        );
    }
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // Clock ticks: 100 per second on every Linux Switchyard runs on.
    Some((utime + stime) as f64 / 100.0)
}
