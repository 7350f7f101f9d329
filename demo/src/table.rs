//! The whole state of one demo upstream: records keyed by id, in memory, in
//! the order they were added. Loaded from a JSON array (a data file), never
//! written back: a restart returns to the file's data.
//!
//! Every change stamps the record's `updatedAt` with an instant later than
//! any the table has given out before (the clock, or one millisecond past the
//! last stamp if the clock has not moved on), so a reader may use the largest
//! `updatedAt` it has seen as a watermark.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock;

/// One kind of record a [`Table`] holds.
pub trait Record: Clone + Serialize + DeserializeOwned + Send + 'static {
    /// What one record is called in messages: `customer`.
    const KIND: &'static str;
    /// Generated ids are this prefix and a number: `c` gives `c6`.
    const ID_PREFIX: &'static str;

    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);
    /// `updatedAt`; empty in a data file that leaves it out.
    fn updated_at(&self) -> &str;
    fn set_updated_at(&mut self, instant: String);
    /// Why the fields other than `id` and `updatedAt` are unacceptable.
    fn validate(&self) -> Result<(), String>;
}

/// Records of one kind, shared by the handlers; clones share the records.
#[derive(Debug, Clone)]
pub struct Table<R> {
    inner: Arc<Mutex<Inner<R>>>,
}

#[derive(Debug)]
struct Inner<R> {
    records: Vec<R>,
    /// The latest `updatedAt` given out or loaded, in ms since the epoch.
    last_stamp: u64,
}

impl<R: Record> Table<R> {
    /// A table of `records`, after checking them like a request body: ids
    /// well-formed and unique, fields valid, `updatedAt` an instant (written
    /// back with milliseconds) or absent (then stamped now).
    pub fn new(mut records: Vec<R>) -> Result<Self, String> {
        let mut instants = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let which = || format!("{} #{} ({:?})", R::KIND, i + 1, record.id());
            check_id(record.id()).map_err(|e| format!("{}: {e}", which()))?;
            record.validate().map_err(|e| format!("{}: {e}", which()))?;
            if records[..i].iter().any(|r| r.id() == record.id()) {
                return Err(format!("{}: the id is used twice", which()));
            }
            let at = match record.updated_at() {
                "" => None,
                text => Some(clock::parse_millis(text).ok_or_else(|| {
                    format!(
                        "{}: updatedAt {text:?} is not an ISO-8601 UTC instant",
                        which()
                    )
                })?),
            };
            instants.push(at);
        }
        let mut inner = Inner {
            records: Vec::new(),
            last_stamp: instants.iter().flatten().copied().max().unwrap_or(0),
        };
        for (record, at) in records.iter_mut().zip(instants) {
            let stamp = at.map_or_else(|| inner.stamp(), clock::format_millis);
            record.set_updated_at(stamp);
        }
        inner.records = records;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// A table of the JSON array `json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let records: Vec<R> = serde_json::from_str(json)
            .with_context(|| format!("not a JSON array of {} records", R::KIND))?;
        Self::new(records).map_err(anyhow::Error::msg)
    }

    /// A table of the JSON array in the file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path)
            .with_context(|| format!("reading the {} data file {path:?}", R::KIND))?;
        Self::from_json(&json).with_context(|| format!("loading {path:?}"))
    }

    /// Every record, in the order they were added.
    pub fn list(&self) -> Vec<R> {
        self.lock().records.clone()
    }

    pub fn get(&self, id: &str) -> Option<R> {
        self.lock().records.iter().find(|r| r.id() == id).cloned()
    }

    /// Stores `record` (stamped now): appended if its id is new, in place of
    /// the record with that id otherwise. Returns it, and whether it is new.
    pub fn upsert(&self, mut record: R) -> (R, bool) {
        let mut inner = self.lock();
        record.set_updated_at(inner.stamp());
        match inner.records.iter_mut().find(|r| r.id() == record.id()) {
            Some(existing) => {
                *existing = record.clone();
                (record, false)
            }
            None => {
                inner.records.push(record.clone());
                (record, true)
            }
        }
    }

    /// Appends the record `build` makes for a fresh id (the prefix and one
    /// more than the largest number in use), stamped now.
    pub fn add(&self, build: impl FnOnce(String) -> R) -> R {
        let mut inner = self.lock();
        let largest = inner
            .records
            .iter()
            .filter_map(|r| r.id().strip_prefix(R::ID_PREFIX)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let mut record = build(format!("{}{}", R::ID_PREFIX, largest + 1));
        record.set_updated_at(inner.stamp());
        inner.records.push(record.clone());
        record
    }

    /// Stores a record sent in a request, after checking its fields: under
    /// `id` when the request names one (checked; added, or in place of the
    /// record with that id), else under a fresh id. Returns it, and whether
    /// it is new.
    pub fn put(&self, id: Option<String>, mut record: R) -> Result<(R, bool), String> {
        record.validate()?;
        match id {
            Some(id) => {
                check_id(&id)?;
                record.set_id(id);
                Ok(self.upsert(record))
            }
            None => {
                let fresh = |id| {
                    record.set_id(id);
                    record
                };
                Ok((self.add(fresh), true))
            }
        }
    }

    /// Applies `change` to the record with `id` and stamps it; `None` when
    /// there is no such record.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut R)) -> Option<R> {
        let mut inner = self.lock();
        let index = inner.records.iter().position(|r| r.id() == id)?;
        let mut record = inner.records[index].clone();
        change(&mut record);
        record.set_updated_at(inner.stamp());
        inner.records[index] = record.clone();
        Some(record)
    }

    fn lock(&self) -> MutexGuard<'_, Inner<R>> {
        // Every change is made on a copy and stored whole, so a panic while
        // the lock was held cannot have left a record half-changed.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R> Inner<R> {
    /// A fresh `updatedAt`: now, or just after the previous one.
    fn stamp(&mut self) -> String {
        self.last_stamp = clock::now_millis().max(self.last_stamp + 1);
        clock::format_millis(self.last_stamp)
    }
}

