//! The real `switchyard` binary as a child process, for the tests that kill
//! it or signal it. It is configured as an operator would (the broker URL
//! in `AMQP_URL`, the rest as flags), keeps its HTTP port, folders and
//! broker names across restarts, and appends the log of every start to one
//! file, whose tail is printed when a test fails. Its store is on the
//! backend the test chose ([`Backend`]).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;
use switchyard::Config;
use switchyard::store::{Location, Store};
use tokio::process::{Child, Command};

use super::backend::{Backend, TestStore};
use super::{delete_topology, delete_topology_after_failure, host_config, off_reactor};

/// How long a start may take until the API answers (plugins are compiled
/// on every start, in a debug build).
const START_LIMIT: Duration = Duration::from_secs(60);

/// A host running as a child process, and everything it owns.
pub struct ChildHost {
    /// The settings passed to the process; the broker names in it are this
    /// host's own.
    pub config: Config,
    /// `http://127.0.0.1:<port>`, the same for every start.
    pub base: String,
    pub http: reqwest::Client,
    /// How many times the process was started.
    pub starts: usize,
    child: Option<Child>,
    log: PathBuf,
    _dirs: tempfile::TempDir,
    /// Last: a PostgreSQL database is dropped after the process is killed.
    _store: TestStore,
}

impl ChildHost {
    /// Starts the binary with `plugins` copied into its plugins folder, on
    /// the embedded store, and waits until its API answers (not
    /// necessarily healthy yet).
    pub async fn start(plugins: &[&str]) -> Self {
        Self::start_with(plugins, |_| {}).await
    }

    /// Like [`ChildHost::start`], with settings changed by `adjust` (the
    /// broker URL and the flags `spawn` passes).
    pub async fn start_with(plugins: &[&str], adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_on_with(Backend::Sqlite, plugins, adjust).await
    }

    /// Like [`ChildHost::start`], on a store on `backend`.
    pub async fn start_on(backend: Backend, plugins: &[&str]) -> Self {
        Self::start_on_with(backend, plugins, |_| {}).await
    }

    /// Like [`ChildHost::start_on`], with settings changed by `adjust`.
    pub async fn start_on_with(
        backend: Backend,
        plugins: &[&str],
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dirs = tempfile::tempdir().unwrap();
        let store = TestStore::new(backend);
        let mut config = host_config(dirs.path(), plugins, "sy-fault", &store);
        // A port picked once and kept, so that clients find the host again
        // after a restart.
        config.http = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        adjust(&mut config);
        let mut host = Self {
            base: format!("http://{}", config.http),
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            starts: 0,
            child: None,
            log: dirs.path().join("host.log"),
            _dirs: dirs,
            _store: store,
        };
        host.spawn();
        host.wait_serving().await;
        host
    }

    /// Starts the process again on the same port, data and broker names.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the host is still running");
        self.spawn();
        self.wait_serving().await;
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(log, "----- test: start {} -----", self.starts).unwrap();
        let c = &self.config;
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("run")
            .env("AMQP_URL", c.amqp_url())
            .env("SWITCHYARD_GRANTS", c.grants.join(","))
            .env("SWITCHYARD_PLUGIN_SETTINGS", c.plugin_settings.join(","))
            .env("SWITCHYARD_BATCH_SIZE", c.batch_size.to_string())
            // The log is a file: no colour codes in it.
            .env("NO_COLOR", "1")
            .arg("--http")
            .arg(c.http.to_string())
            .arg("--plugins")
            .arg(&c.plugins)
            .arg("--data")
            .arg(&c.data)
            .arg("--store")
            .arg(store_arg(c))
            .args(["--exchange", &c.exchange, "--queue-prefix", &c.queue_prefix])
            .args(["--queue-type", c.queue_type.as_str()])
            .arg("--heartbeat-secs")
            .arg(c.heartbeat_secs.to_string())
            .arg("--max-attempts")
            .arg(c.max_attempts.to_string())
            .arg("--retry-delay-ms")
            .arg(c.retry_delay_ms.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting the switchyard binary");
        self.child = Some(child);
    }

    /// Waits until the API answers at all (200 or 503).
    async fn wait_serving(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if self.try_get("/health").await.is_some() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "the host exited during start {}: {status}\n{}",
                    self.starts,
                    self.log_tail(30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the host's API did not answer within {START_LIMIT:?}\n{}",
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `/health` says 200 (broker connected, plugins loaded).
    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some((200, _)) = self.try_get("/health").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the host did not become healthy within {START_LIMIT:?}\n{}",
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("the host is running");
        child.kill().await.expect("killing the host");
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; returns
    /// how it exited and how long it took. Past the limit it is killed and
    /// the test fails.
    pub async fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("the host is running");
        let pid = Pid::from_raw(child.id().expect("not reaped yet") as i32).unwrap();
        let asked = Instant::now();
        kill_process(pid, Signal::TERM).expect("sending SIGTERM");
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => (status.unwrap(), asked.elapsed()),
            Err(_) => {
                let _ = child.kill().await;
                panic!(
                    "the host did not exit within {limit:?} of SIGTERM\n{}",
                    self.log_tail(40)
                );
            }
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id of the running host.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("the host is running")
    }

    /// GET `path`; panics if the host does not answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        match self.try_get(path).await {
            Some(answer) => answer,
            None => panic!("GET {path}: no answer\n{}", self.log_tail(20)),
        }
    }

    /// GET `path`, or `None` when the host does not answer.
    pub async fn try_get(&self, path: &str) -> Option<(u16, Value)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Opens the host's store from the test (best with the host stopped).
    /// A PostgreSQL store is used off the reactor ([`off_reactor`]).
    pub fn open_store(&self) -> Store {
        off_reactor(|| super::open_store(&self.config))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines the host logged, over all its starts.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!("--- last {lines} lines of the host log ---\n{tail}")
    }

    /// Counts the host's log lines containing `needle`, over all starts.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_lines(needle).len()
    }

    /// The host's log lines containing `needle`, over all starts.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Stops the host (SIGTERM) if it runs, and deletes its queues and
    /// exchanges from the broker.
    pub async fn cleanup(mut self, plugins: &[&str]) {
        if self.is_running() {
            self.terminate(Duration::from_secs(30)).await;
        }
        delete_topology(&self.config, plugins).await;
    }
}

/// `--store` as an operator writes it: `sqlite` or the URL.
fn store_arg(config: &Config) -> String {
    match config.store_location().expect("a valid --store") {
        Location::Sqlite(_) => "sqlite".to_owned(),
        Location::Postgres(url) => url,
    }
}

impl Drop for ChildHost {
    fn drop(&mut self) {
        // The process itself is killed by `kill_on_drop`; after a failure,
        // first, so that it declares nothing again.
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(60));
            if let Some(mut child) = self.child.take() {
                let _ = child.start_kill();
            }
            delete_topology_after_failure(&self.config, None);
        }
    }
}
