//! `switchyard store copy`: an embedded store, copied by the command into
//! an empty PostgreSQL database, reads back the same in every concern, and
//! a second copy into the now non-empty database is refused. Needs the
//! PostgreSQL server of the store tests (`SWITCHYARD_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432`).

use std::process::Command;

use switchyard::store::copy::Rows;
use switchyard::store::{
    BatchCommit, DocumentWrite, Location, PublishWrite, Store, StoredDeadLetter,
};

fn server() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn admin(sql: &str) {
    let mut client = postgres::Client::connect(&format!("{}/postgres", server()), postgres::NoTls)
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable ({e}): start it (`cargo xtask test` starts an \
                 installed one) or set SWITCHYARD_TEST_POSTGRES"
            )
        });
    client.batch_execute(sql).unwrap();
}

fn everything(store: &Store) -> Vec<Rows> {
    let mut all = Vec::new();
    store
        .blocking()
        .export(&mut |rows| {
            all.push(rows);
            Ok(())
        })
        .unwrap();
    all
}

#[test]
fn store_copy_moves_an_embedded_store_into_an_empty_postgres_database_once() {
    let data = tempfile::tempdir().unwrap();
    let embedded = Store::sqlite(data.path()).unwrap();
    let db = embedded.blocking();
    let outbox = db
        .commit_batch(&BatchCommit {
            plugin: "merge".into(),
            version: "abc".into(),
            declared_version: "0.1.0".into(),
            applied_event_ids: vec!["e1".into(), "e2".into()],
            documents: vec![DocumentWrite::Upsert {
                collection: "customers".into(),
                key: "c1".into(),
                json: r#"{"id":"c1"}"#.into(),
            }],
            state: vec![("entity/c1".into(), Some(b"{}".to_vec()))],
            publish: vec![
                PublishWrite {
                    routing_key: "a.b".into(),
                    body: "{}".into(),
                    hops: 1,
                    cause: None,
                };
                2
            ],
            state_generation: Some(0),
        })
        .unwrap();
    db.outbox_done(&[outbox[0].seq]).unwrap();
    db.bind_idempotency_key("api/k", "sha").unwrap();
    db.add_dead_letters(&[StoredDeadLetter {
        seq: 0,
        plugin: "merge".into(),
        routing_key: "customer.created".into(),
        body: b"{".to_vec(),
        reason: "invalid JSON".into(),
        version: "abc".into(),
        failed_ms: 1,
    }])
    .unwrap();
    db.set_queue_bindings("merge", &["customer.*".into()])
        .unwrap();

    let name = format!("sy_test_copy_{}", std::process::id());
    admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    admin(&format!("CREATE DATABASE {name}"));

    // With the default server (trust login), a password that is ignored by
    // the server and must never be printed.
    let url =
        format!("{}/{name}", server()).replacen("://postgres@", "://postgres:hunter2-s3cret@", 1);
    let copy = || {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["store", "copy", "--to", &url, "--data"])
            .arg(data.path())
            .env_remove("SWITCHYARD_STORE")
            .output()
            .unwrap()
    };
    let first = copy();
    let stdout = String::from_utf8_lossy(&first.stdout);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("applied event ids  2"), "{stdout}");
    assert!(stdout.contains("dead letters       1"), "{stdout}");
    assert!(
        !format!("{stdout}{stderr}").contains("hunter2"),
        "{stdout}\n{stderr}"
    );

    let shared = Store::open_blocking(&Location::Postgres(url.clone())).unwrap();
    assert_eq!(everything(&shared), everything(&embedded));
    assert_eq!(
        shared
            .blocking()
            .applied_by("merge", "e2")
            .unwrap()
            .as_deref(),
        Some("abc"),
        "a host on the copy skips the old event ids"
    );
    drop(shared);

    let second = copy();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(stderr.contains("not empty"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    admin(&format!("DROP DATABASE {name} WITH (FORCE)"));
}
