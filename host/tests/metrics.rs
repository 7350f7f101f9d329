//! `GET /metrics`: a scrape of a host that ran a known workload parses with
//! Prometheus's own Python client parser, and its counters are the
//! workload's: received, applied, duplicates, rejected, dead-lettered,
//! HTTP requests by route and status.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::{TestBroker, TestHost, customer_event, eventually};
use std::time::Duration;

/// `(name, sorted labels)` -> value, as `prometheus_client`'s
/// `text_string_to_metric_families` reads the page. The parser runs in the
/// Python that `cargo xtask test` provides (`SWITCHYARD_TEST_PYTHON`).
fn parse(page: &str) -> BTreeMap<(String, String), f64> {
    let python = std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out.append([s.name, labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python}: {e}; `cargo xtask test` sets SWITCHYARD_TEST_PYTHON to a Python with prometheus-client"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the page: {}\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, String, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    samples.into_iter().map(|(n, l, v)| ((n, l), v)).collect()
}

async fn scrape(host: &TestHost) -> (String, String) {
    let response = host
        .http
        .get(format!("{}/metrics", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (kind, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_a_known_workload_and_the_page_parses() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    let valid = 40u64;
    let mut messages = Vec::new();
    for i in 0..valid {
        let id = format!("c{}", i % 7);
        let ts = format!("2026-01-01T00:00:{:02}Z", i % 60);
        messages.push((
            "customer.created".to_owned(),
            customer_event(&format!("e{i}"), &id, "ann", &ts),
        ));
    }
    // Dirty input: the same ids again, bodies that are no events, a
    // label-hostile routing key, a customer without an id.
    for i in 0..5 {
        messages.push((
            "customer.created".to_owned(),
            customer_event(&format!("e{i}"), "c1", "ann", "2026-01-01T00:00:00Z"),
        ));
    }
    messages.push(("customer.created".to_owned(), b"{\"eventId\": ".to_vec()));
    messages.push((
        "customer.updated".to_owned(),
        b"[\"not\", \"an\", \"object\"]".to_vec(),
    ));
    messages.push((
        "customer.created".to_owned(),
        br#"{"eventId":"bad-1","name":"x\"y\nz","email":"q"}"#.to_vec(),
    ));
    let (duplicates, rejected) = (5u64, 3u64);
    broker.publish_many(&messages).await;
    host.wait_counts("merge", valid, rejected).await;
    // Every message has been through the batch core once settled.
    let total = valid + duplicates + rejected;
    eventually(
        "every message to be received",
        Duration::from_secs(30),
        || async {
            let (_, page) = scrape(&host).await;
            parse(&page)
                .get(&(
                    "switchyard_events_received_total".into(),
                    "plugin=merge".into(),
                ))
                .copied()
                == Some(total as f64)
        },
    )
    .await;
    let (_, bad) = host.get("/analytics/collections/customers?limit=0").await;
    assert!(bad["error"].is_string());

    let (kind, page) = scrape(&host).await;
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let samples = parse(&page);
    let merge = |name: &str| {
        samples
            .get(&(name.to_owned(), "plugin=merge".to_owned()))
            .copied()
            .unwrap_or_else(|| panic!("no {name}{{plugin=merge}} in\n{page}"))
    };
    assert_eq!(merge("switchyard_events_received_total"), total as f64);
    assert_eq!(merge("switchyard_events_applied_total"), valid as f64);
    assert_eq!(
        merge("switchyard_events_duplicates_total"),
        duplicates as f64
    );
    assert_eq!(merge("switchyard_events_rejected_total"), rejected as f64);
    assert_eq!(
        merge("switchyard_events_dead_lettered_total"),
        rejected as f64
    );
    assert_eq!(merge("switchyard_events_retried_total"), 0.0);
    assert_eq!(merge("switchyard_plugin_restarts_total"), 0.0);
    assert_eq!(merge("switchyard_batch_size_events_sum"), total as f64);
    let batches = merge("switchyard_batch_size_events_count");
    assert!(batches >= 1.0 && batches <= total as f64, "{batches}");
    assert_eq!(
        merge("switchyard_plugin_call_seconds_count"),
        (valid + rejected - 2) as f64,
        "one handle call per event that reached the plugin (two bodies were refused by the host)"
    );
    assert!(merge("switchyard_commits_total") >= 1.0);
    assert_eq!(
        samples[&("switchyard_store_up".to_owned(), String::new())],
        1.0
    );
    assert_eq!(
        samples[&("switchyard_broker_connected".to_owned(), String::new())],
        1.0
    );
    assert!(samples[&("process_resident_memory_bytes".to_owned(), String::new())] > 1e6);
    assert!(samples[&("switchyard_store_size_bytes".to_owned(), String::new())] > 0.0);
    // HTTP by route template, not by path: one 400 on the collections route.
    assert_eq!(
        samples[&(
            "switchyard_http_requests_total".to_owned(),
            "method=GET,route=/analytics/collections/{name},status=400".to_owned()
        )],
        1.0,
        "{page}"
    );
    broker.close().await;
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_protect_reads_rule() {
    let host = TestHost::start_with(&["merge"], |c| {
        c.api_token = Some("s3cret".into());
        c.protect_reads = true;
    })
    .await;
    let (status, _) = host.get("/metrics").await;
    assert_eq!(status, 401);
    let response = host
        .http
        .get(format!("{}/metrics", host.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    host.cleanup(&["merge"]).await;
}
