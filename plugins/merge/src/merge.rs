//! The merge rules, free of WebAssembly so they run and test natively.
//!
//! Owns validating customer, inventory and legacy `analytics.data` events,
//! merging them into the per-entity state (newest instant wins, absent fields
//! keep their value, deletes leave a tombstone) and building the documents of
//! the `customers` and `products` collections and the `data` view.
//!
//! It does not talk to the host: state and collections come in through the
//! [`State`] and [`Collections`] traits, which the component glue implements
//! on the WIT imports and tests implement on maps.

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use switchyard_instant::{self as timestamp, Instant};

/// The plugin's private key-value state (the WIT `state` interface).
pub trait State {
    /// The value stored under `key`, if any.
    fn get(&mut self, key: &str) -> Option<Vec<u8>>;
    /// Stores `value` under `key`, replacing what was there.
    fn set(&mut self, key: &str, value: &[u8]);
    /// Removes `key`; removing a missing key is not an error.
    fn delete(&mut self, key: &str);
}

/// Read-only access to committed documents (the WIT `collections` interface).
pub trait Collections {
    /// The document stored under `key` in `collection`, as JSON text.
    fn get(&mut self, collection: &str, key: &str) -> Option<String>;
    /// Up to `limit` `(key, json)` documents of `collection` whose keys sort
    /// after `after` (from the first when `None`), in key order.
    fn scan(&mut self, collection: &str, after: Option<&str>, limit: u32) -> Vec<(String, String)>;
}

impl State for HashMap<String, Vec<u8>> {
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        HashMap::get(self, key).cloned()
    }

    fn set(&mut self, key: &str, value: &[u8]) {
        match self.get_mut(key) {
            Some(existing) => {
                existing.clear();
                existing.extend_from_slice(value);
            }
            None => {
                self.insert(key.to_owned(), value.to_vec());
            }
        }
    }

    fn delete(&mut self, key: &str) {
        self.remove(key);
    }
}

/// What an event asks of the analytics store (the WIT `action`, less
/// `publish`, which this plugin never uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `json` under `key` in `collection`.
    Upsert {
        collection: String,
        key: String,
        json: String,
    },
    /// Remove the document under `key` in `collection`.
    Delete { collection: String, key: String },
}

/// Why an event could not be handled (the WIT `handle-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The event is bad; dead-letter it with this reason.
    Reject(String),
    /// A transient failure; deliver the event again later.
    Retry(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Reject(reason) => write!(f, "rejected: {reason}"),
            Error::Retry(reason) => write!(f, "retry: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// Collection of customer documents.
pub const CUSTOMERS: &str = "customers";
/// Collection of product documents.
pub const PRODUCTS: &str = "products";
/// How many products the `data` view reads per `scan` call.
const SCAN_CHUNK: u32 = 500;

/// Handles one event: validates it, merges it into state and returns the
/// document changes it causes.
///
/// `customer.*` and `inventory.*` carry one entity with its own `timestamp`;
/// a key whose last word is `deleted` deletes it. `analytics.data` carries
/// the legacy `{customer, products}` body, timed by `received_at_ms`. An
/// event older than what is stored is applied with no effect (`Ok(vec![])`).
/// A JSON `null` field counts as absent; a delete reads only `id` and
/// `timestamp`.
pub fn handle(
    state: &mut impl State,
    routing_key: &str,
    body: &str,
    received_at_ms: u64,
) -> Result<Vec<Action>, Error> {
    let (kind, word) = if let Some(word) = routing_key.strip_prefix("customer.") {
        (Kind::Customer, word)
    } else if let Some(word) = routing_key.strip_prefix("inventory.") {
        (Kind::Product, word)
    } else if routing_key == "analytics.data" {
        return legacy_post(state, body, received_at_ms);
    } else {
        return Err(reject(format!("unsupported routing key {routing_key}")));
    };

    let fields: Fields = parse_object(body)?;
    let id = require_id(&fields, Path::Event)?;
    let deleting = word == "deleted" || word.ends_with(".deleted");
    let change = if deleting {
        None
    } else {
        Some(validate(kind, id, &fields, Path::Event)?)
    };
    let (at, text) = require_timestamp(&fields)?;
    let action = match change {
        None => delete(state, kind, id, at, text)?,
        Some(change) => upsert(state, kind, &change, at, text)?,
    };
    Ok(action.into_iter().collect())
}

/// Serves one page of the `data` view: per customer (in key order, starting
/// after the cursor `after`), `{"customer": {id, name, email}, "products":
/// [{id, name, stock}, ...]}` with every product. Returns the items and the
/// cursor of the next page (the last customer key when the page is full).
pub fn data_view(
    c: &mut impl Collections,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<String>, Option<String>), String> {
    let customers = c.scan(CUSTOMERS, after, limit);
    if customers.is_empty() {
        return Ok((Vec::new(), None));
    }
    let products = all_products(c)?;
    let mut items = Vec::with_capacity(customers.len());
    for (key, json) in &customers {
        let doc = read_doc(CUSTOMERS, key, json)?;
        let customer = to_json(&CustomerView {
            id: key,
            name: &doc.name,
            email: &doc.email,
        });
        items.push(format!(
            "{{\"customer\":{customer},\"products\":{products}}}"
        ));
    }
    let next = if customers.len() == limit as usize {
        customers.into_iter().next_back().map(|(key, _)| key)
    } else {
        None
    };
    Ok((items, next))
}

/// The kind of entity an event changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Customer,
    Product,
}

impl Kind {
    fn state_key(self, id: &str) -> String {
        match self {
            Kind::Customer => format!("customer/{id}"),
            Kind::Product => format!("product/{id}"),
        }
    }

    fn collection(self) -> &'static str {
        match self {
            Kind::Customer => CUSTOMERS,
            Kind::Product => PRODUCTS,
        }
    }
}

