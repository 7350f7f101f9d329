//! Which store a host under test runs on, so that one test body runs on
//! every backend ([`per_backend!`](crate::per_backend)): the embedded
//! SQLite file in the host's data folder, or a PostgreSQL database of the
//! test's own on the server at `SWITCHYARD_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`, a user that may create
//! databases), created for the test and dropped after it, also when the
//! test panics ([`TestDatabase`] is the guard). PostgreSQL not answering
//! fails the test with how to start it; it is never skipped.
//!
//! Each test database holds the [`POSTGRES_LOCK_FILE`] shared, so that the
//! test that restarts the server ([`PostgresRestartLock`]) waits until no
//! other test binary uses it, and they wait for it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::service_lock::ServiceLock;

use switchyard::config::StoreUrl;

/// A store backend a test host can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `switchyard.db` in the host's data folder (the default).
    Sqlite,
    /// A database of the test's own on the test server.
    Postgres,
}

/// Instantiates test bodies `async fn <name>(backend: Backend)` once per
/// backend: `<name>::on_sqlite` and `<name>::on_postgres` (filter with
/// `cargo test --test <file> on_postgres`).
#[macro_export]
macro_rules! per_backend {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$test($crate::common::backend::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$test($crate::common::backend::Backend::Postgres).await
            }
        }
    )+};
}

/// Where a test host's store is, kept for the test's length: for
/// PostgreSQL, the database, dropped with this.
pub enum TestStore {
    Sqlite,
    Postgres(TestDatabase),
}

impl TestStore {
    /// A store on `backend`; for PostgreSQL a new, empty database.
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => TestStore::Sqlite,
            Backend::Postgres => TestStore::Postgres(TestDatabase::create()),
        }
    }

    /// `--store` for a host on this store.
    pub fn url(&self) -> StoreUrl {
        match self {
            TestStore::Sqlite => StoreUrl::from("sqlite"),
            TestStore::Postgres(db) => StoreUrl::from(db.url()),
        }
    }
}

/// The server the PostgreSQL tests use.
pub fn test_server() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Runs `sql` on the test server's `postgres` database. On a thread of its
/// own: the synchronous client runs a runtime of its own, which cannot
/// start on a tokio worker (where test bodies and drops run).
fn admin(sql: String) -> Result<(), String> {
    std::thread::spawn(move || {
        let server = test_server();
        let mut client = postgres::Client::connect(&format!("{server}/postgres"), postgres::NoTls)
            .map_err(|e| {
                format!(
                    "PostgreSQL is not reachable at {server} ({e}). The PostgreSQL tests run \
                     against a real server and are never skipped. Start it: `pg_ctlcluster \
                     --skip-systemctl-redirect $(ls /etc/postgresql) main start` (Debian), or \
                     run `cargo xtask test`, which starts an installed one; or set \
                     SWITCHYARD_TEST_POSTGRES to a server where this user may create databases."
                )
            })?;
        client
            .batch_execute(&sql)
            .map_err(|e| format!("{sql}: {e}"))
    })
    .join()
    .map_err(|_| "the PostgreSQL admin thread panicked".to_owned())?
}

/// The lock file every test that uses the PostgreSQL server, or restarts
/// it, agrees on (see [`ServiceLock`]).
pub const POSTGRES_LOCK_FILE: &str = "/tmp/switchyard-postgres.lock";

/// Set while this process holds the PostgreSQL lock exclusively: its own
/// test databases then take no shared lock (it would wait for itself).
static RESTARTING_HERE: AtomicBool = AtomicBool::new(false);

/// The PostgreSQL lock held alone: the holder may restart the server. Other
/// tests in the same binary are not kept apart by it, so a test that takes
/// it is alone in its binary.
pub struct PostgresRestartLock {
    lock: ServiceLock,
}

impl PostgresRestartLock {
    pub async fn take() -> Self {
        let lock = ServiceLock::take(POSTGRES_LOCK_FILE, true, "PostgreSQL").await;
        RESTARTING_HERE.store(true, Ordering::SeqCst);
        Self { lock }
    }

    /// How long it took to get.
    pub fn waited(&self) -> std::time::Duration {
        self.lock.waited
    }
}

impl Drop for PostgresRestartLock {
    fn drop(&mut self) {
        RESTARTING_HERE.store(false, Ordering::SeqCst);
    }
}

/// A database `sy_test_<unique>` of one test; dropped (connections
/// included) when this is dropped, whether the test passed or panicked.
pub struct TestDatabase {
    name: String,
    /// Released after the database is dropped (fields drop after `drop`).
    _server_up: Option<ServiceLock>,
}

impl TestDatabase {
    pub fn create() -> Self {
        let server_up = (!RESTARTING_HERE.load(Ordering::SeqCst))
            .then(|| ServiceLock::shared_blocking(POSTGRES_LOCK_FILE, "PostgreSQL"));
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "sy_test_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("{e}"));
        Self {
            name,
            _server_up: server_up,
        }
    }

    /// `postgres://.../sy_test_...`
    pub fn url(&self) -> String {
        format!("{}/{}", test_server(), self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE ends the sessions of a host still running (a panicking
        // test's), which would otherwise keep the database.
        let dropped = admin(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
        match dropped {
            Ok(()) => {}
            Err(e) if std::thread::panicking() => {
                eprintln!("dropping test database {}: {e}", self.name)
            }
            Err(e) => panic!("dropping test database {}: {e}", self.name),
        }
    }
}
