//! Record feeds, the logic of Switchyard's producer plugins: given the
//! records an upstream REST system lists, emit one event per record that is
//! new or changed since the last poll, and nothing for the rest.
//!
//! What was seen is kept in the plugin's state (`seen/<record id>` -> a hash
//! of the record's content), which the host commits only once every event
//! of the poll is confirmed by the broker. An event's id is derived from
//! the source, the record's id and its content hash, so a poll that is
//! repeated (after a crash, a broker outage, a restart) emits the same ids
//! and downstream deduplication makes it harmless.
//!
//! The logic is native code with no host dependency, tested as such; the
//! [`component`] module (wasm32 only) holds the `producer` world's bindings,
//! shared by every producer plugin, with an HTTP GET over `wasi:http` and
//! [`component::run`], a whole poll.

// The generated bindings and export glue are `unsafe`; nothing else is.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub mod component;

use serde_json::{Map, Value};

/// The plugin's key-value state, as the host's `state` import offers it.
pub trait State {
    fn get(&mut self, key: &str) -> Option<Vec<u8>>;
    fn set(&mut self, key: &str, value: &[u8]);
}

/// Whether a record is new to the feed or changed since it was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub id: String,
    pub routing_key: String,
    /// A JSON object, as text, with `eventId` equal to `id`.
    pub body: String,
}

/// How one feed names and shapes its events.
pub struct Feed<'a> {
    /// Names the source in event ids, e.g. `crm`.
    pub source: &'a str,
    /// The routing key of an event for a record that is new, and changed.
    pub routing_key: fn(Change) -> &'a str,
    /// The record's fields that go into the event body (besides `eventId`,
    /// `eventType` and `timestamp`), in wire order.
    pub fields: &'a [&'a str],
}

/// The events for `listing` (the upstream's answer, a JSON array of
/// objects with a string `id`) and the state writes that record them as
/// seen. `now` is the poll time as ISO-8601 text, the timestamp of records
/// that carry no `updatedAt` of their own. `Err` for an answer that is not
/// such an array: nothing is emitted and nothing recorded.
pub fn poll(
    feed: &Feed<'_>,
    state: &mut impl State,
    listing: &str,
    now: &str,
) -> Result<Vec<Produced>, String> {
    let records = match serde_json::from_str::<Value>(listing) {
        Ok(Value::Array(records)) => records,
        Ok(_) => return Err("the upstream did not answer with a JSON array".into()),
        Err(e) => return Err(format!("the upstream answered invalid JSON: {e}")),
    };
    // Check the whole answer before recording anything as seen.
    let mut valid = Vec::with_capacity(records.len());
    let mut seen = std::collections::HashSet::new();
    for (i, record) in records.iter().enumerate() {
        let Value::Object(record) = record else {
            return Err(format!("record {i} is not a JSON object"));
        };
        let id = match record.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id,
            _ => return Err(format!("record {i} has no string id")),
        };
        if !seen.insert(id.as_str()) {
            return Err(format!("record id {id:?} is listed twice"));
        }
        valid.push((id, record));
    }
    let mut produced = Vec::new();
    for (id, record) in valid {
        let hash = format!("{:016x}", content_hash(record));
        let key = format!("seen/{id}");
        let change = match state.get(&key) {
            None => Change::Created,
            Some(previous) if previous == hash.as_bytes() => continue,
            Some(_) => Change::Updated,
        };
        let routing_key = (feed.routing_key)(change);
        let event_id = format!("{}:{id}:{hash}", feed.source);
        let timestamp = match record.get("updatedAt") {
            Some(Value::String(at)) if !at.is_empty() => at.clone(),
            _ => now.to_owned(),
        };
        let mut body = Map::new();
        for field in feed.fields {
            if let Some(value) = record.get(*field) {
                body.insert((*field).to_owned(), value.clone());
            }
        }
        body.insert("eventId".into(), Value::String(event_id.clone()));
        body.insert("eventType".into(), Value::String(routing_key.to_owned()));
        body.insert("timestamp".into(), Value::String(timestamp));
        produced.push(Produced {
            id: event_id,
            routing_key: routing_key.to_owned(),
            body: Value::Object(body).to_string(),
        });
        state.set(&key, hash.as_bytes());
    }
    Ok(produced)
}

