//! `cargo xtask <task>`: the project's build tasks, so that a fresh machine
//! needs one command for each job.
//!
//! - `build`  host + every plugin; shipped plugins land in `plugins/<name>.wasm`,
//!   test fixtures in `target/test-plugins/<name>.wasm` (the Python and
//!   JavaScript merges too: see [`guests`])
//! - `run`    build (release), start the demo upstreams and the host (broker or embedded bus)
//! - `test`   build the plugins, make sure a broker and PostgreSQL are reachable, run all tests
//! - `bench`  build the plugins, run the benchmarks (`throughput`, `reload`, `producer`, `languages`,
//!   `steady`, `datasize` (the throughput benchmark's data-size figures), or all;
//!   `throughput --store postgres` commits to PostgreSQL)
//! - `lint`   rustfmt check and clippy (host natively, plugins for wasm32-wasip2)
//!
//! Each task numbers its steps on stderr as it goes ([`progress`]).

mod browser;
mod guests;
mod npm;
mod progress;
mod stack;
mod test_runner;

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use progress::Steps;
use stack::{DEMO_PORTS, Stack, root};

const WASM_TARGET: &str = "wasm32-wasip2";
/// Plugins copied into `plugins/` for users.
const SHIPPED: &[&str] = &["merge", "crm-producer", "inventory-producer"];
/// Plugins of the `producer` world (built apart from the transformers: see
/// [`build_plugins`]).
const PRODUCERS: &[&str] = &["crm-producer", "inventory-producer"];
/// Plugins only the tests load.
const FIXTURES: &[&str] = &[
    "counter",
    "relay",
    "not-a-transformer",
    "slow-describe",
    "nosy",
    "sneaky",
];
/// Second builds of plugins (with their `test-variant` feature) that the
/// hot-reload tests swap in: `target/test-plugins/<name>-variant.wasm`.
const VARIANTS: &[&str] = &["merge", "relay", "counter", "crm-producer"];
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The PostgreSQL server the store tests make their databases on (as the
/// host's store suite reads `SWITCHYARD_TEST_POSTGRES`).
const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build(),
        Some("run") => run(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("lint") => lint(),
        _ => {
            eprintln!("usage: cargo xtask <build|run|test|bench|lint> [args]");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

/// What `build_plugins` and `guests::build` are, as steps.
const PLUGINS_STEP: &str = "building the plugins (wasm32-wasip2)";
const GUESTS_STEP: &str =
    "building the Python and JavaScript plugins (componentize-py, componentize-js)";

fn build() -> Result<()> {
    let mut steps = Steps::new(3);
    steps.run(PLUGINS_STEP, build_plugins)?;
    steps.run(GUESTS_STEP, || guests::build(&root()))?;
    steps.run("building the host", || {
        cargo(&["build", "-p", "switchyard"])
    })?;
    steps.finish();
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with(args, &[])
}

/// `cargo args` with the environment variables `envs` set.
fn cargo_with(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Installs the wasm32-wasip2 target when rustup says it is missing.
fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (needed to install the wasm32-wasip2 target)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: installing the {WASM_TARGET} target");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()?;
    if !status.success() {
        bail!("rustup target add {WASM_TARGET} failed");
    }
    Ok(())
}

/// Builds every plugin crate for wasm32-wasip2, one cargo invocation per
/// world, then the test variants, and copies the components where the host
/// and the tests look for them.
///
/// One invocation per world because cargo unifies a dependency's features
/// across the packages it builds together: with producers in the same
/// invocation, `switchyard-plugin` would be compiled with both worlds and
/// every transformer would carry the producer world's types and WASI
/// versions.
fn build_plugins() -> Result<()> {
    ensure_wasm_target()?;
    let (producers, transformers): (Vec<&str>, Vec<&str>) = SHIPPED
        .iter()
        .chain(FIXTURES)
        .copied()
        .partition(|name| PRODUCERS.contains(name));
    for world in [transformers, producers] {
        let packages: Vec<String> = world
            .iter()
            .map(|name| format!("switchyard-{name}"))
            .collect();
        let mut args = vec!["build", "--target", WASM_TARGET, "--profile", "plugin"];
        for p in &packages {
            args.extend(["-p", p.as_str()]);
        }
        cargo(&args)?;
    }
    let root = root();
    let fixtures = root.join("target").join("test-plugins");
    std::fs::create_dir_all(&fixtures)?;
    for name in SHIPPED {
        install(name, &root.join("plugins").join(format!("{name}.wasm")))?;
    }
    for name in FIXTURES {
        install(name, &fixtures.join(format!("{name}.wasm")))?;
    }
    // In a target folder of their own: a cdylib's file name does not change
    // with its features, so sharing the folder would rebuild both each time.
    let variants = root.join("target").join("variants");
    let variants_dir = variants.to_string_lossy().into_owned();
    for name in VARIANTS {
        let package = format!("switchyard-{name}");
        cargo(&[
            "build",
            "--target",
            WASM_TARGET,
            "--profile",
            "plugin",
            "--target-dir",
            &variants_dir,
            "-p",
            &package,
            "--features",
            "test-variant",
        ])?;
        install_from(
            &variants,
            name,
            &fixtures.join(format!("{name}-variant.wasm")),
        )?;
    }
    Ok(())
}

/// Copies the component cargo just built for plugin `name` to `target`.
fn install(name: &str, target: &Path) -> Result<()> {
    install_from(&root().join("target"), name, target)
}

fn install_from(target_dir: &Path, name: &str, target: &Path) -> Result<()> {
    let out = target_dir.join(WASM_TARGET).join("plugin");
    // A library crate's component is named after the crate, a binary's
    // after the binary.
    let built = [
        out.join(format!("switchyard_{}.wasm", name.replace('-', "_"))),
        out.join(format!("{name}.wasm")),
    ]
    .into_iter()
    .find(|p| p.exists())
    .with_context(|| format!("no component built for {name}"))?;
    // Write beside, then rename: a running host never sees half a file.
    let dest = target.parent().context("no folder")?;
    let file = target
        .file_name()
        .context("no file name")?
        .to_string_lossy();
    let partial = dest.join(format!(".{file}.tmp"));
    std::fs::copy(&built, &partial).with_context(|| format!("copying {}", built.display()))?;
    std::fs::rename(&partial, target)?;
    eprintln!("xtask: {}", target.display());
    Ok(())
}

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.into())
}

/// `host:port` of an AMQP URL (5672 when none is given).
fn broker_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

fn reachable(address: &str) -> bool {
    address
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

/// Makes sure RabbitMQ answers at `AMQP_URL`: starts an installed local
/// `rabbitmq-server` when none runs, otherwise says how to get one.
fn ensure_broker() -> Result<()> {
    let url = amqp_url();
    let address = broker_address(&url);
    if reachable(&address) {
        return Ok(());
    }
    let local = address.starts_with("127.0.0.1:") || address.starts_with("localhost:");
    if local
        && Command::new("rabbitmq-server")
            .arg("-detached")
            .status()
            .is_ok_and(|s| s.success())
    {
        eprintln!("xtask: started the installed rabbitmq-server; waiting for it");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if reachable(&address) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    bail!(
        "RabbitMQ is not reachable at {address} (from AMQP_URL or the default {DEFAULT_AMQP_URL}).\n\
         Get one and try again:\n\
         \x20 Debian/Ubuntu: sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached\n\
         \x20 Docker:        docker run -d --name rabbitmq -p 5672:5672 -p 15672:15672 rabbitmq:3-management\n\
         \x20 or set AMQP_URL to a broker you have (amqp://user:password@host:5672/%2f)."
    )
}

/// `host:port` of a PostgreSQL URL (5432 when none is given).
fn postgres_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    }
}

/// Makes sure PostgreSQL answers where the store tests look for it: starts
/// an installed local cluster (Debian's `pg_ctlcluster`) when none runs,
/// otherwise says how to get one. The tests never skip without it.
fn ensure_postgres() -> Result<()> {
    let url =
        std::env::var("SWITCHYARD_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.into());
    let address = postgres_address(&url);
    if reachable(&address) {
        return Ok(());
    }
    let local = address.starts_with("127.0.0.1:") || address.starts_with("localhost:");
    let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if local && !versions.is_empty() {
        for version in &versions {
            eprintln!("xtask: starting the installed PostgreSQL {version} cluster `main`");
            let _ = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", version, "main", "start"])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if reachable(&address) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    bail!(
        "PostgreSQL is not reachable at {address} (from SWITCHYARD_TEST_POSTGRES or the default \
         {DEFAULT_TEST_POSTGRES}); the store tests need it and are never skipped.\n\
         Get one and try again:\n\
         \x20 Debian/Ubuntu: sudo apt-get install postgresql && \
         sudo pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
         \x20 Docker:        docker run -d --name postgres -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15\n\
         \x20 The tests log in as `postgres` over TCP without a password (trust on 127.0.0.1), \
         or set SWITCHYARD_TEST_POSTGRES to postgres://user:password@host:5432 (a user that may create databases)."
    )
}

/// The whole flow on one machine: the demo CRM (8001) and inventory
/// (8002), and the host (8003) whose producers poll them. With `AMQP_URL`
/// set the broker must answer; without it the host uses a local broker if
/// one answers, or its embedded bus.
fn run(args: &[String]) -> Result<()> {
    let mut steps = Steps::new(3);
    steps.run(PLUGINS_STEP, build_plugins)?;
    steps.run("building the host and the demo upstreams (release)", || {
        cargo(&[
            "build",
            "--release",
            "-p",
            "switchyard",
            "-p",
            "switchyard-demo",
        ])
    })?;
    eprintln!("xtask: [3/3] starting the demo upstreams and the host");
    if std::env::var_os("AMQP_URL").is_some() {
        ensure_broker()?;
    }
    let root = root();
    // Ctrl-C, or SIGTERM to this process alone (a supervisor's `kill`),
    // stops the whole stack before this exits.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the signal handlers")?;
    }
    let stack = Stack::start(
        &root,
        &root.join("target").join("release"),
        DEMO_PORTS,
        None,
        |host| {
            host.args(args);
        },
    )?;
    match stack.supervise(&stop)? {
        stack::Ended::Stopped => {
            eprintln!("xtask: stopped the demo upstreams and switchyard");
            std::process::exit(130);
        }
        stack::Ended::HostExited => Ok(()),
    }
}

fn test(args: &[String]) -> Result<()> {
    let split = args.iter().all(|a| a == "--no-fail-fast");
    let mut steps = Steps::new(if split { 7 } else { 6 });
    steps.run(PLUGINS_STEP, build_plugins)?;
    steps.run(GUESTS_STEP, || guests::build(&root()))?;
    steps.run("checking RabbitMQ and PostgreSQL", || {
        ensure_broker()?;
        ensure_postgres()
    })?;
    let python = steps.run(
        "preparing the tests' Python (prometheus-client, schemathesis)",
        test_python,
    )?;
    let browser_modules = steps.run("preparing the console test's playwright-core", || {
        browser::install(&root())
    })?;
    let mut cargo_args = vec![
        "test",
        "-p",
        "switchyard",
        "-p",
        "switchyard-merge",
        "-p",
        "switchyard-counter",
        "-p",
        "switchyard-demo",
        "-p",
        "switchyard-feed",
        "-p",
        "switchyard-instant",
        "-p",
        "switchyard-plugin",
        "-p",
        "xtask",
    ];
    let envs = [
        (
            "SWITCHYARD_TEST_PYTHON",
            python.to_string_lossy().into_owned(),
        ),
        (
            "SWITCHYARD_TEST_BROWSER_MODULES",
            browser_modules.to_string_lossy().into_owned(),
        ),
    ];
    // Arguments for cargo (one test, a filter) run the old way: one
    // binary after another, as cargo does. `--no-fail-fast` is what the
    // runner does anyway.
    if !split {
        cargo_args.extend(args.iter().map(String::as_str));
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        steps.run_talking("building and running the tests", || {
            cargo_with(&cargo_args, &envs)
        })?;
    } else {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let binaries = steps.run("building the tests", || {
            test_runner::build(&cargo, &cargo_args, &root())
        })?;
        let jobs = test_runner::jobs();
        let timings = root().join("target/test-times.json");
        steps.run_talking(
            &format!("running the tests, {jobs} binaries at a time"),
            || test_runner::run_all(binaries, jobs, &envs, &timings),
        )?;
    }
    steps.finish();
    Ok(())
}

/// The Python the tests run Prometheus's own parser and schemathesis in: a
/// venv under `target/tools/test-py` with the pinned packages, made on
/// first use and brought to the pins again when they change.
fn test_python() -> Result<std::path::PathBuf> {
    const PINNED: [&str; 2] = ["prometheus-client==0.21.1", "schemathesis==4.32.5"];
    let venv = root().join("target/tools/test-py");
    let python = venv.join("bin/python");
    // The marker names every pin: a changed pin misses it and reinstalls.
    let marker = venv.join(format!("pinned-{}", PINNED.join("-")));
    if marker.exists() {
        return Ok(python);
    }
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("running python3 -m venv: install Python 3 (Debian: apt-get install python3 python3-venv)")?;
        if !made.success() {
            bail!(
                "python3 -m venv failed: install the venv module (Debian: apt-get install python3-venv)"
            );
        }
    }
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(PINNED)
        .status()
        .context("running pip")?;
    if !installed.success() {
        bail!(
            "pip install {} failed (is PyPI reachable?)",
            PINNED.join(" ")
        );
    }
    // Markers of earlier pins would otherwise vouch for them.
    for entry in std::fs::read_dir(&venv)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("pinned-") || name.contains("==") {
            std::fs::remove_file(entry.path())?;
        }
    }
    std::fs::write(&marker, "")?;
    Ok(python)
}

