use std::collections::HashMap;

use serde_json::{Value, json};
use switchyard_instant::Instant;

use super::*;
use crate::{Change, Feed, State};

type Memory = HashMap<String, Vec<u8>>;

impl State for Memory {
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        HashMap::get(self, key).cloned()
    }
    fn set(&mut self, key: &str, value: &[u8]) {
        self.insert(key.to_owned(), value.to_vec());
    }
    fn delete(&mut self, key: &str) {
        self.remove(key);
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

fn at(text: &str) -> Instant {
    Instant::parse(text).unwrap()
}

const NOW: &str = "2026-11-25T10:00:00Z";

/// One whole poll of `listing` (a JSON array) at `now`, every event handed
/// out at the end.
fn poll_at(state: &mut Memory, listing: Value, now: &str) -> Finished {
    let feed = crm();
    let mut walk = Walk::new(&feed, state, at(now));
    for record in listing.as_array().unwrap().clone() {
        walk.record(record);
    }
    walk.finish()
}

fn poll(state: &mut Memory, listing: Value) -> Finished {
    poll_at(state, listing, NOW)
}

fn bodies(done: &Finished) -> Vec<Value> {
    done.events
        .iter()
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect()
}

#[test]
fn the_first_poll_emits_every_record_then_only_what_changed() {
    let mut state = Memory::new();
    let listing = json!([
        {"id": "c1", "name": "ann", "email": "a@x", "updatedAt": "2026-11-24T08:00:00Z", "tier": 3},
        {"id": "c2", "name": "bob", "email": "b@x"}
    ]);
    let first = poll(&mut state, listing.clone());
    assert_eq!(first.records, 2);
    assert_eq!(first.events.len(), 2);
    let body = &bodies(&first)[0];
    assert_eq!(first.events[0].routing_key, "customer.created");
    assert_eq!(body["eventId"], first.events[0].id.as_str());
    assert!(
        first.events[0].id.starts_with("crm:c1:1:"),
        "{}",
        first.events[0].id
    );
    assert_eq!(body["eventType"], "customer.created");
    assert_eq!(
        body["timestamp"], "2026-11-24T08:00:00Z",
        "the record's own time"
    );
    assert_eq!(body["name"], "ann");
    assert!(
        body.get("tier").is_none() && body.get("updatedAt").is_none(),
        "wire fields only"
    );
    assert_eq!(
        bodies(&first)[1]["timestamp"],
        "2026-11-25T10:00:00.000Z",
        "poll time"
    );
    assert_eq!(first.warning, None);

    assert!(
        poll(&mut state, listing.clone()).events.is_empty(),
        "unchanged"
    );
    let mut changed = listing;
    changed[1]["name"] = json!("bobby");
    let third = poll(&mut state, changed);
    assert_eq!(third.events.len(), 1);
    assert_eq!(third.events[0].routing_key, "customer.updated");
    assert!(
        third.events[0].id.starts_with("crm:c2:2:"),
        "{}",
        third.events[0].id
    );
}

#[test]
fn a_change_back_to_an_earlier_content_is_a_new_event() {
    for with_updated_at in [false, true] {
        let record = |stock: u64| {
            let mut r = json!({"id": "p1", "name": "Laptop", "email": stock.to_string()});
            if with_updated_at {
                // A: as first listed; B: later; A again: the upstream
                // restored from its data file, `updatedAt` included.
                let t = if stock == 5 {
                    "2026-11-24T08:00:00Z"
                } else {
                    "2026-11-24T09:00:00Z"
                };
                r["updatedAt"] = json!(t);
            }
            json!([r])
        };
        let mut state = Memory::new();
        let a = poll_at(&mut state, record(5), "2026-11-25T10:00:00Z");
        let b = poll_at(&mut state, record(3), "2026-11-25T10:00:05Z");
        let a_again = poll_at(&mut state, record(5), "2026-11-25T10:00:10Z");
        let ids: Vec<&str> = [&a, &b, &a_again]
            .iter()
            .map(|f| f.events[0].id.as_str())
            .collect();
        assert_ne!(ids[0], ids[2], "A -> B -> A: the last A is a new change");
        assert!(ids[2].starts_with("crm:p1:3:"), "{ids:?}");
        // Downstream orders by timestamp: the last A must be the latest.
        let stamps: Vec<Instant> = [&a, &b, &a_again]
            .iter()
            .map(|f| at(bodies(f)[0]["timestamp"].as_str().unwrap()))
            .collect();
        assert!(stamps[0] < stamps[1] && stamps[1] < stamps[2], "{stamps:?}");
        assert_eq!(bodies(&a_again)[0]["email"], "5");
    }
}

#[test]
fn a_repeated_poll_from_the_same_state_gives_the_same_ids() {
    let mut state = Memory::new();
    poll(&mut state, json!([{"id": "c1", "name": "ann"}]));
    let changed = json!([{"id": "c1", "name": "anna"}, {"id": "c2", "name": "bob"}]);
    // The poll's state is not committed (a crash, the broker down): the
    // next poll starts from the same state, even much later.
    let first = poll_at(&mut state.clone(), changed.clone(), NOW);
    let again = poll_at(&mut state.clone(), changed, "2030-01-01T00:00:00Z");
    let ids = |f: &Finished| f.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&again));
    // Key order in the upstream's JSON does not matter.
    let reordered = json!([{"name": "anna", "id": "c1"}, {"name": "bob", "id": "c2"}]);
    assert_eq!(ids(&poll(&mut state.clone(), reordered)), ids(&first));
}

