//! Who is there: this host's id and its heartbeat in the store (what it
//! runs, when it was last seen), the hosts sharing the store as `GET
//! /cluster` lists them, and [`Lease`]s on jobs that one host at a time
//! must do (a producer's polls).
//!
//! With the embedded SQLite store there is one host; with PostgreSQL every
//! host that shares the database shows up, and an operator sees a rolling
//! plugin update (hosts running different versions for a while) and a dead
//! host (not seen for [`ALIVE_WITHIN_MS`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::plugins::PluginRegistry;
use crate::store::{Backend, HostRecord, Store, StoreError, StoreHealth, now_ms};

/// How often a host records that it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A host not seen for this long is shown as gone.
pub const ALIVE_WITHIN_MS: i64 = 3 * HEARTBEAT_EVERY.as_millis() as i64;
/// A gone host is listed for this long, then forgotten.
pub const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// The default host id: the machine's name and this process's id.
pub fn default_host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{name}-{}", std::process::id())
}

/// This host in the cluster.
#[derive(Debug, Clone)]
pub struct Membership {
    pub host_id: String,
    pub started_ms: i64,
}

impl Membership {
    pub fn new(host_id: String) -> Self {
        Self {
            host_id,
            started_ms: now_ms(),
        }
    }

    /// Records this host's heartbeat every [`HEARTBEAT_EVERY`] until
    /// `shutdown`, with the plugins it runs. A heartbeat that fails tells
    /// the store's health (nothing else may be using the store just then).
    pub async fn heartbeats(
        self,
        db: Store,
        health: Arc<StoreHealth>,
        registry: Arc<PluginRegistry>,
        shutdown: CancellationToken,
    ) {
        let mut every = tokio::time::interval(HEARTBEAT_EVERY);
        let mut beats: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let info = describe(&registry).to_string();
            let (id, started) = (self.host_id.clone(), self.started_ms);
            // Now and then, hosts gone for long are forgotten.
            let forget = beats.is_multiple_of(720);
            beats += 1;
            let beat = db
                .call(move |db| {
                    db.heartbeat(&id, started, &info)?;
                    if forget {
                        db.forget_hosts(db.clock_ms()? - FORGET_AFTER_MS)?;
                    }
                    Ok(())
                })
                .await;
            match beat {
                Ok(()) => health.answered(),
                Err(e) if e.is_outage() => health.failed(&e),
                Err(e) => tracing::warn!(error = %e, "recording the host's heartbeat failed"),
            }
        }
    }
}

/// What this host runs, as its heartbeat records it.
fn describe(registry: &PluginRegistry) -> Value {
    let plugins: Vec<Value> = registry
        .all()
        .into_iter()
        .map(|slot| {
            let version = slot.current();
            json!({
                "name": slot.name,
                "version": version.info.version,
                "sha256": version.sha256,
                "world": version.world,
            })
        })
        .collect();
    json!({ "plugins": plugins })
}

/// `GET /cluster`: every host seen within [`FORGET_AFTER_MS`], most
/// recently seen first, each alive or not, with its plugins.
pub fn listing(backend: &dyn Backend, this_host: &str) -> Result<Value, StoreError> {
    let now = backend.clock_ms()?;
    let hosts: Vec<Value> = backend
        .hosts(now - FORGET_AFTER_MS)?
        .into_iter()
        .map(|h: HostRecord| {
            let info: Value = serde_json::from_str(&h.info).unwrap_or(Value::Null);
            json!({
                "id": h.id,
                "alive": now - h.last_seen_ms <= ALIVE_WITHIN_MS,
                "last_seen_ms": h.last_seen_ms,
                "seen_ago_ms": (now - h.last_seen_ms).max(0),
                "started_ms": h.started_ms,
                "this_host": h.id == this_host,
                "plugins": info["plugins"],
            })
        })
        .collect();
    Ok(json!({ "this_host": this_host, "hosts": hosts }))
}

/// A lease on a job one host at a time must do, held by this host while
/// it renews it; another host takes it over once it expires.
#[derive(Debug, Clone)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub ttl: Duration,
}

impl Lease {
    /// Takes or renews the lease; returns who holds it now.
    pub async fn take(&self, db: &Store) -> Result<String, StoreError> {
        let (name, holder) = (self.name.clone(), self.holder.clone());
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        db.call(move |db| db.take_lease(&name, &holder, ttl)).await
    }

    /// Gives the lease up, so that another host takes over at once.
    pub async fn release(&self, db: &Store) {
        let (name, holder) = (self.name.clone(), self.holder.clone());
        if let Err(e) = db.call(move |db| db.release_lease(&name, &holder)).await {
            tracing::warn!(lease = %self.name, error = %e, "releasing a lease failed; it expires by itself");
        }
    }
}
