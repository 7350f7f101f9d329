//! The host's own histograms over the steady run, read from `/metrics` at
//! its start and end: where the confirm -> readable time goes.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

/// The families the breakdown prints: `(name, label that must be present,
/// what it times)`.
pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "switchyard_batch_seconds",
        "",
        "batch: first delivery -> ack (linger, plugin, commit, ack)",
    ),
    (
        "switchyard_commit_seconds",
        "",
        "commit of a batch (SQLite, fsync)",
    ),
    (
        "switchyard_plugin_call_seconds",
        "",
        "one plugin handle call",
    ),
    ("switchyard_batch_size_events", "", "events per batch"),
    (
        "switchyard_http_request_seconds",
        "/analytics/collections/{name}/{key}",
        "API: GET a document (the pollers)",
    ),
];

/// Cumulative counts by upper bound (`+Inf` as infinity), summed over the
/// family's series that carry `label`.
pub type Buckets = BTreeMap<u64, (f64, u64)>;

pub async fn scrape(http: &reqwest::Client, base: &str) -> Result<String> {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .context("GET /metrics")?
        .text()
        .await
        .context("reading /metrics")
}

/// One family's buckets out of a scrape.
pub fn buckets(page: &str, family: &str, label: &str) -> Buckets {
    let prefix = format!("{family}_bucket{{");
    let mut out = Buckets::new();
    for line in page.lines().filter(|l| l.starts_with(&prefix)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if !series.contains(label) {
            continue;
        }
        let Some(le) = series
            .split("le=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let n = value.parse::<f64>().unwrap_or(0.0) as u64;
        // Ordered by bound: f64 bits order like the value for positives.
        let entry = out.entry(bound.to_bits()).or_insert((bound, 0));
        entry.1 += n;
    }
    out
}

/// The upper bound of the highest bucket with an observation.
pub fn max_bound(buckets: &Buckets) -> f64 {
    let mut below = 0;
    let mut max = f64::NAN;
    for (bound, n) in buckets.values() {
        if *n > below {
            max = *bound;
        }
        below = *n;
    }
    max
}

/// `after - before`, per bucket.
pub fn since(after: &Buckets, before: &Buckets) -> Buckets {
    after
        .iter()
        .map(|(k, (bound, n))| {
            let was = before.get(k).map_or(0, |b| b.1);
            (*k, (*bound, n.saturating_sub(was)))
        })
        .collect()
}

/// The `q` quantile, linear within its bucket (Prometheus'
/// `histogram_quantile`); the count.
pub fn quantile(buckets: &Buckets, q: f64) -> (f64, u64) {
    let total = buckets.values().last().map_or(0, |b| b.1);
    if total == 0 {
        return (f64::NAN, 0);
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for (bound, n) in buckets.values() {
        if *n as f64 >= rank {
            if bound.is_infinite() {
                return (lower, total);
            }
            let inside = (n - below).max(1) as f64;
            return (
                lower + (bound - lower) * (rank - below as f64) / inside,
                total,
            );
        }
        (lower, below) = (*bound, *n);
    }
    (lower, total)
}
