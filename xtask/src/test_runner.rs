//! How `cargo xtask test` runs the test binaries: cargo builds them all
//! once, then they run a few at a time (`SWITCHYARD_TEST_JOBS`, default
//! [`DEFAULT_JOBS`]), the slowest known first, each binary's output
//! printed whole when it ends, and every failure named again at the end.
//!
//! `cargo test` runs one binary after another; most of ours spend their
//! time waiting on a broker, a store or a plugin build, so running two at
//! once roughly halves the wall time on two cores. The tests already share
//! the machine safely across processes (unique queue and database names,
//! the broker lock file for the tests that stop the broker).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Test binaries run at the same time unless `SWITCHYARD_TEST_JOBS` says.
pub const DEFAULT_JOBS: usize = 2;

/// Binaries known to take longest, started first when no earlier run left
/// its timings (a clean clone).
const SLOW_FIRST: &[&str] = &["plugin_new", "conformance", "openapi", "reload", "crash"];

/// One test binary cargo built.
#[derive(Debug, Clone)]
pub struct TestBinary {
    /// `tests/<name>.rs`, `<crate> (lib)` or `<crate> (bin)`.
    pub label: String,
    name: String,
    path: PathBuf,
    /// The package's folder: cargo runs a test binary there.
    dir: PathBuf,
}

/// Builds the tests of `cargo_args` (`test -p ...`) and lists them.
pub fn build(cargo: &str, cargo_args: &[&str], root: &Path) -> Result<Vec<TestBinary>> {
    let output = Command::new(cargo)
        .args(cargo_args)
        .args(["--no-run", "--message-format=json-render-diagnostics"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !output.status.success() {
        bail!("building the tests failed ({})", output.status);
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let Some(path) = message["executable"].as_str() else {
            continue;
        };
        let name = message["target"]["name"].as_str().unwrap_or("?").to_owned();
        let kind = message["target"]["kind"][0].as_str().unwrap_or("?");
        let manifest = PathBuf::from(message["manifest_path"].as_str().unwrap_or_default());
        let label = match kind {
            "test" => format!("tests/{name}.rs"),
            other => format!("{name} ({other})"),
        };
        binaries.push(TestBinary {
            label,
            name,
            path: PathBuf::from(path),
            dir: manifest.parent().unwrap_or(root).to_owned(),
        });
    }
    if binaries.is_empty() {
        bail!("cargo built no test binary");
    }
    Ok(binaries)
}

/// How many binaries run at once.
pub fn jobs() -> usize {
    std::env::var("SWITCHYARD_TEST_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_JOBS)
}

/// Runs every binary, `jobs` at a time, with `envs` set; fails naming
/// every binary that failed. `timings` keeps each binary's wall time for
/// the next run's order.
pub fn run_all(
    mut binaries: Vec<TestBinary>,
    jobs: usize,
    envs: &[(&str, String)],
    timings: &Path,
) -> Result<()> {
    let known = read_timings(timings);
    let rank = |b: &TestBinary| -> (u64, usize) {
        let slow = SLOW_FIRST
            .iter()
            .position(|s| *s == b.name)
            .map_or(0, |i| SLOW_FIRST.len() - i);
        (known.get(&b.label).copied().unwrap_or(0), slow)
    };
    binaries.sort_by_key(|b| std::cmp::Reverse(rank(b)));
    let total = binaries.len();
    let queue = Mutex::new(binaries.into_iter().collect::<VecDeque<_>>());
    let results: Mutex<Vec<(String, bool, Duration)>> = Mutex::new(Vec::new());
    let out_dir = timings.with_file_name("test-output");
    std::fs::create_dir_all(&out_dir)?;
    eprintln!("tests: {total} binaries, {jobs} at a time");
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(total) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().pop_front();
                    let Some(binary) = next else { break };
                    let (ok, took, log) = run_one(&binary, envs, &out_dir);
                    let mut done = results.lock().unwrap();
                    done.push((binary.label.clone(), ok, took));
                    // One binary's output at a time, whole.
                    println!("\n==== {} ({})", binary.label, binary.path.display());
                    println!("{log}");
                    eprintln!(
                        "tests: [{}/{total}] {} {} in {:.0} s",
                        done.len(),
                        binary.label,
                        if ok { "passed" } else { "FAILED" },
                        took.as_secs_f64()
                    );
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    write_timings(timings, &results);
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, ok, _)| !ok)
        .map(|(label, _, _)| label.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {total} test binaries failed: {} (their output is above, and in {})",
            failed.len(),
            failed.join(", "),
            out_dir.display()
        );
    }
    eprintln!("tests: all {total} binaries passed");
    Ok(())
}

/// Runs one binary as `cargo test` would (in its package's folder), its
/// output into a file under `out_dir`; whether it passed, how long it
/// took, and what it printed.
fn run_one(
    binary: &TestBinary,
    envs: &[(&str, String)],
    out_dir: &Path,
) -> (bool, Duration, String) {
    let file_name = binary.label.replace(['/', ' ', '(', ')'], "_");
    let log_path = out_dir.join(format!("{file_name}.log"));
    let started = Instant::now();
    let status = File::create(&log_path).and_then(|log| {
        Command::new(&binary.path)
            .current_dir(&binary.dir)
            .env("CARGO_MANIFEST_DIR", &binary.dir)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
    });
    let took = started.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Ok(status) => (status.success(), took, log),
        Err(e) => (false, took, format!("{log}\ncould not run it: {e}")),
    }
}

fn read_timings(path: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn write_timings(path: &Path, results: &[(String, bool, Duration)]) {
    let timings: HashMap<&str, u64> = results
        .iter()
        .map(|(label, _, took)| (label.as_str(), took.as_secs()))
        .collect();
    if let Ok(text) = serde_json::to_string_pretty(&timings) {
        // Only an order hint for the next run: losing it costs nothing.
        let _ = std::fs::write(path, text);
    }
}
