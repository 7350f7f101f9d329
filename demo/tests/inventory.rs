//! The inventory over real HTTP on loopback: list, read, add, change stock,
//! health, and 4xx JSON answers for bad bodies.

mod common;

use common::{assert_refused, client, json, start};
use reqwest::StatusCode;
use serde_json::json;
use switchyard_demo::clock::parse_millis;
use switchyard_demo::{Product, Table, inventory_router, sample_products};

async fn inventory() -> String {
    start(inventory_router(sample_products())).await
}

#[tokio::test]
async fn lists_the_sample_products() {
    let base = inventory().await;
    let (status, body) = json(
        client()
            .get(format!("{base}/products"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let products = body.as_array().unwrap();
    let ids: Vec<_> = products.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["p1", "p2", "p3", "p4", "p5", "p6"]);
    for p in products {
        let mut fields: Vec<_> = p.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["id", "name", "stock", "updatedAt"], "{p}");
        assert!(p["stock"].is_u64(), "{p}");
        assert!(
            parse_millis(p["updatedAt"].as_str().unwrap()).is_some(),
            "{p}"
        );
    }
    let (status, one) = json(
        client()
            .get(format!("{base}/products/p2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, products[1]);
}

#[tokio::test]
async fn the_data_file_loads_as_the_binary_would() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/products.json");
    let loaded = Table::<Product>::load(path.as_ref()).unwrap();
    assert_eq!(loaded.list(), sample_products().list());
}

#[tokio::test]
async fn changes_stock() {
    let products = sample_products();
    let base = start(inventory_router(products.clone())).await;
    let old = products.get("p5").unwrap();
    let response = client()
        .put(format!("{base}/products/p5/stock"))
        .json(&json!({"stock": 25}))
        .send()
        .await
        .unwrap();
    let (status, changed) = json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changed["stock"], 25);
    assert_eq!(changed["name"], old.name);
    assert!(parse_millis(changed["updatedAt"].as_str().unwrap()) > parse_millis(&old.updated_at));
    let (_, read) = json(
        client()
            .get(format!("{base}/products/p5"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(read, changed);

    let response = client()
        .put(format!("{base}/products/p99/stock"))
        .json(&json!({"stock": 1}))
        .send()
        .await
        .unwrap();
    assert_refused(response, StatusCode::NOT_FOUND, "p99").await;
}

#[tokio::test]
async fn adds_and_replaces_products() {
    let base = inventory().await;
    let response = client()
        .post(format!("{base}/products"))
        .json(&json!({"name": "Webcam", "stock": 9}))
        .send()
        .await
        .unwrap();
    let (status, added) = json(response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(added["id"], "p7");
    assert_eq!(added["stock"], 9);

    let response = client()
        .post(format!("{base}/products"))
        .json(&json!({"id": "p1", "name": "Laptop 15\"", "stock": 0}))
        .send()
        .await
        .unwrap();
    let (status, changed) = json(response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(changed["name"], "Laptop 15\"");
    assert_eq!(changed["stock"], 0);

    let (_, list) = json(
        client()
            .get(format!("{base}/products"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 7);
    assert_eq!(list[0], changed);
    assert_eq!(list[6], added);
}

#[tokio::test]
async fn health_is_ok() {
    let base = inventory().await;
    let (status, body) = json(client().get(format!("{base}/health")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn bad_bodies_get_4xx_json() {
    let base = inventory().await;
    let send = |method: reqwest::Method, path: &str, body: &'static str| {
        client()
            .request(method, format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
    };
    let (post, put) = (reqwest::Method::POST, reqwest::Method::PUT);
    let cases = [
        (
            &put,
            "/products/p1/stock",
            "{",
            StatusCode::BAD_REQUEST,
            "JSON",
        ),
        (
            &put,
            "/products/p1/stock",
            r#"{"stock": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            ">= 0",
        ),
        (
            &put,
            "/products/p1/stock",
            r#"{"stock": 1.5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "stock",
        ),
        (
            &put,
            "/products/p1/stock",
            r#"{"stock": "3"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "stock",
        ),
        (
            &put,
            "/products/p1/stock",
            r#"{}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "stock",
        ),
        (
            &post,
            "/products",
            r#"{"name": "Webcam"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "stock",
        ),
        (
            &post,
            "/products",
            r#"{"name": "", "stock": 1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            &post,
            "/products",
            r#"{"name": "W", "stock": -4}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            ">= 0",
        ),
        (
            &post,
            "/products",
            r#"{"name": "W", "stock": 1, "price": 3}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "price",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let response = send(method.clone(), path, body).send().await.unwrap();
        assert_refused(response, status, needle).await;
    }

    // Nothing changed.
    let (_, list) = json(
        client()
            .get(format!("{base}/products"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 6);
    assert_eq!(list[0]["stock"], 12);
}
