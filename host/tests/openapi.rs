//! `GET /openapi.json` against the live API: schemathesis (pinned, in the
//! venv `cargo xtask test` makes, `SWITCHYARD_TEST_PYTHON`) reads the
//! document of a host running the merge plugin on the real broker, on each
//! store backend, with data and dead letters in it and an API token set,
//! and sends generated requests to every operation, the write routes with
//! the token. It must find no 5xx, no status code the document does not
//! list, no answer that breaks its schema or its content type, no invalid
//! input accepted. Its own report is the failure message.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::backend::Backend;
use common::{TestBroker, TestHost, customer_event, inventory_event};
use serde_json::json;

const TOKEN: &str = "openapi-test-token";

/// The schemathesis next to the test Python, or in the venv `cargo xtask
/// test` makes.
fn schemathesis() -> PathBuf {
    let python = std::env::var_os("SWITCHYARD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/test-py/bin/python")
        });
    let tool = python.with_file_name("schemathesis");
    assert!(
        tool.exists(),
        "{} is missing: `cargo xtask test` installs the pinned schemathesis there",
        tool.display()
    );
    tool
}

/// Gives the host something to serve: merged customers and products, an
/// API write, and dead letters (dirty input) for the dead-letter routes.
async fn seed(host: &TestHost) {
    let broker = TestBroker::connect(&host.config).await;
    let mut messages = Vec::new();
    for i in 0..6 {
        let ts = format!("2026-01-01T00:00:{i:02}Z");
        messages.push((
            "customer.created".to_owned(),
            customer_event(&format!("oa-c{i}"), &format!("c{i}"), "ann", &ts),
        ));
        messages.push((
            "inventory.updated".to_owned(),
            inventory_event(&format!("oa-p{i}"), &format!("p{i}"), "Laptop ✓", i, &ts),
        ));
    }
    // Dirty input: not JSON, no event id, a repeated id, a huge name.
    messages.push(("customer.created".to_owned(), b"{\"eventId\": ".to_vec()));
    messages.push(("customer.created".to_owned(), b"[1, 2]".to_vec()));
    messages.push((
        "customer.created".to_owned(),
        customer_event("oa-c1", "c1", "ann", "2026-01-01T00:00:01Z"),
    ));
    messages.push((
        "customer.updated".to_owned(),
        customer_event(
            "oa-big",
            "c-big",
            &"x".repeat(100_000),
            "2026-01-01T00:01:00Z",
        ),
    ));
    broker.publish_many(&messages).await;
    broker.close().await;
    host.wait_counts("merge", 13, 2).await;

    let body = json!({
        "customer": {"id": "c-api", "name": "Zoë \"quoted\"", "email": "zoe@test.com"},
        "products": [{"id": "p1", "name": "Laptop", "stock": 3}],
    });
    let answer = host
        .http
        .post(format!("{}/analytics/data", host.base))
        .bearer_auth(TOKEN)
        .header("idempotency-key", "seed-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

per_backend!(schemathesis_finds_nothing_the_document_does_not_promise);

async fn schemathesis_finds_nothing_the_document_does_not_promise(backend: Backend) {
    let tool = schemathesis();
    let host =
        TestHost::start_on_with(backend, &["merge"], |c| c.api_token = Some(TOKEN.into())).await;
    host.wait_healthy().await;
    seed(&host).await;

    let (status, doc) = host.get("/openapi.json").await;
    assert_eq!(status, 200);
    // Every operation but the document's own, which schemathesis leaves out.
    let operations: std::collections::BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .filter(|operation| operation != "GET /openapi.json")
        .collect();
    assert!(
        operations.contains("POST /analytics/data") && operations.len() >= 12,
        "{operations:?}"
    );

    let applied_before = host.plugin("merge").await["events_applied"]
        .as_u64()
        .unwrap();

    let report = tempfile::tempdir().unwrap();
    let junit = report.path().join("junit.xml");
    let base = host.base.clone();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let junit_arg = junit.clone();
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemathesis.toml");
    // Its working folder too: schemathesis keeps a cache there.
    let workdir = report.path().to_owned();
    // schemathesis blocks; the host keeps serving on the runtime's threads.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&tool)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(format!("{base}/openapi.json"))
            .args([
                // Every check; schemathesis.toml says what they expect.
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "40",
                // A fixed seed, so that a failure can be replayed.
                "--seed",
                "20261129",
                // One worker: Hypothesis under Python 3.11 can trip over its
                // own source parsing in parallel threads.
                "--workers",
                "1",
                "--request-timeout",
                "20",
                "--header",
                &auth,
                "--report",
                "junit",
                "--report-junit-path",
            ])
            .arg(&junit_arg)
            .current_dir(&workdir)
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .expect("running schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");

    // It really tested every operation, and sent requests to each.
    let junit = std::fs::read_to_string(&junit).unwrap();
    println!("{junit}");
    let tested: std::collections::BTreeSet<String> = junit
        .split("<testcase name=\"")
        .skip(1)
        .map(|case| case.split('"').next().unwrap().to_owned())
        .collect();
    assert_eq!(tested, operations, "one test case per operation:\n{junit}");
    assert!(
        !junit.contains("<skipped"),
        "an operation was skipped:\n{junit}"
    );

    // The token went along: the write route applied what schemathesis sent
    // (at least the document's example body).
    let applied = host.plugin("merge").await["events_applied"]
        .as_u64()
        .unwrap();
    assert!(applied > applied_before, "{applied} <= {applied_before}");
    host.cleanup(&["merge"]).await;
}
