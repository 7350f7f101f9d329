//! Seed-format events: what the CRM and inventory producers publish, with
//! unique ids and timestamps one millisecond apart, over a data set of a
//! chosen size.

use anyhow::Result;
use serde::Serialize;

use super::measure::positive_env;

/// One event as the existing producers publish it.
pub struct Message {
    pub routing_key: &'static str,
    pub event_id: String,
    /// JSON text.
    pub body: String,
}

/// How many distinct customers and products the events cycle over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSize {
    pub customers: usize,
    pub products: usize,
}

impl DataSize {
    /// What the throughput figures in the README were measured with.
    pub const DEFAULT: DataSize = DataSize {
        customers: 1_000,
        products: 1_000,
    };

    /// `BENCH_CUSTOMERS` and `BENCH_PRODUCTS`, else [`DataSize::DEFAULT`].
    pub fn from_env() -> Result<Self> {
        Ok(DataSize {
            customers: positive_env("BENCH_CUSTOMERS", Self::DEFAULT.customers)?,
            products: positive_env("BENCH_PRODUCTS", Self::DEFAULT.products)?,
        })
    }
}

impl std::fmt::Display for DataSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} customers, {} products",
            self.customers, self.products
        )
    }
}

/// `customer.created` in the CRM producer's field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CustomerCreated<'a> {
    id: &'a str,
    name: &'a str,
    email: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    timestamp: &'a str,
}

/// `inventory.updated` in the inventory producer's field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InventoryUpdated<'a> {
    event_id: &'a str,
    event_type: &'a str,
    timestamp: &'a str,
    id: &'a str,
    name: &'a str,
    stock: u64,
}

/// A run's events, made as they are published rather than held (100,000
/// of them take about 38 MiB): with `preload`, every customer and product
/// of `size` once ([`preload_events`]), then `n` [`seed_event`]s numbered
/// after those.
#[derive(Debug, Clone, Copy)]
pub struct EventSource {
    pub size: DataSize,
    pub preload: bool,
    pub n: usize,
}

impl EventSource {
    /// `n` seed events over `size`.
    pub fn seed(n: usize, size: DataSize) -> Self {
        Self {
            size,
            preload: false,
            n,
        }
    }

    /// The preloaded events, if any.
    pub fn warm(&self) -> usize {
        if self.preload {
            self.size.customers + self.size.products
        } else {
            0
        }
    }

    pub fn len(&self) -> usize {
        self.warm() + self.n
    }

    pub fn iter(&self) -> impl Iterator<Item = Message> + use<> {
        let (size, warm) = (self.size, self.warm());
        let preload = (0..warm).map(move |k| preload_event(k, size));
        preload.chain((warm..warm + self.n).map(move |i| seed_event(i, size)))
    }
}

/// The `i`-th event of a run: customers (even `i`) and inventory updates
/// (odd `i`) alternate, each cycling over its part of `size`.
pub fn seed_event(i: usize, size: DataSize) -> Message {
    let entity = i / 2;
    if i.is_multiple_of(2) {
        let entity = entity % size.customers;
        customer_event(i, &format!("c{entity}"), &format!("customer-{entity:04}"))
    } else {
        product_event(i, entity % size.products)
    }
}

/// Event `k` of one event per customer and per product of `size`
/// (customers first), so that the store holds all of them once applied;
/// [`seed_event`]s numbered after these update them.
pub fn preload_event(k: usize, size: DataSize) -> Message {
    if k < size.customers {
        customer_event(k, &format!("c{k}"), &format!("customer-{k:04}"))
    } else {
        product_event(k, k - size.customers)
    }
}

/// Event number `i`: customer `id` created with `name`.
pub fn customer_event(i: usize, id: &str, name: &str) -> Message {
    let (event_id, timestamp) = id_and_time(i);
    let email = format!("{name}@example.com");
    let body = CustomerCreated {
        id,
        name,
        email: &email,
        event_id: &event_id,
        event_type: "customer.created",
        timestamp: &timestamp,
    };
    Message {
        routing_key: "customer.created",
        body: serde_json::to_string(&body).expect("events serialise"),
        event_id,
    }
}

/// Event number `i`: the stock of product `entity` updated.
pub fn product_event(i: usize, entity: usize) -> Message {
    let (event_id, timestamp) = id_and_time(i);
    let (id, name) = (format!("p{entity}"), format!("product-{entity:04}"));
    let body = InventoryUpdated {
        event_id: &event_id,
        event_type: "inventory.updated",
        timestamp: &timestamp,
        id: &id,
        name: &name,
        stock: (i as u64 * 37) % 1000,
    };
    Message {
        routing_key: "inventory.updated",
        body: serde_json::to_string(&body).expect("events serialise"),
        event_id,
    }
}

/// A unique event id and a timestamp one millisecond after event `i - 1`'s.
fn id_and_time(i: usize) -> (String, String) {
    let start_ms = switchyard_instant::Instant::parse("2026-11-24T08:00:00Z")
        .expect("a valid instant")
        .secs() as u64
        * 1000;
    (
        format!("00000000-0000-4000-8000-{i:012x}"),
        switchyard_instant::format_millis(start_ms + i as u64),
    )
}
