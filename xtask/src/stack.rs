//! The demo stack that `cargo xtask run` starts: the demo CRM and inventory
//! upstreams, and the host with grants and settings that point its producer
//! plugins at them; and its supervision: a child that dies stops the
//! others and is named, and a stop request (SIGINT, SIGTERM to `xtask`
//! alone, as a supervisor sends it) stops them all before `xtask` exits.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal, kill_process};

/// Where the demo upstreams listen.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub crm: u16,
    pub inventory: u16,
}

/// The ports the README names.
pub const DEMO_PORTS: Ports = Ports {
    crm: 8001,
    inventory: 8002,
};

/// One demo upstream: its `switchyard-demo` subcommand, sample data, port,
/// and the producer plugin that polls it.
struct Upstream {
    service: &'static str,
    data: &'static str,
    port: fn(&Ports) -> u16,
    producer: &'static str,
}

const UPSTREAMS: [Upstream; 2] = [
    Upstream {
        service: "crm",
        data: "demo/data/customers.json",
        port: |p| p.crm,
        producer: "crm-producer",
    },
    Upstream {
        service: "inventory",
        data: "demo/data/products.json",
        port: |p| p.inventory,
        producer: "inventory-producer",
    },
];

/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// The running upstreams and host, by name; dropping it stops them all.
#[derive(Debug)]
pub struct Stack {
    children: Vec<(String, Child)>,
}

/// How a supervised stack ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop; every child stopped.
    Stopped,
    /// The host exited by itself, successfully.
    HostExited,
}

impl Stack {
    /// Starts the upstreams on `ports` and then `switchyard run`, from the
    /// binaries in `bin_dir`, in the repository root (so `plugins/` and
    /// `data/` are the host's defaults). `host` adds the caller's arguments;
    /// `log`, when given, receives every process's output instead of the
    /// terminal.
    pub fn start(
        root: &Path,
        bin_dir: &Path,
        ports: Ports,
        log: Option<&Path>,
        host: impl FnOnce(&mut Command),
    ) -> Result<Self> {
        let output = |command: &mut Command| -> Result<()> {
            if let Some(log) = log {
                let file = File::options().create(true).append(true).open(log)?;
                command.stdout(file.try_clone()?).stderr(file);
            }
            Ok(())
        };
        let mut children = Vec::new();
        for upstream in &UPSTREAMS {
            let mut command = Command::new(bin_dir.join("switchyard-demo"));
            command
                .args([
                    upstream.service,
                    "--port",
                    &(upstream.port)(&ports).to_string(),
                ])
                .args(["--data", upstream.data])
                .current_dir(root)
                .stdin(Stdio::null());
            output(&mut command)?;
            let child = command
                .spawn()
                .with_context(|| format!("starting the demo {}", upstream.service))?;
            children.push((format!("the demo {}", upstream.service), child));
        }
        let origin = |upstream: &Upstream| format!("http://127.0.0.1:{}", (upstream.port)(&ports));
        let grants: Vec<String> = UPSTREAMS
            .iter()
            .map(|u| format!("{}={}", u.producer, origin(u)))
            .collect();
        let settings: Vec<String> = UPSTREAMS
            .iter()
            .map(|u| format!("{}.base-url={}", u.producer, origin(u)))
            .collect();
        let mut command = Command::new(bin_dir.join("switchyard"));
        command.arg("run").current_dir(root);
        // The user's own grants and settings win.
        if std::env::var_os("SWITCHYARD_GRANTS").is_none() {
            command.env("SWITCHYARD_GRANTS", grants.join(","));
        }
        if std::env::var_os("SWITCHYARD_PLUGIN_SETTINGS").is_none() {
            command.env("SWITCHYARD_PLUGIN_SETTINGS", settings.join(","));
        }
        output(&mut command)?;
        host(&mut command);
        // Dropped (stopped) if the host cannot start.
        let mut stack = Self { children };
        let host = command.spawn().context("starting switchyard")?;
        stack.children.push(("switchyard".to_owned(), host));
        Ok(stack)
    }

