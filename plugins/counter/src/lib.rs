//! Switchyard test fixture `counter`: counts every event it is handed.
//!
//! Subscribes to `#`. Each event adds one to the little-endian `u64` under
//! state key `count` and upserts `counts/total` as `{"count": <n>}`, so an
//! event applied twice (or lost) shows as a wrong count. A body with a
//! top-level string field `"reject"` is rejected with that string as the
//! reason, without touching state. A field `"misbehave"` makes it behave as a
//! hostile plugin would: `"trap"` panics, `"spin"` loops forever, `"hog"`
//! allocates without end, `"retry"` asks for a retry. A field `"fail_times"`
//! (a decimal string, `"2"`) asks for a retry that many times for that event
//! id, then succeeds: attempts are remembered in the instance's memory.
//!
//! The `test-variant` build is "the fixed plugin": it ignores `"reject"`
//! and `"misbehave": "retry"`, so events its predecessor dead-lettered can
//! be replayed to it. Deliberately no serde: fields are found by a plain
//! scan of the text.

use switchyard_plugin::{
    Action, Event, HandleError, PluginInfo, Transformer, reject, retry, state, upsert_raw,
};

const COUNT_KEY: &str = "count";

/// Transient failures so far, per event id (for `"fail_times"`).
static FAILURES: std::sync::Mutex<std::collections::BTreeMap<String, u32>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

struct Counter;

impl Transformer for Counter {
    fn describe() -> PluginInfo {
        let version = if cfg!(feature = "test-variant") {
            concat!(env!("CARGO_PKG_VERSION"), "+fixed")
        } else {
            env!("CARGO_PKG_VERSION")
        };
        PluginInfo::new("counter", version, &["#"])
    }

    fn handle(event: Event) -> Result<Vec<Action>, HandleError> {
        let fixed = cfg!(feature = "test-variant");
        if let Some(reason) = string_field(&event.body, "reject")
            && !fixed
        {
            return Err(reject(reason));
        }
        match string_field(&event.body, "misbehave").as_deref() {
            Some("trap") => panic!("counter told to trap"),
            Some("spin") => spin(),
            Some("hog") => hog(),
            Some("retry") if !fixed => return Err(retry("counter told to retry")),
            _ => {}
        }
        if let Some(times) = string_field(&event.body, "fail_times") {
            let times: u32 = times.parse().unwrap_or(0);
            let mut failures = FAILURES.lock().unwrap_or_else(|p| p.into_inner());
            let failed = failures.entry(event.id.clone()).or_insert(0);
            if *failed < times {
                *failed += 1;
                return Err(retry(format!("transient failure {failed} of {times}")));
            }
        }
        let count = match state::get(COUNT_KEY) {
            None => 0,
            Some(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
                Ok(le) => u64::from_le_bytes(le),
                Err(_) => {
                    return Err(reject(format!(
                        "state key {COUNT_KEY} holds {} bytes, expected 8",
                        bytes.len()
                    )));
                }
            },
        } + 1;
        state::set(COUNT_KEY, &count.to_le_bytes());
        Ok(vec![upsert_raw(
            "counts",
            "total",
            format!("{{\"count\":{count}}}"),
        )])
    }
}

switchyard_plugin::export_transformer!(Counter);

/// Never returns: the host's deadline has to stop it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates (and touches) memory until the host's memory cap stops it.
fn hog() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// The string value of the first `"<name>"` key in `body`, with the common
/// escapes undone (`\uXXXX` only for characters outside the surrogates).
///
/// A scan, not a parser: it does not check that the key is at the top level
/// or that `"reject"` is a key rather than text inside another string. Good
/// enough for the test bodies this fixture is sent.
fn string_field(body: &str, name: &str) -> Option<String> {
    let quoted = format!("\"{name}\"");
    let mut rest = body;
    loop {
        let at = rest.find(&quoted)?;
        rest = &rest[at + quoted.len()..];
        let Some(value) = rest.trim_start().strip_prefix(':') else {
            continue;
        };
        let Some(value) = value.trim_start().strip_prefix('"') else {
            continue;
        };
        let mut out = String::new();
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        let code = u32::from_str_radix(&hex, 16).ok()?;
                        out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        return None;
    }
}

#[cfg(test)]
mod tests {
    use super::string_field;

    #[test]
    fn finds_the_reject_string() {
        let reject_field = |body| string_field(body, "reject");
        assert_eq!(
            reject_field(r#"{"reject": "bad event"}"#).as_deref(),
            Some("bad event")
        );
        assert_eq!(
            reject_field(r#"{"id":1,"reject" : "say \"no\"\n\u00e9"}"#).as_deref(),
            Some("say \"no\"\né")
        );
        assert_eq!(
            reject_field(r#"{"note":"reject","reject":"x"}"#).as_deref(),
            Some("x")
        );
        assert_eq!(reject_field(r#"{"reject": 5}"#), None);
        assert_eq!(reject_field(r#"{"reject": "unterminated"#), None);
        assert_eq!(reject_field(r#"{"id": "c1"}"#), None);
        assert_eq!(
            string_field(r#"{"misbehave": "spin"}"#, "misbehave").as_deref(),
            Some("spin")
        );
    }
}
