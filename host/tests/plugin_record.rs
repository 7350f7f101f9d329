//! `switchyard plugin record` against the real RabbitMQ, as the real
//! binary: it copies the events a plugin subscribes to (and only those)
//! into transcript lines that `plugin test` runs, takes nothing from the
//! plugin's own queue, and leaves no queue behind.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{FieldTable, ShortString};
use serde_json::{Value, json};

use common::TestBroker;
use common::broker_lock::BrokerLock;
use switchyard::Config;

fn config() -> Config {
    let mut config = Config::defaults();
    config.amqp_url = Some(common::amqp_url().into());
    config.exchange = common::unique("record-exchange");
    config.queue_prefix = common::unique("record");
    config
}

/// Starts `plugin record` for the merge plugin and returns it once its
/// queue is bound (it says so on stderr), with the queue's name and the
/// rest of its stderr to come.
fn start_recording(
    config: &Config,
    count: &str,
    timeout: &str,
) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["plugin", "record"])
        .arg(common::plugin_file("merge"))
        .args(["--count", count, "--timeout", timeout])
        .args(["--amqp-url", &common::amqp_url()])
        .args(["--exchange", &config.exchange])
        .args(["--queue-prefix", &config.queue_prefix])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "record ended before it was ready"
        );
        if line.starts_with("recording ") {
            break;
        }
    }
    let queue = line
        .split("into queue \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no queue named in {line:?}"))
        .to_owned();
    // The rest of stderr, for the end of the run.
    let rest = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    (child, queue, rest)
}

/// The messages in `queue`, or `None` if there is no such queue.
async fn queue_exists(queue: &str) -> Option<u32> {
    // A passive declare of a missing queue closes the channel, so on a
    // connection of its own.
    let conn = lapin::Connection::connect(&common::amqp_url(), Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let found = ch
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .ok()
        .map(|q| q.message_count());
    let _ = conn.close(200, "done".into()).await;
    found
}

#[tokio::test]
async fn recorded_events_run_through_plugin_test_and_the_plugins_queue_keeps_its_own() {
    let _broker_up = BrokerLock::shared().await;
    let config = config();
    // The plugin's queue, bound as a host running merge binds it.
    let connection = switchyard::broker::connect(&config, "test").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    switchyard::broker::declare_exchange(&channel, &config.exchange)
        .await
        .unwrap();
    switchyard::broker::declare_plugin_queue(&connection, &config, "merge")
        .await
        .unwrap();
    let keys: Vec<String> = ["customer.*", "inventory.*", "analytics.data"]
        .map(String::from)
        .to_vec();
    switchyard::broker::bind(&channel, &config, "merge", &keys)
        .await
        .unwrap();

    let (child, queue, _stderr) = start_recording(&config, "3", "120");
    assert!(queue.starts_with(&config.queue_name("merge")), "{queue}");
    let broker = TestBroker::connect(&config).await;
    let customer = json!({"eventId": "e1", "id": "c1", "name": "Zoë 東京 🚀",
                          "timestamp": "2024-01-01T00:00:00Z"});
    broker
        .publish_many(&[
            ("customer.created".into(), customer.to_string().into_bytes()),
            // Not a key merge subscribes to: not recorded.
            ("billing.paid".into(), br#"{"eventId":"x"}"#.to_vec()),
            (
                "inventory.updated".into(),
                b"{\"eventId\": \"e2\", oops \xff".to_vec(),
            ),
            ("analytics.data".into(), br#"[{"eventId":"e3"}]"#.to_vec()),
        ])
        .await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l["routing_key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["customer.created", "inventory.updated", "analytics.data"]
    );
    assert_eq!(lines[0]["body"], customer);
    assert_eq!(
        lines[1]["body_text"],
        json!("{\"eventId\": \"e2\", oops \u{fffd}"),
        "not JSON (nor UTF-8): kept as text"
    );
    assert_eq!(lines[2]["body"], json!([{"eventId": "e3"}]));
    assert!(
        lines
            .iter()
            .all(|l| l["received_at_ms"].as_u64().unwrap() > 0)
    );

    // The recording is a transcript `plugin test` runs.
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, &out.stdout).unwrap();
    let tested = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["plugin", "test"])
        .arg(common::plugin_file("merge"))
        .arg(&events)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(tested.status.success());
    let outcomes: Vec<String> = String::from_utf8(tested.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["outcome"].to_string())
        .collect();
    assert_eq!(outcomes, [r#""applied""#, r#""rejected""#, r#""rejected""#]);

    // Nothing was taken from the plugin's queue; the recorder's is gone.
    assert_eq!(queue_exists(&config.queue_name("merge")).await, Some(3));
    assert_eq!(queue_exists(&queue).await, None);

    let _ = broker
        .channel
        .queue_delete(
            config.queue_name("merge").as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
    broker.close().await;
    let _ = connection.close(200, "done".into()).await;
    common::delete_topology(&config, &["merge"]).await;
}

#[tokio::test]
async fn too_few_events_within_the_timeout_is_an_error_that_says_so() {
    let _broker_up = BrokerLock::shared().await;
    let config = config();
    let (mut child, queue, stderr) = start_recording(&config, "2", "1");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(!status.success());
    let stderr = stderr.join().unwrap();
    assert!(
        stderr.contains("recorded 0 of 2 events within 1s"),
        "{stderr}"
    );
    assert_eq!(queue_exists(&queue).await, None);
    common::delete_topology(&config, &[]).await;
}
