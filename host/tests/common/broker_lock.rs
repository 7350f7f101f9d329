//! Keeps the tests that need the shared RabbitMQ up apart from a test that
//! stops it (`rabbitmqctl stop_app`) or raises an alarm on it (which blocks
//! every publisher): the [`ServiceLock`] on [`BROKER_LOCK_FILE`], so a
//! script can join in (`flock /tmp/switchyard-broker.lock ...`). Many
//! holders may share it; stopping the broker takes it alone.
//!
//! Every [`TestHost`](super::TestHost) holds it shared for its lifetime; a
//! [`ChildHost`](super::process::ChildHost) does not, so that a test holding
//! it exclusively can run one (the lock is per open file: the same process
//! asking again would wait for itself).

use std::process::Command;

use super::service_lock::ServiceLock;

/// The lock file every broker-stopping test run on this machine agrees on.
pub const BROKER_LOCK_FILE: &str = "/tmp/switchyard-broker.lock";

/// A held broker lock; released when dropped.
pub struct BrokerLock(ServiceLock);

impl BrokerLock {
    /// Shared: nobody stops the broker while this is held.
    pub async fn shared() -> Self {
        Self(ServiceLock::take(BROKER_LOCK_FILE, false, "the broker").await)
    }

    /// Exclusive: the holder may stop and start the broker.
    pub async fn exclusive() -> Self {
        Self(ServiceLock::take(BROKER_LOCK_FILE, true, "the broker").await)
    }

    /// How long it took to get.
    pub fn waited(&self) -> std::time::Duration {
        self.0.waited
    }
}

/// The broker's application stopped (`rabbitmqctl stop_app`); started
/// again by [`BrokerStopped::start`] or, if the test panics first, on drop.
pub struct BrokerStopped {
    started: bool,
}

impl BrokerStopped {
    pub async fn stop() -> Self {
        // The guard exists before the command runs: a stop that half
        // happened is undone too.
        let guard = Self { started: false };
        rabbitmqctl("stop_app").await;
        guard
    }

    pub async fn start(mut self) {
        rabbitmqctl("start_app").await;
        self.started = true;
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        if !self.started {
            eprintln!("starting the broker again after a failure: rabbitmqctl start_app");
            let status = Command::new("rabbitmqctl").arg("start_app").status();
            eprintln!("rabbitmqctl start_app: {status:?}");
        }
    }
}

/// A memory alarm on the broker: its high watermark set so low that every
/// connection that publishes is blocked (`connection.blocked`). The
/// watermark it had is put back by [`MemoryAlarm::clear`] or, if the test
/// panics first, on drop. Hold the [`BrokerLock`] exclusively meanwhile.
pub struct MemoryAlarm {
    /// `rabbitmqctl set_vm_memory_high_watermark` arguments that restore it.
    previous: Vec<String>,
    cleared: bool,
}

impl MemoryAlarm {
    pub async fn raise() -> Self {
        let previous = watermark_now();
        // The guard exists before the command runs: an alarm that half
        // happened is undone too.
        let alarm = Self {
            previous,
            cleared: false,
        };
        rabbitmqctl_args(&["set_vm_memory_high_watermark", "0.0000001"]).await;
        alarm
    }

    pub async fn clear(mut self) {
        let args: Vec<&str> = std::iter::once("set_vm_memory_high_watermark")
            .chain(self.previous.iter().map(String::as_str))
            .collect();
        rabbitmqctl_args(&args).await;
        self.cleared = true;
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        if !self.cleared {
            eprintln!(
                "clearing the memory alarm after a failure: rabbitmqctl set_vm_memory_high_watermark {}",
                self.previous.join(" ")
            );
            let status = Command::new("rabbitmqctl")
                .arg("set_vm_memory_high_watermark")
                .args(&self.previous)
                .status();
            eprintln!("rabbitmqctl set_vm_memory_high_watermark: {status:?}");
        }
    }
}

/// The broker's memory high watermark now, as the arguments of
/// `rabbitmqctl set_vm_memory_high_watermark` that set it: a fraction of
/// the memory (`0.4`), or `absolute <bytes>`.
fn watermark_now() -> Vec<String> {
    let out = Command::new("rabbitmqctl")
        .args(["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
        .output()
        .expect("rabbitmqctl is installed with RabbitMQ");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(out.status.success(), "reading the watermark: {text}");
    match text
        .strip_prefix("{absolute,")
        .and_then(|t| t.strip_suffix('}'))
    {
        Some(bytes) => vec!["absolute".to_owned(), bytes.to_owned()],
        None => {
            assert!(
                text.parse::<f64>().is_ok_and(|f| f > 0.0),
                "an unexpected watermark: {text}"
            );
            vec![text]
        }
    }
}

async fn rabbitmqctl_args(args: &[&str]) {
    let status = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .expect("rabbitmqctl is installed with RabbitMQ");
    assert!(status.success(), "rabbitmqctl {args:?}: {status}");
}

async fn rabbitmqctl(command: &str) {
    let status = tokio::process::Command::new("rabbitmqctl")
        .arg(command)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .expect("rabbitmqctl is installed with RabbitMQ");
    assert!(status.success(), "rabbitmqctl {command}: {status}");
}
