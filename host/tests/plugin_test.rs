//! `switchyard plugin test`, run as the real binary against real `.wasm`
//! files: outcomes (applied, duplicate, rejected by the plugin or by the
//! host, retry, trap), expectations met and missed, `--expect` and
//! `--state`, and inputs our own fixtures never send (unicode, a 1 MB body,
//! a body that is a JSON array, a body that is not JSON).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

/// Writes `lines` as a transcript in a fresh folder and returns its path.
fn transcript(dir: &Path, name: &str, lines: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn plugin_test(args: &[&Path], flags: &[(&str, &Path)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("plugin").arg("test").args(args);
    for (flag, value) in flags {
        cmd.arg(flag).arg(value);
    }
    cmd.env("RUST_LOG", "off");
    cmd.output().unwrap()
}

fn outputs(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn counter_event(id: &str, extra: Value) -> Value {
    let mut body = json!({"eventId": id});
    if let Value::Object(fields) = extra {
        body.as_object_mut().unwrap().extend(fields);
    }
    json!({"routing_key": "any.thing", "body": body})
}

#[test]
fn every_outcome_is_reported_and_checked_against_inline_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(1 << 20);
    let count = |n: u64| json!({"counts/total": {"count": n}});
    let upsert = |n: u64| json!([{"upsert": {"collection": "counts", "key": "total", "json": {"count": n}}}]);
    let mut lines = vec![
        counter_event("e1", json!({"name": "Zoë 東京 🚀 \u{0}"})),
        counter_event("e1", json!({})),
        counter_event("e2", json!({"reject": "no thanks"})),
        json!({"routing_key": "a.b", "body_text": "{\"eventId\": \"e3\", oops"}),
        json!({"routing_key": "a.b", "body": {"id": "c9"}}),
        json!({"routing_key": "a.b", "body": [{"eventId": "e4"}]}),
        counter_event("e5", json!({"misbehave": "retry"})),
        counter_event("e6", json!({"misbehave": "trap"})),
        counter_event("e7", json!({"huge": huge})),
        json!({"routing_key": "a.b", "body": null}),
    ];
    let expects = [
        json!({"outcome": "applied", "actions": upsert(1), "documents": count(1)}),
        json!({"outcome": "duplicate"}),
        json!({"outcome": "rejected", "reason": "no thanks"}),
        json!({"outcome": "rejected", "reason": "invalid JSON"}),
        json!({"outcome": "rejected", "reason": "missing eventId"}),
        json!({"outcome": "rejected", "reason": "not a JSON object"}),
        json!({"outcome": "retry", "reason": "counter told to retry"}),
        json!({"outcome": "rejected", "reason": "trap"}),
        // The trap cost nothing: the fresh instance counts on from state.
        json!({"outcome": "applied", "actions": upsert(2), "documents": count(2)}),
        json!({"outcome": "rejected", "reason": "not a JSON object"}),
    ];
    for (line, expect) in lines.iter_mut().zip(expects) {
        line["expect"] = expect;
    }
    let events = transcript(dir.path(), "events.jsonl", &lines);
    let out = plugin_test(&[&common::plugin_file("counter"), &events], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = outputs(&out);
    assert_eq!(got.len(), 10);
    let ids: Vec<&Value> = got.iter().map(|o| &o["event_id"]).collect();
    assert_eq!(
        ids,
        [
            &json!("e1"),
            &json!("e1"),
            &json!("e2"),
            &Value::Null,
            &Value::Null,
            &Value::Null,
            &json!("e5"),
            &json!("e6"),
            &json!("e7"),
            &Value::Null
        ]
    );
    let ns: Vec<u64> = got.iter().map(|o| o["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, (1..=10).collect::<Vec<_>>());
    assert!(got[1].get("reason").is_none(), "{}", got[1]);
    assert!(
        stderr(&out).contains("10 of 10 expectations met"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missed_expectation_names_the_event_and_the_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut second = counter_event("e2", json!({}));
    second["expect"] = json!({
        "outcome": "applied",
        "actions": [{"upsert": {"collection": "counts", "key": "total", "json": {"count": 2}}}],
        "documents": {"counts/total": {"count": 3}},
    });
    let events = transcript(
        dir.path(),
        "events.jsonl",
        &[counter_event("e1", json!({})), second],
    );
    let out = plugin_test(&[&common::plugin_file("counter"), &events], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("event 2 (e2) does not match"), "{err}");
    assert!(
        err.contains(r#"documents["counts/total"].count: expected 3, actual 2"#),
        "{err}"
    );
    assert!(!err.contains("actions"), "the actions matched: {err}");
    assert!(err.contains("1 of 1 events do not match"), "{err}");
    assert_eq!(outputs(&out).len(), 2, "every output is still printed");
}

#[test]
fn an_expect_file_is_compared_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let events = transcript(
        dir.path(),
        "events.jsonl",
        &[
            counter_event("e1", json!({})),
            counter_event("e2", json!({"reject": "bad"})),
        ],
    );
    let plugin = common::plugin_file("counter");
    // The first run's output is the expectation of the next: it matches.
    let first = plugin_test(&[&plugin, &events], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let expect = dir.path().join("expect.jsonl");
    std::fs::write(&expect, &first.stdout).unwrap();
    let again = plugin_test(&[&plugin, &events], &[("--expect", &expect)]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(again.stdout, first.stdout, "runs are deterministic");
    assert!(stderr(&again).contains("2 of 2 expectations met"));

    let wrong = transcript(
        dir.path(),
        "wrong.jsonl",
        &[json!({"outcome": "applied"}), json!({"outcome": "applied"})],
    );
    let out = plugin_test(&[&plugin, &events], &[("--expect", &wrong)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("event 1 (e1)"), "{err}");
    assert!(
        err.contains(
            r#"event 2 (e2) does not match:
  outcome: expected "applied", actual "rejected""#
        ),
        "{err}"
    );

    let short = transcript(dir.path(), "short.jsonl", &[json!({"outcome": "applied"})]);
    let out = plugin_test(&[&plugin, &events], &[("--expect", &short)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("1 expected lines for the 2 events"));
}

#[test]
fn state_starts_the_store_and_received_at_comes_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    // c1 as the merge plugin stores it: a name, and the instant of 2024-01-01.
    std::fs::write(
        &state,
        json!({
            "state": {"customer/c1": {"name": "Stored Name", "secs": 1704067200, "nanos": 0,
                                      "updatedAt": "2024-01-01T00:00:00Z"}},
            "documents": {"products/p0": {"id": "p0"}},
        })
        .to_string(),
    )
    .unwrap();
    let events = transcript(
        dir.path(),
        "events.jsonl",
        &[
            json!({"routing_key": "customer.updated", "body":
                {"eventId": "e1", "id": "c1", "email": "new@x", "timestamp": "2024-06-01T00:00:00Z"}}),
            json!({"routing_key": "customer.updated", "body":
                {"eventId": "e2", "id": "c1", "email": "old@x", "timestamp": "2023-06-01T00:00:00Z"}}),
            json!({"routing_key": "analytics.data", "received_at_ms": 1700000000123u64, "body":
                {"eventId": "e3", "customer": {"id": "c2", "name": "B", "email": "b@x"}, "products": []}}),
        ],
    );
    let merge = common::plugin_file("merge");
    let out = plugin_test(&[&merge, &events], &[("--state", &state)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = outputs(&out);
    assert_eq!(
        got[0]["documents"]["customers/c1"],
        json!({"id": "c1", "name": "Stored Name", "email": "new@x", "updatedAt": "2024-06-01T00:00:00Z"}),
        "the name comes from --state"
    );
    assert_eq!(
        (&got[1]["outcome"], &got[1]["actions"]),
        (&json!("applied"), &json!([])),
        "older than what is stored: applied with no effect"
    );
    assert_eq!(
        got[2]["documents"]["customers/c2"]["updatedAt"],
        json!("2023-11-14T22:13:20.123Z")
    );

    // Without --state the same events give another answer.
    let out = plugin_test(&[&merge, &events], &[]);
    let got = outputs(&out);
    assert_eq!(got[0]["documents"]["customers/c1"]["name"], Value::Null);

    let bad = dir.path().join("bad-state.json");
    std::fs::write(&bad, r#"{"documents": {"no-slash": {}}}"#).unwrap();
    let out = plugin_test(&[&merge, &events], &[("--state", &bad)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("<collection>/<key>"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_inputs_are_refused_with_the_line_named() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"routing_key\": \"a\", \"body\": {\"eventId\": \"e1\"}}\n{\"routing_key\": \"a\"}\n",
    )
    .unwrap();
    let out = plugin_test(&[&common::plugin_file("counter"), &events], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("line 2: has neither `body` nor `body_text`"),
        "{err}"
    );

    let producer = common::plugin_file("crm-producer");
    let good = transcript(dir.path(), "good.jsonl", &[counter_event("e1", json!({}))]);
    let out = plugin_test(&[&producer, &good], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is a producer"), "{}", stderr(&out));
}
