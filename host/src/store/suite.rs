//! The store's test suite, run over every backend: each shared test is a
//! function of a [`Harness`], instantiated once on SQLite (a temporary
//! folder) and once on PostgreSQL (a database of its own on the server at
//! `SWITCHYARD_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432`,
//! created for the test and dropped after it). PostgreSQL not answering
//! fails the tests with how to start it; they never skip.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sha2::Digest;

use super::copy::Rows;
use super::*;

/// The server the PostgreSQL tests use (a user that may create databases).
pub(crate) fn test_server() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn admin() -> ::postgres::Client {
    let server = test_server();
    ::postgres::Client::connect(&format!("{server}/postgres"), ::postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {} ({e}). The store tests run against a real server \
             and are never skipped. Start it: `pg_ctlcluster --skip-systemctl-redirect \
             $(ls /etc/postgresql) main start` (Debian; `apt-get install postgresql` first if it \
             is missing), or run `cargo xtask test`, which starts an installed one; or set \
             SWITCHYARD_TEST_POSTGRES to a server where this user may create databases.",
            crate::config::redact_url(&server)
        )
    })
}

/// A database of its own for one test, dropped with it.
pub(crate) struct TestDatabase {
    name: String,
}

impl TestDatabase {
    pub(crate) fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sy_test_{}_{}_{}",
            std::process::id(),
            now_ms(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        Self { name }
    }

    pub(crate) fn url(&self) -> String {
        format!("{}/{}", test_server(), self.name)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let dropped = admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
        if let Err(e) = dropped
            && !std::thread::panicking()
        {
            panic!("dropping test database {}: {e}", self.name);
        }
    }
}

/// Where a test's store lives, kept for the test's length.
pub(crate) enum Harness {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl Harness {
    pub(crate) fn sqlite() -> Self {
        Harness::Sqlite(tempfile::tempdir().unwrap())
    }

    pub(crate) fn postgres() -> Self {
        Harness::Postgres(TestDatabase::create())
    }

    pub(crate) fn location(&self) -> Location {
        match self {
            Harness::Sqlite(dir) => Location::Sqlite(dir.path().to_owned()),
            Harness::Postgres(db) => Location::Postgres(db.url()),
        }
    }

    /// Opens the store (again).
    pub(crate) fn open(&self) -> Store {
        Store::open_blocking(&self.location()).unwrap()
    }
}

/// A batch of plugin `p` applying `ids`: one document, one state key and
/// one event to publish.
pub(crate) fn batch(ids: &[&str]) -> BatchCommit {
    BatchCommit {
        plugin: "p".into(),
        version: "v1".into(),
        declared_version: "1.0.0".into(),
        applied_event_ids: ids.iter().map(|s| s.to_string()).collect(),
        documents: vec![DocumentWrite::Upsert {
            collection: "c".into(),
            key: "k".into(),
            json: "{\"n\":1}".into(),
        }],
        state: vec![("s".into(), Some(vec![7]))],
        publish: vec![PublishWrite {
            routing_key: "x.y".into(),
            body: "{}".into(),
            hops: 2,
            cause: ids.first().map(|id| Cause {
                event_id: id.to_string(),
                n: 0,
                published_id: format!("{id}/p/0"),
            }),
        }],
        state_generation: None,
    }
}

/// Every row of every concern of a store.
pub(crate) fn everything(store: &Store) -> Vec<Rows> {
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

/// Instantiates each shared test on both backends.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[test] fn $test() { super::$test(&super::Harness::sqlite()); } )*
        }
        mod on_postgres {
            $( #[test] fn $test() { super::$test(&super::Harness::postgres()); } )*
        }
    };
}

