//! `GET /metrics`: what the host has done since it started, in the
//! Prometheus text format. Per-plugin counters are the ones `/plugins`
//! shows (one truth, read at scrape time); histograms, HTTP requests, the
//! broker, the store and the process are added here.

pub mod exposition;
pub mod histogram;
mod process;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::broker::BrokerStatus;
use crate::plugins::{PluginRegistry, PluginSlot};
use crate::store::StoreHealth;
use exposition::Exposition;
pub use histogram::Histogram;

/// Timings of one plugin, across its versions.
#[derive(Debug)]
pub struct PluginTimings {
    /// Events per batch handed to the batch core.
    pub batch_size: Histogram,
    /// From a batch's first delivery to its acknowledgement.
    pub batch_seconds: Histogram,
    /// One `handle` call.
    pub call_seconds: Histogram,
    /// One store commit of a batch.
    pub commit_seconds: Histogram,
    /// One producer poll, its publishing and commit included.
    pub poll_seconds: Histogram,
}

impl Default for PluginTimings {
    fn default() -> Self {
        Self {
            batch_size: Histogram::new(histogram::EVENTS),
            batch_seconds: Histogram::seconds(),
            call_seconds: Histogram::seconds(),
            commit_seconds: Histogram::seconds(),
            poll_seconds: Histogram::seconds(),
        }
    }
}

/// HTTP requests by route template, method and status, and their latency
/// by route.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

impl HttpMetrics {
    fn record(&self, route: &str, method: &str, status: u16, started: Instant) {
        let key = (route.to_owned(), method.to_owned(), status);
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
        let histogram = Arc::clone(
            self.latency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(route.to_owned())
                .or_insert_with(|| Arc::new(Histogram::seconds())),
        );
        histogram.observe_duration(started.elapsed());
    }
}

/// Counts every request by its route template (`/plugins/{name}/dlq`, not
/// the plugin's name: label values stay few), or `unmatched`.
pub async fn count_requests(
    State(http): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    http.record(&route, &method, response.status().as_u16(), started);
    response
}

/// What a scrape reads.
pub struct Sources<'a> {
    pub registry: &'a PluginRegistry,
    pub broker: &'a BrokerStatus,
    pub store_health: &'a StoreHealth,
    /// The embedded store's file, when the store is one.
    pub store_file: Option<std::path::PathBuf>,
    pub http: &'a HttpMetrics,
}

/// The metrics page.
pub fn render(s: &Sources) -> String {
    let mut page = Exposition::default();
    let slots = s.registry.all();
    plugin_metrics(&mut page, &slots);
    let failed = s.registry.failures().len();
    page.gauges(
        "switchyard_plugin_files_failed",
        "Plugin files in the folder that failed to load and run no plugin.",
        [(&[][..], failed as f64)],
    );
    broker_metrics(&mut page, s.broker);
    store_metrics(&mut page, s);
    http_metrics(&mut page, s.http);
    process::metrics(&mut page);
    page.finish()
}

