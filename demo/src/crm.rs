//! The demo CRM: customers over REST, the upstream the `crm-producer`
//! plugin polls (port 8001 by default).
//!
//! | route | answer |
//! |---|---|
//! | `GET /customers` | 200, every customer, in the order they were added |
//! | `GET /customers/{id}` | 200 the customer, 404 `{"error"}` |
//! | `POST /customers` `{"id"?, "name", "email"}` | 201 the stored customer: added (with the next free id `c<n>` when none is given) or, for an id that exists, changed; `updatedAt` is now |
//! | `GET /health` | 200 `{"status":"ok"}` |
//!
//! A customer is `{"id", "name", "email", "updatedAt"}`; a bad body gets a
//! 4xx `{"error"}` (see [`crate::error`]).

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::ApiError;
use crate::table::{Record, Table};

/// One CRM customer, as `GET /customers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub email: String,
    /// When it last changed, `2026-11-24T08:00:00.000Z`; may be left out of
    /// a data file (then the load time).
    #[serde(default)]
    pub updated_at: String,
}

impl Record for Customer {
    const KIND: &'static str = "customer";
    const ID_PREFIX: &'static str = "c";

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
        let well_formed = self.email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        }) && !self.email.contains(char::is_whitespace);
        if !well_formed {
            return Err(format!("email {:?} is not an address", self.email));
        }
        Ok(())
    }
}

/// The body of `POST /customers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    id: Option<String>,
    name: String,
    email: String,
}

/// The sample customers of `demo/data/customers.json`, built in.
pub fn sample_customers() -> Table<Customer> {
    Table::from_json(include_str!("../data/customers.json"))
        .expect("demo/data/customers.json is valid (checked by the tests)")
}

/// The CRM's routes over `customers`.
pub fn crm_router(customers: Table<Customer>) -> Router {
    Router::new()
        .route("/customers", get(crate::list::<Customer>).post(store))
        .route("/customers/{id}", get(crate::one::<Customer>))
        .route("/health", get(crate::health))
        .fallback(crate::no_route)
        .with_state(customers)
}

async fn store(
    State(customers): State<Table<Customer>>,
    body: Result<Json<NewCustomer>, JsonRejection>,
) -> Result<(StatusCode, Json<Customer>), ApiError> {
    let Json(body) = body?;
    let customer = Customer {
        id: String::new(),
        name: body.name,
        email: body.email,
        updated_at: String::new(),
    };
    let (stored, added) = customers
        .put(body.id, customer)
        .map_err(ApiError::invalid)?;
    info!(id = %stored.id, added, "customer stored");
    Ok((StatusCode::CREATED, Json(stored)))
}
