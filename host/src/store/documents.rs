//! Documents: the analytics collections that plugins write (upsert or
//! delete by key, within a batch) and the API and plugins read. One JSON
//! text per `(collection, key)`, listed in byte order of the keys.

use super::StoreError;

/// One change to a document collection.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentWrite {
    Upsert {
        collection: String,
        key: String,
        json: String,
    },
    Delete {
        collection: String,
        key: String,
    },
}

/// A page of a collection, in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub entries: Vec<(String, String)>,
    /// The last key of a full page, to pass as `after` for the next one.
    pub next: Option<String>,
}

impl Page {
    /// The page of `entries` read with `limit`: full pages name their last
    /// key as the cursor of the next.
    pub fn of(entries: Vec<(String, String)>, limit: u32) -> Self {
        let next = if limit > 0 && entries.len() == limit as usize {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Page { entries, next }
    }
}

/// Reading documents (they are written by [`super::Batches::commit_batch`]).
pub trait Documents {
    /// One document.
    fn document(&self, collection: &str, key: &str) -> Result<Option<String>, StoreError>;

    /// Up to `limit` documents of `collection` with keys after `after`, in
    /// byte order of the keys.
    fn scan(&self, collection: &str, after: Option<&str>, limit: u32) -> Result<Page, StoreError>;

    /// Every collection that holds at least one document, in byte order of
    /// the names, with how many documents it holds.
    fn collections(&self) -> Result<Vec<(String, u64)>, StoreError>;
}
