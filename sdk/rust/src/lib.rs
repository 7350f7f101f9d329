//! Switchyard's guest SDK: write a plugin as a Rust trait, export it with
//! one macro, and use typed helpers instead of the raw WIT bindings.
//!
//! A transformer implements `Transformer` and calls `export_transformer!`
//! (cargo feature `transformer`, the default); a producer implements
//! `Producer` and calls `export_producer!` (feature `producer`, with
//! `default-features = false`). The modules:
//! - [`state`]: the plugin's private key-value state, raw or as JSON;
//! - [`collections`]: reads of committed documents;
//! - [`log`]: log lines under the plugin's name;
//! - [`settings`], [`http`], [`producer`]: what a producer imports (its
//!   settings, `GET` over `wasi:http`, publishing during a poll);
//! - the actions and errors of `handle` (`upsert`, `delete`, `publish`,
//!   `reject`, `retry`) and `Event::body_json`.
//!
//! The bindings are generated here from `wit/`, for the world of each
//! enabled feature; a component imports only the functions it calls.
//! Enable one world per build: see `bindings`.

#[cfg(not(any(feature = "transformer", feature = "producer")))]
compile_error!("enable the cargo feature `transformer` or `producer` of switchyard-plugin");

// The generated bindings are `unsafe`; nothing else in the crate is.
#[doc(hidden)]
#[allow(unsafe_code)]
#[path = "bindings.rs"]
pub mod __bindings;

pub mod log;
pub mod state;

#[cfg(feature = "transformer")]
mod actions;
#[cfg(feature = "transformer")]
pub mod collections;
#[cfg(feature = "transformer")]
mod transformer;
#[cfg(feature = "transformer")]
pub use __bindings::transformer::switchyard::plugin::types::{
    Action, Document, DocumentRef, Entry, Event, HandleError, OutgoingEvent, PluginInfo, ViewPage,
};
#[cfg(feature = "transformer")]
pub use actions::{delete, publish, publish_raw, reject, retry, upsert, upsert_raw};
#[cfg(feature = "transformer")]
pub use transformer::Transformer;

#[cfg(feature = "producer")]
pub mod http;
#[cfg(feature = "producer")]
pub mod producer;
#[cfg(feature = "producer")]
pub mod settings;
#[cfg(feature = "producer")]
pub use __bindings::producer::switchyard::plugin::types::{ProducedEvent, ProducerInfo};
#[cfg(feature = "producer")]
pub use producer::Producer;

#[cfg(all(test, feature = "transformer"))]
mod tests;

/// Writes `value` as JSON text; what it is, `what`, names it in the panic.
fn to_json<T: serde::Serialize + ?Sized>(value: &T, what: &str) -> String {
    match serde_json::to_string(value) {
        Ok(json) => json,
        Err(e) => panic!("{what} cannot be written as JSON: {e}"),
    }
}
