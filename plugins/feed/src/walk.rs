//! One poll's pass over an upstream's listing, record by record: which
//! records are new or changed since the last poll, the event for each, and
//! what the listing gets wrong (an id listed more than once, a record
//! without an id).
//!
//! A record's event names one change of it: `<source>:<id>:<n>:<hash>`,
//! `n` counting the record's published changes and `hash` its content. The
//! same poll run again (its state was not committed: a crash, a broker
//! outage) gives the same ids; a later change back to an earlier content
//! gets a new `n`, hence a new id that downstream deduplication lets
//! through.
//!
//! Its `timestamp` is the record's `updatedAt` when that is later than the
//! record's previous event, otherwise the poll time (or 1 ms after the
//! previous event, should the clock be behind it): events of one record
//! always move forward in time, so a consumer ordering by timestamp applies
//! the latest, even when an upstream restored from a backup lists an older
//! `updatedAt`.
//!
//! An id listed more than once: the last listing wins and the others are
//! skipped. Their contents are remembered with the winner's, so that the
//! next poll of the same listing publishes nothing; an earlier listing is
//! published only if the later one disappears from the listing.
//!
//! Memory: a hash per record of the listing (to spot repeated ids) plus the
//! events not yet handed out; never the listing itself.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use switchyard_instant::Instant;

use crate::seen::Seen;
use crate::{Change, Feed, Produced, State};

/// The state key of the fingerprint of the listing's last reported problems.
pub const PROBLEMS_KEY: &str = "listing/problems";

/// How many unreadable records a warning names (the rest are counted).
const EXAMPLES: usize = 3;

/// What a finished walk leaves to say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// Events not handed out by [`Walk::take`] yet.
    pub events: Vec<Produced>,
    /// Records read, usable or not.
    pub records: usize,
    /// A warning about the listing, when its problems differ from those of
    /// the last committed poll (said once, not at every poll).
    pub warning: Option<String>,
    /// Set when the problems of an earlier poll are gone.
    pub resolved: Option<String>,
}

/// An event not handed out yet, and the record's state before it.
#[derive(Debug)]
struct Pending {
    before: Option<Seen>,
    event: Produced,
}

/// The pass over one listing (all its pages).
pub struct Walk<'a, S: State> {
    feed: &'a Feed<'a>,
    state: &'a mut S,
    now: Instant,
    records: usize,
    /// Hash of each id met so far -> content hash of its latest listing.
    met: HashMap<u64, u64>,
    /// Ids listed more than once -> content hashes of their earlier listings.
    repeated: BTreeMap<String, Vec<u64>>,
    /// First listings of an id whose content lost to another listing of the
    /// same id at the last poll: held back until the walk shows whether the
    /// winner is still listed after them.
    held: HashMap<String, (Map<String, Value>, u64)>,
    /// Ids whose state remembers losers, met once so far: forgotten at the
    /// end if they stay single.
    tidy: Vec<String>,
    pending: Vec<Option<Pending>>,
    /// Hash of an id -> its event's place in `pending`.
    pending_at: HashMap<u64, usize>,
    live: usize,
    unreadable: Unreadable,
}

/// Records that could not be used.
#[derive(Debug, Default)]
struct Unreadable {
    count: usize,
    examples: Vec<String>,
    /// Sum of the hashes of their content: the same records, in any order,
    /// give the same fingerprint.
    fingerprint: u64,
}

impl<'a, S: State> Walk<'a, S> {
    /// A walk at poll time `now`, reading and writing `state`.
    pub fn new(feed: &'a Feed<'a>, state: &'a mut S, now: Instant) -> Self {
        Self {
            feed,
            state,
            now,
            records: 0,
            met: HashMap::new(),
            repeated: BTreeMap::new(),
            held: HashMap::new(),
            tidy: Vec::new(),
            pending: Vec::new(),
            pending_at: HashMap::new(),
            live: 0,
            unreadable: Unreadable::default(),
        }
    }

