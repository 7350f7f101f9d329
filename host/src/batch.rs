//! The batch core: what becomes of each event of a batch, decided in one
//! place whatever carried the batch (the broker consumer, the embedded bus,
//! the HTTP API), which then only translate [`Outcome`]s into acks, dead
//! letters, retries or HTTP answers.
//!
//! A batch is admitted ([`admit`]: hop limit, a JSON object with a string
//! `eventId`), deduplicated against the ids the plugin applied before and
//! within itself, handed to the plugin's version one event at a time, and
//! what the applied events did is committed in one store transaction with
//! their ids, in a [`StateTxn`].
//!
//! The store is never the events' fault: [`process`] returns `Err` when the
//! store cannot be read or cannot commit (an outage, or an error that is
//! not the events'), having committed nothing and decided nothing; the
//! caller holds the batch and runs it again once the store answers. A
//! commit refused because another writer (another host) committed the
//! plugin's state first is run again here at once, from fresh state.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::plugins::bindings::{Action, Event};
use crate::plugins::state_txn::StateTxn;
use crate::plugins::{CallError, LoadedPlugin, PluginSlot};
use crate::store::dedupe::MAX_EVENT_ID_BYTES;
use crate::store::{
    BatchCommit, Cause, DocumentWrite, OutboxEntry, PublishWrite, Store, StoreError,
};

/// An event to hand to a plugin, and how many plugins published it before.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub event: Event,
    pub hops: u32,
}

/// What became of one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled and committed.
    Applied,
    /// Applied before (the same event id): nothing changed.
    Duplicate,
    /// A bad event: dead-letter it with the reason, never retry.
    DeadLetter(String),
    /// The plugin failed transiently: try again after a backoff.
    Retry(String),
}

/// A processed batch: one outcome per item, in order, and the events the
/// commit promised to publish.
#[derive(Debug, Default)]
pub struct Processed {
    pub outcomes: Vec<Outcome>,
    pub outbox: Vec<OutboxEntry>,
}

impl Processed {
    /// How many outcomes `f` picks.
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> u64 {
        self.outcomes.iter().filter(|o| f(o)).count() as u64
    }
}

/// Parses a message body into an [`Event`], or says why it cannot be one
/// (see [`crate::envelope::event_id`]).
pub fn parse_event(routing_key: &str, body: &[u8], received_at_ms: u64) -> Result<Event, String> {
    let id = crate::envelope::event_id(body)?;
    if id.len() > MAX_EVENT_ID_BYTES {
        return Err(format!(
            "eventId is {} bytes long, over the limit of {MAX_EVENT_ID_BYTES}",
            id.len()
        ));
    }
    let body = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_owned())?;
    Ok(Event {
        id,
        routing_key: routing_key.to_owned(),
        body: body.to_owned(),
        received_at_ms,
    })
}

/// One message as the plugin would be handed it, or why it cannot be: it
/// has been published by more than `max_hops` plugins in turn, or its body
/// is not an event ([`parse_event`]).
pub fn admit(
    routing_key: &str,
    body: &[u8],
    hops: u32,
    max_hops: u32,
    received_at_ms: u64,
) -> Result<Incoming, String> {
    if hops > max_hops {
        return Err(format!(
            "hop limit exceeded: published by {hops} plugins in turn (limit {max_hops}); \
             do plugins feed each other in a loop?"
        ));
    }
    let event = parse_event(routing_key, body, received_at_ms)?;
    Ok(Incoming { event, hops })
}

/// What the plugin returned for each event it handled without an error, in
/// order: the event's id and its actions, as `switchyard plugin test` shows
/// them (the host itself keeps no such record).
pub type ActionTrace = Vec<(String, Vec<Action>)>;

/// Processes a batch of admitted items (or why each was not admitted) with
/// the plugin's `version`, updating the plugin's counters. `Err`: the store
/// failed; nothing was committed and the batch must run again later.
/// Blocking.
pub fn process(
    slot: &PluginSlot,
    version: &LoadedPlugin,
    db: &Store,
    admitted: &[Result<Incoming, String>],
) -> Result<Processed, StoreError> {
    process_traced(slot, version, db, admitted, None)
}

