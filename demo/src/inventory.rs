//! The demo inventory: products and their stock over REST, the upstream the
//! `inventory-producer` plugin polls (port 8002 by default).
//!
//! | route | answer |
//! |---|---|
//! | `GET /products` | 200, every product, in the order they were added |
//! | `GET /products/{id}` | 200 the product, 404 `{"error"}` |
//! | `PUT /products/{id}/stock` `{"stock"}` | 200 the product with that stock; `updatedAt` is now; 404 |
//! | `POST /products` `{"id"?, "name", "stock"}` | 201 the stored product: added (with the next free id `p<n>` when none is given) or, for an id that exists, changed; `updatedAt` is now |
//! | `GET /health` | 200 `{"status":"ok"}` |
//!
//! A product is `{"id", "name", "stock", "updatedAt"}` with `stock` an
//! integer >= 0; a bad body gets a 4xx `{"error"}` (see [`crate::error`]).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::ApiError;
use crate::table::{Record, Table};

/// One product, as `GET /products` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub stock: u64,
    /// When it last changed, `2026-11-24T08:00:00.000Z`; may be left out of
    /// a data file (then the load time).
    #[serde(default)]
    pub updated_at: String,
}

impl Record for Product {
    const KIND: &'static str = "product";
    const ID_PREFIX: &'static str = "p";

    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
    fn updated_at(&self) -> &str {
        &self.updated_at
    }
    fn set_updated_at(&mut self, instant: String) {
        self.updated_at = instant;
    }
    fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        Ok(())
    }
}

/// The body of `POST /products`. `stock` is signed here so that a negative
/// one gets a clear message rather than serde's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProduct {
    id: Option<String>,
    name: String,
    stock: i64,
}

/// The body of `PUT /products/{id}/stock`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StockChange {
    stock: i64,
}

fn stock(n: i64) -> Result<u64, ApiError> {
    u64::try_from(n)
        .map_err(|_| ApiError::invalid(format!("stock must be an integer >= 0, not {n}")))
}

/// The sample products of `demo/data/products.json`, built in.
pub fn sample_products() -> Table<Product> {
    Table::from_json(include_str!("../data/products.json"))
        .expect("demo/data/products.json is valid (checked by the tests)")
}

/// The inventory's routes over `products`.
pub fn inventory_router(products: Table<Product>) -> Router {
    Router::new()
        .route("/products", get(crate::list::<Product>).post(store))
        .route("/products/{id}", get(crate::one::<Product>))
        .route("/products/{id}/stock", put(set_stock))
        .route("/health", get(crate::health))
        .fallback(crate::no_route)
        .with_state(products)
}

async fn set_stock(
    State(products): State<Table<Product>>,
    Path(id): Path<String>,
    body: Result<Json<StockChange>, JsonRejection>,
) -> Result<Json<Product>, ApiError> {
    let Json(body) = body?;
    let new_stock = stock(body.stock)?;
    let product = products
        .update(&id, |p| p.stock = new_stock)
        .ok_or_else(|| ApiError::not_found(format!("no product {id:?}")))?;
    info!(id = %product.id, stock = product.stock, "stock changed");
    Ok(Json(product))
}

async fn store(
    State(products): State<Table<Product>>,
    body: Result<Json<NewProduct>, JsonRejection>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let Json(body) = body?;
    let product = Product {
        id: String::new(),
        name: body.name,
        stock: stock(body.stock)?,
        updated_at: String::new(),
    };
    let (stored, added) = products.put(body.id, product).map_err(ApiError::invalid)?;
    info!(id = %stored.id, stock = stored.stock, added, "product stored");
    Ok((StatusCode::CREATED, Json(stored)))
}