    /// The next record of the listing.
    pub fn record(&mut self, record: Value) {
        let position = self.records;
        self.records += 1;
        let map = match record {
            Value::Object(map) => map,
            other => return self.skip(position, "not a JSON object", &other.to_string()),
        };
        let id = match map.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => {
                let text = Value::Object(map).to_string();
                return self.skip(position, "no id (a non-empty string or an integer)", &text);
            }
        };
        let hash = content_hash(&map);
        match self.met.insert(fnv(id.as_bytes()), hash) {
            None => self.first_listing(id, map, hash),
            Some(earlier) => self.later_listing(id, map, hash, earlier),
        }
    }

    /// How many events wait to be handed out.
    pub fn ready(&self) -> usize {
        self.live
    }

    /// Hands out the events so far (to publish before the walk ends).
    pub fn take(&mut self) -> Vec<Produced> {
        self.pending_at.clear();
        self.live = 0;
        self.pending.drain(..).flatten().map(|p| p.event).collect()
    }

    /// Ends the walk: settles repeated ids and held listings, and says what
    /// is wrong with the listing if that changed since the last poll.
    pub fn finish(mut self) -> Finished {
        let (warning, resolved) = self.report();
        // Listed once again: the losers of an earlier poll are history.
        for id in std::mem::take(&mut self.tidy) {
            if !self.repeated.contains_key(&id)
                && let Some(mut seen) = self.seen(&id)
            {
                seen.losers.clear();
                self.put(&id, &seen);
            }
        }
        for (id, mut losers) in std::mem::take(&mut self.repeated) {
            let Some(mut seen) = self.seen(&id) else {
                continue;
            };
            losers.retain(|h| *h != seen.hash);
            losers.sort_unstable();
            losers.dedup();
            if seen.losers != losers {
                seen.losers = losers;
                self.put(&id, &seen);
            }
        }
        // Held listings whose winner is no longer listed after them: the
        // upstream now lists only them.
        for (id, (map, hash)) in std::mem::take(&mut self.held) {
            let before = self.seen(&id);
            self.stage(id, &map, hash, before);
        }
        Finished {
            records: self.records,
            events: self.take(),
            warning,
            resolved,
        }
    }

    fn first_listing(&mut self, id: String, map: Map<String, Value>, hash: u64) {
        let seen = self.seen(&id);
        match &seen {
            Some(s) if s.hash == hash => {
                if !s.losers.is_empty() {
                    self.tidy.push(id);
                }
            }
            Some(s) if s.losers.contains(&hash) => {
                self.held.insert(id, (map, hash));
            }
            _ => self.stage(id, &map, hash, seen),
        }
    }

    fn later_listing(&mut self, id: String, map: Map<String, Value>, hash: u64, earlier: u64) {
        self.repeated.entry(id.clone()).or_default().push(earlier);
        self.held.remove(&id);
        match self.pending_at.remove(&fnv(id.as_bytes())) {
            // The earlier listing's event is not out yet: it never will be.
            Some(at) => {
                let earlier = self.pending[at].take().expect("indexed events are pending");
                self.live -= 1;
                match earlier.before {
                    Some(before) if before.hash == hash => self.put(&id, &before),
                    before => self.stage(id, &map, hash, before),
                }
            }
            None => {
                let current = self.seen(&id);
                if current.as_ref().map(|s| s.hash) != Some(hash) {
                    self.stage(id, &map, hash, current);
                }
            }
        }
    }

    /// Makes the event for a new or changed record and records it as seen.
    fn stage(&mut self, id: String, map: &Map<String, Value>, hash: u64, before: Option<Seen>) {
        let feed = self.feed;
        let change = if before.is_some() {
            Change::Updated
        } else {
            Change::Created
        };
        let number = before.as_ref().map_or(1, |s| s.change + 1);
        let own = match map.get("updatedAt") {
            Some(Value::String(text)) => Instant::parse(text).ok().map(|at| (at, text)),
            _ => None,
        };
        let last = before.as_ref().and_then(|s| s.at);
        let (at, timestamp) = match (own, last) {
            (Some((at, text)), None) => (at, text.clone()),
            (Some((at, text)), Some(last)) if at > last => (at, text.clone()),
            (_, last) => {
                let at = last.map_or(self.now, |l| self.now.max(l.plus_millis(1)));
                (at, at.to_string())
            }
        };
        let routing_key = (feed.routing_key)(change);
        let event_id = format!("{}:{id}:{number}:{hash:016x}", feed.source);
        let mut body = Map::new();
        for field in feed.fields {
            let value = match *field {
                "id" => Some(Value::String(id.clone())),
                other => map.get(other).cloned(),
            };
            if let Some(value) = value {
                body.insert((*field).to_owned(), value);
            }
        }
        body.insert("eventId".into(), Value::String(event_id.clone()));
        body.insert("eventType".into(), Value::String(routing_key.to_owned()));
        body.insert("timestamp".into(), Value::String(timestamp));
        self.put(
            &id,
            &Seen {
                hash,
                change: number,
                at: Some(at),
                losers: Vec::new(),
            },
        );
        self.pending_at
            .insert(fnv(id.as_bytes()), self.pending.len());
        self.pending.push(Some(Pending {
            before,
            event: Produced {
                id: event_id,
                routing_key: routing_key.to_owned(),
                body: Value::Object(body).to_string(),
            },
        }));
        self.live += 1;
    }

    fn skip(&mut self, position: usize, why: &str, record: &str) {
        let u = &mut self.unreadable;
        u.count += 1;
        u.fingerprint = u.fingerprint.wrapping_add(fnv(record.as_bytes()));
        if u.examples.len() < EXAMPLES {
            u.examples.push(format!("record {}: {why}", position + 1));
        }
    }

    /// The warning (or all-clear) for this listing's problems, when they
    /// differ from the last committed poll's.
    fn report(&mut self) -> (Option<String>, Option<String>) {
        let u = &self.unreadable;
        let repeated: Vec<(&str, usize)> = self
            .repeated
            .iter()
            .map(|(id, earlier)| (id.as_str(), earlier.len() + 1))
            .collect();
        if u.count == 0 && repeated.is_empty() {
            if self.state.get(PROBLEMS_KEY).is_some() {
                self.state.delete(PROBLEMS_KEY);
                let all_clear = "the listing's earlier problems are gone: every record has \
                                 an id, listed once";
                return (None, Some(all_clear.to_owned()));
            }
            return (None, None);
        }
        let mut fingerprint = u.fingerprint;
        for (id, _) in &repeated {
            fingerprint = fingerprint.rotate_left(5) ^ fnv(id.as_bytes());
        }
        let stored = format!("{fingerprint:016x}").into_bytes();
        if self.state.get(PROBLEMS_KEY).as_deref() == Some(&stored[..]) {
            return (None, None);
        }
        self.state.set(PROBLEMS_KEY, &stored);
        let mut parts = Vec::new();
        if !repeated.is_empty() {
            let named: Vec<String> = repeated
                .iter()
                .take(EXAMPLES)
                .map(|(id, times)| format!("{id:?} {times} times"))
                .collect();
            let more = repeated.len().saturating_sub(EXAMPLES);
            parts.push(format!(
                "{} id(s) listed more than once, the last listing of each is used ({}{})",
                repeated.len(),
                named.join(", "),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        if u.count > 0 {
            let more = u.count.saturating_sub(u.examples.len());
            parts.push(format!(
                "{} record(s) skipped ({}{})",
                u.count,
                u.examples.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        let warning = format!(
            "of {} records listed: {}. Said once, until the listing's problems change",
            self.records,
            parts.join("; ")
        );
        (Some(warning), None)
    }

    fn seen(&mut self, id: &str) -> Option<Seen> {
        self.state
            .get(&seen_key(id))
            .and_then(|value| Seen::parse(&value))
    }

    fn put(&mut self, id: &str, seen: &Seen) {
        self.state.set(&seen_key(id), &seen.to_bytes());
    }
}

fn seen_key(id: &str) -> String {
    format!("seen/{id}")
}

/// FNV-1a (64 bit) of the record's canonical JSON text (object keys sorted
/// at every level, no spaces), so that the same content always hashes the
/// same. Earlier versions hashed the same text: their state stays valid. A
/// change detector, not a security measure.
pub fn content_hash(record: &Map<String, Value>) -> u64 {
    let mut hasher = Fnv(FNV_OFFSET);
    canonical_object(record, &mut hasher);
    hasher.0
}

/// Writes the canonical text of `map` into `out`.
fn canonical_object(map: &Map<String, Value>, out: &mut impl std::io::Write) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_unstable();
    let _ = out.write_all(b"{");
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            let _ = out.write_all(b",");
        }
        let _ = serde_json::to_writer(&mut *out, key);
        let _ = out.write_all(b":");
        canonical(&map[key], out);
    }
    let _ = out.write_all(b"}");
}

fn canonical(value: &Value, out: &mut impl std::io::Write) {
    match value {
        Value::Object(map) => canonical_object(map, out),
        Value::Array(items) => {
            let _ = out.write_all(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                canonical(item, out);
            }
            let _ = out.write_all(b"]");
        }
        leaf => {
            let _ = serde_json::to_writer(out, leaf);
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a as a writer, so that text is hashed as it is written.
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// FNV-1a, 64 bit.
fn fnv(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv(FNV_OFFSET);
    let _ = std::io::Write::write(&mut hasher, bytes);
    hasher.0
}

#[cfg(test)]
mod tests;