on_every_backend!(
    a_batch_commits_documents_state_ids_and_outbox_together,
    an_applied_id_recorded_twice_is_a_conflict_and_leaves_nothing_behind,
    deletes_and_rewrites_within_a_batch_keep_the_last_write,
    scan_pages_in_byte_order_of_the_keys,
    collections_are_listed_in_byte_order_with_their_counts,
    state_survives_reopening_and_applied_ids_expire,
    an_idempotency_key_keeps_its_first_body_until_freed_or_expired,
    the_outbox_keeps_order_until_done,
    dead_letters_are_kept_listed_and_forgotten,
    queue_bindings_are_remembered_per_plugin,
    a_store_copies_into_an_empty_store_only,
    a_commit_from_a_stale_state_generation_is_a_conflict,
    a_lease_has_one_holder_until_it_expires_or_is_released,
    hosts_are_listed_by_their_last_heartbeat,
    an_event_is_looked_up_by_its_id_across_plugins,
);

fn an_event_is_looked_up_by_its_id_across_plugins(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    // Ids our fixtures never use: a slash, unicode, and the longest id the
    // host admits, incompressible (PostgreSQL indexes it whole).
    let id = "e/1 ünï 🚀";
    let longest: String = (0u32..)
        .flat_map(|i| hex::encode(sha2::Sha256::digest(i.to_be_bytes())).into_bytes())
        .take(dedupe::MAX_EVENT_ID_BYTES)
        .map(char::from)
        .collect();
    let mut p = batch(&[id, &longest]);
    p.publish.push(PublishWrite {
        routing_key: "out.second".into(),
        body: "{}".into(),
        hops: 1,
        cause: Some(Cause {
            event_id: id.into(),
            n: 1,
            published_id: "chosen by the plugin".into(),
        }),
    });
    db.commit_batch(&p).unwrap();
    let q = BatchCommit {
        plugin: "q".into(),
        version: "q-sha".into(),
        declared_version: "2.0.0".into(),
        applied_event_ids: vec![id.into()],
        ..BatchCommit::default()
    };
    db.commit_batch(&q).unwrap();
    // The same file again, declaring something else: the first stays.
    db.commit_batch(&BatchCommit {
        declared_version: "other".into(),
        ..batch(&["e2"])
    })
    .unwrap();
    let letter = |plugin: &str, body: &[u8]| StoredDeadLetter {
        seq: 0,
        plugin: plugin.into(),
        routing_key: "x.y".into(),
        body: body.to_vec(),
        reason: format!("bad for {plugin}"),
        version: "r-sha".into(),
        failed_ms: 7,
    };
    let too_long = format!(r#"{{"eventId":"{}"}}"#, "z".repeat(5000));
    db.add_dead_letters(&[
        letter("r", format!(r#"{{"eventId":"{id}","n":1}}"#).as_bytes()),
        letter("r", b"not json"),
        letter("r", br#"{"eventId":"e"}"#),
        letter("s", too_long.as_bytes()),
    ])
    .unwrap();

    let found = db.event_records(id, &["r".into(), "z".into()]).unwrap();
    let applied: Vec<_> = found
        .applied
        .iter()
        .map(|a| (a.plugin.as_str(), a.sha256.as_str(), a.version.as_deref()))
        .collect();
    assert_eq!(
        applied,
        [("p", "v1", Some("1.0.0")), ("q", "q-sha", Some("2.0.0"))]
    );
    assert!(found.applied.iter().all(|a| a.applied_ms > 0));
    let published: Vec<_> = found
        .published
        .iter()
        .map(|e| {
            (
                e.plugin.as_str(),
                e.n,
                e.event_id.as_str(),
                e.routing_key.as_str(),
            )
        })
        .collect();
    assert_eq!(
        published,
        [
            ("p", 0, format!("{id}/p/0").as_str(), "x.y"),
            ("p", 1, "chosen by the plugin", "out.second")
        ]
    );
    assert_eq!(found.dead_letters.len(), 1);
    assert_eq!(found.dead_letters[0].reason, "bad for r");
    assert_eq!(found.dead_letters[0].failed_ms, 7);

    let longest_found = db.event_records(&longest, &[]).unwrap();
    assert_eq!(longest_found.applied.len(), 1, "found without naming p");
    assert!(
        longest_found.published.is_empty(),
        "published because of {id} only"
    );
    let prefix = db.event_records("e/1", &["p".into(), "q".into()]).unwrap();
    assert_eq!(prefix, EventRecords::default(), "an id is matched whole");
    let stranger = db.event_records("never seen", &["p".into()]).unwrap();
    assert_eq!(stranger, EventRecords::default());
    assert_eq!(
        db.declared_version("p", "v1").unwrap().as_deref(),
        Some("1.0.0")
    );
    assert_eq!(db.declared_version("p", "q-sha").unwrap(), None);

    std::thread::sleep(Duration::from_millis(5));
    db.prune_applied(Duration::from_millis(1)).unwrap();
    let pruned = db.event_records(id, &[]).unwrap();
    assert!(pruned.applied.is_empty() && pruned.published.is_empty());
    assert_eq!(
        pruned.dead_letters.len(),
        1,
        "dead letters stay until replayed"
    );
}

fn a_commit_from_a_stale_state_generation_is_a_conflict(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    assert_eq!(db.state_generation("p").unwrap(), 0);
    let at = |generation: u64, ids: &[&str]| BatchCommit {
        state_generation: Some(generation),
        ..batch(ids)
    };
    db.commit_batch(&at(0, &["e1"])).unwrap();
    assert_eq!(db.state_generation("p").unwrap(), 1);
    // Two writers began at generation 1: the first commits, the second
    // read state that is no longer current.
    db.commit_batch(&at(1, &["e2"])).unwrap();
    let stale = db.commit_batch(&at(1, &["e3"])).unwrap_err();
    assert!(stale.is_conflict(), "{stale}");
    assert!(
        db.applied_among("p", &["e3"]).unwrap().is_empty(),
        "nothing written"
    );
    let zero = db.commit_batch(&at(0, &["e4"])).unwrap_err();
    assert!(zero.is_conflict(), "{zero}");
    assert_eq!(db.state_generation("p").unwrap(), 2);
    // A batch that touched no state leaves the generation alone.
    db.commit_batch(&batch(&["e5"])).unwrap();
    assert_eq!(db.state_generation("p").unwrap(), 2);
    assert_eq!(db.state_generation("other").unwrap(), 0);
}

fn a_lease_has_one_holder_until_it_expires_or_is_released(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    assert_eq!(db.take_lease("producer/crm", "a", 60_000).unwrap(), "a");
    assert_eq!(db.take_lease("producer/crm", "b", 60_000).unwrap(), "a");
    assert_eq!(
        db.take_lease("producer/crm", "a", 60_000).unwrap(),
        "a",
        "renewed"
    );
    assert_eq!(db.take_lease("producer/inv", "b", 60_000).unwrap(), "b");
    db.release_lease("producer/crm", "b").unwrap();
    assert_eq!(
        db.take_lease("producer/crm", "b", 60_000).unwrap(),
        "a",
        "not b's to release"
    );
    db.release_lease("producer/crm", "a").unwrap();
    assert_eq!(db.take_lease("producer/crm", "b", 1).unwrap(), "b");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        db.take_lease("producer/crm", "a", 60_000).unwrap(),
        "a",
        "b's expired"
    );
}

fn hosts_are_listed_by_their_last_heartbeat(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    let before = db.clock_ms().unwrap();
    db.heartbeat("h1", 5, r#"{"plugins":[]}"#).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    db.heartbeat("h2", 6, "{}").unwrap();
    // Heartbeats are stamped in milliseconds: a few apart, they order.
    std::thread::sleep(Duration::from_millis(5));
    db.heartbeat("h1", 7, r#"{"plugins":["merge"]}"#).unwrap();
    let hosts = db.hosts(before).unwrap();
    let ids: Vec<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["h1", "h2"], "most recently seen first");
    assert_eq!(hosts[0].info, r#"{"plugins":["merge"]}"#);
    assert_eq!(hosts[0].started_ms, 7);
    assert!(hosts[0].last_seen_ms > hosts[1].last_seen_ms);
    assert!(hosts[1].last_seen_ms >= before);
    assert!(db.hosts(db.clock_ms().unwrap() + 1_000).unwrap().is_empty());
    assert_eq!(db.forget_hosts(hosts[1].last_seen_ms + 1).unwrap(), 1);
    assert_eq!(db.hosts(0).unwrap().len(), 1);
}

fn a_batch_commits_documents_state_ids_and_outbox_together(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    let outbox = db.commit_batch(&batch(&["e1", "e2"])).unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(db.document("c", "k").unwrap().as_deref(), Some("{\"n\":1}"));
    assert_eq!(db.state_get("p", "s").unwrap(), Some(vec![7]));
    assert_eq!(db.state_get("q", "s").unwrap(), None, "state is per plugin");
    let seen = db.applied_among("p", &["e1", "e3"]).unwrap();
    assert_eq!(seen, HashSet::from(["e1".to_string()]));
    assert!(db.applied_among("p", &[]).unwrap().is_empty());
    assert_eq!(db.applied_by("p", "e2").unwrap().as_deref(), Some("v1"));
    assert_eq!(db.applied_by("q", "e2").unwrap(), None);
    assert_eq!(
        db.applied_by_version("p").unwrap(),
        vec![("v1".to_string(), 2)]
    );
    assert_eq!(outbox[0].hops, 2);
    assert_eq!(db.pending_outbox("p").unwrap(), outbox);
    db.outbox_done(&[outbox[0].seq]).unwrap();
    assert!(db.pending_outbox("p").unwrap().is_empty());
}

fn an_applied_id_recorded_twice_is_a_conflict_and_leaves_nothing_behind(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    db.commit_batch(&batch(&["e1"])).unwrap();
    let mut again = batch(&["e2", "e1"]);
    again.documents = vec![DocumentWrite::Delete {
        collection: "c".into(),
        key: "k".into(),
    }];
    let error = db.commit_batch(&again).unwrap_err();
    assert!(error.is_conflict(), "e1 is applied twice: {error:?}");
    assert!(!error.is_outage());
    assert!(db.document("c", "k").unwrap().is_some());
    assert!(db.applied_among("p", &["e2"]).unwrap().is_empty());
    assert_eq!(db.pending_outbox("p").unwrap().len(), 1);
    // The same id twice in one batch is the same conflict.
    let error = db.commit_batch(&batch(&["e3", "e3"])).unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
}

fn deletes_and_rewrites_within_a_batch_keep_the_last_write(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    let upsert = |key: &str, json: &str| DocumentWrite::Upsert {
        collection: "c".into(),
        key: key.into(),
        json: json.into(),
    };
    let delete = |key: &str| DocumentWrite::Delete {
        collection: "c".into(),
        key: key.into(),
    };
    db.commit_batch(&BatchCommit {
        plugin: "p".into(),
        documents: vec![upsert("a", "1"), upsert("b", "1")],
        state: vec![("x".into(), Some(vec![1])), ("y".into(), Some(vec![2]))],
        ..BatchCommit::default()
    })
    .unwrap();
    db.commit_batch(&BatchCommit {
        plugin: "p".into(),
        documents: vec![
            delete("a"),
            upsert("a", "2"),
            upsert("b", "2"),
            delete("b"),
            upsert("c", "3"),
        ],
        state: vec![("x".into(), None), ("y".into(), Some(vec![3]))],
        ..BatchCommit::default()
    })
    .unwrap();
    assert_eq!(db.document("c", "a").unwrap().as_deref(), Some("2"));
    assert_eq!(db.document("c", "b").unwrap(), None);
    assert_eq!(db.document("c", "c").unwrap().as_deref(), Some("3"));
    assert_eq!(db.state_get("p", "x").unwrap(), None);
    assert_eq!(db.state_get("p", "y").unwrap(), Some(vec![3]));
}

fn scan_pages_in_byte_order_of_the_keys(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    let mut b = BatchCommit {
        plugin: "p".into(),
        ..Default::default()
    };
    // Byte order: "B" < "a" < "b" < "c" (a locale's order would differ).
    for k in ["b", "a", "c", "B"] {
        b.documents.push(DocumentWrite::Upsert {
            collection: "c".into(),
            key: k.into(),
            json: format!("\"{k}\""),
        });
    }
    b.documents.push(DocumentWrite::Upsert {
        collection: "other".into(),
        key: "a".into(),
        json: "0".into(),
    });
    db.commit_batch(&b).unwrap();
    let first = db.scan("c", None, 3).unwrap();
    let keys: Vec<_> = first.entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["B", "a", "b"]);
    assert_eq!(first.next.as_deref(), Some("b"));
    let second = db.scan("c", first.next.as_deref(), 3).unwrap();
    assert_eq!(second.entries, vec![("c".to_string(), "\"c\"".to_string())]);
    assert_eq!(second.next, None);
    assert!(db.scan("none", None, 10).unwrap().entries.is_empty());
    assert_eq!(
        db.collections().unwrap(),
        vec![("c".to_string(), 4), ("other".to_string(), 1)]
    );
}

fn collections_are_listed_in_byte_order_with_their_counts(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    assert!(db.collections().unwrap().is_empty(), "an empty store");
    let mut b = BatchCommit {
        plugin: "p".into(),
        ..Default::default()
    };
    // Byte order, unicode and separators kept as they are.
    for (collection, key) in [("b", "1"), ("B", "1"), ("é/x y", "1"), ("b", "2")] {
        b.documents.push(DocumentWrite::Upsert {
            collection: collection.into(),
            key: key.into(),
            json: "1".into(),
        });
    }
    db.commit_batch(&b).unwrap();
    let names = |db: &dyn crate::store::Backend| db.collections().unwrap();
    assert_eq!(
        names(db),
        vec![
            ("B".to_string(), 1),
            ("b".to_string(), 2),
            ("é/x y".to_string(), 1)
        ]
    );
    // A collection whose last document is deleted is no longer listed.
    let delete = BatchCommit {
        plugin: "p".into(),
        documents: vec![DocumentWrite::Delete {
            collection: "B".into(),
            key: "1".into(),
        }],
        ..Default::default()
    };
    db.commit_batch(&delete).unwrap();
    assert_eq!(names(db)[0], ("b".to_string(), 2));
    assert_eq!(names(db).len(), 2);
}

fn state_survives_reopening_and_applied_ids_expire(h: &Harness) {
    h.open().blocking().commit_batch(&batch(&["e1"])).unwrap();
    let store = h.open();
    let db = store.blocking();
    assert_eq!(db.state_get("p", "s").unwrap(), Some(vec![7]));
    assert_eq!(db.applied_count("p").unwrap(), 1);
    assert_eq!(db.prune_applied(Duration::from_secs(3600)).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(db.prune_applied(Duration::from_millis(1)).unwrap(), 1);
    assert_eq!(db.applied_count("p").unwrap(), 0);
    assert_eq!(
        db.state_get("p", "s").unwrap(),
        Some(vec![7]),
        "state is kept"
    );
}

fn an_idempotency_key_keeps_its_first_body_until_freed_or_expired(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    assert!(db.bind_idempotency_key("api/k", "aaa").unwrap());
    assert!(db.bind_idempotency_key("api/k", "aaa").unwrap());
    assert!(!db.bind_idempotency_key("api/k", "bbb").unwrap());
    db.unbind_idempotency_key("api/k").unwrap();
    assert!(db.bind_idempotency_key("api/k", "bbb").unwrap());
    std::thread::sleep(Duration::from_millis(5));
    db.prune_applied(Duration::from_millis(1)).unwrap();
    assert!(db.bind_idempotency_key("api/k", "ccc").unwrap(), "expired");
}

fn the_outbox_keeps_order_until_done(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    let mut b = batch(&["e1"]);
    b.publish = (0..5)
        .map(|i| PublishWrite {
            routing_key: format!("k.{i}"),
            body: format!("{{\"i\":{i}}}"),
            hops: i,
            cause: None,
        })
        .collect();
    let outbox = db.commit_batch(&b).unwrap();
    let keys: Vec<_> = outbox.iter().map(|e| e.routing_key.as_str()).collect();
    assert_eq!(keys, ["k.0", "k.1", "k.2", "k.3", "k.4"]);
    assert!(outbox.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(outbox[3].hops, 3);
    let mut other = batch(&["f1"]);
    other.plugin = "q".into();
    db.commit_batch(&other).unwrap();
    assert_eq!(db.pending_outbox("p").unwrap(), outbox);
    db.outbox_done(&[outbox[0].seq, outbox[2].seq]).unwrap();
    db.outbox_done(&[]).unwrap();
    let left: Vec<_> = db
        .pending_outbox("p")
        .unwrap()
        .into_iter()
        .map(|e| e.routing_key)
        .collect();
    assert_eq!(left, ["k.1", "k.3", "k.4"]);
    assert_eq!(db.pending_outbox("q").unwrap().len(), 1);
}

fn dead_letters_are_kept_listed_and_forgotten(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    let letter = |plugin: &str, n: u8| StoredDeadLetter {
        seq: 0,
        plugin: plugin.into(),
        routing_key: "x.y".into(),
        body: vec![b'{', n, b'}'],
        reason: format!("bad {n}"),
        version: "v1".into(),
        failed_ms: 1000 + i64::from(n),
    };
    db.add_dead_letters(&[letter("p", 1), letter("p", 2), letter("q", 3)])
        .unwrap();
    db.add_dead_letters(&[letter("p", 4)]).unwrap();
    let (first, total) = db.dead_letters("p", 2).unwrap();
    assert_eq!(total, 3);
    assert_eq!(first.len(), 2);
    assert_eq!(
        (first[0].reason.as_str(), first[0].failed_ms),
        ("bad 1", 1001)
    );
    assert_eq!(first[1].body, vec![b'{', 2, b'}']);
    db.remove_dead_letters(&[first[0].seq]).unwrap();
    let (left, total) = db.dead_letters("p", 10).unwrap();
    assert_eq!(total, 2);
    let reasons: Vec<_> = left.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(reasons, ["bad 2", "bad 4"]);
    assert_eq!(db.dead_letters("q", 10).unwrap().1, 1);
}

fn queue_bindings_are_remembered_per_plugin(h: &Harness) {
    let store = h.open();
    let db = store.blocking();
    db.set_queue_bindings("p", &["a.*".into(), "b.#".into()])
        .unwrap();
    assert_eq!(db.queue_bindings("p").unwrap(), ["a.*", "b.#"]);
    db.set_queue_bindings("p", &["b.#".into()]).unwrap();
    db.set_queue_bindings("q", &["c".into()]).unwrap();
    assert_eq!(db.queue_bindings("p").unwrap(), vec!["b.#".to_string()]);
    db.set_queue_bindings("q", &[]).unwrap();
    assert!(db.queue_bindings("q").unwrap().is_empty());
}

/// Writes some of every concern.
pub(crate) fn populate(db: &dyn Backend) {
    let mut b = batch(&["e1", "e2"]);
    b.documents.push(DocumentWrite::Upsert {
        collection: "customers".into(),
        key: "c1".into(),
        json: "{\"id\":\"c1\"}".into(),
    });
    b.state.push(("bytes".into(), Some(vec![0, 255, 1])));
    let outbox = db.commit_batch(&b).unwrap();
    let mut second = batch(&["e3"]);
    second.version = "v2".into();
    let mut another = second.publish[0].clone();
    if let Some(cause) = &mut another.cause {
        cause.n = 1;
    }
    second.publish.push(another);
    db.commit_batch(&second).unwrap();
    db.outbox_done(&[outbox[0].seq]).unwrap();
    db.bind_idempotency_key("api/k", "aaa").unwrap();
    db.add_dead_letters(&[StoredDeadLetter {
        seq: 0,
        plugin: "p".into(),
        routing_key: "x.y".into(),
        body: b"not json".to_vec(),
        reason: "invalid JSON".into(),
        version: "v1".into(),
        failed_ms: 5,
    }])
    .unwrap();
    db.set_queue_bindings("p", &["x.*".into()]).unwrap();
}

fn a_store_copies_into_an_empty_store_only(h: &Harness) {
    let source = Harness::sqlite();
    let from = source.open();
    populate(from.blocking());
    let to = h.open();
    let report = copy::copy(from.blocking(), to.blocking()).unwrap();
    assert_eq!(
        report,
        CopyReport {
            documents: 2,
            state: 2,
            applied: 3,
            outbox: 2,
            idempotency_keys: 1,
            dead_letters: 1,
            queue_bindings: 1,
            plugin_versions: 2,
            published: 3,
        }
    );
    assert_eq!(
        everything(&to),
        everything(&from),
        "every concern, row for row"
    );
    // Numbers assigned after the copy follow the copied ones.
    let last = to.blocking().pending_outbox("p").unwrap()[1].seq;
    let next = to.blocking().commit_batch(&batch(&["e9"])).unwrap();
    assert!(next[0].seq > last);
    // Copying again: refused, nothing written.
    let error = copy::copy(from.blocking(), to.blocking()).unwrap_err();
    assert!(error.to_string().contains("not empty"), "{error}");
    assert_eq!(to.blocking().applied_count("p").unwrap(), 4);
}

// PostgreSQL only: what its connections do when the server does not answer.

fn postgres_store(db: &TestDatabase) -> super::postgres::Postgres {
    super::postgres::Postgres::open(&db.url()).unwrap()
}

#[test]
fn a_terminated_postgres_connection_is_an_outage_and_the_next_call_reconnects() {
    let db = TestDatabase::create();
    let store = postgres_store(&db);
    store.commit_batch(&batch(&["e1"])).unwrap();
    admin()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&db.name()],
        )
        .unwrap();
    let error = store.commit_batch(&batch(&["e2"])).unwrap_err();
    assert!(error.is_outage(), "{error:?}");
    store.commit_batch(&batch(&["e2"])).unwrap();
    assert_eq!(store.applied_count("p").unwrap(), 2);
}

#[test]
fn a_dropped_postgres_database_is_an_outage() {
    let db = TestDatabase::create();
    let store = postgres_store(&db);
    admin()
        .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name()))
        .unwrap();
    for _ in 0..2 {
        let error = store.commit_batch(&batch(&["e1"])).unwrap_err();
        assert!(error.is_outage(), "{error:?}");
    }
}

#[test]
fn an_unreachable_postgres_is_an_outage_and_its_password_never_shows() {
    let url = "postgres://switchyard:hunter2-s3cret@127.0.0.1:1/db?connect_timeout=2";
    let error = Store::open_blocking(&Location::Postgres(url.into())).unwrap_err();
    assert!(error.is_outage(), "{error:?}");
    let shown = format!("{error} {error:?} {:?}", Location::Postgres(url.into()));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("127.0.0.1:1"), "{shown}");
}

#[test]
fn postgres_connections_time_out_statements_and_keep_alive() {
    let db = TestDatabase::create();
    let store = postgres_store(&db);
    let timeout: String = store
        .with_client(|c| Ok(c.query_one("SHOW statement_timeout", &[])?.get(0)))
        .unwrap();
    assert_eq!(timeout, "30s");
    let error = store
        .with_client(|c| {
            c.batch_execute("SET statement_timeout = 50; SELECT pg_sleep(1)")?;
            Ok(())
        })
        .unwrap_err();
    assert!(error.is_outage(), "a statement timeout: {error:?}");
    let config = super::postgres::tests_config(&db.url());
    assert!(config.get_keepalives());
    assert_eq!(config.get_keepalives_idle(), Duration::from_secs(10));
    assert!(config.get_tcp_user_timeout().is_some());
    assert!(config.get_connect_timeout().is_some());
}

#[test]
fn a_postgres_store_from_a_newer_switchyard_is_refused() {
    let db = TestDatabase::create();
    drop(postgres_store(&db));
    let mut client = ::postgres::Client::connect(&db.url(), ::postgres::NoTls).unwrap();
    client
        .batch_execute(
            "INSERT INTO schema_version (version, name, applied_ms) VALUES (99, 'future', 0)",
        )
        .unwrap();
    let error = super::postgres::Postgres::open(&db.url()).unwrap_err();
    assert!(
        error.to_string().contains(&format!(
            "store schema version 99 is newer than this switchyard knows ({}): upgrade switchyard",
            super::migrations::latest(super::migrations::SQLITE)
        )),
        "{error}"
    );
}
