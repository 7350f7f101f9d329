//! The benchmarks' side of RabbitMQ: connecting, publishing with confirms,
//! declaring a plugin's queues as the host would and deleting everything a
//! run declared, so that the broker is left as the benchmark found it.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};

use switchyard::Config;
use switchyard::config::DEFAULT_HEARTBEAT_SECS;

use super::events::Message;

/// Published messages awaiting their broker confirm at most.
pub const CONFIRM_WINDOW: usize = 1_000;

/// `AMQP_URL`, or the local broker.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub async fn connect(url: &str) -> Result<Connection> {
    switchyard::broker::connect_to(url, DEFAULT_HEARTBEAT_SECS, "switchyard-bench")
        .await
        .context("RabbitMQ must be running (cargo xtask bench checks it)")
}

/// Persistent JSON, as the producers publish.
pub fn persistent() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
}

/// Publishes every event persistently with its own routing key, or with
/// `fixed_key` when given, keeping at most [`CONFIRM_WINDOW`] unconfirmed;
/// the rate at which the broker confirmed them, messages per second.
pub async fn publish_all(
    connection: &Connection,
    exchange: &str,
    fixed_key: Option<&str>,
    events: impl IntoIterator<Item = Message>,
) -> Result<f64> {
    let started = Instant::now();
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let props = persistent();
    let mut pending: VecDeque<PublisherConfirm> = VecDeque::with_capacity(CONFIRM_WINDOW);
    let mut count = 0;
    for event in events {
        count += 1;
        if pending.len() >= CONFIRM_WINDOW {
            await_confirm(pending.pop_front()).await?;
        }
        let confirm = channel
            .basic_publish(
                ShortString::from(exchange),
                ShortString::from(fixed_key.unwrap_or(event.routing_key)),
                BasicPublishOptions::default(),
                event.body.as_bytes(),
                props.clone(),
            )
            .await
            .context("publishing")?;
        pending.push_back(confirm);
    }
    while let Some(confirm) = pending.pop_front() {
        await_confirm(Some(confirm)).await?;
    }
    let _ = channel.close(200, ShortString::from("published")).await;
    let secs = started.elapsed().as_secs_f64();
    let rate = count as f64 / secs;
    println!("    published {count} with confirms in {secs:.2} s ({rate:.0} msg/s)");
    Ok(rate)
}

pub async fn await_confirm(confirm: Option<PublisherConfirm>) -> Result<()> {
    let Some(confirm) = confirm else {
        return Ok(());
    };
    let confirmation = confirm.await.context("awaiting a publisher confirm")?;
    ensure!(confirmation.is_ack(), "the broker refused a message");
    Ok(())
}

/// Declares `config`'s exchange and `plugin`'s queues bound to the merge
/// plugin's keys, as the host would on start-up.
pub async fn declare_plugin(
    connection: &Connection,
    admin: &Channel,
    config: &Config,
    plugin: &str,
) -> Result<()> {
    switchyard::broker::declare_exchange(admin, &config.exchange).await?;
    let keys: Vec<String> = switchyard_merge::SUBSCRIPTIONS
        .iter()
        .map(|k| (*k).to_owned())
        .collect();
    switchyard::broker::declare_plugin_queue(connection, config, plugin).await?;
    switchyard::broker::bind(admin, config, plugin, &keys).await
}

/// Deletes `plugin`'s queue, dead-letter queue and retry queues, its
/// dead-letter exchange and `config`'s exchange; what is already gone is
/// a warning, not an error. On a connection of its own: the run's may have
/// died with the failure being cleaned up after (a broker restarted under
/// it, say).
pub async fn delete_plugin(url: &str, config: &Config, plugin: &str) {
    let connection = match connect(url).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: could not connect to delete {plugin}'s queues: {e:#}");
            return;
        }
    };
    match connection.create_channel().await {
        Ok(admin) => {
            for queue in switchyard::broker::queue_type::plugin_queues(config, plugin) {
                delete_queue(&admin, &queue.name).await;
            }
            delete_exchange(&admin, &config.dead_letter_exchange(plugin)).await;
            delete_exchange(&admin, &config.exchange).await;
        }
        Err(e) => eprintln!("warning: could not open a channel to delete {plugin}'s queues: {e}"),
    }
    let _ = connection.close(200, ShortString::from("bye")).await;
}

/// Declares the durable queue `queue` (a queue of the run's own, `what`
/// names it in the error); the caller deletes it with [`delete_queue`].
pub async fn declare_durable_queue(channel: &Channel, queue: &str, what: &str) -> Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(ShortString::from(queue), durable, FieldTable::default())
        .await
        .with_context(|| format!("declaring the {what} queue"))?;
    Ok(())
}

pub async fn delete_queue(channel: &Channel, queue: &str) {
    if let Err(e) = channel
        .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
        .await
    {
        eprintln!("warning: could not delete queue {queue}: {e}");
    }
}

pub async fn delete_exchange(channel: &Channel, exchange: &str) {
    if let Err(e) = channel
        .exchange_delete(
            ShortString::from(exchange),
            ExchangeDeleteOptions::default(),
        )
        .await
    {
        eprintln!("warning: could not delete exchange {exchange}: {e}");
    }
}
