//! `switchyard plugin record`: copies live events that a plugin's
//! subscriptions match off the broker, as transcript input lines that
//! `plugin test` reads.
//!
//! It binds a temporary queue of its own (exclusive, auto-deleted, named
//! `<prefix>.<plugin>.record-<pid>`) to the exchange with the plugin's
//! binding keys, so the broker gives it a copy of each event: nothing is
//! taken from the plugin's own queue. The queue is deleted when recording
//! ends (and by the broker if the process dies).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{FieldTable, ShortString};

use super::scratch::Scratch;
use super::transcript::InputLine;
use crate::Config;
use crate::broker;
use crate::store::now_ms;

/// What to record.
#[derive(Debug, Clone)]
pub struct Recording {
    /// How many events to take.
    pub count: usize,
    /// The longest to wait for them.
    pub timeout: Duration,
}

/// Records `recording.count` events that the plugin file `plugin`
/// subscribes to from the broker of `config`, writing one input line per
/// event to `out` as it arrives. `Err` if fewer arrived within the timeout
/// (those that did are written).
pub async fn record(
    config: &Config,
    plugin: &Path,
    recording: &Recording,
    out: &mut dyn Write,
) -> Result<usize> {
    let (name, subscriptions) = subscriptions(config, plugin).await?;
    let connection = broker::connect(config, "switchyard plugin record").await?;
    let recorded = record_on(&connection, config, &name, &subscriptions, recording, out).await;
    let _ = connection.close(200, ShortString::from("recorded")).await;
    recorded
}

/// The plugin's name and binding keys, from its `describe()`.
async fn subscriptions(config: &Config, plugin: &Path) -> Result<(String, Vec<String>)> {
    let path = plugin.to_owned();
    let config = config.clone();
    let version = tokio::task::spawn_blocking(move || {
        Scratch::load_file(&path, &config).map(|(version, _scratch)| version)
    })
    .await??;
    if version.is_producer() {
        bail!(
            "{} is a producer: it subscribes to nothing; record the events of a transformer",
            version.name
        );
    }
    Ok((version.name.clone(), version.info.subscriptions.clone()))
}

async fn record_on(
    connection: &lapin::Connection,
    config: &Config,
    plugin: &str,
    subscriptions: &[String],
    recording: &Recording,
    out: &mut dyn Write,
) -> Result<usize> {
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel")?;
    broker::declare_exchange(&channel, &config.exchange).await?;
    let queue = format!(
        "{}.record-{}",
        config.queue_name(plugin),
        std::process::id()
    );
    channel
        .queue_declare(
            ShortString::from(queue.as_str()),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring the recording queue {queue:?}"))?;
    crate::broker::bind_queue(&channel, config, &queue, subscriptions).await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(queue.as_str()),
            ShortString::from("switchyard-record"),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("consuming {queue:?}"))?;
    eprintln!(
        "recording {} events of {plugin} ({}) from exchange {:?} into queue {queue:?}",
        recording.count,
        subscriptions.join(", "),
        config.exchange,
    );
    let mut recorded = 0;
    let taking = async {
        while recorded < recording.count {
            let Some(delivery) = consumer.next().await else {
                bail!("the broker ended the recording");
            };
            let delivery = delivery.context("receiving an event")?;
            let line = InputLine::received(
                delivery.routing_key.as_str(),
                &delivery.data,
                now_ms().max(0) as u64,
            );
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
            out.flush()?;
            recorded += 1;
        }
        Ok(())
    };
    let took = tokio::time::timeout(recording.timeout, taking).await;
    // The queue would go with the connection; deleting it says so at once.
    let _ = channel
        .queue_delete(
            ShortString::from(queue.as_str()),
            QueueDeleteOptions::default(),
        )
        .await;
    let _ = channel.close(200, ShortString::from("recorded")).await;
    match took {
        Ok(taken) => taken.map(|()| recorded),
        Err(_) => bail!(
            "recorded {recorded} of {} events within {:?}; the {recorded} recorded are written",
            recording.count,
            recording.timeout
        ),
    }
}
