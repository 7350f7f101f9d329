//! Native tests of what the SDK computes without the host: the actions and
//! errors it builds, typed bodies (including bodies that break what a
//! plugin expects), descriptions, the default view, and the exported glue.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::json;

use crate::state::StateError;
use crate::*;

#[derive(Debug, Deserialize, PartialEq)]
struct Customer {
    id: String,
    stock: Option<u32>,
}

fn event(body: &str) -> Event {
    Event {
        id: "e1".to_owned(),
        routing_key: "customer.created".to_owned(),
        body: body.to_owned(),
        received_at_ms: 0,
    }
}

#[test]
fn upsert_and_publish_write_the_json_serde_writes() {
    let value = json!({"id": "c1", "name": "Zoë \"Z\"", "n": [1, 2.5, null]});
    match upsert("customers", "c1", &value) {
        Action::Upsert(doc) => {
            assert_eq!(
                (doc.collection.as_str(), doc.key.as_str()),
                ("customers", "c1")
            );
            assert_eq!(doc.json, value.to_string());
        }
        other => panic!("not an upsert: {other:?}"),
    }
    match publish("customer.seen", &value) {
        Action::Publish(out) => {
            assert_eq!(out.routing_key, "customer.seen");
            assert_eq!(out.body, value.to_string());
        }
        other => panic!("not a publish: {other:?}"),
    }
    match delete("customers", "c1") {
        Action::Delete(at) => {
            assert_eq!((at.collection, at.key), ("customers".into(), "c1".into()))
        }
        other => panic!("not a delete: {other:?}"),
    }
    // Raw JSON text goes through untouched, even text that is not JSON:
    // the host is the one that rejects it.
    match upsert_raw("c", "k", "{not json") {
        Action::Upsert(doc) => assert_eq!(doc.json, "{not json"),
        other => panic!("not an upsert: {other:?}"),
    }
}

#[test]
#[should_panic(expected = "an upserted document cannot be written as JSON")]
fn a_value_serde_cannot_write_panics_with_what_it_was() {
    let mut by_pair = HashMap::new();
    by_pair.insert((1, 2), "pair keys are not JSON object keys");
    let _ = upsert("c", "k", &by_pair);
}

#[test]
fn reject_and_retry_are_the_two_errors() {
    assert_eq!(reject("bad"), HandleError::Reject("bad".to_owned()));
    assert_eq!(
        retry(format!("down {}", 1)),
        HandleError::Retry("down 1".to_owned())
    );
}

#[test]
fn a_body_that_fits_is_typed() {
    let body = event(r#"{"id":"c1","stock":3,"extra":{"deep":[1]}}"#).body_json::<Customer>();
    assert_eq!(
        body,
        Ok(Customer {
            id: "c1".to_owned(),
            stock: Some(3),
        })
    );
}

#[test]
fn serde_also_reads_a_struct_from_an_array_in_field_order() {
    // Not an object at all, yet it fits: plugins that care must say so.
    assert_eq!(
        event(r#"["c1",3]"#).body_json::<Customer>(),
        Ok(Customer {
            id: "c1".to_owned(),
            stock: Some(3),
        })
    );
}

#[test]
fn bodies_that_do_not_fit_are_rejected_with_the_reason() {
    for (body, says) in [
        ("", "EOF while parsing"),
        ("[1,2]", "invalid type: integer `1`, expected a string"),
        ("\"c1\"", "expected struct Customer"),
        (r#"{"stock":1}"#, "missing field `id`"),
        (
            r#"{"id":7}"#,
            "invalid type: integer `7`, expected a string",
        ),
        (r#"{"id":"c","stock":-1}"#, "invalid value: integer `-1`"),
        (
            r#"{"id":"c","stock":4294967296}"#,
            "invalid value: integer `4294967296`",
        ),
        (r#"{"id":"c"} trailing"#, "trailing characters"),
        (r#"{"id":"\ud800"}"#, "hex escape"),
    ] {
        match event(body).body_json::<Customer>() {
            Err(HandleError::Reject(reason)) => {
                assert!(
                    reason.starts_with("the body is not the JSON expected: ")
                        && reason.contains(says),
                    "body {body:?}: {reason}"
                );
            }
            other => panic!("body {body:?} was not rejected: {other:?}"),
        }
    }
}

#[test]
fn a_state_error_rejects_and_names_the_key() {
    let e = StateError {
        key: "customer:c1".to_owned(),
        reason: "expected value at line 1 column 1".to_owned(),
    };
    let said = "state key \"customer:c1\" does not hold the JSON expected: expected value at line 1 column 1";
    assert_eq!(e.to_string(), said);
    assert_eq!(
        HandleError::from(e.clone()),
        HandleError::Reject(said.to_owned())
    );
    assert_eq!(String::from(e), said);
}

#[test]
fn plugin_info_lists_subscriptions_and_views() {
    let info = PluginInfo::new("merge", "1.0", &["customer.*", "inventory.#"]);
    assert_eq!(info.subscriptions, ["customer.*", "inventory.#"]);
    assert!(info.views.is_empty());
    assert_eq!(info.with_views(&["data"]).views, ["data"]);
}

struct Quiet;

impl Transformer for Quiet {
    fn describe() -> PluginInfo {
        PluginInfo::new("quiet", "0", &["#"])
    }

    fn handle(event: Event) -> Result<Vec<Action>, HandleError> {
        Ok(vec![upsert_raw("seen", &event.id, "{}")])
    }
}

crate::export_transformer!(Quiet);

#[test]
fn the_default_view_says_there_are_none_and_the_glue_delegates() {
    use crate::__bindings::transformer::Guest;
    let err = <Quiet as Transformer>::view("data".to_owned(), None, 10).unwrap_err();
    assert_eq!(err, "no view data: this plugin serves no views");
    assert_eq!(
        __switchyard_transformer::Exported::view("x".to_owned(), Some("a".to_owned()), 1),
        Err("no view x: this plugin serves no views".to_owned())
    );
    assert_eq!(__switchyard_transformer::Exported::describe().name, "quiet");
    assert_eq!(
        __switchyard_transformer::Exported::handle(event("{}")),
        Ok(vec![upsert_raw("seen", "e1", "{}")])
    );
}

/// The README's example, compiled (it needs the host to run).
#[allow(dead_code)]
mod readme_example {
    use crate::{Action, Event, HandleError, PluginInfo, Transformer, reject, state, upsert};
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize)]
    struct Order {
        id: String,
        amount: i64,
    }

    #[derive(Default, Serialize, Deserialize)]
    struct Total {
        orders: u64,
        amount: i64,
    }

    struct Totals;

    impl Transformer for Totals {
        fn describe() -> PluginInfo {
            PluginInfo::new("totals", env!("CARGO_PKG_VERSION"), &["order.created"])
        }

        fn handle(event: Event) -> Result<Vec<Action>, HandleError> {
            let order: Order = event.body_json()?;
            if order.amount < 0 {
                return Err(reject(format!("order {}: negative amount", order.id)));
            }
            let mut total: Total = state::get_json("total")?.unwrap_or_default();
            total.orders += 1;
            total.amount += order.amount;
            state::set_json("total", &total);
            Ok(vec![upsert("totals", "all", &total)])
        }
    }
}