/// FNV-1a (64 bit) of the record's canonical JSON text (serde_json sorts
/// object keys), so that the same content always hashes the same. A change
/// detector, not a security measure.
fn content_hash(record: &Map<String, Value>) -> u64 {
    let text = serde_json::to_string(record).unwrap_or_default();
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Milliseconds since the Unix epoch as ISO-8601 UTC text with
/// milliseconds, as Java's `Instant.toString()` writes it.
pub fn iso8601(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    impl State for HashMap<String, Vec<u8>> {
        fn get(&mut self, key: &str) -> Option<Vec<u8>> {
            HashMap::get(self, key).cloned()
        }
        fn set(&mut self, key: &str, value: &[u8]) {
            self.insert(key.to_owned(), value.to_vec());
        }
    }

    fn crm() -> Feed<'static> {
        Feed {
            source: "crm",
            routing_key: |c| match c {
                Change::Created => "customer.created",
                Change::Updated => "customer.updated",
            },
            fields: &["id", "name", "email"],
        }
    }

    const NOW: &str = "2026-11-25T10:00:00.000Z";

    #[test]
    fn first_poll_emits_every_record_then_only_what_changed() {
        let mut state = HashMap::new();
        let listing = r#"[{"id":"c1","name":"ann","email":"a@x","updatedAt":"2026-11-24T08:00:00Z"},
                          {"id":"c2","name":"bob","email":"b@x"}]"#;
        let first = poll(&crm(), &mut state, listing, NOW).unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].routing_key, "customer.created");
        let body: Value = serde_json::from_str(&first[0].body).unwrap();
        assert_eq!(body["eventId"], first[0].id.as_str());
        assert_eq!(body["eventType"], "customer.created");
        assert_eq!(
            body["timestamp"], "2026-11-24T08:00:00Z",
            "the record's own time"
        );
        assert_eq!(body["name"], "ann");
        assert!(body.get("updatedAt").is_none(), "only the wire fields");
        let second: Value = serde_json::from_str(&first[1].body).unwrap();
        assert_eq!(second["timestamp"], NOW, "no updatedAt: the poll time");

        assert!(
            poll(&crm(), &mut state, listing, NOW).unwrap().is_empty(),
            "unchanged"
        );
        let changed = listing.replace("bob", "bobby");
        let third = poll(&crm(), &mut state, &changed, NOW).unwrap();
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].routing_key, "customer.updated");
        assert!(third[0].body.contains("bobby"));
    }

    #[test]
    fn a_repeated_poll_gives_the_same_ids() {
        let listing = r#"[{"id":"c1","name":"ann","email":"a@x"}]"#;
        let a = poll(&crm(), &mut HashMap::new(), listing, NOW).unwrap();
        let b = poll(&crm(), &mut HashMap::new(), listing, "2030-01-01T00:00:00Z").unwrap();
        assert_eq!(
            a[0].id, b[0].id,
            "state lost (never committed): same id again"
        );
        // Key order in the upstream's JSON does not matter.
        let reordered = r#"[{"email":"a@x","name":"ann","id":"c1"}]"#;
        let c = poll(&crm(), &mut HashMap::new(), reordered, NOW).unwrap();
        assert_eq!(a[0].id, c[0].id);
    }

    #[test]
    fn garbage_is_an_error_that_records_nothing() {
        let mut state = HashMap::new();
        for bad in [
            "<html>",
            r#"{"customers":[]}"#,
            r#"[1]"#,
            r#"[{"name":"no id"}]"#,
            r#"[{"id":"c1"},{"id":"c1"}]"#,
        ] {
            assert!(poll(&crm(), &mut state, bad, NOW).is_err(), "{bad}");
        }
        let partly = r#"[{"id":"c1"},{"id":5}]"#;
        assert!(poll(&crm(), &mut state, partly, NOW).is_err());
        assert!(state.is_empty(), "a bad answer records nothing as seen");
    }

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_764_064_800_123), "2025-11-25T10:00:00.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
