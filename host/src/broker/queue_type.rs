//! What `--queue-type` means for the queues the host declares: a plugin's
//! queues ([`plugin_queues`]) and their arguments per type, and, when a
//! queue already exists with the other type, a refusal that names the
//! queue, both types and how to move, instead of the broker's bare
//! PRECONDITION_FAILED. Declaring itself is [`super`]'s.

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::config::{Config, Consumers, QueueType};

/// The broker refused a queue as the host declares it.
#[derive(Debug, thiserror::Error)]
pub enum QueueRefused {
    /// The queue exists with another `x-queue-type`; it cannot change.
    #[error(
        "queue {queue} is {existing} but --queue-type is {wanted}: drain it (run with \
         --queue-type {existing} until it holds no message) and delete it \
         (rabbitmqctl delete_queue{vhost} {queue}){also}, or keep --queue-type {existing}",
        vhost = vhost_flag(vhost),
        also = also_these(also, existing)
    )]
    TypeMismatch {
        queue: String,
        existing: String,
        wanted: QueueType,
        vhost: Option<String>,
        /// The plugin's other queues of the existing type.
        also: Vec<String>,
    },
    /// The queue exists with other arguments (declared by another version
    /// or by hand).
    #[error(
        "queue {queue} exists with other arguments than this host declares it with \
         ({broker}): delete it once drained (rabbitmqctl delete_queue{vhost} {queue}), \
         and the host declares it again",
        vhost = vhost_flag(vhost)
    )]
    OtherArguments {
        queue: String,
        broker: String,
        vhost: Option<String>,
    },
}

/// `, and so for a, b (classic too)`, when there are others.
fn also_these(also: &[String], existing: &str) -> String {
    match also {
        [] => String::new(),
        queues => format!(", and so for {} ({existing} too)", queues.join(", ")),
    }
}

/// ` -p <vhost>` for `rabbitmqctl`, unless it is the default vhost.
fn vhost_flag(vhost: &Option<String>) -> String {
    match vhost.as_deref() {
        None | Some("/") => String::new(),
        Some(v) => format!(" -p {v}"),
    }
}

impl QueueRefused {
    /// What a PRECONDITION_FAILED on declaring `queue` as `wanted` means,
    /// from the broker's text (RabbitMQ 3.10: `inequivalent arg
    /// 'x-queue-type' for queue 'q' in vhost '/': received none but current
    /// is the value 'quorum' of type 'longstr'`; a classic queue declared
    /// without the argument is `current is none`); `None` for any other
    /// error.
    pub fn from_broker(error: &lapin::Error, queue: &str, wanted: QueueType) -> Option<Self> {
        let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
            return None;
        };
        let text = amqp.get_message().as_str();
        let precondition = matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
        );
        if !precondition || !text.contains("inequivalent arg") {
            return None;
        }
        let vhost = quoted_after(text, "in vhost ");
        let queue = queue.to_owned();
        if text.contains("'x-queue-type'") {
            // `current is none`: a classic queue declared without the
            // argument, as classic queues are by default.
            let existing = quoted_after(text, "current is ")
                .unwrap_or_else(|| wanted.other().as_str().to_owned());
            return Some(QueueRefused::TypeMismatch {
                queue,
                existing,
                wanted,
                vhost,
                also: Vec::new(),
            });
        }
        let broker = text
            .split_once(" - ")
            .map_or(text, |(_, rest)| rest)
            .to_owned();
        Some(QueueRefused::OtherArguments {
            queue,
            broker,
            vhost,
        })
    }

    /// This refusal, known to be of a queue of type `existing` (not
    /// `wanted`): a type mismatch.
    pub fn of_type(self, existing: QueueType, wanted: QueueType) -> Self {
        let (queue, vhost) = match self {
            QueueRefused::TypeMismatch { queue, vhost, .. }
            | QueueRefused::OtherArguments { queue, vhost, .. } => (queue, vhost),
        };
        QueueRefused::TypeMismatch {
            queue,
            existing: existing.as_str().to_owned(),
            wanted,
            vhost,
            also: Vec::new(),
        }
    }
}

/// The first `'quoted'` word after `marker` in `text`.
fn quoted_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let start = rest.find('\'')? + 1;
    let len = rest[start..].find('\'')?;
    Some(rest[start..start + len].to_owned())
}

