//! The event transcript format shared by `plugin test`, `plugin record` and
//! the conformance transcripts: input lines (an event, optionally with the
//! output expected for it), output lines (what became of an event), the
//! starting store of `--state`, and comparing an output with an
//! expectation field by field.
//!
//! It knows nothing of plugins or brokers: see `test_run` and `record`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One event of a transcript, as `plugin record` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputLine {
    pub routing_key: String,
    /// The `received-at-ms` the plugin sees (0 when absent).
    #[serde(default)]
    pub received_at_ms: u64,
    /// The body as the broker would carry it, its text kept as written.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub body: Option<Box<RawValue>>,
    /// A body that is not JSON, as raw text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    /// The output line expected for this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Value>,
}

/// `"body": null` is a body (the text `null`), not an absent one.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl InputLine {
    /// An event as received: the body's text when it is JSON, else as
    /// `body_text` (lossily, for a body that is not UTF-8 either).
    pub fn received(routing_key: &str, body: &[u8], received_at_ms: u64) -> Self {
        let (json, text) = match serde_json::from_slice::<Box<RawValue>>(body) {
            Ok(raw) => (Some(raw), None),
            Err(_) => (None, Some(String::from_utf8_lossy(body).into_owned())),
        };
        Self {
            routing_key: routing_key.to_owned(),
            received_at_ms,
            body: json,
            body_text: text,
            expect: None,
        }
    }

    /// The message body's bytes, as the host would receive them.
    pub fn body_bytes(&self) -> Result<&[u8], String> {
        match (&self.body, &self.body_text) {
            (Some(raw), None) => Ok(raw.get().as_bytes()),
            (None, Some(text)) => Ok(text.as_bytes()),
            (Some(_), Some(_)) => Err("has both `body` and `body_text`: keep one".into()),
            (None, None) => Err("has neither `body` nor `body_text`".into()),
        }
    }

    /// The body's `eventId` when it is a JSON object with a string one.
    pub fn event_id(&self) -> Option<String> {
        let bytes = self.body_bytes().ok()?;
        match serde_json::from_slice::<Value>(bytes).ok()? {
            Value::Object(mut fields) => match fields.remove("eventId") {
                Some(Value::String(id)) => Some(id),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Parses a transcript's input lines; blank lines are skipped. The error
/// names the line.
pub fn parse_inputs(text: &str) -> Result<Vec<InputLine>, String> {
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let input: InputLine =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        input
            .body_bytes()
            .map_err(|e| format!("line {}: {e}", i + 1))?;
        lines.push(input);
    }
    Ok(lines)
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Applied,
    Duplicate,
    Rejected,
    Retry,
}

/// One output line: what became of the `n`th event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputLine {
    pub n: usize,
    pub event_id: Option<String>,
    pub outcome: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub actions: Vec<Value>,
    pub documents: Map<String, Value>,
}

/// The starting store of `plugin test --state FILE`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartState {
    /// The plugin's state: each value is stored as its JSON text.
    #[serde(default)]
    pub state: Map<String, Value>,
    /// Documents by `"<collection>/<key>"`.
    #[serde(default)]
    pub documents: Map<String, Value>,
}

/// How an output differs from what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub n: usize,
    pub event_id: Option<String>,
    /// One line per difference: where, expected, actual.
    pub differences: Vec<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.event_id.as_deref().unwrap_or("no eventId");
        writeln!(f, "event {} ({id}) does not match:", self.n)?;
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// At most this many differences are listed per event.
const MAX_DIFFERENCES: usize = 12;

/// Compares `actual` with the expected output line `expect`: `outcome`,
/// `actions` and `documents` must be equal as JSON values (absent ones are
/// `[]` and `{}`), and an expected `reason` must be a substring of the
/// actual one. `Err` when `expect` is not an output line.
pub fn compare(actual: &OutputLine, expect: &Value) -> Result<Option<Mismatch>, String> {
    let Value::Object(expect) = expect else {
        return Err("an expectation must be a JSON object (an output line)".into());
    };
    let outcome = expect
        .get("outcome")
        .ok_or("an expectation needs an `outcome`")?;
    serde_json::from_value::<Verdict>(outcome.clone()).map_err(|_| {
        format!("expected outcome {outcome} is not applied, duplicate, rejected or retry")
    })?;
    let actual_json = serde_json::to_value(actual).map_err(|e| e.to_string())?;
    let mut differences = Vec::new();
    diff(
        "outcome",
        outcome,
        &actual_json["outcome"],
        &mut differences,
    );
    if let Some(reason) = expect.get("reason") {
        let Value::String(part) = reason else {
            return Err("an expected `reason` must be a string".into());
        };
        match &actual.reason {
            Some(r) if r.contains(part.as_str()) => {}
            Some(r) => differences.push(format!(
                "reason: expected to contain {part:?}, actual {r:?}"
            )),
            None => differences.push(format!("reason: expected to contain {part:?}, actual none")),
        }
    }
    let empty_list = Value::Array(Vec::new());
    let empty_map = Value::Object(Map::new());
    diff(
        "actions",
        expect.get("actions").unwrap_or(&empty_list),
        &actual_json["actions"],
        &mut differences,
    );
    diff(
        "documents",
        expect.get("documents").unwrap_or(&empty_map),
        &actual_json["documents"],
        &mut differences,
    );
    if differences.is_empty() {
        return Ok(None);
    }
    if differences.len() > MAX_DIFFERENCES {
        let more = differences.len() - MAX_DIFFERENCES;
        differences.truncate(MAX_DIFFERENCES);
        differences.push(format!("... and {more} more"));
    }
    Ok(Some(Mismatch {
        n: actual.n,
        event_id: actual.event_id.clone(),
        differences,
    }))
}

