//! Loading plugins from the folder: a file that is not a valid plugin is
//! reported by name and reason, and the others run.

mod common;

use common::{TestBroker, TestHost, customer_event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_wasm_is_reported_and_the_others_run() {
    let mut host = TestHost::start(&["merge"]).await;
    host.stop().await;
    std::fs::write(
        host.plugin_dir().join("broken.wasm"),
        b"\0asm this is not a component",
    )
    .unwrap();
    std::fs::write(host.plugin_dir().join("notes.txt"), b"ignored: not a .wasm").unwrap();
    // A second copy of merge claims a name already taken.
    std::fs::copy(
        common::plugin_file("merge"),
        host.plugin_dir().join("zz-merge-copy.wasm"),
    )
    .unwrap();
    host.restart().await;
    host.wait_healthy().await;

    let (_, plugins) = host.get("/plugins").await;
    let failed = plugins["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{plugins}");
    let failure = |file: &str| {
        failed
            .iter()
            .find(|f| f["file"].as_str().unwrap().ends_with(file))
            .unwrap_or_else(|| panic!("{file} not reported: {plugins}"))["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        failure("broken.wasm").contains("not a WebAssembly component"),
        "{}",
        failure("broken.wasm")
    );
    assert!(
        failure("zz-merge-copy.wasm").contains("already used"),
        "{}",
        failure("zz-merge-copy.wasm")
    );
    assert_eq!(plugins["plugins"].as_array().unwrap().len(), 1);

    let broker = TestBroker::connect(&host.config).await;
    broker
        .publish(
            "customer.created",
            &customer_event("e1", "c1", "ann", "2026-11-24T08:00:00Z"),
        )
        .await;
    host.wait_counts("merge", 1, 0).await;
    let (status, _) = host.get("/analytics/collections/customers/c1").await;
    assert_eq!(status, 200);
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_components_are_refused() {
    // The counter fixture is a valid transformer; a core module (not a
    // component) and an empty file are not.
    let mut host = TestHost::start(&["counter"]).await;
    host.stop().await;
    std::fs::write(host.plugin_dir().join("empty.wasm"), b"").unwrap();
    std::fs::write(host.plugin_dir().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    host.restart().await;
    host.wait_healthy().await;
    let (_, plugins) = host.get("/plugins").await;
    assert_eq!(plugins["failed"].as_array().unwrap().len(), 2, "{plugins}");
    assert_eq!(plugins["plugins"][0]["name"], "counter");
    host.cleanup(&["counter"]).await;
}
