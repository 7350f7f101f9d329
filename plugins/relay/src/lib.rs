//! Switchyard test fixture `relay`: republishes events, to test plugin
//! chains and the hop limit.
//!
//! Subscribes to `relay.#` (the `test-variant` build also to `relay2.#`).
//! An event whose body has a string field `"to"` is published again under
//! that routing key: its `"payload"` object if it has one, else the body
//! itself without its `eventId` (the host then gives it a deterministic new
//! one), so an event sent `"to"` a key relay subscribes to comes back to it
//! for ever, until the host's hop limit stops it. Every event also upserts
//! `relayed/<eventId>` so that tests can see which events it handled.

// The generated export glue is `unsafe`; nothing else in the crate is.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "transformer",
});

use serde_json::{Map, Value};
use switchyard::plugin::types::{Document, OutgoingEvent};

struct Relay;

impl Guest for Relay {
    fn describe() -> PluginInfo {
        let mut subscriptions = vec!["relay.#".to_owned()];
        if cfg!(feature = "test-variant") {
            subscriptions.push("relay2.#".to_owned());
        }
        PluginInfo {
            name: "relay".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            subscriptions,
            views: Vec::new(),
        }
    }

    fn handle(event: Event) -> Result<Vec<Action>, HandleError> {
        let mut body: Map<String, Value> = match serde_json::from_str(&event.body) {
            Ok(Value::Object(body)) => body,
            _ => return Err(HandleError::Reject("body is not a JSON object".to_owned())),
        };
        let mut actions = vec![Action::Upsert(Document {
            collection: "relayed".to_owned(),
            key: event.id.clone(),
            json: format!("{{\"routingKey\":{}}}", Value::String(event.routing_key)),
        })];
        if let Some(Value::String(to)) = body.get("to").cloned() {
            let out = match body.remove("payload") {
                Some(Value::Object(payload)) => payload,
                Some(_) => return Err(HandleError::Reject("payload must be an object".to_owned())),
                None => {
                    body.remove("eventId");
                    body
                }
            };
            actions.push(Action::Publish(OutgoingEvent {
                routing_key: to,
                body: Value::Object(out).to_string(),
            }));
        }
        Ok(actions)
    }

    fn view(_name: String, _after: Option<String>, _limit: u32) -> Result<ViewPage, String> {
        Err("no views".to_owned())
    }
}

export!(Relay);
