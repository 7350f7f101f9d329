//! An event's envelope: the one field of a body the host reads, its
//! `eventId`, found in a single pass that checks the whole body is JSON but
//! builds nothing of the other fields (the plugin reads those).

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The body's `eventId`, or why the body is not an event: not JSON, not an
/// object, no `eventId`, or one that is not a non-empty string. A repeated
/// `eventId` counts by its last value, as a whole parse reads it. Other
/// fields are skipped however deeply nested (a whole parse refused more
/// than 128 levels): the plugin judges them.
pub fn event_id(body: &[u8]) -> Result<String, String> {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope::Object(Some(Value::String(id)))) if !id.is_empty() => Ok(id),
        Ok(Envelope::Object(None)) => Err("missing eventId".into()),
        Ok(Envelope::Object(Some(_))) => Err("eventId must be a non-empty string".into()),
        Ok(Envelope::NotObject) => Err("body is not a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// What [`event_id`] makes of a body: an object and its `eventId` value, if
/// it has one, or another JSON value (skipped).
enum Envelope {
    Object(Option<Value>),
    NotObject,
}

impl<'de> de::Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut id = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::EventId => id = Some(map.next_value::<Value>()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope::Object(id))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Envelope::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Envelope, E> {
        Ok(Envelope::NotObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Envelope, E> {
        Ok(Envelope::NotObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Envelope, E> {
        Ok(Envelope::NotObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Envelope, E> {
        Ok(Envelope::NotObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Envelope, E> {
        Ok(Envelope::NotObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Envelope, E> {
        Ok(Envelope::NotObject)
    }
}

/// An object's key: `eventId` or another, told apart without copying it.
enum Key {
    EventId,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(if key == "eventId" {
            Key::EventId
        } else {
            Key::Other
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the host said before this reader: the body parsed whole.
    fn parsed_whole(body: &[u8]) -> Result<String, String> {
        let fields = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err("body is not a JSON object".into()),
            Err(e) => return Err(format!("invalid JSON: {e}")),
        };
        match fields.get("eventId") {
            None => Err("missing eventId".into()),
            Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
            Some(_) => Err("eventId must be a non-empty string".into()),
        }
    }

    #[test]
    fn reads_the_event_id_as_a_whole_parse_would() {
        let bodies: &[&[u8]] = &[
            br#"{"eventId":"e1","id":"c1"}"#,
            br#"{"id":{"nested":[1,2,{"eventId":"inner"}]},"eventId":"outer"}"#,
            br#"{"eventId":"first","eventId":"last"}"#,
            br#"{"eventId":"e\u00e9\n\"q\"","x":null}"#,
            "{\"eventId\":\"ünïcode-ид-🦀\"}".as_bytes(),
            br#"{"eventId":""}"#,
            br#"{"eventId":5}"#,
            br#"{"eventId":null}"#,
            br#"{"eventId":["e1"]}"#,
            br#"{"event\u0049d":"escaped key"}"#,
            br#"{"id":"c4"}"#,
            br#"{}"#,
            br#"[1,2]"#,
            br#"[1,2"#,
            br#""eventId""#,
            br#"42"#,
            br#"null"#,
            br#"{"id": "c3", "name": "frank""#,
            br#"{"eventId":"e1"} trailing"#,
            br#"{"eventId":"e1",}"#,
            b"{\"eventId\":\"\xff\"}",
            b"",
            b"  {\"eventId\" : \"spaced\" }  ",
        ];
        for body in bodies {
            assert_eq!(
                event_id(body),
                parsed_whole(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn other_fields_are_skipped_however_deep_and_the_event_id_is_parsed_whole() {
        // A whole parse refused bodies nested deeper than 128 levels; the
        // other fields are now skipped without building them or recursing
        // (the plugin judges them), however deep.
        let deep = format!(
            "{{\"a\":{}1{},\"eventId\":\"e1\"}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(event_id(deep.as_bytes()), Ok("e1".to_owned()));
        let unclosed = format!("{{\"a\":{}1,\"eventId\":\"e1\"}}", "[".repeat(100_000));
        assert!(
            event_id(unclosed.as_bytes())
                .unwrap_err()
                .starts_with("invalid JSON")
        );
        let deep_id = format!("{{\"eventId\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(
            event_id(deep_id.as_bytes())
                .unwrap_err()
                .starts_with("invalid JSON")
        );
    }
}
