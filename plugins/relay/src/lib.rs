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

use serde_json::{Map, Value};
use switchyard_plugin::{
    Action, Event, HandleError, PluginInfo, Transformer, publish_raw, reject, upsert_raw,
};

struct Relay;

impl Transformer for Relay {
    fn describe() -> PluginInfo {
        let subscriptions: &[&str] = if cfg!(feature = "test-variant") {
            &["relay.#", "relay2.#"]
        } else {
            &["relay.#"]
        };
        PluginInfo::new("relay", env!("CARGO_PKG_VERSION"), subscriptions)
    }

    fn handle(event: Event) -> Result<Vec<Action>, HandleError> {
        let mut body: Map<String, Value> = match serde_json::from_str(&event.body) {
            Ok(Value::Object(body)) => body,
            _ => return Err(reject("body is not a JSON object")),
        };
        let routing_key = Value::String(event.routing_key);
        let mut actions = vec![upsert_raw(
            "relayed",
            &event.id,
            format!("{{\"routingKey\":{routing_key}}}"),
        )];
        if let Some(Value::String(to)) = body.get("to").cloned() {
            let out = match body.remove("payload") {
                Some(Value::Object(payload)) => payload,
                Some(_) => return Err(reject("payload must be an object")),
                None => {
                    body.remove("eventId");
                    body
                }
            };
            actions.push(publish_raw(&to, Value::Object(out).to_string()));
        }
        Ok(actions)
    }
}

switchyard_plugin::export_transformer!(Relay);