/// [`process`], also recording in `trace` what the plugin returned for each
/// event (of the run that committed, if a conflict ran the batch again).
pub fn process_traced(
    slot: &PluginSlot,
    version: &LoadedPlugin,
    db: &Store,
    admitted: &[Result<Incoming, String>],
    mut trace: Option<&mut ActionTrace>,
) -> Result<Processed, StoreError> {
    let mut conflicts: u32 = 0;
    let processed = loop {
        if let Some(trace) = trace.as_deref_mut() {
            trace.clear();
        }
        match attempt(slot, version, db, admitted, trace.as_deref_mut()) {
            Err(e) if e.is_conflict() => {
                slot.counters.conflicts.fetch_add(1, Relaxed);
                conflicts += 1;
                tracing::debug!(plugin = %slot.name, conflicts, error = %e, "batch runs again");
                std::thread::sleep(conflict_backoff(conflicts));
            }
            other => break other?,
        }
    };
    let counters = &slot.counters;
    counters.received.fetch_add(admitted.len() as u64, Relaxed);
    counters.timings.batch_size.observe(admitted.len() as f64);
    counters.rejected.fetch_add(
        processed.count(|o| matches!(o, Outcome::DeadLetter(_))),
        Relaxed,
    );
    counters
        .retried
        .fetch_add(processed.count(|o| matches!(o, Outcome::Retry(_))), Relaxed);
    slot.counters
        .applied
        .fetch_add(processed.count(|o| *o == Outcome::Applied), Relaxed);
    slot.counters
        .duplicates
        .fetch_add(processed.count(|o| *o == Outcome::Duplicate), Relaxed);
    slot.counters.dead_lettered.fetch_add(
        processed.count(|o| matches!(o, Outcome::DeadLetter(_))),
        Relaxed,
    );
    Ok(processed)
}

/// A short, growing, jittered pause before a batch that lost a race runs
/// again, so that hosts racing on one plugin spread out.
fn conflict_backoff(conflicts: u32) -> Duration {
    let ceiling = 2u64.saturating_pow(conflicts.min(7)); // up to 128 ms
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(1 + u64::from(nanos) % ceiling)
}

/// One run of [`process`].
fn attempt(
    slot: &PluginSlot,
    version: &LoadedPlugin,
    db: &Store,
    admitted: &[Result<Incoming, String>],
    trace: Option<&mut ActionTrace>,
) -> Result<Processed, StoreError> {
    let ids: Vec<&str> = admitted
        .iter()
        .filter_map(|p| p.as_ref().ok().map(|i| i.event.id.as_str()))
        .collect();
    let already = db.blocking().applied_among(&slot.name, &ids)?;
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(admitted.len());
    let mut fresh = Vec::new();
    let mut seen = HashSet::new();
    for (i, item) in admitted.iter().enumerate() {
        match item {
            Err(reason) => outcomes.push(Some(Outcome::DeadLetter(reason.clone()))),
            Ok(incoming)
                if already.contains(&incoming.event.id)
                    || !seen.insert(incoming.event.id.as_str()) =>
            {
                outcomes.push(Some(Outcome::Duplicate));
            }
            Ok(incoming) => {
                outcomes.push(None);
                fresh.push((i, incoming));
            }
        }
    }
    let mut outbox = Vec::new();
    if !fresh.is_empty() {
        let (applied, entries) = apply(slot, version, db, &fresh, trace)?;
        outbox = entries;
        for ((i, _), outcome) in fresh.iter().zip(applied) {
            outcomes[*i] = Some(outcome);
        }
    }
    Ok(Processed {
        outcomes: outcomes
            .into_iter()
            .map(|o| o.expect("every item has an outcome"))
            .collect(),
        outbox,
    })
}