/// What a queue of a plugin is for, which sets its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRole {
    /// The queue the plugin consumes; what the broker rejects goes to the
    /// dead-letter exchange. `single_active`: one consumer at a time across
    /// the hosts (the queue's order kept; the others stand by).
    Plugin {
        dead_letter_exchange: String,
        single_active: bool,
    },
    /// Keeps the plugin's dead letters.
    DeadLetters,
    /// Holds events for `delay_ms`, then the broker moves them back into
    /// the queue `back_to`.
    Retry { back_to: String, delay_ms: u64 },
}

/// One of the queues the host declares for a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginQueue {
    pub name: String,
    pub role: QueueRole,
}

impl PluginQueue {
    /// What it is, for messages.
    pub fn what(&self) -> &'static str {
        match self.role {
            QueueRole::Plugin { .. } => "queue",
            QueueRole::DeadLetters => "dead-letter queue",
            QueueRole::Retry { .. } => "retry queue",
        }
    }

    /// Its arguments as a queue of `queue_type`.
    pub fn args(&self, queue_type: QueueType) -> FieldTable {
        match &self.role {
            QueueRole::Plugin {
                dead_letter_exchange,
                single_active,
            } => {
                let mut args = dead_lettering(queue_type, dead_letter_exchange, None);
                if *single_active {
                    args.insert(
                        ShortString::from("x-single-active-consumer"),
                        AMQPValue::Boolean(true),
                    );
                }
                args
            }
            QueueRole::DeadLetters => keeping(queue_type),
            QueueRole::Retry { back_to, delay_ms } => {
                // Messages wait out the TTL, then the broker dead-letters
                // them through the default exchange straight back.
                let mut args = dead_lettering(queue_type, "", Some(back_to));
                let ttl = i64::try_from(*delay_ms).unwrap_or(i64::MAX);
                args.insert(
                    ShortString::from("x-message-ttl"),
                    AMQPValue::LongLongInt(ttl),
                );
                args
            }
        }
    }
}

