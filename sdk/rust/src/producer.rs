//! The `Producer` trait a producer implements, the macro that exports it,
//! its description and events, and handing events over during a poll
//! (WIT `publish`).

use serde::Serialize;

use crate::__bindings::producer::switchyard::plugin::publish as wit;
use crate::{ProducedEvent, ProducerInfo};

impl ProducedEvent {
    /// The event `id` (one change of one record, never random: see the
    /// WIT) under `routing_key`, with the JSON object text `body`.
    pub fn new(id: impl Into<String>, routing_key: &str, body: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            routing_key: routing_key.to_owned(),
            body: body.into(),
        }
    }

    /// The same with `body` written as JSON.
    ///
    /// # Panics
    /// If `body` cannot be written as JSON.
    pub fn json<T: Serialize + ?Sized>(id: impl Into<String>, routing_key: &str, body: &T) -> Self {
        Self::new(id, routing_key, crate::to_json(body, "a produced body"))
    }
}

/// Publishes `events` now, during the poll; their state writes are still
/// committed only when the poll succeeds. On an error, stop and return it
/// from `poll`.
pub fn publish(events: &[ProducedEvent]) -> Result<(), String> {
    wit::publish(events)
}

/// A plugin of the `producer` world: it polls an upstream and publishes
/// what changed. Export it with [`crate::export_producer!`].
pub trait Producer {
    /// Name, version and poll interval (see [`ProducerInfo::new`]).
    /// Called once when the plugin is loaded; must not depend on state.
    fn describe() -> ProducerInfo;

    /// Polls the upstream once: the events to publish (besides those
    /// handed over with [`publish`]), or why it could not.
    fn poll() -> Result<Vec<ProducedEvent>, String>;
}

/// Exports a [`Producer`] as the component's `producer` world:
/// `switchyard_plugin::export_producer!(MyProducer);`, once per crate.
#[macro_export]
macro_rules! export_producer {
    ($plugin:ty) => {
        #[doc(hidden)]
        type __SwitchyardProducer = $plugin;

        // The generated export glue is `unsafe`.
        #[doc(hidden)]
        #[allow(unsafe_code)]
        mod __switchyard_producer {

            pub struct Exported;

            impl $crate::__bindings::producer::Guest for Exported {
                fn describe() -> $crate::ProducerInfo {
                    <super::__SwitchyardProducer as $crate::Producer>::describe()
                }

                fn poll() -> ::core::result::Result<
                    ::std::vec::Vec<$crate::ProducedEvent>,
                    ::std::string::String,
                > {
                    <super::__SwitchyardProducer as $crate::Producer>::poll()
                }
            }

            $crate::__bindings::producer::export!(
                Exported with_types_in $crate::__bindings::producer
            );
        }
    };
}

impl ProducerInfo {
    /// A producer named `name` at `version`, polled every
    /// `poll_interval_ms` milliseconds (at least 100).
    pub fn new(name: &str, version: &str, poll_interval_ms: u32) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            poll_interval_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{ProducedEvent, ProducerInfo};

    #[test]
    fn events_and_descriptions_are_what_was_given() {
        let event = ProducedEvent::json("crm:c1:2", "customer.updated", &[("id", "c1")]);
        assert_eq!(event.id, "crm:c1:2");
        assert_eq!(event.routing_key, "customer.updated");
        assert_eq!(event.body, r#"[["id","c1"]]"#);
        let info = ProducerInfo::new("crm-producer", "1.0", 5_000);
        assert_eq!(
            (info.name.as_str(), info.poll_interval_ms),
            ("crm-producer", 5_000)
        );
    }
}