    /// Runs until `stop` is set (a signal), the host exits, or a child
    /// dies; stops the others then. `Err` names the child that died.
    pub fn supervise(mut self, stop: &AtomicBool) -> Result<Ended> {
        loop {
            if stop.load(Ordering::Relaxed) {
                self.stop_all();
                return Ok(Ended::Stopped);
            }
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    let (name, host) = (name.clone(), name == "switchyard");
                    self.stop_all();
                    if host && status.success() {
                        return Ok(Ended::HostExited);
                    }
                    bail!("{name} exited ({status}): stopped the rest of the stack");
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM to every child still running, then SIGKILL to those that
    /// have not exited within [`STOP_LIMIT`].
    fn stop_all(&mut self) {
        for (_, child) in &mut self.children {
            if child.try_wait().ok().flatten().is_none()
                && let Some(pid) = Pid::from_raw(child.id() as i32)
            {
                let _ = kill_process(pid, Signal::TERM);
            }
        }
        let deadline = Instant::now() + STOP_LIMIT;
        for (_, child) in &mut self.children {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository root")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    //! `cargo xtask run` end to end on the embedded bus: the README's
    //! command with the binaries `cargo xtask test` has just built, on free
    //! ports, and `--bus embedded` because this machine runs a broker (what
    //! `--bus auto` picks without one is unit-tested in the host).

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use super::*;

    fn free_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    /// `GET path` on the host: status and JSON body, or `None` while it
    /// does not answer.
    fn get(port: u16, path: &str) -> Option<(u16, Value)> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, serde_json::from_str(body).ok()?))
    }

    fn sample(file: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// What `/analytics/data` must show once the producers' events are
    /// merged: every upstream customer, each with every upstream product.
    fn expected() -> Vec<Value> {
        let pick = |record: &Value, fields: &[&str]| -> Value {
            fields
                .iter()
                .map(|f| (f.to_string(), record[f].clone()))
                .collect()
        };
        let products: Vec<Value> = sample(UPSTREAMS[1].data)
            .iter()
            .map(|p| pick(p, &["id", "name", "stock"]))
            .collect();
        let mut customers = sample(UPSTREAMS[0].data);
        customers.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        customers
            .iter()
            .map(|c| json!({ "customer": pick(c, &["id", "name", "email"]), "products": products }))
            .collect()
    }

    /// A stack of stand-in children (`sleep`), named.
    fn sleepers(children: &[(&str, &str)]) -> Stack {
        let children = children
            .iter()
            .map(|(name, secs)| {
                let child = Command::new("sleep").arg(secs).spawn().unwrap();
                ((*name).to_owned(), child)
            })
            .collect();
        Stack { children }
    }

    fn running(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }

    #[test]
    fn a_child_that_dies_is_named_and_the_others_are_stopped() {
        let stack = sleepers(&[("the demo crm", "0.3"), ("switchyard", "60")]);
        let host = stack.children[1].1.id();
        let error = stack.supervise(&AtomicBool::new(false)).unwrap_err();
        assert!(error.to_string().contains("the demo crm exited"), "{error}");
        assert!(!running(host), "switchyard was stopped");
    }

    #[test]
    fn a_stop_request_stops_every_child() {
        let stack = sleepers(&[("the demo crm", "60"), ("switchyard", "60")]);
        let pids: Vec<u32> = stack.children.iter().map(|(_, c)| c.id()).collect();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let asked = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            asked.store(true, Ordering::Relaxed);
        });
        assert_eq!(stack.supervise(&stop).unwrap(), Ended::Stopped);
        for pid in pids {
            assert!(!running(pid), "child {pid} still runs");
        }
    }

    #[test]
    fn the_run_command_fills_the_analytics_api_on_the_embedded_bus() {
        let root = root();
        let bin_dir = root.join("target").join("debug");
        for bin in ["switchyard", "switchyard-demo"] {
            assert!(
                bin_dir.join(bin).exists(),
                "{bin} is not built: run this test through `cargo xtask test`"
            );
        }
        assert!(
            root.join("plugins/merge.wasm").exists(),
            "the shipped plugins are not built: run `cargo xtask test`"
        );
        let scratch =
            std::env::temp_dir().join(format!("switchyard-xtask-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        let log = scratch.join("stack.log");
        let ports = Ports {
            crm: free_port(),
            inventory: free_port(),
        };
        let http = free_port();
        let stack = Stack::start(&root, &bin_dir, ports, Some(&log), |host| {
            host.args(["--bus", "embedded", "--http", &format!("127.0.0.1:{http}")])
                .arg("--data")
                .arg(scratch.join("data"))
                .env_remove("AMQP_URL");
        })
        .unwrap();

        let expected = expected();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = None;
        while Instant::now() < deadline {
            last = get(http, "/analytics/data?limit=1000");
            if last
                .as_ref()
                .is_some_and(|(status, page)| *status == 200 && page["items"] == json!(expected))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let printed = std::fs::read_to_string(&log).unwrap_or_default();
        let (status, page) = last.unwrap_or_else(|| panic!("the host never answered:\n{printed}"));
        assert_eq!(status, 200, "{page}\n{printed}");
        assert_eq!(page["items"], json!(expected), "{printed}");
        let (_, health) = get(http, "/health").unwrap();
        assert_eq!(health["broker"], "embedded", "{health}");
        assert!(
            printed.contains("embedded in-process bus"),
            "the log does not say the bus is embedded:\n{printed}"
        );
        drop(stack);
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