#[test]
fn the_clock_behind_the_last_event_still_moves_timestamps_forward() {
    let mut state = Memory::new();
    poll_at(
        &mut state,
        json!([{"id": "c1", "name": "a"}]),
        "2026-11-25T10:00:00Z",
    );
    let back = poll_at(
        &mut state,
        json!([{"id": "c1", "name": "b"}]),
        "2026-11-25T09:00:00Z",
    );
    assert_eq!(bodies(&back)[0]["timestamp"], "2026-11-25T10:00:00.001Z");
    // An updatedAt older than the last event is not used either.
    let old = json!([{"id": "c1", "name": "c", "updatedAt": "2020-01-01T00:00:00.5Z"}]);
    let done = poll_at(&mut state, old, "2026-11-26T00:00:00Z");
    assert_eq!(bodies(&done)[0]["timestamp"], "2026-11-26T00:00:00.000Z");
    // A newer one is, as written (offset and precision kept).
    let new =
        json!([{"id": "c1", "name": "d", "updatedAt": "2026-11-26T01:00:00.123456789+01:00"}]);
    let done = poll_at(&mut state, new, "2026-11-26T00:00:00Z");
    assert_eq!(
        bodies(&done)[0]["timestamp"],
        "2026-11-26T01:00:00.123456789+01:00"
    );
    // An unreadable updatedAt is ignored, not passed on.
    let bad = json!([{"id": "c1", "name": "e", "updatedAt": "yesterday"}]);
    let done = poll_at(&mut state, bad, "2026-11-27T00:00:00Z");
    assert_eq!(bodies(&done)[0]["timestamp"], "2026-11-27T00:00:00.000Z");
}

#[test]
fn state_written_by_earlier_versions_publishes_nothing_until_a_change() {
    // Earlier versions stored `seen/<id>` = the content hash, 16 hex digits.
    let records = json!([{"id": "c1", "name": "ann", "email": "a@x"}, {"id": "c2", "name": "bob"}]);
    let mut state = Memory::new();
    for r in records.as_array().unwrap() {
        let hash = content_hash(r.as_object().unwrap());
        state.set(
            &format!("seen/{}", r["id"].as_str().unwrap()),
            format!("{hash:016x}").as_bytes(),
        );
    }
    assert!(
        poll(&mut state, records.clone()).events.is_empty(),
        "no flood"
    );
    let mut changed = records;
    changed[0]["name"] = json!("anna");
    let done = poll(&mut state, changed);
    assert_eq!(done.events.len(), 1);
    assert!(
        done.events[0].id.starts_with("crm:c1:1:"),
        "{}",
        done.events[0].id
    );
    assert_eq!(done.events[0].routing_key, "customer.updated");
}

#[test]
fn the_hash_is_of_the_canonical_text_earlier_versions_hashed() {
    let record = json!({"b": 1, "a": {"d": [1, {"z": 1, "y": 2}], "c": "é\n"}, "id": "x"});
    let mut text = Vec::new();
    canonical_object(record.as_object().unwrap(), &mut text);
    let text = String::from_utf8(text).unwrap();
    assert_eq!(
        text,
        r#"{"a":{"c":"é\n","d":[1,{"y":2,"z":1}]},"b":1,"id":"x"}"#
    );
    assert_eq!(
        content_hash(record.as_object().unwrap()),
        fnv(text.as_bytes())
    );
}

/// The existing CRM's own listing: `c5` twice, `david` then `Rugaju`.
fn listed_twice() -> Value {
    json!([
        {"id": "c1", "name": "crispin", "email": "crispin@test.com"},
        {"id": "c5", "name": "david", "email": "david@test.com"},
        {"id": "c2", "name": "luck", "email": "luck@test.com"},
        {"id": "c5", "name": "Rugaju", "email": "rugaju@test.com"}
    ])
}

