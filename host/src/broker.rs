//! RabbitMQ: connecting, declaring the topology (exchange, per-plugin
//! queues, bindings and dead-letter queues), publishing with confirms, and
//! the connection status that `/health` reports. [`queue_type`] says what
//! `--queue-type` changes in the declarations; [`watch`] follows what the
//! broker says about a connection (blocked publishing, its end, a missed
//! heartbeat).
//!
//! Topology per plugin `p` (prefix `switchyard` by default):
//! `integration.exchange` --(p's binding keys)--> queue `switchyard.p`
//! (durable, dead-letter exchange `switchyard.p.dlx`) and fanout exchange
//! `switchyard.p.dlx` --> queue `switchyard.p.dlq`; and retry queues
//! `switchyard.p.retry-<delay>ms` whose messages expire back into
//! `switchyard.p` after their delay. All of classic or all of quorum type.

pub mod queue_type;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::future::try_join_all;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
};

use crate::config::{Config, QueueType, redact_url};
use queue_type::{PluginQueue, QueueRefused};
pub use watch::ConnectionWatch;

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// How long opening a connection (TCP, then the AMQP handshake) may take
/// before it counts as failed: a broker whose packets are dropped never
/// answers.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection named `name` (shown in the management UI) to the
/// broker of `config`, with its heartbeat; the error names the broker
/// without its password.
pub async fn connect(config: &Config, name: &str) -> Result<Connection> {
    connect_to(config.amqp_url(), config.heartbeat_secs, name).await
}

/// Opens a connection to `url` with a heartbeat of `heartbeat_secs`
/// (unless the URL sets its own `heartbeat=`; 0 takes the broker's).
pub async fn connect_to(url: &str, heartbeat_secs: u16, name: &str) -> Result<Connection> {
    let uri = amqp_uri(url, heartbeat_secs)?;
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, props))
        .await
        .map_err(|_| {
            anyhow!(
                "connecting to RabbitMQ at {} timed out after {CONNECT_TIMEOUT:?}",
                redact_url(url)
            )
        })?
        .with_context(|| format!("connecting to RabbitMQ at {}", redact_url(url)))
}

/// `url` parsed, with a heartbeat of `heartbeat_secs` unless it asks for
/// its own.
fn amqp_uri(url: &str, heartbeat_secs: u16) -> Result<AMQPUri> {
    let mut uri: AMQPUri = url
        .parse()
        .map_err(|e: String| anyhow!("the AMQP URL {} is not valid: {e}", redact_url(url)))?;
    uri.query.heartbeat.get_or_insert(heartbeat_secs);
    Ok(uri)
}

