//! Switchyard's `inventory-producer`: polls the inventory system's
//! `GET /products` (base URL from the `base-url` setting) and publishes
//! `inventory.updated` for every new or changed product, in the existing
//! wire format (`eventId`, `eventType`, `timestamp`, `id`, `name`, `stock`).
//! Unchanged products publish nothing.

#[cfg(target_arch = "wasm32")]
mod plugin {
    use switchyard_feed::{Change, Feed};
    use switchyard_plugin::{ProducedEvent, Producer, ProducerInfo};

    const FEED: Feed<'static> = Feed {
        source: "inventory",
        routing_key: |_: Change| "inventory.updated",
        fields: &["id", "name", "stock"],
    };

    struct InventoryProducer;

    impl Producer for InventoryProducer {
        fn describe() -> ProducerInfo {
            ProducerInfo::new("inventory-producer", env!("CARGO_PKG_VERSION"), 5_000)
        }

        fn poll() -> Result<Vec<ProducedEvent>, String> {
            switchyard_feed::component::run(&FEED, "/products")
        }
    }

    switchyard_plugin::export_producer!(InventoryProducer);
}
