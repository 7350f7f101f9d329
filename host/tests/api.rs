//! The HTTP API: the legacy `POST /analytics/data` body, bad requests get a
//! 4xx that says what is wrong, pagination, 404s, health and plugin list.

mod common;

use common::{TestBroker, TestHost, customer_event};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_analytics_data_accepts_the_legacy_body_and_rejects_bad_ones() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let good = json!({
        "customer": {"id": "c1", "name": "ann", "email": "ann@test.com"},
        "products": [{"id": "p1", "name": "Laptop", "stock": 3}, {"id": "p2", "name": "Phone", "stock": 0}],
    });
    let (status, body) = host
        .post("/analytics/data", "application/json", good.to_string())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["appliedBy"], json!(["merge"]));

    let (_, data) = host.get("/analytics/data").await;
    assert_eq!(
        data,
        json!({"items": [{
            "customer": {"id": "c1", "name": "ann", "email": "ann@test.com"},
            "products": [{"id": "p1", "name": "Laptop", "stock": 3}, {"id": "p2", "name": "Phone", "stock": 0}],
        }], "next": null})
    );

    // Served as the plugin wrote it: the legacy field order is kept.
    let text = host
        .http
        .get(format!("{}/analytics/data", host.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"{"customer":{"id":"c1","name":"ann","email":"ann@test.com"},"products":[{"id":"p1","name":"Laptop","stock":3}"#),
        "{text}"
    );

    let bad: Vec<(&str, String, u16, &str)> = vec![
        ("application/json", "{\"customer\": ".into(), 400, ""),
        ("application/json", "[1,2]".into(), 400, "JSON object"),
        ("application/json", json!({"products": []}).to_string(), 400, "customer"),
        ("application/json", json!({"customer": {"id": "", "name": "x", "email": "y"}}).to_string(), 400, "id"),
        ("application/json", json!({"customer": {"id": "c9", "name": "x", "email": "y"}, "products": [{"id": "p9", "name": "z", "stock": "lots"}]}).to_string(), 400, "stock"),
        ("application/json", json!({"customer": {"id": "c9", "name": "x", "email": "y"}, "products": [{"id": "p9", "name": "z", "stock": -1}]}).to_string(), 400, "stock"),
        ("text/plain", good.to_string(), 415, ""),
        ("application/json", format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)), 413, ""),
    ];
    for (content_type, body, expected, mention) in bad {
        let (status, answer) = host
            .post("/analytics/data", content_type, body.clone())
            .await;
        assert_eq!(status, expected, "body {:.80} answered {answer}", body);
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text: {answer}"));
        assert!(
            error.contains(mention),
            "{error:?} should mention {mention:?}"
        );
    }
    let (status, _) = host.get("/analytics/collections/customers/c9").await;
    assert_eq!(status, 404, "nothing of a rejected body is applied");
    let (_, p2) = host.get("/analytics/collections/products/p2").await;
    assert_eq!(p2["stock"], 0);
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_the_cursor_and_bad_parameters_are_400() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    let events: Vec<(String, Vec<u8>)> = (0..25)
        .map(|i| {
            (
                "customer.created".to_string(),
                customer_event(
                    &format!("e{i}"),
                    &format!("c{i:02}"),
                    "x",
                    "2026-11-24T08:00:00Z",
                ),
            )
        })
        .collect();
    broker.publish_many(&events).await;
    host.wait_counts("merge", 25, 0).await;

    let mut seen = Vec::new();
    let mut path = "/analytics/data?limit=10".to_string();
    loop {
        let (status, page) = host.get(&path).await;
        assert_eq!(status, 200);
        for item in page["items"].as_array().unwrap() {
            seen.push(item["customer"]["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/analytics/data?limit=10&after={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("c{i:02}")).collect();
    assert_eq!(seen, expected);

    for bad in [
        "/analytics/data?limit=0",
        "/analytics/data?limit=abc",
        "/analytics/collections/customers?limit=100000",
    ] {
        let (status, body) = host.get(bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    }
    let (status, body) = host.get("/analytics/collections/customers/nobody").await;
    assert_eq!((status, body["error"].is_string()), (404, true));
    let (status, _) = host.get("/analytics/views/merge/nope").await;
    assert_eq!(status, 404);
    let (status, _) = host.get("/no/such/route").await;
    assert_eq!(status, 404);
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_with_the_reason_while_the_broker_is_unreachable() {
    let mut config_host = TestHost::start(&["merge"]).await;
    config_host.stop().await;
    config_host.config.amqp_url = Some("amqp://guest:secret-pw@127.0.0.1:1/%2f".into());
    config_host.restart().await;
    let (status, body) = config_host.get("/health").await;
    assert_eq!(status, 503);
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("broker"), "{error}");
    assert!(!error.contains("secret-pw"), "the password leaks: {error}");
    config_host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_lists_what_is_loaded_with_hash_and_counters() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let merge = host.plugin("merge").await;
    let expected_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(common::plugin_file("merge")).unwrap(),
        ))
    };
    assert_eq!(merge["sha256"], Value::String(expected_sha));
    assert_eq!(
        merge["subscriptions"],
        json!(["customer.*", "inventory.*", "analytics.data"])
    );
    assert_eq!(
        merge["queue"],
        Value::String(host.config.queue_name("merge"))
    );
    assert_eq!(merge["events_applied"], 0);
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_answers_at_once_while_a_plugin_loads() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    // Loading it takes the whole describe() deadline (1 s), then fails.
    std::fs::copy(
        common::plugin_file("slow-describe"),
        host.plugin_dir().join("slow-describe.wasm"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut latencies = Vec::new();
    let failed = loop {
        let asked = std::time::Instant::now();
        let (status, body) = host.get("/plugins").await;
        latencies.push(asked.elapsed());
        assert_eq!(status, 200, "{body}");
        if let Some(failure) = body["failed"].as_array().and_then(|f| f.first()) {
            break failure.clone();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the load never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("describe() failed")),
        "{failed}"
    );
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = *latencies.last().unwrap();
    println!(
        "GET /plugins while the load ran ({:?}): {} requests, p50 {:?}, p99 {p99:?}, max {max:?}",
        started.elapsed(),
        latencies.len(),
        latencies[latencies.len() / 2]
    );
    assert!(latencies.len() >= 20, "answers came while the load ran");
    // Waiting for the load would take the deadline: far over this.
    assert!(max < std::time::Duration::from_millis(500), "max {max:?}");
    host.cleanup(&["merge"]).await;
}
