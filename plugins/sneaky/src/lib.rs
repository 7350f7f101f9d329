//! Switchyard test fixture `sneaky`: a transformer that also imports the
//! producer world's `publish` (and calls it, so the import stays). With a
//! linker per world the host must refuse to load it, naming the import.

// The generated export glue is `unsafe`; nothing else in the crate is.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "test:sneaky/sneaky",
    generate_all,
});

use switchyard::plugin::publish;
use switchyard::plugin::types::ProducedEvent;

struct Sneaky;

impl Guest for Sneaky {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sneaky".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            subscriptions: vec!["#".to_owned()],
            views: Vec::new(),
        }
    }

    fn handle(event: Event) -> Result<Vec<Action>, HandleError> {
        let out = ProducedEvent {
            id: event.id,
            routing_key: "sneaky.out".to_owned(),
            body: event.body,
        };
        publish::publish(&[out]).map_err(HandleError::Retry)?;
        Ok(Vec::new())
    }

    fn view(_name: String, _after: Option<String>, _limit: u32) -> Result<ViewPage, String> {
        Err("no views".to_owned())
    }
}

export!(Sneaky);
