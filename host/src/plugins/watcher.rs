//! Watches the plugins folder: a `.wasm` that lands, is replaced or goes is
//! synced into the registry as soon as its writer is done with it, with a
//! periodic rescan as the safety net for notifications a file system does
//! not deliver.
//!
//! On Linux a copy in place fires `Create` before the data is written and
//! `Close(Write)` after; a file renamed in fires only a name event. So the
//! watcher reacts to closes after writing, renames and removals, never to
//! `Create` or bare writes: a file is never read while it is being written
//! by a writer that then closes it. A writer that closes a file half-way
//! (or a load that fails for any reason) is tried again on its next close
//! or change of size or time.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::PluginRegistry;

/// How long the watcher gathers notifications after the first one, so that
/// a burst (a rename pair, several files copied at once) is synced once.
const SETTLE: Duration = Duration::from_millis(15);

/// Starts watching `registry`'s folder; runs until `shutdown`.
pub fn spawn(
    registry: Arc<PluginRegistry>,
    rescan: Option<Duration>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .context("starting the plugins folder watcher")?;
    watcher
        .watch(registry.dir(), RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", registry.dir().display()))?;
    Ok(tokio::spawn(async move {
        // Owned by the task: dropping it stops the notifications.
        let _watcher = watcher;
        watch(registry, rx, rescan, shutdown).await;
    }))
}

async fn watch(
    registry: Arc<PluginRegistry>,
    mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    rescan: Option<Duration>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(rescan.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the host just scanned
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick(), if rescan.is_some() => None,
            event = events.recv() => match event {
                Some(event) => Some(event),
                None => return,
            },
        };
        let Some(first) = first else {
            rescan_all(&registry).await;
            continue;
        };
        tokio::time::sleep(SETTLE).await;
        let mut batch = vec![first];
        while let Ok(event) = events.try_recv() {
            batch.push(event);
        }
        let mut paths = BTreeSet::new();
        let mut lost_track = false;
        for event in batch {
            match event {
                Ok(event) if is_settled_change(&event.kind) => paths.extend(
                    event
                        .paths
                        .into_iter()
                        .filter(|p| registry.is_plugin_file(p)),
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "plugins folder notification lost; rescanning");
                    lost_track = true;
                }
            }
        }
        if lost_track {
            rescan_all(&registry).await;
        } else if !paths.is_empty() {
            sync(&registry, paths.into_iter().collect()).await;
        }
    }
}

/// A close after writing, a rename, or a removal: the moments a plugin
/// file is complete or gone.
fn is_settled_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_)
    )
}

async fn sync(registry: &Arc<PluginRegistry>, paths: Vec<PathBuf>) {
    let registry = Arc::clone(registry);
    let synced = tokio::task::spawn_blocking(move || {
        for path in paths {
            registry.sync_file(&path);
        }
    })
    .await;
    if let Err(e) = synced {
        tracing::error!(error = %e, "plugin loader panicked");
    }
}

async fn rescan_all(registry: &Arc<PluginRegistry>) {
    let registry = Arc::clone(registry);
    match tokio::task::spawn_blocking(move || registry.scan()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "rescanning plugins failed"),
        Err(e) => tracing::error!(error = %e, "plugin loader panicked"),
    }
}
