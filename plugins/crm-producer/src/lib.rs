//! Switchyard's `crm-producer`: polls the CRM's `GET /customers` (base URL
//! from the `base-url` setting) and publishes `customer.created` for a new
//! customer and `customer.updated` for a changed one, in the existing wire
//! format (`id`, `name`, `email`, `eventId`, `eventType`, `timestamp`).
//! Unchanged customers publish nothing.

#[cfg(target_arch = "wasm32")]
mod plugin {
    use switchyard_feed::{Change, Feed};
    use switchyard_plugin::{ProducedEvent, Producer, ProducerInfo};

    const FEED: Feed<'static> = Feed {
        source: "crm",
        routing_key: |change| match change {
            Change::Created => "customer.created",
            Change::Updated => "customer.updated",
        },
        fields: &["id", "name", "email"],
    };

    struct CrmProducer;

    impl Producer for CrmProducer {
        fn describe() -> ProducerInfo {
            let version = if cfg!(feature = "test-variant") {
                concat!(env!("CARGO_PKG_VERSION"), "+variant")
            } else {
                env!("CARGO_PKG_VERSION")
            };
            ProducerInfo::new("crm-producer", version, 5_000)
        }

        fn poll() -> Result<Vec<ProducedEvent>, String> {
            switchyard_feed::component::run(&FEED, "/customers")
        }
    }

    switchyard_plugin::export_producer!(CrmProducer);
}