/// Where a set of fields sits in the body, to name a field in a reason.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// The top level of a `customer.*` / `inventory.*` body.
    Event,
    /// `customer` of an `analytics.data` body.
    Customer,
    /// `products[i]` of an `analytics.data` body.
    Product(usize),
}

impl Path {
    fn field(self, name: &str) -> String {
        match self {
            Path::Event => format!("\"{name}\""),
            Path::Customer => format!("customer.{name}"),
            Path::Product(i) => format!("products[{i}].{name}"),
        }
    }
}

/// The fields this plugin reads from an entity. Other fields (`eventId`,
/// `eventType`, ...) are skipped while parsing, never stored; a JSON `null`
/// counts as absent.
#[derive(Debug, Default, Deserialize)]
struct Fields {
    id: Option<Value>,
    name: Option<Value>,
    email: Option<Value>,
    stock: Option<Value>,
    timestamp: Option<Value>,
}

impl Fields {
    fn from_map(mut map: Map<String, Value>) -> Self {
        let mut take = |name: &str| map.remove(name).filter(|v| !v.is_null());
        Self {
            id: take("id"),
            name: take("name"),
            email: take("email"),
            stock: take("stock"),
            timestamp: None,
        }
    }
}

/// A validated change to one entity: the fields present in the event.
#[derive(Debug)]
struct Change<'a> {
    id: &'a str,
    name: Option<&'a str>,
    email: Option<&'a str>,
    stock: Option<u64>,
}

/// The legacy `POST /analytics/data` body.
#[derive(Debug, Deserialize)]
struct LegacyPost {
    customer: Option<Value>,
    products: Option<Value>,
}

/// What the plugin keeps in state per entity: its fields and the last
/// applied change, or a tombstone after a delete.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stock: Option<u64>,
    /// The instant of the last applied change: seconds since the epoch...
    secs: i64,
    /// ...and nanoseconds.
    nanos: u32,
    /// The timestamp of the last applied change, as the event wrote it.
    #[serde(rename = "updatedAt")]
    updated_at: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

impl Stored {
    fn is_newer_than(&self, at: Instant) -> bool {
        (self.secs, self.nanos) > (at.secs(), at.nanos())
    }
}

/// A document of the `customers` collection.
#[derive(Serialize)]
struct CustomerDoc<'a> {
    id: &'a str,
    name: Option<&'a str>,
    email: Option<&'a str>,
    #[serde(rename = "updatedAt")]
    updated_at: &'a str,
}

/// A document of the `products` collection.
#[derive(Serialize)]
struct ProductDoc<'a> {
    id: &'a str,
    name: Option<&'a str>,
    stock: Option<u64>,
    #[serde(rename = "updatedAt")]
    updated_at: &'a str,
}

