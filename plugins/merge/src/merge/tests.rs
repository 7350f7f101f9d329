use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::*;

type Mem = HashMap<String, Vec<u8>>;

/// The upsert of `fields` (a `json!` object, whose keys `json!` sorts),
/// rendered in the fixed field order of the collection's documents.
fn upsert_of(collection: &str, key: &str, fields: Value) -> Action {
    let order: &[&str] = match collection {
        "customers" => &["id", "name", "email", "updatedAt"],
        _ => &["id", "name", "stock", "updatedAt"],
    };
    Action::Upsert {
        collection: collection.to_owned(),
        key: key.to_owned(),
        json: in_order(&fields, order),
    }
}

fn in_order(object: &Value, order: &[&str]) -> String {
    assert_eq!(object.as_object().unwrap().len(), order.len(), "{object}");
    let fields: Vec<String> = order
        .iter()
        .map(|k| format!("{}:{}", Value::from(*k), object[*k]))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn run(state: &mut Mem, routing_key: &str, body: Value) -> Result<Vec<Action>, Error> {
    handle(state, routing_key, &body.to_string(), 0)
}

fn rejected(result: Result<Vec<Action>, Error>) -> String {
    match result {
        Err(Error::Reject(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn product(id: &str, name: &str, stock: Value, timestamp: &str) -> Value {
    json!({
        "eventId": "e", "eventType": "inventory.updated", "timestamp": timestamp,
        "id": id, "name": name, "stock": stock,
    })
}

fn customer(id: &str, name: &str, email: &str, timestamp: &str) -> Value {
    json!({
        "id": id, "name": name, "email": email,
        "eventId": "e", "eventType": "customer.created", "timestamp": timestamp,
    })
}

#[test]
fn seed_scenario() {
    let mut state = Mem::new();
    let c1 = customer(
        "c1",
        "crispin",
        "crispin@test.com",
        "2026-11-24T08:00:00.123456789Z",
    );
    assert_eq!(
        run(&mut state, "customer.created", c1).unwrap(),
        [upsert_of(
            "customers",
            "c1",
            json!({"id": "c1", "name": "crispin", "email": "crispin@test.com",
                   "updatedAt": "2026-11-24T08:00:00.123456789Z"})
        )]
    );
    let p1 = product("p1", "Laptop", json!(10), "2026-11-24T08:00:01.5Z");
    assert_eq!(
        run(&mut state, "inventory.updated", p1).unwrap(),
        [upsert_of(
            "products",
            "p1",
            json!({"id": "p1", "name": "Laptop", "stock": 10,
                   "updatedAt": "2026-11-24T08:00:01.5Z"})
        )]
    );

    let p6 = product("p6", "GPU", json!(2), "2026-11-24T08:00:02.250Z");
    assert_eq!(run(&mut state, "inventory.updated", p6).unwrap().len(), 1);
    // 02Z is older than 02.250Z although it sorts after it as text.
    let older = product("p6", "GPU", json!(99), "2026-11-24T08:00:02Z");
    assert_eq!(run(&mut state, "inventory.updated", older).unwrap(), []);
    let stored: Value = serde_json::from_slice(&state["product/p6"]).unwrap();
    assert_eq!(stored["stock"], 2);
    assert_eq!(stored["updatedAt"], "2026-11-24T08:00:02.250Z");

    let no_id = json!({"name": "nobody", "email": "n@test.com", "eventId": "x",
                       "eventType": "customer.created", "timestamp": "2026-11-24T08:00:03Z"});
    assert_eq!(
        rejected(run(&mut state, "customer.created", no_id)),
        "\"id\" is required"
    );
    let lots = product("p2", "Phone", json!("lots"), "2026-11-24T08:00:04Z");
    assert_eq!(
        rejected(run(&mut state, "inventory.updated", lots)),
        "\"stock\" must be an integer >= 0, got \"lots\""
    );
    assert!(!state.contains_key("product/p2"));
}

#[test]
fn stock_must_be_a_non_negative_integer() {
    let mut state = Mem::new();
    for (stock, shown) in [
        (json!(1.5), "1.5"),
        (json!(-1), "-1"),
        (json!(2.0), "2.0"),
        (json!(true), "true"),
        (json!([1]), "[1]"),
    ] {
        let event = product("p1", "Laptop", stock, "2026-11-24T08:00:00Z");
        assert_eq!(
            rejected(run(&mut state, "inventory.updated", event)),
            format!("\"stock\" must be an integer >= 0, got {shown}")
        );
    }
    let zero = product("p1", "Laptop", json!(0), "2026-11-24T08:00:00Z");
    assert_eq!(run(&mut state, "inventory.updated", zero).unwrap().len(), 1);
}

#[test]
fn rejects_bad_fields_with_reasons() {
    let mut state = Mem::new();
    let ts = "2026-11-24T08:00:00Z";
    let cases = [
        (
            "customer.created",
            json!({"id": "", "timestamp": ts}),
            "\"id\" must be a non-empty string, got \"\"",
        ),
        (
            "customer.created",
            json!({"id": 7, "timestamp": ts}),
            "\"id\" must be a non-empty string, got 7",
        ),
        (
            "customer.created",
            json!({"id": "c1", "name": 5, "timestamp": ts}),
            "\"name\" must be a string, got 5",
        ),
        (
            "customer.created",
            json!({"id": "c1", "email": {}, "timestamp": ts}),
            "\"email\" must be a string, got {}",
        ),
        (
            "inventory.updated",
            json!({"id": "p1", "name": false, "timestamp": ts}),
            "\"name\" must be a string, got false",
        ),
        (
            "customer.created",
            json!({"id": "c1"}),
            "\"timestamp\" is required",
        ),
        (
            "customer.created",
            json!({"id": "c1", "timestamp": 1_795_507_200}),
            "\"timestamp\" must be an ISO-8601 string, got 1795507200",
        ),
        (
            "customer.created",
            json!({"id": "c1", "timestamp": "2026-11-24 08:00:00Z"}),
            "\"timestamp\" must be an ISO-8601 instant such as 2026-11-24T08:00:00Z, \
             got \"2026-11-24 08:00:00Z\": expected 'T' between date and time",
        ),
        (
            "orders.created",
            json!({"id": "o1", "timestamp": ts}),
            "unsupported routing key orders.created",
        ),
        (
            "customer.deleted",
            json!({"timestamp": ts}),
            "\"id\" is required",
        ),
    ];
    for (routing_key, body, reason) in cases {
        assert_eq!(rejected(run(&mut state, routing_key, body)), reason);
    }
    assert_eq!(
        rejected(handle(&mut state, "customer.created", "[1, 2]", 0)),
        "body must be a JSON object"
    );
    assert!(
        rejected(handle(&mut state, "customer.created", "{\"id\": \"c3\"", 0))
            .starts_with("body is not readable: ")
    );
    assert!(state.is_empty(), "rejected events must not write state");
}

#[test]
fn partial_update_keeps_absent_fields() {
    let mut state = Mem::new();
    run(
        &mut state,
        "customer.created",
        customer("c1", "crispin", "c@test.com", "2026-11-24T08:00:00Z"),
    )
    .unwrap();
    let rename = json!({"id": "c1", "name": "Crispin", "timestamp": "2026-11-24T08:00:00.5Z"});
    assert_eq!(
        run(&mut state, "customer.updated", rename).unwrap(),
        [upsert_of(
            "customers",
            "c1",
            json!({"id": "c1", "name": "Crispin", "email": "c@test.com",
                   "updatedAt": "2026-11-24T08:00:00.5Z"})
        )]
    );
    // `null` counts as absent; a change at the same instant applies.
    let email = json!({"id": "c1", "name": null, "email": "new@test.com",
                       "timestamp": "2026-11-24T09:00:00.5+01:00"});
    assert_eq!(
        run(&mut state, "customer.updated", email).unwrap(),
        [upsert_of(
            "customers",
            "c1",
            json!({"id": "c1", "name": "Crispin", "email": "new@test.com",
                   "updatedAt": "2026-11-24T09:00:00.5+01:00"})
        )]
    );
    // A product known only by its stock has a null name.
    let stock_only = json!({"id": "p9", "stock": 4, "timestamp": "2026-11-24T08:00:00Z"});
    assert_eq!(
        run(&mut state, "inventory.updated", stock_only).unwrap(),
        [upsert_of(
            "products",
            "p9",
            json!({"id": "p9", "name": null, "stock": 4, "updatedAt": "2026-11-24T08:00:00Z"})
        )]
    );
}

#[test]
fn delete_leaves_a_tombstone() {
    let mut state = Mem::new();
    let delete_ref = Action::Delete {
        collection: "products".to_owned(),
        key: "p1".to_owned(),
    };
    run(
        &mut state,
        "inventory.updated",
        product("p1", "Laptop", json!(3), "2026-11-24T08:00:01Z"),
    )
    .unwrap();

    // A delete older than the stored change does nothing.
    let stale_delete = json!({"id": "p1", "timestamp": "2026-11-24T08:00:00Z"});
    assert_eq!(
        run(&mut state, "inventory.deleted", stale_delete).unwrap(),
        []
    );

    let delete = json!({"id": "p1", "timestamp": "2026-11-24T08:00:02Z", "stock": "ignored"});
    assert_eq!(
        run(&mut state, "inventory.deleted", delete).unwrap(),
        [delete_ref]
    );

    // An update older than the delete cannot resurrect the product.
    let late = product("p1", "Laptop", json!(7), "2026-11-24T08:00:01.999Z");
    assert_eq!(run(&mut state, "inventory.updated", late).unwrap(), []);

    // A newer one recreates it from scratch: the old name is gone.
    let recreate = json!({"id": "p1", "stock": 1, "timestamp": "2026-11-24T08:00:03Z"});
    assert_eq!(
        run(&mut state, "inventory.updated", recreate).unwrap(),
        [upsert_of(
            "products",
            "p1",
            json!({"id": "p1", "name": null, "stock": 1, "updatedAt": "2026-11-24T08:00:03Z"})
        )]
    );

    // Deleting an unknown entity still records the tombstone.
    let unknown = json!({"id": "c9", "timestamp": "2026-11-24T08:00:05Z"});
    assert_eq!(
        run(&mut state, "customer.deleted", unknown).unwrap(),
        [Action::Delete {
            collection: "customers".to_owned(),
            key: "c9".to_owned()
        }]
    );
    let early = customer("c9", "x", "x@test.com", "2026-11-24T08:00:04Z");
    assert_eq!(run(&mut state, "customer.created", early).unwrap(), []);
}

#[test]
fn analytics_data_applies_every_part() {
    let mut state = Mem::new();
    let received = 1_795_507_200_042; // 2026-11-24T08:00:00.042Z
    let body = json!({
        "customer": {"id": "c1", "name": "crispin", "email": "c@test.com"},
        "products": [
            {"id": "p1", "name": "Laptop", "stock": 10},
            {"id": "p2", "stock": 0},
        ],
    });
    assert_eq!(
        handle(&mut state, "analytics.data", &body.to_string(), received).unwrap(),
        [
            upsert_of(
                "customers",
                "c1",
                json!({"id": "c1", "name": "crispin", "email": "c@test.com",
                       "updatedAt": "2026-11-24T08:00:00.042Z"})
            ),
            upsert_of(
                "products",
                "p1",
                json!({"id": "p1", "name": "Laptop", "stock": 10,
                       "updatedAt": "2026-11-24T08:00:00.042Z"})
            ),
            upsert_of(
                "products",
                "p2",
                json!({"id": "p2", "name": null, "stock": 0,
                       "updatedAt": "2026-11-24T08:00:00.042Z"})
            ),
        ]
    );

    // Merge rules hold across both sources: a newer inventory event wins
    // over a later-received but older POST.
    run(
        &mut state,
        "inventory.updated",
        product("p1", "Laptop", json!(4), "2026-11-24T08:00:01Z"),
    )
    .unwrap();
    let body = json!({"customer": {"id": "c1"}, "products": [{"id": "p1", "stock": 99}]});
    assert_eq!(
        handle(
            &mut state,
            "analytics.data",
            &body.to_string(),
            received + 1
        )
        .unwrap(),
        [upsert_of(
            "customers",
            "c1",
            json!({"id": "c1", "name": "crispin", "email": "c@test.com",
                   "updatedAt": "2026-11-24T08:00:00.043Z"})
        )]
    );

    // Products may be absent, null or empty.
    for products in ["", ", \"products\": null", ", \"products\": []"] {
        let body = format!("{{\"customer\": {{\"id\": \"c2\"}}{products}}}");
        assert_eq!(
            handle(&mut state, "analytics.data", &body, received)
                .unwrap()
                .len(),
            1
        );
    }
}

#[test]
fn analytics_data_rejects_any_invalid_part() {
    let mut state = Mem::new();
    let cases = [
        (json!({"products": []}), "customer is required"),
        (json!({"customer": null}), "customer is required"),
        (
            json!({"customer": "c1"}),
            "customer must be an object, got \"c1\"",
        ),
        (
            json!({"customer": {"name": "x"}}),
            "customer.id is required",
        ),
        (
            json!({"customer": {"id": "c1", "email": 3}}),
            "customer.email must be a string, got 3",
        ),
        (
            json!({"customer": {"id": "c1"}, "products": {}}),
            "products must be an array, got {}",
        ),
        (
            json!({"customer": {"id": "c1"}, "products": [{"id": "p1"}, 4]}),
            "products[1] must be an object, got 4",
        ),
        (
            json!({"customer": {"id": "c1"}, "products": [{"id": "p1", "stock": 1}, {"id": "p2", "stock": -3}]}),
            "products[1].stock must be an integer >= 0, got -3",
        ),
        (
            json!({"customer": {"id": "c1"}, "products": [{"stock": 1}]}),
            "products[0].id is required",
        ),
        (
            json!({"customer": {"id": "c1"}, "products": [{"id": "p1", "name": ["x"]}]}),
            "products[0].name must be a string, got [\"x\"]",
        ),
    ];
    for (body, reason) in cases {
        assert_eq!(rejected(run(&mut state, "analytics.data", body)), reason);
    }
    assert!(
        state.is_empty(),
        "nothing is applied when any part is invalid"
    );
}

#[test]
fn long_values_are_cut_in_reasons() {
    let mut state = Mem::new();
    let long = "é".repeat(100);
    let reason = rejected(run(
        &mut state,
        "inventory.updated",
        json!({"id": "p1", "stock": long}),
    ));
    assert!(reason.ends_with("..."), "{reason}");
    assert!(reason.len() < 120, "{reason}");
}

/// Collections in memory that count `scan` calls.
#[derive(Default)]
struct FakeCollections {
    docs: BTreeMap<String, BTreeMap<String, String>>,
    scans: Vec<(String, Option<String>, u32)>,
}

impl FakeCollections {
    fn put(&mut self, collection: &str, key: &str, json: Value) {
        self.docs
            .entry(collection.to_owned())
            .or_default()
            .insert(key.to_owned(), json.to_string());
    }
}

impl Collections for FakeCollections {
    fn get(&mut self, collection: &str, key: &str) -> Option<String> {
        self.docs.get(collection)?.get(key).cloned()
    }

    fn scan(&mut self, collection: &str, after: Option<&str>, limit: u32) -> Vec<(String, String)> {
        self.scans
            .push((collection.to_owned(), after.map(str::to_owned), limit));
        let Some(docs) = self.docs.get(collection) else {
            return Vec::new();
        };
        docs.iter()
            .filter(|(key, _)| after.is_none_or(|a| key.as_str() > a))
            .take(limit as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[test]
fn data_view_pages_customers_with_all_products() {
    let mut c = FakeCollections::default();
    for id in ["c1", "c2", "c3"] {
        c.put(
            "customers",
            id,
            json!({"id": id, "name": id.to_uppercase(), "email": null, "updatedAt": "t"}),
        );
    }
    c.put(
        "products",
        "p1",
        json!({"id": "p1", "name": "Laptop", "stock": 10, "updatedAt": "t"}),
    );
    c.put(
        "products",
        "p2",
        json!({"id": "p2", "name": null, "stock": 0, "updatedAt": "t"}),
    );

    let (items, next) = data_view(&mut c, None, 2).unwrap();
    let products = r#"[{"id":"p1","name":"Laptop","stock":10},{"id":"p2","name":null,"stock":0}]"#;
    assert_eq!(
        items,
        [
            format!(
                r#"{{"customer":{{"id":"c1","name":"C1","email":null}},"products":{products}}}"#
            ),
            format!(
                r#"{{"customer":{{"id":"c2","name":"C2","email":null}},"products":{products}}}"#
            ),
        ]
    );
    assert_eq!(next.as_deref(), Some("c2"));
    // One scan of customers, one of products (fewer than a chunk).
    assert_eq!(c.scans.len(), 2);

    let (items, next) = data_view(&mut c, next.as_deref(), 2).unwrap();
    assert_eq!(items.len(), 1);
    assert!(
        items[0].starts_with(r#"{"customer":{"id":"c3","#),
        "{}",
        items[0]
    );
    assert_eq!(next, None);

    // A full last page still yields a cursor; the page after it is empty.
    let (items, next) = data_view(&mut c, Some("c1"), 2).unwrap();
    assert_eq!((items.len(), next.as_deref()), (2, Some("c3")));
    assert_eq!(data_view(&mut c, Some("c3"), 2).unwrap(), (vec![], None));
}

#[test]
fn data_view_reads_products_in_chunks() {
    let mut c = FakeCollections::default();
    c.put(
        "customers",
        "c1",
        json!({"id": "c1", "name": "a", "email": "a@test.com"}),
    );
    for i in 0..1000 {
        let id = format!("p{i:04}");
        c.put("products", &id, json!({"id": id, "name": "n", "stock": i}));
    }
    let (items, next) = data_view(&mut c, None, 10).unwrap();
    assert_eq!(next, None);
    let item: Value = serde_json::from_str(&items[0]).unwrap();
    let products = item["products"].as_array().unwrap();
    assert_eq!(products.len(), 1000);
    assert_eq!(
        products[999],
        json!({"id": "p0999", "name": "n", "stock": 999})
    );
    let product_scans: Vec<_> = c.scans.iter().filter(|s| s.0 == "products").collect();
    assert_eq!(
        product_scans,
        [
            &("products".to_owned(), None, 500),
            &("products".to_owned(), Some("p0499".to_owned()), 500),
            &("products".to_owned(), Some("p0999".to_owned()), 500),
        ]
    );
}

#[test]
fn data_view_reports_unreadable_documents() {
    let mut c = FakeCollections::default();
    c.docs
        .entry("customers".to_owned())
        .or_default()
        .insert("c1".to_owned(), "not json".to_owned());
    let err = data_view(&mut c, None, 5).unwrap_err();
    assert!(
        err.starts_with("document customers/c1 is unreadable"),
        "{err}"
    );
}

#[test]
fn hashmap_state_round_trips() {
    let mut state = Mem::new();
    State::set(&mut state, "k", b"one");
    State::set(&mut state, "k", b"two");
    assert_eq!(State::get(&mut state, "k").as_deref(), Some(&b"two"[..]));
    State::delete(&mut state, "k");
    State::delete(&mut state, "k");
    assert_eq!(State::get(&mut state, "k"), None);
}