/// Adds a line per place where `actual` differs from `expected`, naming it
/// by its path from `at` (`documents["customers/c1"].email`).
fn diff(at: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let path = format!("{at}{}", segment(key));
                match a.get(key) {
                    Some(av) => diff(&path, ev, av, out),
                    None => out.push(format!("{path}: expected {}, actual absent", short(ev))),
                }
            }
            for (key, av) in a {
                if !e.contains_key(key) {
                    let path = format!("{at}{}", segment(key));
                    out.push(format!("{path}: not expected, actual {}", short(av)));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(&format!("{at}[{i}]"), ev, av, out);
            }
        }
        (Value::Array(e), Value::Array(a)) => out.push(format!(
            "{at}: expected {} items {}, actual {} items {}",
            e.len(),
            short(expected),
            a.len(),
            short(actual)
        )),
        _ if expected == actual => {}
        _ => out.push(format!(
            "{at}: expected {}, actual {}",
            short(expected),
            short(actual)
        )),
    }
}

/// `.name` for a plain key, `["a/b"]` for any other.
fn segment(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_owned()))
    }
}

/// A JSON value on one line, cut at 200 characters.
fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 200 {
        return text;
    }
    let cut: String = text.chars().take(200).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn output() -> OutputLine {
        let mut documents = Map::new();
        documents.insert(
            "customers/c1".into(),
            json!({"email": "a@x", "name": "Ann"}),
        );
        OutputLine {
            n: 3,
            event_id: Some("e3".into()),
            outcome: Verdict::Applied,
            reason: None,
            actions: vec![json!({"upsert": {"collection": "customers", "key": "c1", "json": {}}})],
            documents,
        }
    }

    #[test]
    fn a_body_keeps_its_text_and_null_is_a_body() {
        let lines = parse_inputs(
            "{\"routing_key\":\"a\",\"body\":{\"b\": 1,  \"a\":\"\u{e9}\"}}\n\n{\"routing_key\":\"a\",\"body\":null}\n{\"routing_key\":\"a\",\"body_text\":\"{oops\"}",
        )
        .unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0].body_bytes().unwrap(),
            "{\"b\": 1,  \"a\":\"\u{e9}\"}".as_bytes()
        );
        assert_eq!(lines[1].body_bytes().unwrap(), b"null");
        assert_eq!(lines[2].body_bytes().unwrap(), b"{oops");
        let err = parse_inputs("{\"routing_key\":\"a\"}\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
        let err = parse_inputs("{\"routing_key\":\"a\",\"bdy\":{}}\n").unwrap_err();
        assert!(err.contains("bdy"), "{err}");
    }

    #[test]
    fn received_bodies_round_trip() {
        for body in [
            &b"{\"eventId\":\"e1\"}"[..],
            b"[1,2]",
            b"not json",
            b"\xff\xfe",
        ] {
            let line = InputLine::received("k", body, 5);
            let text = serde_json::to_string(&line).unwrap();
            let back = &parse_inputs(&text).unwrap()[0];
            if std::str::from_utf8(body).is_ok() {
                assert_eq!(back.body_bytes().unwrap(), body);
            }
            assert_eq!(back.received_at_ms, 5);
        }
    }

    #[test]
    fn an_equal_expectation_matches() {
        let expect = serde_json::to_value(output()).unwrap();
        assert_eq!(compare(&output(), &expect).unwrap(), None);
    }

    #[test]
    fn a_difference_is_named_by_its_path() {
        let mut expect = serde_json::to_value(output()).unwrap();
        expect["documents"]["customers/c1"]["email"] = json!("b@x");
        let m = compare(&output(), &expect).unwrap().unwrap();
        assert_eq!(
            m.differences,
            vec![r#"documents["customers/c1"].email: expected "b@x", actual "a@x""#]
        );
        assert!(m.to_string().starts_with("event 3 (e3) does not match"));
    }

    #[test]
    fn absent_lists_are_empty_and_reasons_are_substrings() {
        let mut rejected = output();
        rejected.outcome = Verdict::Rejected;
        rejected.reason = Some("invalid JSON: expected value at line 1".into());
        rejected.actions.clear();
        rejected.documents.clear();
        let ok = json!({"outcome": "rejected", "reason": "invalid JSON"});
        assert_eq!(compare(&rejected, &ok).unwrap(), None);
        let wrong = json!({"outcome": "rejected", "reason": "missing eventId"});
        let m = compare(&rejected, &wrong).unwrap().unwrap();
        assert!(m.differences[0].starts_with("reason:"), "{m}");
        let m = compare(&output(), &json!({"outcome": "applied"}))
            .unwrap()
            .unwrap();
        assert_eq!(m.differences.len(), 2, "{m}");
        assert!(compare(&output(), &json!({"outcome": "done"})).is_err());
    }
}
