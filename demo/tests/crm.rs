//! The CRM over real HTTP on loopback: list, read, add, change, health, and
//! 4xx JSON answers for bad bodies.

mod common;

use common::{assert_refused, client, json, start};
use reqwest::StatusCode;
use serde_json::json;
use switchyard_demo::clock::parse_millis;
use switchyard_demo::{Customer, Table, crm_router, sample_customers};

async fn crm() -> String {
    start(crm_router(sample_customers())).await
}

#[tokio::test]
async fn lists_the_sample_customers() {
    let base = crm().await;
    let (status, body) = json(
        client()
            .get(format!("{base}/customers"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let customers = body.as_array().unwrap();
    let ids: Vec<_> = customers
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3", "c4", "c5"]);
    for c in customers {
        let mut fields: Vec<_> = c.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["email", "id", "name", "updatedAt"], "{c}");
        assert!(c["email"].as_str().unwrap().contains('@'));
        assert!(
            parse_millis(c["updatedAt"].as_str().unwrap()).is_some(),
            "{c}"
        );
    }
    let (status, one) = json(
        client()
            .get(format!("{base}/customers/c3"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, customers[2]);
}

#[tokio::test]
async fn the_data_file_loads_as_the_binary_would() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/customers.json");
    let loaded = Table::<Customer>::load(path.as_ref()).unwrap();
    assert_eq!(loaded.list(), sample_customers().list());
}

#[tokio::test]
async fn unknown_customer_is_404_json() {
    let base = crm().await;
    let response = client()
        .get(format!("{base}/customers/c99"))
        .send()
        .await
        .unwrap();
    assert_refused(response, StatusCode::NOT_FOUND, "c99").await;
    let response = client()
        .get(format!("{base}/nothing"))
        .send()
        .await
        .unwrap();
    assert_refused(response, StatusCode::NOT_FOUND, "no such route").await;
}

#[tokio::test]
async fn adds_a_customer_with_the_next_id() {
    let base = crm().await;
    let before = parse_millis("2026-11-24T08:20:00Z").unwrap();
    let response = client()
        .post(format!("{base}/customers"))
        .json(&json!({"name": "Farah Haddad", "email": "farah@example.com"}))
        .send()
        .await
        .unwrap();
    let (status, added) = json(response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(added["id"], "c6");
    assert_eq!(added["name"], "Farah Haddad");
    assert!(parse_millis(added["updatedAt"].as_str().unwrap()).unwrap() > before);

    let (_, list) = json(
        client()
            .get(format!("{base}/customers"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 6);
    assert_eq!(list[5], added);

    let response = client()
        .post(format!("{base}/customers"))
        .json(&json!({"id": "vip-1", "name": "Gus", "email": "gus@example.com"}))
        .send()
        .await
        .unwrap();
    let (status, added) = json(response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(added["id"], "vip-1");
}

#[tokio::test]
async fn posting_an_existing_id_changes_it() {
    let customers = sample_customers();
    let base = start(crm_router(customers.clone())).await;
    let old = customers.get("c1").unwrap();
    let response = client()
        .post(format!("{base}/customers"))
        .json(&json!({"id": "c1", "name": "Ana Lima-Souza", "email": "ana@example.com"}))
        .send()
        .await
        .unwrap();
    let (status, changed) = json(response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(changed["name"], "Ana Lima-Souza");
    assert_eq!(changed["email"], "ana@example.com");
    let stamp = changed["updatedAt"].as_str().unwrap();
    assert!(parse_millis(stamp) > parse_millis(&old.updated_at));

    // Changed in place: same count, same position, and the router shares
    // its table with whoever built it.
    let list = customers.list();
    assert_eq!(list.len(), 5);
    assert_eq!(list[0].name, "Ana Lima-Souza");
    assert_eq!(list[0].updated_at, stamp);
}

#[tokio::test]
async fn health_is_ok() {
    let base = crm().await;
    let (status, body) = json(client().get(format!("{base}/health")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn bad_bodies_get_4xx_json() {
    let base = crm().await;
    let url = format!("{base}/customers");
    let post = |body: &'static str| {
        client()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
    };
    let cases = [
        (r#"{"name": "Ann""#, StatusCode::BAD_REQUEST, "JSON"),
        (
            r#"{"name": "Ann"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            r#"{"name": "Ann", "email": "a@b.c", "vip": true}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "vip",
        ),
        (
            r#"{"name": "Ann", "email": 7}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            r#"{"name": " ", "email": "a@b.c"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            r#"{"name": "Ann", "email": "not an address"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            r#"{"id": "a/b", "name": "Ann", "email": "a@b.c"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "id",
        ),
    ];
    for (body, status, needle) in cases {
        assert_refused(post(body).send().await.unwrap(), status, needle).await;
    }
    let no_content_type = client()
        .post(&url)
        .body(r#"{"name":"Ann","email":"a@b.c"}"#);
    assert_refused(
        no_content_type.send().await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    )
    .await;

    // Nothing was added by any of them.
    let (_, list) = json(client().get(&url).send().await.unwrap()).await;
    assert_eq!(list.as_array().unwrap().len(), 5);
}