/// An id is 1 to 64 ASCII letters, digits, `-`, `_` or `.`: it goes into
/// URLs and document keys unescaped.
pub fn check_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.len() > 64 || !id.chars().all(allowed) {
        return Err(format!(
            "id {id:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Customer;

    fn customer(id: &str, updated_at: &str) -> Customer {
        Customer {
            id: id.into(),
            name: "Ana".into(),
            email: "ana@example.com".into(),
            updated_at: updated_at.into(),
        }
    }

    #[test]
    fn refuses_duplicate_ids_bad_instants_and_bad_fields() {
        let twice = Table::new(vec![customer("c1", ""), customer("c1", "")]);
        assert!(twice.unwrap_err().contains("used twice"));
        let bad_instant = Table::new(vec![customer("c1", "yesterday")]);
        assert!(bad_instant.unwrap_err().contains("not an ISO-8601"));
        let bad_id = Table::new(vec![customer("c 1", "")]);
        assert!(bad_id.unwrap_err().contains("must be 1 to 64"));
        let mut no_email = customer("c1", "");
        no_email.email.clear();
        assert!(Table::new(vec![no_email]).is_err());
    }

    #[test]
    fn stamps_strictly_later_than_anything_loaded_or_given_out() {
        // A data file from the future: the stamps must still move forward.
        let table = Table::new(vec![customer("c1", "9999-01-01T00:00:00Z")]).unwrap();
        let first = table.upsert(customer("c1", "")).0.updated_at;
        let second = table.upsert(customer("c2", "")).0.updated_at;
        assert_eq!(first, "9999-01-01T00:00:00.001Z");
        assert_eq!(second, "9999-01-01T00:00:00.002Z");
    }

    #[test]
    fn stamps_records_loaded_without_updated_at_and_normalises_the_others() {
        let table = Table::new(vec![
            customer("c1", ""),
            customer("c2", "2026-11-24T08:00:00.5Z"),
        ])
        .unwrap();
        assert!(clock::parse_millis(&table.get("c1").unwrap().updated_at).is_some());
        assert_eq!(
            table.get("c2").unwrap().updated_at,
            "2026-11-24T08:00:00.500Z"
        );
    }

    #[test]
    fn add_picks_the_next_free_number() {
        let table = Table::new(vec![
            customer("c2", ""),
            customer("c9", ""),
            customer("x", ""),
        ])
        .unwrap();
        assert_eq!(table.add(|id| customer(&id, "")).id, "c10");
        assert_eq!(table.add(|id| customer(&id, "")).id, "c11");
        assert_eq!(table.list().len(), 5);
    }

    #[test]
    fn update_changes_one_record_and_stamps_it() {
        let table = Table::new(vec![customer("c1", "2026-11-24T08:00:00Z")]).unwrap();
        let changed = table.update("c1", |c| c.name = "Bea".into()).unwrap();
        assert_eq!(changed.name, "Bea");
        assert!(changed.updated_at.as_str() > "2026-11-24T08:00:00.000Z");
        assert_eq!(table.get("c1").unwrap(), changed);
        assert!(table.update("c9", |_| ()).is_none());
    }
}
