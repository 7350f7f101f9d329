//! The HTTP API (axum): the router and what every route shares. Health, the analytics read and write routes, the
//! document collections, plugin views and the plugin list. JSON everywhere;
//! every error is `{"error": "<what is wrong>"}`, and a malformed request is
//! a 4xx, never a 5xx.
//!
//! Every route is registered with its OpenAPI description (`#[utoipa::path]`
//! on the handler, `routes!` here), so `GET /openapi.json` ([`openapi`])
//! lists exactly what the router serves; a router test checks it.
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
mod openapi;
mod views;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::broker::BrokerStatus;
use crate::config::Config;
use crate::plugins::PluginRegistry;
use crate::store::{Store, StoreHealth};

pub use admin::AdminConnection;
pub use auth::Unauthorized;
pub use error::{ApiError, ErrorBody};
pub use write::InFlight;

use auth::{TokenCheck, require_token};

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
    let (routes, document) = OpenApiRouter::with_openapi(openapi::Top::openapi())
        .routes(routes!(health::health))
        .routes(routes!(openapi::openapi_json))
        .merge(crate::console::routes())
        .merge(reads)
        .merge(writes)
        .split_for_parts();
    let document = openapi::Document::new(&openapi::finish(document));
    routes
        .layer(Extension(document))
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

/// The routes that only read: open unless `protect_reads` is on. A route
/// is added as `.routes(routes!(handler))`, the handler carrying its
/// `#[utoipa::path(get, path = ..., security((), ("bearer" = [])), ...)]`.
fn read_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(views::data_view))
        .routes(routes!(documents::collections))
        .routes(routes!(documents::collection))
        .routes(routes!(documents::document))
        .routes(routes!(views::plugin_view))
        .routes(routes!(admin::plugins))
        .routes(routes!(admin::plugin_versions))
        .routes(routes!(admin::list_dead_letters))
        .routes(routes!(admin::cluster))
        .routes(routes!(events::event_journey))
        .routes(routes!(admin::metrics))
}

/// The routes that change something, and admin routes: every one added here
/// needs the API token when one is set (its annotation says
/// `security(("bearer" = []))`).
fn write_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(write::post_data))
        .routes(routes!(admin::replay_dead_letters))
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

/// `?limit=&after=`. Both are read as text so that a bad value is told
/// apart from a missing one (and answered 400 with the reason).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageParams {
    /// How many items at most (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(super) limit: Option<String>,
    /// The `next` cursor of the previous page; absent for the first page.
    pub(super) after: Option<String>,
}

impl PageParams {
    /// The cursor, if any.
    pub(super) fn after(&self) -> Result<Option<&str>, ApiError> {
        self.after
            .as_deref()
            .map(|after| storable("after", after))
            .transpose()
    }

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

/// `value` if the store can hold it: PostgreSQL refuses NUL in text, so a
/// name, key or cursor with one is a bad request rather than a store error.
pub(super) fn storable<'a>(what: &str, value: &'a str) -> Result<&'a str, ApiError> {
    if value.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "{what} must not contain NUL characters"
        )));
    }
    Ok(value)
}

/// A page of any listing: `{"items": [...], "next": <cursor or null>}`.
/// (Its OpenAPI schemas are [`ViewPage`] and [`documents::CollectionPage`].)
#[derive(Serialize)]
pub(super) struct Paged<T> {
    pub(super) items: Vec<T>,
    pub(super) next: Option<String>,
}

/// A page of a plugin's view, as the OpenAPI document describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ViewPage {
    /// The view's items, JSON as the plugin made them.
    items: Vec<serde_json::Value>,
    /// The cursor of the next page (`?after=`), `null` on the last.
    next: Option<String>,
}

#[cfg(test)]
mod tests;