/// What `cargo xtask bench` runs: the benchmarks, and the store of the
/// throughput benchmark (`--store sqlite|postgres`, `BENCH_STORE` for it).
#[derive(Debug, PartialEq, Eq)]
struct BenchPlan {
    benches: Vec<&'static str>,
    store: &'static str,
    /// Hosts sharing the store in the throughput benchmark.
    hosts: String,
}

const BENCHES: [&str; 6] = [
    "throughput",
    "reload",
    "producer",
    "languages",
    "steady",
    "datasize",
];
const BENCH_STORES: [&str; 2] = ["sqlite", "postgres"];

/// `[throughput|reload|producer|languages|steady|datasize] [--store sqlite|postgres]`.
fn bench_plan(args: &[String]) -> Result<BenchPlan> {
    let mut benches = Vec::new();
    let mut store = None;
    let mut hosts = None;
    let mut args = args.iter().map(String::as_str);
    while let Some(arg) = args.next() {
        if arg == "--hosts" {
            let value = args.next();
            match value.and_then(|v| v.parse::<u32>().ok()) {
                Some(n) if n > 0 => hosts = Some(n.to_string()),
                _ => bail!("--hosts takes a number of hosts, not {value:?}"),
            }
        } else if arg == "--store" {
            let value = args.next();
            match BENCH_STORES.iter().find(|s| Some(**s) == value) {
                Some(s) => store = Some(*s),
                None => bail!("--store takes sqlite or postgres, not {value:?}"),
            }
        } else if let Some(name) = BENCHES.iter().find(|b| **b == arg)
            && benches.is_empty()
        {
            benches.push(*name);
        } else {
            bail!("unknown benchmark {arg:?}: one of {}", BENCHES.join(", "));
        }
    }
    if benches.is_empty() {
        benches = BENCHES.to_vec();
    }
    if (store.is_some() || hosts.is_some()) && benches != ["throughput"] {
        bail!(
            "--store and --hosts apply to the throughput benchmark: \
             cargo xtask bench throughput --store postgres --hosts 3"
        );
    }
    if hosts.as_deref().is_some_and(|h| h != "1") && store != Some("postgres") {
        bail!("several hosts share a PostgreSQL store: add --store postgres");
    }
    Ok(BenchPlan {
        benches,
        store: store.unwrap_or("sqlite"),
        hosts: hosts.unwrap_or_else(|| "1".to_owned()),
    })
}

