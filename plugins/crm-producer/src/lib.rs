//! Switchyard's `crm-producer`: polls the CRM's `GET /customers` (base URL
//! from the `base-url` setting) and publishes `customer.created` for a new
//! customer and `customer.updated` for a changed one, in the existing wire
//! format (`id`, `name`, `email`, `eventId`, `eventType`, `timestamp`).
//! Unchanged customers publish nothing.

#[cfg(target_arch = "wasm32")]
mod plugin {
    use switchyard_feed::component::{Guest, ProducedEvent, ProducerInfo, export};
    use switchyard_feed::{Change, Feed};

    const FEED: Feed<'static> = Feed {
        source: "crm",
        routing_key: |change| match change {
            Change::Created => "customer.created",
            Change::Updated => "customer.updated",
        },
        fields: &["id", "name", "email"],
    };

    struct CrmProducer;

    impl Guest for CrmProducer {
        fn describe() -> ProducerInfo {
            ProducerInfo {
                name: "crm-producer".to_owned(),
                version: if cfg!(feature = "test-variant") {
                    concat!(env!("CARGO_PKG_VERSION"), "+variant").to_owned()
                } else {
                    env!("CARGO_PKG_VERSION").to_owned()
                },
                poll_interval_ms: 5_000,
            }
        }

        fn poll() -> Result<Vec<ProducedEvent>, String> {
            switchyard_feed::component::run(&FEED, "/customers")
        }
    }

    export!(CrmProducer with_types_in switchyard_feed::component);
}