/// Declares the durable topic exchange the events arrive on.
pub async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<()> {
    channel
        .exchange_declare(
            ShortString::from(exchange),
            ExchangeKind::Topic,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring exchange {exchange:?}"))
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares `queue` as a durable queue of `queue_type`; one that exists
/// with the other type or with other arguments is refused with a
/// [`QueueRefused`] that says how to move.
async fn declare_queue(
    connection: &Connection,
    channel: &Channel,
    queue: &PluginQueue,
    queue_type: QueueType,
) -> Result<()> {
    let name = queue.name.as_str();
    let error = match channel
        .queue_declare(
            ShortString::from(name),
            durable_queue(),
            queue.args(queue_type),
        )
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let Some(refused) = QueueRefused::from_broker(&error, name, queue_type) else {
        let what = queue.what();
        return Err(anyhow::Error::new(error).context(format!("declaring {what} {name:?}")));
    };
    // The broker names the first argument that differs, often not
    // `x-queue-type`: a queue that a host of the other type declared is
    // recognised by declaring it as that host did, which changes nothing.
    let other = queue_type.other();
    if matches!(refused, QueueRefused::OtherArguments { .. })
        && declared_as(connection, queue, other).await
    {
        return Err(refused.of_type(other, queue_type).into());
    }
    Err(refused.into())
}

/// Whether `queue` exists as a host with `queue_type` declares it:
/// declaring it so then changes nothing. On a channel of its own (a
/// refusal closes the channel); a queue that does not exist is not
/// declared.
async fn declared_as(connection: &Connection, queue: &PluginQueue, queue_type: QueueType) -> bool {
    let Ok(channel) = connection.create_channel().await else {
        return false;
    };
    let name = ShortString::from(queue.name.as_str());
    let passive = QueueDeclareOptions {
        passive: true,
        ..durable_queue()
    };
    let exists = channel
        .queue_declare(name.clone(), passive, FieldTable::default())
        .await
        .is_ok();
    let same = exists
        && channel
            .queue_declare(name, durable_queue(), queue.args(queue_type))
            .await
            .is_ok();
    if same {
        let _ = channel.close(200, ShortString::from("compared")).await;
    }
    same
}

/// Declares a plugin's queue, its retry queues and its dead-letter queue,
/// of the configured type, on a channel of its own (a queue the broker
/// refuses closes it). Idempotent: the broker keeps what already exists,
/// messages and bindings included. A queue of the other type is refused
/// with the names of all the plugin's queues of that type.
pub async fn declare_plugin_queue(
    connection: &Connection,
    config: &Config,
    plugin: &str,
) -> Result<()> {
    let channel = connection
        .create_channel()
        .await
        .context("opening a channel to declare queues")?;
    let queues = queue_type::plugin_queues(config, plugin);
    let declared = declare_plugin_queues(connection, &channel, config, plugin, &queues).await;
    // Fails, harmlessly, when the broker closed it already.
    let _ = channel.close(200, ShortString::from("declared")).await;
    let error = match declared {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    match error.downcast::<QueueRefused>() {
        Ok(QueueRefused::TypeMismatch {
            queue,
            existing,
            wanted,
            vhost,
            also: _,
        }) => {
            let mut also = Vec::new();
            for other in queues.iter().filter(|q| q.name != queue) {
                if declared_as(connection, other, wanted.other()).await {
                    also.push(other.name.clone());
                }
            }
            Err(QueueRefused::TypeMismatch {
                queue,
                existing,
                wanted,
                vhost,
                also,
            }
            .into())
        }
        Ok(refused) => Err(refused.into()),
        Err(error) => Err(error),
    }
}

async fn declare_plugin_queues(
    connection: &Connection,
    channel: &Channel,
    config: &Config,
    plugin: &str,
    queues: &[PluginQueue],
) -> Result<()> {
    let dlx = config.dead_letter_exchange(plugin);
    let dlq = config.dead_letter_queue(plugin);
    channel
        .exchange_declare(
            ShortString::from(dlx.as_str()),
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring dead-letter exchange {dlx:?}"))?;
    for queue in queues {
        declare_queue(connection, channel, queue, config.queue_type).await?;
    }
    channel
        .queue_bind(
            ShortString::from(dlq.as_str()),
            ShortString::from(dlx.as_str()),
            ShortString::from(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("binding {dlq:?} to {dlx:?}"))?;
    Ok(())
}

/// Binds a plugin's queue to the exchange with each of `keys`.
pub async fn bind(channel: &Channel, config: &Config, plugin: &str, keys: &[String]) -> Result<()> {
    bind_queue(channel, config, &config.queue_name(plugin), keys).await
}

/// Binds `queue` to the exchange with each of `keys`.
pub async fn bind_queue(
    channel: &Channel,
    config: &Config,
    queue: &str,
    keys: &[String],
) -> Result<()> {
    for key in keys {
        channel
            .queue_bind(
                ShortString::from(queue),
                ShortString::from(config.exchange.as_str()),
                ShortString::from(key.as_str()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("binding {queue:?} to {:?} with {key:?}", config.exchange))?;
    }
    Ok(())
}

/// Removes the bindings `keys` of a plugin's queue; messages already in the
/// queue stay.
pub async fn unbind(
    channel: &Channel,
    config: &Config,
    plugin: &str,
    keys: &[String],
) -> Result<()> {
    let queue = config.queue_name(plugin);
    for key in keys {
        channel
            .queue_unbind(
                ShortString::from(queue.as_str()),
                ShortString::from(config.exchange.as_str()),
                ShortString::from(key.as_str()),
                FieldTable::default(),
            )
            .await
            .with_context(|| {
                format!(
                    "unbinding {queue:?} from {:?} with {key:?}",
                    config.exchange
                )
            })?;
    }
    Ok(())
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Outgoing {
    /// A persistent JSON event, as the existing producers send them.
    pub fn json_event(
        exchange: &str,
        routing_key: &str,
        body: Vec<u8>,
        headers: FieldTable,
    ) -> Self {
        Self {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            body,
            properties: BasicProperties::default()
                .with_content_type(ShortString::from("application/json"))
                .with_delivery_mode(PERSISTENT)
                .with_headers(headers),
        }
    }
}

/// A channel in confirm mode: [`Publisher::publish_all`] returns once the
/// broker has taken responsibility for every message.
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    pub async fn open(connection: &Connection) -> Result<Self> {
        let channel = connection
            .create_channel()
            .await
            .context("opening a publishing channel")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        Ok(Self { channel })
    }

    /// Closes the channel (dropping it would race the connection's close).
    pub async fn close(self) {
        let _ = self.channel.close(200, ShortString::from("done")).await;
    }

    /// Publishes every message (all in flight at once) and waits for the
    /// broker's confirms. Fails if any is nacked.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<()> {
        confirmed(self.send_all(messages).await?).await
    }

    /// Publishes every message without waiting for the confirms, which the
    /// caller awaits with [`confirmed`].
    pub async fn send_all(&self, messages: &[Outgoing]) -> Result<Vec<PublisherConfirm>> {
        let mut confirms = Vec::with_capacity(messages.len());
        for m in messages {
            let confirm = self
                .channel
                .basic_publish(
                    ShortString::from(m.exchange.as_str()),
                    ShortString::from(m.routing_key.as_str()),
                    BasicPublishOptions::default(),
                    &m.body,
                    m.properties.clone(),
                )
                .await
                .with_context(|| format!("publishing to {:?}", m.exchange))?;
            confirms.push(confirm);
        }
        Ok(confirms)
    }
}

/// Waits for the broker's confirms of messages sent by
/// [`Publisher::send_all`]. Fails if any is nacked.
pub async fn confirmed(confirms: Vec<PublisherConfirm>) -> Result<()> {
    for confirmation in try_join_all(confirms)
        .await
        .context("awaiting publisher confirms")?
    {
        if confirmation.is_nack() {
            bail!("the broker refused a message (nack)");
        }
    }
    Ok(())
}

/// Whether the broker is reachable, and whether it blocks publishing, for
/// `/health`.
#[derive(Debug)]
pub struct BrokerStatus {
    state: RwLock<Result<(), String>>,
    connections: AtomicU64,
    embedded: std::sync::atomic::AtomicBool,
    /// The host's connections the broker blocks from publishing (a memory
    /// or disk alarm), by connection name, with the broker's reason.
    blocked: Mutex<BTreeMap<String, String>>,
}

impl Default for BrokerStatus {
    fn default() -> Self {
        Self {
            state: RwLock::new(Err("not connected yet".into())),
            connections: AtomicU64::new(0),
            embedded: std::sync::atomic::AtomicBool::new(false),
            blocked: Mutex::default(),
        }
    }
}

impl BrokerStatus {
    /// No broker: events travel on the embedded bus, always "connected".
    pub fn embedded(&self) {
        self.embedded.store(true, Ordering::Relaxed);
        *self.state.write().expect("status poisoned") = Ok(());
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.load(Ordering::Relaxed)
    }

    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        *self.state.write().expect("status poisoned") = Ok(());
    }

    pub fn disconnected(&self, reason: String) {
        *self.state.write().expect("status poisoned") = Err(reason);
    }

    /// `Err(reason)` while the broker is not connected.
    pub fn get(&self) -> Result<(), String> {
        self.state.read().expect("status poisoned").clone()
    }

    /// How many connections were established since start (1 + reconnects).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The broker blocks publishing on `connection`, for `reason`.
    pub fn blocked(&self, connection: &str, reason: &str) {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(connection.to_owned(), reason.to_owned());
    }

    /// The broker no longer blocks `connection` (or it is gone).
    pub fn unblocked(&self, connection: &str) {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(connection);
    }

    /// The broker's reason while it blocks publishing on any of the host's
    /// connections.
    pub fn blocked_reason(&self) -> Option<String> {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .next()
            .cloned()
    }
}

/// Builds a header table from string pairs.
pub fn string_headers<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in pairs {
        table.insert(
            ShortString::from(k),
            AMQPValue::LongString(LongString::from(v)),
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_is_asked_for_unless_the_url_sets_its_own() {
        let uri = amqp_uri("amqp://guest:guest@127.0.0.1:5672/%2f", 7).unwrap();
        assert_eq!(uri.query.heartbeat, Some(7));
        let uri = amqp_uri("amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=30", 7).unwrap();
        assert_eq!(uri.query.heartbeat, Some(30));
        let error = amqp_uri("amqp://guest:hunter2@[::1", 7)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn blocked_connections_are_reported_until_each_is_unblocked() {
        let status = BrokerStatus::default();
        assert_eq!(status.blocked_reason(), None);
        status.blocked("switchyard sy", "low on memory");
        status.blocked("switchyard sy producer crm", "low on memory");
        status.unblocked("switchyard sy");
        assert_eq!(status.blocked_reason().as_deref(), Some("low on memory"));
        status.unblocked("switchyard sy producer crm");
        assert_eq!(status.blocked_reason(), None);
    }
}