fn plugin_metrics(page: &mut Exposition, slots: &[Arc<PluginSlot>]) {
    let names: Vec<[(&str, &str); 1]> = slots
        .iter()
        .map(|p| [("plugin", p.name.as_str())])
        .collect();
    let labelled = |i: usize| &names[i][..];
    type Read = fn(&PluginSlot) -> u64;
    let counters: &[(&str, &str, Read)] = &[
        (
            "switchyard_events_received_total",
            "Events handed to the plugin's batch core (redeliveries included).",
            |p| p.counters.received.load(Relaxed),
        ),
        (
            "switchyard_events_applied_total",
            "Events the plugin applied and the store committed.",
            |p| p.counters.applied.load(Relaxed),
        ),
        (
            "switchyard_events_duplicates_total",
            "Events skipped because the plugin had applied their id before.",
            |p| p.counters.duplicates.load(Relaxed),
        ),
        (
            "switchyard_events_rejected_total",
            "Events judged bad (by the host's checks, the plugin's reject or a trap).",
            |p| p.counters.rejected.load(Relaxed),
        ),
        (
            "switchyard_events_retried_total",
            "Events the plugin failed transiently (each attempt counts).",
            |p| p.counters.retried.load(Relaxed),
        ),
        (
            "switchyard_events_dead_lettered_total",
            "Events sent to the dead letters (rejected, or out of attempts).",
            |p| p.counters.dead_lettered.load(Relaxed),
        ),
        (
            "switchyard_commits_total",
            "Store commits of batches that applied at least one event.",
            |p| p.counters.commits.load(Relaxed),
        ),
        (
            "switchyard_batch_conflicts_total",
            "Batches run again because another writer committed the plugin's state first.",
            |p| p.counters.conflicts.load(Relaxed),
        ),
        (
            "switchyard_plugin_restarts_total",
            "Plugin instances replaced after a trap, a timeout or the memory cap.",
            |p| p.counters.restarts.load(Relaxed),
        ),
        (
            "switchyard_plugin_reloads_total",
            "New versions of the plugin loaded over a running one.",
            |p| p.reloads.load(Relaxed),
        ),
        ("switchyard_producer_polls_total", "Producer polls.", |p| {
            p.counters.polls.load(Relaxed)
        }),
        (
            "switchyard_producer_poll_failures_total",
            "Producer polls that failed.",
            |p| p.counters.failed_polls.load(Relaxed),
        ),
        (
            "switchyard_producer_events_published_total",
            "Events producers published (confirmed by the broker).",
            |p| p.counters.published.load(Relaxed),
        ),
    ];
    for (name, help, read) in counters {
        page.counters(
            name,
            help,
            slots
                .iter()
                .enumerate()
                .map(|(i, p)| (labelled(i), read(p))),
        );
    }
    page.gauges(
        "switchyard_plugin_load_seconds",
        "How long loading the running version took (compile or cache, instantiate, describe).",
        slots
            .iter()
            .enumerate()
            .map(|(i, p)| (labelled(i), p.current().load_ms / 1000.0)),
    );
    type Pick = fn(&PluginTimings) -> &Histogram;
    let histograms: &[(&str, &str, Pick)] = &[
        ("switchyard_batch_size_events", "Events per batch.", |t| {
            &t.batch_size
        }),
        (
            "switchyard_batch_seconds",
            "From a batch's first delivery to its acknowledgement.",
            |t| &t.batch_seconds,
        ),
        (
            "switchyard_plugin_call_seconds",
            "One handle call of the plugin.",
            |t| &t.call_seconds,
        ),
        (
            "switchyard_commit_seconds",
            "One store commit of a batch.",
            |t| &t.commit_seconds,
        ),
        (
            "switchyard_producer_poll_seconds",
            "One producer poll, publishing and commit included.",
            |t| &t.poll_seconds,
        ),
    ];
    for (name, help, pick) in histograms {
        page.histograms(
            name,
            help,
            slots
                .iter()
                .enumerate()
                .map(|(i, p)| (labelled(i), pick(&p.counters.timings))),
        );
    }
}

fn broker_metrics(page: &mut Exposition, broker: &BrokerStatus) {
    page.gauges(
        "switchyard_broker_connected",
        "1 while the host is connected to the broker (or runs the embedded bus).",
        [(&[][..], f64::from(u8::from(broker.get().is_ok())))],
    );
    page.gauges(
        "switchyard_broker_blocked",
        "1 while the broker blocks the host's publishing (a memory or disk alarm).",
        [(
            &[][..],
            f64::from(u8::from(broker.blocked_reason().is_some())),
        )],
    );
    page.counters(
        "switchyard_broker_connections_total",
        "Broker connections opened (more than one: reconnects).",
        [(&[][..], broker.connections())],
    );
}

fn store_metrics(page: &mut Exposition, s: &Sources) {
    page.gauges(
        "switchyard_store_up",
        "1 while the store answers, 0 during an outage.",
        [(
            &[][..],
            f64::from(u8::from(s.store_health.outage().is_none())),
        )],
    );
    page.counters(
        "switchyard_store_errors_total",
        "Store calls that failed because the store could not answer or commit.",
        [(&[][..], s.store_health.failures())],
    );
    if let Some(file) = &s.store_file {
        // The database with its write-ahead log.
        let size: u64 = ["", "-wal"]
            .iter()
            .filter_map(|suffix| {
                let mut path = file.clone().into_os_string();
                path.push(suffix);
                std::fs::metadata(path).ok().map(|m| m.len())
            })
            .sum();
        page.gauges(
            "switchyard_store_size_bytes",
            "Size of the embedded store's file and its write-ahead log.",
            [(&[][..], size as f64)],
        );
    }
}

fn http_metrics(page: &mut Exposition, http: &HttpMetrics) {
    let requests = http
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let statuses: Vec<String> = requests.keys().map(|(_, _, s)| s.to_string()).collect();
    let labels: Vec<[(&str, &str); 3]> = requests
        .keys()
        .zip(&statuses)
        .map(|((route, method, _), status)| {
            [
                ("route", route.as_str()),
                ("method", method.as_str()),
                ("status", status.as_str()),
            ]
        })
        .collect();
    page.counters(
        "switchyard_http_requests_total",
        "HTTP requests answered, by route template, method and status.",
        labels
            .iter()
            .zip(requests.values())
            .map(|(l, n)| (&l[..], *n)),
    );
    let latency = http
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let labels: Vec<[(&str, &str); 1]> = latency.keys().map(|r| [("route", r.as_str())]).collect();
    page.histograms(
        "switchyard_http_request_seconds",
        "Time to answer an HTTP request, by route template.",
        labels
            .iter()
            .zip(latency.values())
            .map(|(l, h)| (&l[..], &**h)),
    );
}
