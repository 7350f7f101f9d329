//! One AMQP connection as the broker speaks of it outside any channel: the
//! connection's end (a missed heartbeat: the broker went silent; a close;
//! an I/O error), which its owner waits for and explains.
//! Reconnecting is the owner's business: this only says when.

use futures_util::StreamExt;
use lapin::{Connection, ErrorKind, Event};
use tokio::sync::watch;
use tracing::Instrument;

/// Follows a connection's events on a task, until dropped.
pub struct ConnectionWatch {
    lost: watch::Receiver<Option<lapin::Error>>,
    heartbeat_secs: u16,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectionWatch {
    /// Starts following `connection`, in the current span.
    pub fn start(connection: &Connection) -> Self {
        let (tell_lost, lost) = watch::channel(None);
        let mut events = Box::pin(connection.events_listener());
        let task = tokio::spawn(
            async move {
                while let Some(event) = events.next().await {
                    if let Event::Error(error) = event {
                        let _ = tell_lost.send(Some(error));
                    }
                }
            }
            .in_current_span(),
        );
        Self {
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
