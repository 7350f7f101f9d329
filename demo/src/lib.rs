//! Demo upstream systems for Switchyard: a CRM (customers, port 8001) and an
//! inventory (products and stock, port 8002), small REST APIs for the
//! producer plugins to poll in the compose stack and in tests.
//!
//! Map of the crate:
//! - [`crm`], the CRM's routes and [`Customer`];
//! - [`inventory`], the inventory's routes and [`Product`];
//! - [`table`], the records of one upstream, in memory, loaded from a JSON
//!   file: a restart returns to the file's data (fine for a demo);
//! - [`clock`], the ISO-8601 UTC `updatedAt` instants (with milliseconds);
//! - [`error`], the `{"error": "..."}` answer of every refused request.
//!
//! To run one inside a test, on a free port:
//!
//! ```ignore
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let crm = format!("http://{}", listener.local_addr()?);
//! let customers = switchyard_demo::sample_customers();
//! let router = switchyard_demo::crm_router(customers.clone());
//! tokio::spawn(switchyard_demo::serve(listener, router, std::future::pending()));
//! ```

pub mod clock;
pub mod crm;
pub mod error;
pub mod inventory;
pub mod table;

use axum::extract::{Path, State};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use table::Record;

pub use crm::{Customer, crm_router, sample_customers};
pub use error::ApiError;
pub use inventory::{Product, inventory_router, sample_products};
pub use table::Table;

/// Serves `router` on `listener` until `shutdown` completes, then finishes
/// the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `GET /health` of both upstreams: they are up when they answer.
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /customers`, `GET /products`: every record, in the order added.
async fn list<R: Record>(State(table): State<Table<R>>) -> Json<Vec<R>> {
    Json(table.list())
}

/// `GET /customers/{id}`, `GET /products/{id}`.
async fn one<R: Record>(
    State(table): State<Table<R>>,
    Path(id): Path<String>,
) -> Result<Json<R>, ApiError> {
    table
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no {} {id:?}", R::KIND)))
}

/// Any other path.
async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}