#[test]
fn a_repeated_id_publishes_its_last_listing_once_and_says_so_once() {
    let mut state = Memory::new();
    let first = poll(&mut state, listed_twice());
    let names: Vec<Value> = bodies(&first).iter().map(|b| b["name"].clone()).collect();
    assert_eq!(
        names,
        ["crispin", "luck", "Rugaju"],
        "the last c5 wins; david is skipped"
    );
    let warning = first.warning.expect("a warning");
    assert!(
        warning.contains("\"c5\" 2 times") && warning.contains("of 4 records"),
        "{warning}"
    );
    let again = poll(&mut state, listed_twice());
    assert!(again.events.is_empty(), "no flip-flop: {:?}", again.events);
    assert_eq!(again.warning, None, "said once");
    // The upstream fixes its listing, keeping the winner: nothing changes.
    let fixed = json!([listed_twice()[0], listed_twice()[2], listed_twice()[3]]);
    let done = poll(&mut state, fixed.clone());
    assert!(done.events.is_empty());
    assert!(done.resolved.is_some());
    assert_eq!(poll(&mut state, fixed).resolved, None, "said once too");
}

#[test]
fn a_repeated_id_across_handed_out_events_settles_on_the_last_listing() {
    // The earlier listing's event was handed out (published) before the
    // later listing came: both go out in the first poll, none afterwards.
    let feed = crm();
    let walk_in_halves = |state: &mut Memory, listing: Value| {
        let mut walk = Walk::new(&feed, state, at(NOW));
        let mut out = Vec::new();
        for (i, record) in listing.as_array().unwrap().iter().enumerate() {
            walk.record(record.clone());
            if i == 1 {
                out.extend(walk.take());
            }
        }
        let done = walk.finish();
        out.extend(done.events);
        out
    };
    let mut state = Memory::new();
    let first = walk_in_halves(&mut state, listed_twice());
    let c5: Vec<&str> = first
        .iter()
        .filter(|e| e.id.starts_with("crm:c5:"))
        .map(|e| e.body.as_str())
        .collect();
    assert_eq!(c5.len(), 2);
    assert!(c5[1].contains("Rugaju"), "{c5:?}");
    assert!(
        walk_in_halves(&mut state, listed_twice()).is_empty(),
        "no flip-flop"
    );
    // The winner disappears: the loser is all the upstream lists now.
    let only_david = json!([listed_twice()[0], listed_twice()[1], listed_twice()[2]]);
    let done = walk_in_halves(&mut state, only_david.clone());
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(done[0].body.contains("david"));
    assert!(walk_in_halves(&mut state, only_david).is_empty());
}

#[test]
fn unreadable_records_are_skipped_counted_and_reported_once() {
    let mut state = Memory::new();
    let listing = json!([
        {"id": "c1", "name": "ann"},
        "c2",
        {"name": "no id"},
        {"id": "", "name": "empty id"},
        {"id": 17, "name": "numbered"},
        {"id": 1.5},
        null,
        {"id": "c3", "name": "cid"}
    ]);
    let done = poll(&mut state, listing.clone());
    let ids: Vec<Value> = bodies(&done).iter().map(|b| b["id"].clone()).collect();
    assert_eq!(
        ids,
        ["c1", "17", "c3"],
        "the rest is published; integer ids as text"
    );
    let warning = done.warning.unwrap();
    assert!(warning.contains("5 record(s) skipped"), "{warning}");
    assert!(warning.contains("record 2: not a JSON object"), "{warning}");
    assert!(warning.contains("and 2 more"), "{warning}");
    assert_eq!(poll(&mut state, listing.clone()).warning, None, "said once");
    // Another problem: said again.
    let mut worse = listing.as_array().unwrap().clone();
    worse.push(json!([1]));
    assert!(
        poll(&mut state, Value::Array(worse))
            .warning
            .unwrap()
            .contains("6 record(s)")
    );
}

#[test]
fn handing_out_events_early_keeps_the_walk_whole() {
    let feed = crm();
    let mut state = Memory::new();
    let mut walk = Walk::new(&feed, &mut state, at(NOW));
    let mut out = Vec::new();
    for i in 0..2_500 {
        walk.record(json!({"id": format!("c{i}"), "name": "n"}));
        if walk.ready() >= 1_000 {
            out.extend(walk.take());
        }
    }
    assert_eq!(out.len(), 2_000);
    let done = walk.finish();
    assert_eq!(done.events.len(), 500);
    assert_eq!(done.records, 2_500);
}
