//! A silent broker for one connection: `iptables` rules that drop every
//! packet between one local port and the broker's port, both ways, in
//! INPUT and OUTPUT (no FIN, no RST: a frozen NAT, firewall or broker
//! machine). Nothing else matches them, so other tests go on using the
//! same broker meanwhile. The rules go when the [`BlackHole`] is lifted or
//! dropped (a failing test included); rules left by a test process that
//! died are removed by the next one.
//!
//! Needs root and `iptables` (Debian package `iptables`, which `.ci/run`
//! installs); a test that cannot install the rules fails, saying so.

use std::process::Command;

/// Every rule's comment starts with this, then the pid of the test process.
const TAG: &str = "switchyard-test-black-hole";

/// Rules in place; removed by [`BlackHole::lift`] or on drop.
pub struct BlackHole {
    rules: Vec<Vec<String>>,
    pub local_port: u16,
}

impl BlackHole {
    /// Drops the packets of the connection from `local_port` to
    /// `broker_port` (and back). Panics, saying why, if `iptables` cannot.
    pub fn drop_connection(local_port: u16, broker_port: u16) -> Self {
        remove_stale_rules();
        let comment = format!("{TAG} {} port {local_port}", std::process::id());
        let (local, broker) = (local_port.to_string(), broker_port.to_string());
        let mut rules = Vec::new();
        for chain in ["INPUT", "OUTPUT"] {
            for (sport, dport) in [(&local, &broker), (&broker, &local)] {
                rules.push(
                    [
                        chain,
                        "-p",
                        "tcp",
                        "--sport",
                        sport,
                        "--dport",
                        dport,
                        "-m",
                        "comment",
                        "--comment",
                        &comment,
                        "-j",
                        "DROP",
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                );
            }
        }
        let mut hole = Self {
            rules: Vec::new(),
            local_port,
        };
        for rule in rules {
            // Inserted first in the chain, before any rule that accepts.
            let mut insert = rule.clone();
            insert.insert(1, "1".to_owned());
            if let Err(e) = iptables("-I", &insert) {
                drop(hole); // removes the rules inserted so far
                panic!(
                    "cannot install the iptables rules that black-hole the host's broker \
                     connection (needs root and the Debian package iptables, which .ci/run \
                     installs): {e}"
                );
            }
            hole.rules.push(rule);
        }
        hole
    }

    /// Removes the rules; the packets flow again.
    pub fn lift(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        for rule in self.rules.drain(..) {
            if let Err(e) = iptables("-D", &rule) {
                eprintln!("removing black-hole rule {rule:?}: {e}");
            }
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        if !self.rules.is_empty() {
            eprintln!("lifting the black hole on port {}", self.local_port);
            self.remove();
        }
    }
}

/// Runs `iptables <action> <rule>`.
fn iptables(action: &str, rule: &[String]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg(action)
        .args(rule)
        .output()
        .map_err(|e| format!("running iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {action} {}: {}{}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Deletes black-hole rules whose test process is gone (killed before its
/// guard could run): their port could be another connection's by now.
fn remove_stale_rules() {
    for chain in ["INPUT", "OUTPUT"] {
        let Ok(out) = Command::new("iptables").args(["-S", chain]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(at) = line.find(TAG) else { continue };
            let pid = line[at + TAG.len()..].split_whitespace().next();
            let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
            if alive {
                continue;
            }
            let Some(rule) = line.strip_prefix("-A ") else {
                continue;
            };
            // `iptables -S` quotes the comment; the shell would unquote it.
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!("iptables -D {rule}"))
                .status();
            eprintln!("removed a stale black-hole rule ({status:?}): {line}");
        }
    }
}

/// The local ports of the established TCP connections from process `pid`
/// to `broker_port`, from `ss`.
pub fn broker_ports_of_process(pid: u32, broker_port: u16) -> Vec<u16> {
    let out = Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .arg(format!("( dport = :{broker_port} )"))
        .output()
        .expect("ss (Debian package iproute2) lists the host's connections");
    let owner = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&owner))
        .filter_map(|l| {
            // Recv-Q Send-Q Local:Port Peer:Port Process
            let local = l.split_whitespace().nth(2)?;
            local.rsplit_once(':')?.1.parse().ok()
        })
        .collect()
}

/// The local port of this machine's connection to the broker named `name`
/// (its `connection_name`), as the broker lists it.
pub fn broker_port_of_connection(name: &str) -> u16 {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "peer_port",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl is installed with RabbitMQ");
    let text = String::from_utf8_lossy(&out.stdout);
    let exact = format!("{{\"connection_name\",\"{name}\"}}");
    let ports: Vec<u16> = text
        .lines()
        .filter(|l| l.contains(&exact))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    match ports[..] {
        [port] => port,
        _ => panic!("expected one connection named {name:?}, found {ports:?} in:\n{text}"),
    }
}