/// The fields the `data` view reads back from a stored document.
#[derive(Deserialize)]
struct ReadDoc {
    #[serde(default)]
    name: Value,
    #[serde(default)]
    email: Value,
    #[serde(default)]
    stock: Value,
}

#[derive(Serialize)]
struct CustomerView<'a> {
    id: &'a str,
    name: &'a Value,
    email: &'a Value,
}

#[derive(Serialize)]
struct ProductView<'a> {
    id: &'a str,
    name: &'a Value,
    stock: &'a Value,
}

fn legacy_post(
    state: &mut impl State,
    body: &str,
    received_at_ms: u64,
) -> Result<Vec<Action>, Error> {
    let post: LegacyPost = parse_object(body)?;
    let customer = match post.customer {
        Some(Value::Object(map)) => Fields::from_map(map),
        None => return Err(reject("customer is required".to_owned())),
        Some(other) => {
            return Err(reject(format!(
                "customer must be an object, got {}",
                show(&other)
            )));
        }
    };
    let products = match post.products {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => Ok(Fields::from_map(map)),
                other => Err(reject(format!(
                    "products[{i}] must be an object, got {}",
                    show(&other)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(reject(format!(
                "products must be an array, got {}",
                show(&other)
            )));
        }
    };

    // Validate every part before applying any.
    let customer_id = require_id(&customer, Path::Customer)?;
    let customer = validate(Kind::Customer, customer_id, &customer, Path::Customer)?;
    let products = products
        .iter()
        .enumerate()
        .map(|(i, fields)| {
            let path = Path::Product(i);
            validate(Kind::Product, require_id(fields, path)?, fields, path)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let at = Instant::from_millis(received_at_ms);
    let text = timestamp::format_millis(received_at_ms);
    let mut actions = Vec::with_capacity(1 + products.len());
    actions.extend(upsert(state, Kind::Customer, &customer, at, &text)?);
    for product in &products {
        actions.extend(upsert(state, Kind::Product, product, at, &text)?);
    }
    Ok(actions)
}

/// Merges `change` into the stored entity unless the stored one is newer.
fn upsert(
    state: &mut impl State,
    kind: Kind,
    change: &Change<'_>,
    at: Instant,
    text: &str,
) -> Result<Option<Action>, Error> {
    let key = kind.state_key(change.id);
    let previous = load(state, &key)?;
    if previous.as_ref().is_some_and(|s| s.is_newer_than(at)) {
        return Ok(None);
    }
    // A tombstone keeps only its instant: a recreated entity starts empty.
    let mut entity = previous.filter(|s| !s.deleted).unwrap_or_default();
    if let Some(name) = change.name {
        replace(&mut entity.name, name);
    }
    if let Some(email) = change.email {
        replace(&mut entity.email, email);
    }
    if change.stock.is_some() {
        entity.stock = change.stock;
    }
    entity.secs = at.secs();
    entity.nanos = at.nanos();
    entity.updated_at.clear();
    entity.updated_at.push_str(text);
    entity.deleted = false;
    state.set(&key, to_json(&entity).as_bytes());

    let json = match kind {
        Kind::Customer => to_json(&CustomerDoc {
            id: change.id,
            name: entity.name.as_deref(),
            email: entity.email.as_deref(),
            updated_at: text,
        }),
        Kind::Product => to_json(&ProductDoc {
            id: change.id,
            name: entity.name.as_deref(),
            stock: entity.stock,
            updated_at: text,
        }),
    };
    Ok(Some(Action::Upsert {
        collection: kind.collection().to_owned(),
        key: change.id.to_owned(),
        json,
    }))
}

/// Deletes the entity and leaves a tombstone, unless the stored one is newer.
fn delete(
    state: &mut impl State,
    kind: Kind,
    id: &str,
    at: Instant,
    text: &str,
) -> Result<Option<Action>, Error> {
    let key = kind.state_key(id);
    if load(state, &key)?.is_some_and(|s| s.is_newer_than(at)) {
        return Ok(None);
    }
    let tombstone = Stored {
        secs: at.secs(),
        nanos: at.nanos(),
        updated_at: text.to_owned(),
        deleted: true,
        ..Stored::default()
    };
    state.set(&key, to_json(&tombstone).as_bytes());
    Ok(Some(Action::Delete {
        collection: kind.collection().to_owned(),
        key: id.to_owned(),
    }))
}

fn load(state: &mut impl State, key: &str) -> Result<Option<Stored>, Error> {
    let Some(bytes) = state.get(key) else {
        return Ok(None);
    };
    // Not the event's fault, but retrying cannot help either: dead-letter
    // it so that it can be replayed once the state is repaired.
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| reject(format!("stored state {key} is unreadable: {e}")))
}

fn validate<'a>(
    kind: Kind,
    id: &'a str,
    fields: &'a Fields,
    path: Path,
) -> Result<Change<'a>, Error> {
    let name = optional_str(&fields.name, path, "name")?;
    let (email, stock) = match kind {
        Kind::Customer => (optional_str(&fields.email, path, "email")?, None),
        Kind::Product => (None, optional_stock(&fields.stock, path)?),
    };
    Ok(Change {
        id,
        name,
        email,
        stock,
    })
}

fn require_id(fields: &Fields, path: Path) -> Result<&str, Error> {
    match &fields.id {
        Some(Value::String(id)) if !id.is_empty() => Ok(id),
        None => Err(reject(format!("{} is required", path.field("id")))),
        Some(other) => Err(reject(format!(
            "{} must be a non-empty string, got {}",
            path.field("id"),
            show(other)
        ))),
    }
}

fn optional_str<'a>(
    value: &'a Option<Value>,
    path: Path,
    name: &str,
) -> Result<Option<&'a str>, Error> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(reject(format!(
            "{} must be a string, got {}",
            path.field(name),
            show(other)
        ))),
    }
}

