//! Broker connection loss: the host reconnects with backoff, re-declares
//! and carries on; nothing is lost or applied twice. (Its own test binary:
//! it closes connections on the shared broker.)

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TestBroker, TestHost, customer_event};
use serde_json::json;

/// Closes the host's AMQP connection from the broker side, as a broker
/// restart or a network cut would.
fn close_host_connection(connection_name: &str) {
    let listed = Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl is installed with RabbitMQ");
    let text = String::from_utf8_lossy(&listed.stdout);
    let pid = text
        .lines()
        .find(|l| l.contains(connection_name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no connection named {connection_name:?} in:\n{text}"));
    let closed = Command::new("rabbitmqctl")
        .args(["close_connection", pid, "test: simulated connection loss"])
        .status()
        .unwrap();
    assert!(closed.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_reconnects_after_losing_the_broker_and_loses_nothing() {
    let host = TestHost::start(&["counter"]).await;
    host.wait_healthy().await;
    let broker = TestBroker::connect(&host.config).await;
    let batch = |from: usize, to: usize| -> Vec<(String, Vec<u8>)> {
        (from..to)
            .map(|i| {
                (
                    "customer.created".to_string(),
                    customer_event(&format!("e{i}"), "c1", "ann", "2026-11-24T08:00:00Z"),
                )
            })
            .collect()
    };
    broker.publish_many(&batch(0, 2000)).await;
    host.wait_counts("counter", 100, 0).await;
    close_host_connection(&host.config.connection_name());
    // Published while the host is reconnecting: the durable queue keeps them.
    broker.publish_many(&batch(2000, 4000)).await;
    common::eventually("the host to reconnect", Duration::from_secs(30), || async {
        let (status, health) = host.get("/health").await;
        status == 200 && health["connections"].as_u64() >= Some(2)
    })
    .await;
    common::eventually("every event applied", Duration::from_secs(60), || async {
        host.applied_in_store("counter") >= 4000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(
        total,
        json!({"count": 4000}),
        "unacked deliveries were redelivered and deduplicated"
    );
    host.cleanup(&["counter"]).await;
}