/// Hands `fresh` events (not applied before) to the plugin one by one and
/// commits what the applied ones did, with their ids, in one transaction.
fn apply(
    slot: &PluginSlot,
    version: &LoadedPlugin,
    db: &Store,
    fresh: &[(usize, &Incoming)],
    mut trace: Option<&mut ActionTrace>,
) -> Result<(Vec<Outcome>, Vec<OutboxEntry>), StoreError> {
    version.note_batch();
    let Some(mut txn) = StateTxn::begin(slot, db, || version.transformer())? else {
        // Replaced by a producer under this consumer; it stops shortly.
        let reason = format!("{} is no longer a transformer", slot.name);
        return Ok((vec![Outcome::Retry(reason); fresh.len()], Vec::new()));
    };
    let mut commit = BatchCommit {
        plugin: slot.name.clone(),
        version: version.sha256.clone(),
        declared_version: version.info.version.clone(),
        ..BatchCommit::default()
    };
    let mut outcomes = Vec::with_capacity(fresh.len());
    for (_, incoming) in fresh {
        let instance = txn.instance();
        let called = Instant::now();
        let handled = instance.handle(&incoming.event);
        slot.counters
            .timings
            .call_seconds
            .observe_duration(called.elapsed());
        if matches!(
            handled,
            Err(CallError::Trap(_) | CallError::Timeout | CallError::MemoryLimit(_))
        ) {
            slot.counters.restarts.fetch_add(1, Relaxed);
        }
        let outcome = match handled {
            Ok(actions) => {
                if let Some(trace) = trace.as_deref_mut() {
                    trace.push((incoming.event.id.clone(), actions.clone()));
                }
                match collect_actions(
                    &slot.name,
                    incoming,
                    actions,
                    &mut commit.documents,
                    &mut commit.publish,
                ) {
                    Ok(()) => {
                        commit.applied_event_ids.push(incoming.event.id.clone());
                        Outcome::Applied
                    }
                    Err(reason) => Outcome::DeadLetter(reason),
                }
            }
            // The store failed under the plugin: the whole batch waits.
            Err(CallError::Store(e)) => return Err(e),
            Err(e) if e.is_transient() => Outcome::Retry(e.to_string()),
            Err(e) => Outcome::DeadLetter(e.to_string()),
        };
        instance.finish_event(outcome == Outcome::Applied);
        outcomes.push(outcome);
    }
    if commit.applied_event_ids.is_empty() {
        return Ok((outcomes, Vec::new()));
    }
    let committing = Instant::now();
    let outbox = txn.commit(db, commit)?;
    slot.counters
        .timings
        .commit_seconds
        .observe_duration(committing.elapsed());
    slot.counters.commits.fetch_add(1, Relaxed);
    Ok((outcomes, outbox))
}