fn optional_stock(value: &Option<Value>, path: Path) -> Result<Option<u64>, Error> {
    match value {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(stock) => Ok(Some(stock)),
            None => Err(reject(format!(
                "{} must be an integer >= 0, got {}",
                path.field("stock"),
                show(v)
            ))),
        },
    }
}

fn require_timestamp(fields: &Fields) -> Result<(Instant, &str), Error> {
    match &fields.timestamp {
        None => Err(reject("\"timestamp\" is required".to_owned())),
        Some(Value::String(text)) => match Instant::parse(text) {
            Ok(at) => Ok((at, text)),
            Err(e) => Err(reject(format!(
                "\"timestamp\" must be an ISO-8601 instant such as \
                 2026-11-24T08:00:00Z, got {}: {e}",
                show(&Value::String(text.clone()))
            ))),
        },
        Some(other) => Err(reject(format!(
            "\"timestamp\" must be an ISO-8601 string, got {}",
            show(other)
        ))),
    }
}

fn parse_object<T: DeserializeOwned>(body: &str) -> Result<T, Error> {
    if !body.trim_start().starts_with('{') {
        return Err(reject("body must be a JSON object".to_owned()));
    }
    serde_json::from_str(body).map_err(|e| reject(format!("body is not readable: {e}")))
}

fn all_products(c: &mut impl Collections) -> Result<String, String> {
    let mut docs = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c.scan(PRODUCTS, after.as_deref(), SCAN_CHUNK);
        let full = page.len() == SCAN_CHUNK as usize;
        for (key, json) in page {
            let doc = read_doc(PRODUCTS, &key, &json)?;
            docs.push((key, doc));
        }
        if !full {
            break;
        }
        after = docs.last().map(|(key, _)| key.clone());
    }
    let views: Vec<ProductView<'_>> = docs
        .iter()
        .map(|(key, doc)| ProductView {
            id: key,
            name: &doc.name,
            stock: &doc.stock,
        })
        .collect();
    Ok(to_json(&views))
}

fn read_doc(collection: &str, key: &str, json: &str) -> Result<ReadDoc, String> {
    serde_json::from_str(json)
        .map_err(|e| format!("document {collection}/{key} is unreadable: {e}"))
}

fn reject(reason: String) -> Error {
    Error::Reject(reason)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    match serde_json::to_string(value) {
        Ok(json) => json,
        // Only maps with non-string keys and failing `Serialize` impls fail.
        Err(_) => unreachable!("structs of strings and numbers always serialise"),
    }
}

fn replace(slot: &mut Option<String>, value: &str) {
    match slot {
        Some(s) => {
            s.clear();
            s.push_str(value);
        }
        None => *slot = Some(value.to_owned()),
    }
}

/// A JSON value as shown in a reason: its JSON text, cut after 64 bytes.
fn show(value: &Value) -> String {
    const MAX: usize = 64;
    let mut text = value.to_string();
    if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests;
