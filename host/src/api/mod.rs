//! The HTTP API (axum): the router and what every route shares. Health, the analytics read and write routes, the
//! document collections, plugin views and the plugin list. JSON everywhere;
//! every error is `{"error": "<what is wrong>"}`, and a malformed request is
//! a 4xx, never a 5xx.
//!
//! Access: with an API token configured, the write and admin routes (one
//! sub-router, [`write_routes`]) need `Authorization: Bearer <token>`; the
//! read routes ([`read_routes`]) too when `protect_reads` is on. `/health`
//! is always open.
//!
//! The API knows no domain: `GET /analytics/data` is the `data` view of the
//! plugin that serves one, and `POST /analytics/data` is an `analytics.data`
//! event handed to the plugins subscribed to that key.

mod admin;
mod auth;
mod documents;
mod error;
mod events;
mod health;
mod views;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::broker::BrokerStatus;
use crate::config::Config;
use crate::plugins::PluginRegistry;
use crate::store::{Store, StoreHealth};

pub use admin::AdminConnection;
pub use auth::Unauthorized;
pub use error::ApiError;
pub use write::InFlight;

use admin::{cluster, list_dead_letters, plugin_versions, plugins, replay_dead_letters};
use auth::{TokenCheck, require_token};
use documents::{collection, collections, document};
use health::health;
use views::{data_view, plugin_view};
use write::post_data;

/// The routing key of events made from `POST /analytics/data` bodies.
pub const ANALYTICS_DATA_KEY: &str = "analytics.data";
/// The view served as `GET /analytics/data`.
pub const DATA_VIEW: &str = "data";

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Store,
    pub store_health: Arc<StoreHealth>,
    /// This host's id among those sharing the store.
    pub host_id: String,
    pub registry: Arc<PluginRegistry>,
    pub broker: Arc<BrokerStatus>,
    /// Idempotency keys of the API writes in progress.
    pub writes_in_flight: Arc<InFlight>,
    /// HTTP requests counted for `/metrics`.
    pub http_metrics: Arc<crate::metrics::HttpMetrics>,
    /// The broker connection of the dead-letter routes.
    pub admin_broker: Arc<AdminConnection>,
    /// The embedded bus, when there is no broker.
    pub bus: Option<Arc<crate::embedded::EmbeddedBus>>,
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let mut reads = read_routes();
    let mut writes = write_routes();
    if let Some(token) = state.config.auth_token() {
        let check = Arc::new(TokenCheck::new(token));
        writes = writes.route_layer(middleware::from_fn_with_state(
            Arc::clone(&check),
            require_token,
        ));
        if state.config.protect_reads {
            reads = reads.route_layer(middleware::from_fn_with_state(check, require_token));
        }
    }
    Router::new()
        .route("/health", get(health))
        .merge(crate::console::routes())
        .merge(reads)
        .merge(writes)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            Duration::from_secs(state.config.request_timeout_secs),
            time_limit,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.http_metrics),
            crate::metrics::count_requests,
        ))
        .with_state(state)
}

/// Answers 503 to a request still unanswered after `limit`; what it had
/// handed to the store or a plugin finishes on its own.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "no answer within {} s (SWITCHYARD_REQUEST_TIMEOUT_SECS); try again later",
            limit.as_secs()
        ))
        .into_response(),
    }
}

/// The routes that only read: open unless `protect_reads` is on.
fn read_routes() -> Router<AppState> {
    Router::new()
        .route("/analytics/data", get(data_view))
        .route("/analytics/collections", get(collections))
        .route("/analytics/collections/{name}", get(collection))
        .route("/analytics/collections/{name}/{key}", get(document))
        .route("/analytics/views/{plugin}/{view}", get(plugin_view))
        .route("/plugins", get(plugins))
        .route("/plugins/{name}/versions", get(plugin_versions))
        .route("/plugins/{name}/dlq", get(list_dead_letters))
        .route("/cluster", get(cluster))
        .route("/events", get(events::no_event_id))
        .route("/events/", get(events::no_event_id))
        .route("/events/{*event_id}", get(events::event_journey))
        .route("/metrics", get(admin::metrics))
}

/// The routes that change something, and admin routes: every one added here
/// needs the API token when one is set.
fn write_routes() -> Router<AppState> {
    Router::new()
        .route("/analytics/data", post(post_data))
        .route("/plugins/{name}/dlq/replay", post(replay_dead_letters))
}

/// Runs blocking plugin work off the reactor (the store's own calls go
/// through [`Store::call`]).
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("worker failed: {e}")))
}

/// `?limit=&after=`.
#[derive(Debug, Deserialize)]
pub(super) struct PageParams {
    pub(super) limit: Option<String>,
    pub(super) after: Option<String>,
}

impl PageParams {
    pub(super) fn limit(&self) -> Result<u32, ApiError> {
        match self.limit.as_deref() {
            None => Ok(DEFAULT_PAGE),
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "limit must be an integer from 1 to {MAX_PAGE}, got {raw:?}"
                ))),
            },
        }
    }
}

/// A page of any listing: `{"items": [...], "next": <cursor or null>}`.
#[derive(Serialize)]
pub(super) struct Paged<T> {
    pub(super) items: Vec<T>,
    pub(super) next: Option<String>,
}

#[cfg(test)]
mod tests;
