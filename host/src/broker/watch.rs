//! One AMQP connection as the broker speaks of it outside any channel:
//! `connection.blocked` / `unblocked` (a memory or disk alarm holds every
//! publish on the connection, and lapin then writes nothing on it) and the
//! connection's end (a missed heartbeat: the broker went silent; a close;
//! an I/O error). Each change is logged once, reported to
//! [`BrokerStatus`] for `/health` and, for a producer, to its `/plugins`
//! entry. Reconnecting is the owner's business: this only says when.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use lapin::{Connection, ErrorKind, Event};
use tokio::sync::watch;
use tracing::Instrument;

use super::BrokerStatus;

/// Told the broker's reason when the connection is blocked, `None` when it
/// is unblocked (or closed while blocked).
pub type OnBlocked = Box<dyn Fn(Option<&str>) + Send + Sync>;

/// Follows a connection's events on a task, until dropped.
pub struct ConnectionWatch {
    shared: Arc<Shared>,
    lost: watch::Receiver<Option<lapin::Error>>,
    heartbeat_secs: u16,
    task: tokio::task::JoinHandle<()>,
}

/// What the task and the watch's owner both see.
struct Shared {
    name: String,
    status: Arc<BrokerStatus>,
    on_blocked: Option<OnBlocked>,
    /// Since when the broker blocks publishing, while it does.
    blocked_since: Mutex<Option<Instant>>,
}

impl Shared {
    fn blocked(&self, reason: &str) {
        let mut since = self.blocked_since.lock().unwrap_or_else(|p| p.into_inner());
        if since.is_some() {
            return;
        }
        *since = Some(Instant::now());
        tracing::warn!(connection = %self.name, reason, "broker blocked publishing");
        self.status.blocked(&self.name, reason);
        if let Some(tell) = &self.on_blocked {
            tell(Some(reason));
        }
    }

    /// The block ended: `how` says whether the broker lifted it or the
    /// connection went.
    fn unblocked(&self, how: &str) {
        let Some(since) = self
            .blocked_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let blocked_ms = since.elapsed().as_millis() as u64;
        tracing::info!(connection = %self.name, blocked_ms, "{how}");
        self.status.unblocked(&self.name);
        if let Some(tell) = &self.on_blocked {
            tell(None);
        }
    }
}

impl ConnectionWatch {
    /// Starts following `connection`, known as `name` (its connection
    /// name: unique per connection of a host), in the current span.
    pub fn start(
        connection: &Connection,
        name: &str,
        status: Arc<BrokerStatus>,
        on_blocked: Option<OnBlocked>,
    ) -> Self {
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            status,
            on_blocked,
            blocked_since: Mutex::new(None),
        });
        let (tell_lost, lost) = watch::channel(None);
        let mut events = Box::pin(connection.events_listener());
        let following = Arc::clone(&shared);
        let task = tokio::spawn(
            async move {
                while let Some(event) = events.next().await {
                    match event {
                        Event::ConnectionBlocked(reason) => following.blocked(&reason),
                        Event::ConnectionUnblocked => {
                            following.unblocked("broker unblocked publishing")
                        }
                        Event::Error(error) => {
                            following
                                .unblocked("connection lost while the broker blocked publishing");
                            let _ = tell_lost.send(Some(error));
                        }
                        _ => {}
                    }
                }
            }
            .in_current_span(),
        );
        Self {
            shared,
            lost,
            heartbeat_secs: connection.configuration().heartbeat(),
            task,
        }
    }

    /// Resolves once the connection is gone, with why (see
    /// [`ConnectionWatch::explain`]); never while it lives.
    pub async fn lost(&mut self) -> anyhow::Error {
        let error = match self.lost.wait_for(Option::is_some).await {
            Ok(error) => error.clone(),
            // The task ended without an error: the connection was closed.
            Err(_) => None,
        };
        match error {
            Some(error) => self.explain(anyhow::Error::new(error)),
            None => std::future::pending().await,
        }
    }

    /// Whether the connection is gone.
    pub fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// `error` said plainly when it comes from the connection's end by a
    /// missed heartbeat; else `error` itself.
    pub fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        if went_silent(&error) {
            anyhow::anyhow!(
                "the broker went silent: nothing heard from it for two heartbeat intervals \
                 ({} s each); giving up on this connection",
                self.heartbeat_secs
            )
        } else {
            error
        }
    }
}

impl Drop for ConnectionWatch {
    fn drop(&mut self) {
        self.task.abort();
        self.shared
            .unblocked("connection closed while the broker blocked publishing");
    }
}

/// Whether `error` comes from a connection lapin closed because nothing
/// arrived for two heartbeat intervals.
pub fn went_silent(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<lapin::Error>()
            .is_some_and(|e| matches!(e.kind(), ErrorKind::MissingHeartbeatError))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_missed_heartbeat_is_found_under_any_context() {
        let silent: lapin::Error = ErrorKind::MissingHeartbeatError.into();
        let error = Err::<(), _>(silent)
            .context("receiving deliveries")
            .unwrap_err();
        assert!(went_silent(&error));
        let other: lapin::Error = ErrorKind::NoDefaultRuntime.into();
        assert!(!went_silent(&anyhow::Error::new(other)));
    }
}