/// A plugin's queues, in the order they are declared: its queue first (the
/// one a type mismatch matters most for), its dead-letter queue, its retry
/// queues.
pub fn plugin_queues(config: &Config, plugin: &str) -> Vec<PluginQueue> {
    let queue = config.queue_name(plugin);
    let mut queues = vec![
        PluginQueue {
            name: queue.clone(),
            role: QueueRole::Plugin {
                dead_letter_exchange: config.dead_letter_exchange(plugin),
                single_active: config.consumers(plugin) == Consumers::SingleActive,
            },
        },
        PluginQueue {
            name: config.dead_letter_queue(plugin),
            role: QueueRole::DeadLetters,
        },
    ];
    queues.extend(
        config
            .retry_delays_ms()
            .into_iter()
            .map(|delay_ms| PluginQueue {
                name: config.retry_queue(plugin, delay_ms),
                role: QueueRole::Retry {
                    back_to: queue.clone(),
                    delay_ms,
                },
            }),
    );
    queues
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Arguments of a queue that only keeps messages (a dead-letter queue).
/// A classic queue gets none, as before `--queue-type` existed, so that
/// the queues of earlier hosts are declared unchanged.
pub fn keeping(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    if queue_type == QueueType::Quorum {
        args.insert(ShortString::from("x-queue-type"), text("quorum"));
    }
    args
}

/// Arguments of a queue whose messages the broker dead-letters to
/// `exchange` with `routing_key` (the exchange's own key when `None`):
/// a plugin queue (rejects from outside Switchyard) or a retry queue
/// (every message, when its TTL expires). A quorum queue moves them at
/// least once: it keeps a message until the target queue confirmed it,
/// which RabbitMQ allows only with `x-overflow: reject-publish`.
pub fn dead_lettering(
    queue_type: QueueType,
    exchange: &str,
    routing_key: Option<&str>,
) -> FieldTable {
    let mut args = keeping(queue_type);
    args.insert(ShortString::from("x-dead-letter-exchange"), text(exchange));
    if let Some(key) = routing_key {
        args.insert(ShortString::from("x-dead-letter-routing-key"), text(key));
    }
    if queue_type == QueueType::Quorum {
        args.insert(
            ShortString::from("x-dead-letter-strategy"),
            text("at-least-once"),
        );
        args.insert(ShortString::from("x-overflow"), text("reject-publish"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::AMQPError;

    fn refused(message: &str) -> lapin::Error {
        lapin::ErrorKind::ProtocolError(AMQPError::new(
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
            ShortString::from(message),
        ))
        .into()
    }

    #[test]
    fn a_type_mismatch_names_the_queue_both_types_and_how_to_move() {
        let error = refused(
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'switchyard.merge' \
             in vhost '/': received the value 'quorum' of type 'longstr' but current is none",
        );
        let mut refusal = QueueRefused::from_broker(&error, "switchyard.merge", QueueType::Quorum)
            .expect("a mismatch");
        assert_eq!(
            refusal.to_string(),
            "queue switchyard.merge is classic but --queue-type is quorum: drain it (run with \
             --queue-type classic until it holds no message) and delete it (rabbitmqctl \
             delete_queue switchyard.merge), or keep --queue-type classic"
        );
        let QueueRefused::TypeMismatch { also, .. } = &mut refusal else {
            unreachable!()
        };
        *also = vec!["switchyard.merge.dlq".into()];
        assert!(
            refusal.to_string().ends_with(
                "(rabbitmqctl delete_queue switchyard.merge), and so for switchyard.merge.dlq \
                 (classic too), or keep --queue-type classic"
            ),
            "{refusal}"
        );
        let error = refused(
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'sy.p.dlq' in \
             vhost 'tests': received none but current is the value 'quorum' of type 'longstr'",
        );
        let refusal =
            QueueRefused::from_broker(&error, "sy.p.dlq", QueueType::Classic).expect("a mismatch");
        let text = refusal.to_string();
        assert!(
            text.starts_with("queue sy.p.dlq is quorum but --queue-type is classic"),
            "{text}"
        );
        assert!(
            text.contains("rabbitmqctl delete_queue -p tests sy.p.dlq"),
            "{text}"
        );
    }

    #[test]
    fn other_arguments_and_other_errors_are_told_apart() {
        let error = refused(
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': \
             received the value '2000' of type 'signedint' but current is none",
        );
        let refusal = QueueRefused::from_broker(&error, "q", QueueType::Classic).unwrap();
        assert!(matches!(refusal, QueueRefused::OtherArguments { .. }));
        assert!(
            refusal
                .to_string()
                .contains("inequivalent arg 'x-message-ttl'"),
            "{refusal}"
        );
        let io: lapin::Error = lapin::ErrorKind::MissingHeartbeatError.into();
        assert!(QueueRefused::from_broker(&io, "q", QueueType::Classic).is_none());
    }

    #[test]
    fn a_plugin_has_its_queue_a_dead_letter_queue_and_a_retry_queue_per_delay() {
        let config = Config::defaults();
        let queues = plugin_queues(&config, "merge");
        let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "switchyard.merge",
                "switchyard.merge.dlq",
                "switchyard.merge.retry-1000ms",
                "switchyard.merge.retry-2000ms",
                "switchyard.merge.retry-4000ms",
                "switchyard.merge.retry-8000ms"
            ]
        );
        let retry = queues[2].args(QueueType::Quorum);
        assert_eq!(
            retry.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(1000))
        );
        assert_eq!(
            retry.inner().get("x-dead-letter-routing-key"),
            Some(&text("switchyard.merge"))
        );
    }

    #[test]
    fn classic_queues_are_declared_as_before_and_quorum_ones_dead_letter_at_least_once() {
        assert!(keeping(QueueType::Classic).inner().is_empty());
        let classic = dead_lettering(QueueType::Classic, "p.dlx", None);
        assert_eq!(classic.inner().len(), 1);
        let quorum = dead_lettering(QueueType::Quorum, "", Some("p"));
        let get = |k: &str| quorum.inner().get(k).cloned();
        assert_eq!(get("x-queue-type"), Some(text("quorum")));
        assert_eq!(get("x-dead-letter-strategy"), Some(text("at-least-once")));
        assert_eq!(get("x-overflow"), Some(text("reject-publish")));
        assert_eq!(get("x-dead-letter-routing-key"), Some(text("p")));
    }
}
