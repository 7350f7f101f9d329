//! Reading an upstream's answer as a stream of records: a JSON array of
//! records, or an object holding one (`{"items": [...], "next": "..."}`,
//! with a cursor to the next page). Records are handed over one at a time
//! as they are parsed, so a listing of any length costs the memory of one
//! record, not of the whole answer.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Fields of an object answer that hold the records when no `items-field`
/// setting names one, tried in this order.
pub const ITEMS_FIELDS: &[&str] = &["items", "data", "results", "records"];

/// Where the records and the next page's cursor are in an answer.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// The field of an object answer that holds the records; `None` tries
    /// [`ITEMS_FIELDS`].
    pub items_field: Option<String>,
    /// The field of an object answer that holds the next page's cursor.
    pub cursor_field: Option<String>,
}

/// What one answer held besides its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageInfo {
    pub records: usize,
    /// The next page's cursor; `None` when absent, null or empty.
    pub cursor: Option<String>,
}

/// Reads the answer from `reader`, calling `on_record` with each record in
/// order. An error from `on_record` stops the reading and is returned as is.
pub fn read(
    reader: impl Read,
    shape: &Shape,
    on_record: &mut dyn FnMut(Value) -> Result<(), String>,
) -> Result<PageInfo, String> {
    let mut info = PageInfo::default();
    let mut stopped = None;
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let answer = Answer {
        shape,
        on_record,
        stopped: &mut stopped,
        info: &mut info,
    };
    let read = answer.deserialize(&mut de).and_then(|found| {
        de.end()?;
        Ok(found)
    });
    if let Some(error) = stopped {
        return Err(error);
    }
    match read {
        Ok(true) => Ok(info),
        Ok(false) => Err(match &shape.items_field {
            Some(field) => format!("the answer has no list of records under {field:?}"),
            None => format!(
                "the answer is an object without a list of records (looked for {}; \
                 set items-field to name another field)",
                ITEMS_FIELDS.join(", ")
            ),
        }),
        Err(e) if e.is_io() => Err(format!("reading the answer: {e}")),
        Err(e) => Err(format!("the answer is not a listing of records: {e}")),
    }
}

/// The whole answer; deserializes to whether a list of records was found.
struct Answer<'a> {
    shape: &'a Shape,
    on_record: &'a mut dyn FnMut(Value) -> Result<(), String>,
    stopped: &'a mut Option<String>,
    info: &'a mut PageInfo,
}

impl<'de> DeserializeSeed<'de> for Answer<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Answer<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of records, or an object holding one")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        Records {
            on_record: self.on_record,
            stopped: self.stopped,
            count: &mut self.info.records,
        }
        .visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            let holds_items = match &self.shape.items_field {
                Some(field) => *field == key,
                None => ITEMS_FIELDS.contains(&key.as_str()),
            };
            if holds_items && !found {
                found = map.next_value_seed(Records {
                    on_record: &mut *self.on_record,
                    stopped: &mut *self.stopped,
                    count: &mut self.info.records,
                })?;
            } else if self.shape.cursor_field.as_deref() == Some(key.as_str()) {
                self.info.cursor = match map.next_value::<Value>()? {
                    Value::String(s) if !s.is_empty() => Some(s),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A list of records, handed over one by one; deserializes to whether the
/// value was a list (anything else is skipped).
struct Records<'a> {
    on_record: &'a mut dyn FnMut(Value) -> Result<(), String>,
    stopped: &'a mut Option<String>,
    count: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while let Some(record) = seq.next_element::<Value>()? {
            *self.count += 1;
            if let Err(e) = (self.on_record)(record) {
                *self.stopped = Some(e);
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(true)
    }

    // Not a list: ignored (another field may hold the records).
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(answer: &str, shape: &Shape) -> Result<(Vec<Value>, PageInfo), String> {
        let mut seen = Vec::new();
        let info = read(answer.as_bytes(), shape, &mut |r| {
            seen.push(r);
            Ok(())
        })?;
        Ok((seen, info))
    }

    #[test]
    fn an_array_answer_is_the_records() {
        let (seen, info) = records(r#" [{"id":"a"}, 5, {"id":"b"}] "#, &Shape::default()).unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(info.records, 3);
        assert_eq!(info.cursor, None);
    }

    #[test]
    fn an_object_answer_holds_the_records_and_a_cursor_in_any_order() {
        let shape = Shape {
            items_field: None,
            cursor_field: Some("next".into()),
        };
        let (seen, info) = records(
            r#"{"next":"b64+/=","total":2,"meta":{"x":[1]},"data":[{"id":"a"},{"id":"b"}]}"#,
            &shape,
        )
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(info.cursor.as_deref(), Some("b64+/="));
        let (_, info) = records(r#"{"items":[],"next":null}"#, &shape).unwrap();
        assert_eq!(info, PageInfo::default());
        let (_, info) = records(r#"{"items":[{}],"next":42}"#, &shape).unwrap();
        assert_eq!(info.cursor.as_deref(), Some("42"));
    }

    #[test]
    fn a_named_items_field_is_the_only_one_read() {
        let shape = Shape {
            items_field: Some("customers".into()),
            cursor_field: None,
        };
        let (seen, _) = records(r#"{"items":[1,2],"customers":[{"id":"a"}]}"#, &shape).unwrap();
        assert_eq!(seen, vec![serde_json::json!({"id": "a"})]);
        let err = records(r#"{"items":[1]}"#, &shape).unwrap_err();
        assert!(err.contains("\"customers\""), "{err}");
    }

    #[test]
    fn garbage_is_an_error_that_says_what_was_expected() {
        for bad in [
            "<html>",
            "\"text\"",
            "{\"items\": 5}",
            "[{\"id\":1}",
            "[1] [2]",
            "null",
        ] {
            let err = records(bad, &Shape::default()).unwrap_err();
            assert!(
                err.contains("listing") || err.contains("list of records"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn an_error_from_the_consumer_stops_the_reading() {
        let mut calls = 0;
        let err = read(&b"[1,2,3]"[..], &Shape::default(), &mut |_| {
            calls += 1;
            Err("broker gone".into())
        })
        .unwrap_err();
        assert_eq!(err, "broker gone");
        assert_eq!(calls, 1);
    }
}
