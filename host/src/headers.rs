//! The AMQP message headers Switchyard reads and writes, in one place.
//!
//! Events from existing producers need none of them. Dead letters carry
//! the `x-switchyard-*` diagnosis; events on their way back from a retry
//! queue or a replay carry their original routing key, since they reach the
//! plugin's queue directly rather than through the exchange.

/// Why the event was dead-lettered (`timeout`, `trap: ...`, a plugin's
/// reject reason, `hop limit exceeded ...`, `... (gave up after N attempts)`).
pub const REASON: &str = "x-switchyard-reason";
/// The plugin that dead-lettered the event.
pub const PLUGIN: &str = "x-switchyard-plugin";
/// The sha256 of the plugin version that dead-lettered it.
pub const PLUGIN_VERSION: &str = "x-switchyard-plugin-version";
/// When it was dead-lettered, in Unix milliseconds.
pub const FAILED_AT_MS: &str = "x-switchyard-failed-at-ms";
/// When it first failed (transiently or not), in Unix milliseconds.
pub const FIRST_FAILED_AT_MS: &str = "x-switchyard-first-failed-at-ms";
/// How many times the plugin was handed the event and failed.
pub const ATTEMPTS: &str = "x-switchyard-attempts";
/// The last transient failure, on an event waiting in a retry queue.
pub const RETRY_REASON: &str = "x-switchyard-retry-reason";
/// The routing key the event was published with, on an event sent straight
/// to a plugin's queue (retry or replay).
pub const ROUTING_KEY: &str = "x-switchyard-routing-key";
/// How many plugins published the event in turn (absent: none).
pub const HOPS: &str = "x-switchyard-hops";
/// The plugin that published the event.
pub const SOURCE: &str = "x-switchyard-source";
/// When a dead letter was replayed, in Unix milliseconds.
pub const REPLAYED_AT_MS: &str = "x-switchyard-replayed-at-ms";

/// Every header a dead letter or a retry adds: a replay removes them, so
/// that the event starts afresh.
pub const DIAGNOSIS: [&str; 7] = [
    REASON,
    PLUGIN,
    PLUGIN_VERSION,
    FAILED_AT_MS,
    FIRST_FAILED_AT_MS,
    ATTEMPTS,
    RETRY_REASON,
];

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// An integer header, whatever integer type (or decimal string) the
/// publisher used; `None` when absent or unreadable.
pub fn int(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    let value = headers?.inner().get(name)?;
    match value {
        AMQPValue::ShortShortInt(n) => Some((*n).into()),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => Some((*n).into()),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::LongInt(n) => Some((*n).into()),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).trim().parse().ok(),
        _ => None,
    }
}

/// A text header; `None` when absent or not a string.
pub fn text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

pub fn set_text(headers: &mut FieldTable, name: &str, value: impl Into<String>) {
    headers.insert(
        ShortString::from(name),
        AMQPValue::LongString(LongString::from(value.into())),
    );
}

/// The table without the headers named in `names`.
pub fn without(table: &FieldTable, names: &[&str]) -> FieldTable {
    table
        .inner()
        .iter()
        .filter(|(k, _)| !names.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into()
}

pub fn set_int(headers: &mut FieldTable, name: &str, value: i64) {
    headers.insert(ShortString::from(name), AMQPValue::LongLongInt(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_from_any_integer_type_or_a_decimal_string() {
        let table = |v: AMQPValue| {
            let mut t = FieldTable::default();
            t.insert(ShortString::from(HOPS), v);
            t
        };
        assert_eq!(int(None, HOPS), None);
        assert_eq!(int(Some(&FieldTable::default()), HOPS), None);
        assert_eq!(int(Some(&table(AMQPValue::LongLongInt(7))), HOPS), Some(7));
        assert_eq!(
            int(Some(&table(AMQPValue::ShortShortUInt(2))), HOPS),
            Some(2)
        );
        assert_eq!(int(Some(&table(AMQPValue::LongInt(-5))), HOPS), Some(-5));
        assert_eq!(
            int(Some(&table(AMQPValue::LongString("12".into()))), HOPS),
            Some(12)
        );
        assert_eq!(int(Some(&table(AMQPValue::Boolean(true))), HOPS), None);
    }
}