/// `cargo xtask bench [throughput|reload|producer|languages|steady|datasize]
/// [--store sqlite|postgres] [--hosts N]`: one benchmark, or all.
fn bench(args: &[String]) -> Result<()> {
    let plan = bench_plan(args)?;
    let mut steps = Steps::new(2 + plan.benches.len());
    steps.run(PLUGINS_STEP, build_plugins)?;
    steps.run("checking RabbitMQ (and PostgreSQL)", || {
        ensure_broker()?;
        if plan.store == "postgres" {
            ensure_postgres()?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    for name in &plan.benches {
        let (target, only) = bench_target(name);
        let mut envs = vec![("BENCH_STORE", plan.store), ("BENCH_HOSTS", &plan.hosts)];
        if !only.is_empty() {
            envs.push(("BENCH_ONLY", only));
        }
        steps.run_talking(&format!("benchmark {name}"), || {
            cargo_with(&["bench", "-p", "switchyard", "--bench", target], &envs)
        })?;
    }
    steps.finish();
    Ok(())
}

/// The bench target that runs benchmark `name`, and its `BENCH_ONLY`:
/// `datasize` is a part of the throughput benchmark.
fn bench_target(name: &'static str) -> (&'static str, &'static str) {
    match name {
        "datasize" => ("throughput", "datasize"),
        other => (other, ""),
    }
}

fn lint() -> Result<()> {
    ensure_wasm_target()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "-p",
        "switchyard",
        "-p",
        "xtask",
        "-p",
        "switchyard-merge",
        "-p",
        "switchyard-demo",
        "-p",
        "switchyard-feed",
        "-p",
        "switchyard-instant",
        "-p",
        "switchyard-plugin",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    let mut args = vec!["clippy", "--target", WASM_TARGET, "--profile", "plugin"];
    // The SDK with both worlds (the producers enable the second one).
    let packages: Vec<String> = SHIPPED
        .iter()
        .chain(FIXTURES)
        .map(|name| format!("switchyard-{name}"))
        .chain(["switchyard-plugin".to_owned()])
        .collect();
    for p in &packages {
        args.extend(["-p", p.as_str()]);
    }
    args.extend(["--", "-D", "warnings"]);
    cargo(&args)
}

#[cfg(test)]
mod tests {
    use super::{BenchPlan, bench_plan, bench_target, broker_address, postgres_address};

    fn plan(args: &[&str]) -> anyhow::Result<BenchPlan> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        bench_plan(&args)
    }

    #[test]
    fn bench_runs_one_benchmark_or_all_and_throughput_on_either_store() {
        let all = plan(&[]).unwrap();
        assert_eq!(
            all.benches,
            [
                "throughput",
                "reload",
                "producer",
                "languages",
                "steady",
                "datasize"
            ]
        );
        assert_eq!(plan(&["steady"]).unwrap().benches, ["steady"]);
        assert_eq!(bench_target("steady"), ("steady", ""));
        assert_eq!(bench_target("datasize"), ("throughput", "datasize"));
        assert_eq!(bench_target("throughput"), ("throughput", ""));
        assert_eq!(all.store, "sqlite");
        let pg = plan(&["throughput", "--store", "postgres"]).unwrap();
        assert_eq!(
            pg,
            BenchPlan {
                benches: vec!["throughput"],
                store: "postgres",
                hosts: "1".into(),
            }
        );
        let three = plan(&["throughput", "--store", "postgres", "--hosts", "3"]).unwrap();
        assert_eq!(three.hosts, "3");
        assert!(
            plan(&["throughput", "--hosts", "3"]).is_err(),
            "sqlite is one host"
        );
        assert!(plan(&["throughput", "--store", "postgres", "--hosts", "0"]).is_err());
        assert!(plan(&["reload", "--store", "postgres"]).is_err());
        assert!(plan(&["--store", "postgres"]).is_err(), "all three");
        assert!(plan(&["throughput", "--store", "mysql"]).is_err());
        assert!(plan(&["throughput", "--store"]).is_err());
        assert!(plan(&["latency"]).is_err());
        assert!(plan(&["throughput", "reload"]).is_err());
    }

    #[test]
    fn postgres_address_comes_from_the_url() {
        assert_eq!(
            postgres_address("postgres://postgres@127.0.0.1:5432"),
            "127.0.0.1:5432"
        );
        assert_eq!(postgres_address("postgres://u:p@db/sy?x=1"), "db:5432");
        assert_eq!(postgres_address("postgresql://db:5433"), "db:5433");
    }

    #[test]
    fn broker_address_comes_from_the_url() {
        assert_eq!(
            broker_address("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "127.0.0.1:5672"
        );
        assert_eq!(broker_address("amqp://rabbit/%2f"), "rabbit:5672");
        assert_eq!(broker_address("amqp://u:p@h:5673"), "h:5673");
    }
}
