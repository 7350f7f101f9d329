//! Switchyard's `merge` transformer: folds `customer.*`, `inventory.*` and
//! legacy `analytics.data` events into the `customers` and `products`
//! collections and serves the merged `{customer, products}` read view.
//!
//! - [`merge`]: the validation and merge rules and the `data` view, written
//!   against the [`merge::State`] and [`merge::Collections`] traits so that
//!   they build, test and benchmark natively.
//! - `component` (wasm32 only): [`merge`] as a `switchyard-plugin`
//!   transformer.

pub mod merge;

#[cfg(target_arch = "wasm32")]
mod component;

pub use merge::{Action, Collections, Error, State, data_view, handle};

/// The plugin's name, which names its queue (`switchyard.merge`).
pub const NAME: &str = "merge";
/// The AMQP binding keys the plugin subscribes to.
pub const SUBSCRIPTIONS: &[&str] = &["customer.*", "inventory.*", "analytics.data"];
/// The read-side views the plugin serves.
pub const VIEWS: &[&str] = &["data"];