/// Turns a plugin's actions for one event into store writes and events to
/// publish; `Err` (the plugin produced something invalid) rejects the event.
fn collect_actions(
    plugin: &str,
    incoming: &Incoming,
    actions: Vec<Action>,
    documents: &mut Vec<DocumentWrite>,
    publish: &mut Vec<PublishWrite>,
) -> Result<(), String> {
    let event = &incoming.event;
    let mut docs = Vec::new();
    let mut events = Vec::new();
    for action in actions {
        match action {
            Action::Upsert(doc) => {
                check_name("collection", &doc.collection)?;
                check_name("document key", &doc.key)?;
                serde_json::from_str::<serde::de::IgnoredAny>(&doc.json).map_err(|e| {
                    format!(
                        "plugin returned invalid JSON for {}/{}: {e}",
                        doc.collection, doc.key
                    )
                })?;
                docs.push(DocumentWrite::Upsert {
                    collection: doc.collection,
                    key: doc.key,
                    json: doc.json,
                });
            }
            Action::Delete(doc) => docs.push(DocumentWrite::Delete {
                collection: doc.collection,
                key: doc.key,
            }),
            Action::Publish(out) => {
                check_name("routing key", &out.routing_key)?;
                let mut fields = match serde_json::from_str::<Value>(&out.body) {
                    Ok(Value::Object(fields)) => fields,
                    _ => return Err("plugin published a body that is not a JSON object".into()),
                };
                // A deterministic id, so that the event published again after
                // a crash is recognised downstream as the same one.
                let n = events.len() as u32;
                let published_id = fields
                    .entry("eventId")
                    .or_insert_with(|| Value::String(format!("{}/{plugin}/{n}", event.id)));
                // The plugin's own id, or what it put there (shown as JSON).
                let published_id = match published_id {
                    Value::String(id) => id.clone(),
                    other => other.to_string(),
                };
                events.push(PublishWrite {
                    routing_key: out.routing_key,
                    body: Value::Object(fields).to_string(),
                    hops: incoming.hops.saturating_add(1),
                    cause: Some(Cause {
                        event_id: event.id.clone(),
                        n,
                        published_id,
                    }),
                });
            }
        }
    }
    documents.extend(docs);
    publish.extend(events);
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("plugin returned an empty or over-long {what}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_event_names_what_is_wrong() {
        let ok = parse_event("customer.created", br#"{"eventId":"e1","id":"c1"}"#, 7).unwrap();
        assert_eq!((ok.id.as_str(), ok.received_at_ms), ("e1", 7));
        let err = |body: &[u8]| parse_event("k", body, 0).unwrap_err();
        assert!(err(br#"{"id": "c3", "name": "frank""#).starts_with("invalid JSON"));
        assert_eq!(err(br#"[1,2]"#), "body is not a JSON object");
        assert_eq!(err(br#"{"id":"c4"}"#), "missing eventId");
        assert_eq!(
            err(br#"{"eventId":""}"#),
            "eventId must be a non-empty string"
        );
        assert_eq!(
            err(br#"{"eventId":5}"#),
            "eventId must be a non-empty string"
        );
        let long = format!(r#"{{"eventId":"{}"}}"#, "é".repeat(513));
        assert_eq!(
            err(long.as_bytes()),
            "eventId is 1026 bytes long, over the limit of 1024"
        );
        let longest = format!(r#"{{"eventId":"{}"}}"#, "x".repeat(1024));
        assert!(parse_event("k", longest.as_bytes(), 0).is_ok());
        // Bytes that are not UTF-8 in a field the envelope skips.
        assert!(parse_event("k", b"{\"eventId\":\"e1\",\"x\":\"\xff\"}", 0).is_err());
    }

    fn event() -> Incoming {
        Incoming {
            event: Event {
                id: "e1".into(),
                routing_key: "a.b".into(),
                body: "{}".into(),
                received_at_ms: 0,
            },
            hops: 3,
        }
    }

    #[test]
    fn published_events_get_a_deterministic_id() {
        use crate::plugins::bindings::OutgoingEvent;
        let (mut docs, mut publish) = (Vec::new(), Vec::new());
        let actions = vec![
            Action::Publish(OutgoingEvent {
                routing_key: "x.y".into(),
                body: r#"{"a":1}"#.into(),
            }),
            Action::Publish(OutgoingEvent {
                routing_key: "x.z".into(),
                body: r#"{"eventId":"own"}"#.into(),
            }),
        ];
        collect_actions("p", &event(), actions, &mut docs, &mut publish).unwrap();
        assert_eq!(
            publish[0],
            PublishWrite {
                routing_key: "x.y".to_string(),
                body: r#"{"a":1,"eventId":"e1/p/0"}"#.to_string(),
                hops: 4,
                cause: Some(Cause {
                    event_id: "e1".into(),
                    n: 0,
                    published_id: "e1/p/0".into(),
                }),
            },
            "one hop more than the event it came from"
        );
        assert_eq!(publish[1].body, r#"{"eventId":"own"}"#);
        assert_eq!(
            publish[1]
                .cause
                .as_ref()
                .map(|c| (c.n, c.published_id.as_str())),
            Some((1, "own")),
            "an event that names itself is still recorded as published because of e1"
        );
    }

    #[test]
    fn invalid_plugin_output_rejects_the_whole_event() {
        use crate::plugins::bindings::Document;
        let (mut docs, mut publish) = (Vec::new(), Vec::new());
        let good = Action::Upsert(Document {
            collection: "c".into(),
            key: "k".into(),
            json: "1".into(),
        });
        let bad = Action::Upsert(Document {
            collection: "c".into(),
            key: "j".into(),
            json: "{".into(),
        });
        let err =
            collect_actions("p", &event(), vec![good, bad], &mut docs, &mut publish).unwrap_err();
        assert!(err.contains("invalid JSON for c/j"), "{err}");
        assert!(docs.is_empty(), "nothing of a rejected event is kept");
    }

    #[test]
    fn a_lost_race_waits_a_little_longer_each_time() {
        for n in 1..20 {
            let pause = conflict_backoff(n);
            assert!(pause >= Duration::from_millis(1));
            assert!(pause <= Duration::from_millis(1 + 128));
        }
    }
}
