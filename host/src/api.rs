//! The HTTP API (axum): health, the analytics read and write routes, the
//! document collections, plugin views and the plugin list. JSON everywhere;
//! every error is `{"error": "<what is wrong>"}`.
//!
//! The API knows no domain: `GET /analytics/data` is the `data` view of the
//! plugin that serves one, and `POST /analytics/data` is an `analytics.data`
//! event handed to the plugins subscribed to that key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::broker::BrokerStatus;
use crate::config::Config;
use crate::pipeline::{Incoming, Verdict, apply_events};
use crate::plugins::bindings::Event;
use crate::plugins::{PluginRegistry, PluginSlot};
use crate::store::{Store, now_ms};
use crate::topic;

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
    pub db: Arc<Store>,
    pub registry: Arc<PluginRegistry>,
    pub broker: Arc<BrokerStatus>,
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/analytics/data", get(data_view).post(post_data))
        .route("/analytics/collections/{name}", get(collection))
        .route("/analytics/collections/{name}/{key}", get(document))
        .route("/analytics/views/{plugin}/{view}", get(plugin_view))
        .route("/plugins", get(plugins))
        .route("/plugins/{name}/versions", get(plugin_versions))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Why a request failed; the only error type handlers return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// An axum extractor refused the request (bad JSON, too large...).
    #[error("{1}")]
    Rejected(StatusCode, String),
    /// A dependency (broker, store, a plugin) cannot serve it right now.
    #[error("{0}")]
    Unavailable(String),
    /// A plugin failed while serving the request.
    #[error("{0}")]
    Plugin(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Rejected(status, _) => *status,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Plugin(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::Rejected(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

/// Runs blocking work (store, plugins) off the reactor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("worker failed: {e}")))
}

/// `?limit=&after=`.
#[derive(Debug, Deserialize)]
struct PageParams {
    limit: Option<String>,
    after: Option<String>,
}

impl PageParams {
    fn limit(&self) -> Result<u32, ApiError> {
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

async fn health(State(s): State<AppState>) -> Response {
    let plugins = s.registry.all().len();
    let connections = s.broker.connections();
    let problem = match s.broker.get() {
        Err(reason) => Some(format!("broker not connected: {reason}")),
        Ok(()) if plugins == 0 => Some("no plugins loaded".to_owned()),
        Ok(()) => None,
    };
    match problem {
        None => Json(json!({ "status": "ok", "broker": "connected", "connections": connections, "plugins": plugins }))
            .into_response(),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": error, "plugins": plugins })),
        )
            .into_response(),
    }
}

async fn data_view(
    State(s): State<AppState>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Paged<Box<RawValue>>>, ApiError> {
    let plugin = s
        .registry
        .all()
        .into_iter()
        .find(|p| p.current().serves_view(DATA_VIEW))
        .ok_or_else(|| {
            ApiError::Unavailable(format!("no loaded plugin serves the view {DATA_VIEW:?}"))
        })?;
    serve_view(plugin, DATA_VIEW, params?.0).await
}

async fn plugin_view(
    State(s): State<AppState>,
    Path((plugin, view)): Path<(String, String)>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Paged<Box<RawValue>>>, ApiError> {
    let plugin = s
        .registry
        .get(&plugin)
        .ok_or_else(|| ApiError::NotFound(format!("no plugin named {plugin:?}")))?;
    if !plugin.current().serves_view(&view) {
        return Err(ApiError::NotFound(format!(
            "plugin {:?} has no view {view:?}",
            plugin.name
        )));
    }
    serve_view(plugin, &view, params?.0).await
}

async fn serve_view(
    plugin: Arc<PluginSlot>,
    view: &str,
    params: PageParams,
) -> Result<Json<Paged<Box<RawValue>>>, ApiError> {
    let limit = params.limit()?;
    let view = view.to_owned();
    let answer = blocking(move || {
        let version = plugin.current();
        let mut instance = version.instance();
        instance.sync_cache(plugin.state_generation());
        let result = instance.view(&view, params.after.as_deref(), limit);
        drop(instance);
        (plugin, result)
    })
    .await?;
    let (plugin, result) = answer;
    let page = result
        .map_err(|e| {
            ApiError::Plugin(format!(
                "plugin {} failed to serve the view: {e}",
                plugin.name
            ))
        })?
        .map_err(ApiError::BadRequest)?;
    let items = page
        .items
        .into_iter()
        .map(RawValue::from_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ApiError::Plugin(format!("plugin {} returned invalid JSON: {e}", plugin.name))
        })?;
    Ok(Json(Paged {
        items,
        next: page.next,
    }))
}

/// Makes event ids for API writes unique within this process's lifetime.
static API_EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

async fn post_data(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    if !body.is_object() {
        return Err(ApiError::BadRequest("body must be a JSON object".into()));
    }
    let plugins: Vec<Arc<PluginSlot>> = s
        .registry
        .all()
        .into_iter()
        .filter(|p| {
            p.current()
                .info
                .subscriptions
                .iter()
                .any(|b| topic::matches(b, ANALYTICS_DATA_KEY))
        })
        .collect();
    if plugins.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "no loaded plugin subscribes to {ANALYTICS_DATA_KEY:?}"
        )));
    }
    // A client that retries with the same Idempotency-Key is applied once.
    let id = match headers.get("idempotency-key") {
        Some(key) => match key.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 200 => format!("api/{key}"),
            _ => {
                return Err(ApiError::BadRequest(
                    "Idempotency-Key must be 1-200 visible ASCII characters".into(),
                ));
            }
        },
        None => format!(
            "api/{}-{}",
            now_ms(),
            API_EVENT_SEQ.fetch_add(1, Ordering::Relaxed)
        ),
    };
    let event = Event {
        id: id.clone(),
        routing_key: ANALYTICS_DATA_KEY.to_owned(),
        body: body.to_string(),
        received_at_ms: now_ms() as u64,
    };
    let mut applied = Vec::new();
    for plugin in plugins {
        let (db, event) = (Arc::clone(&s.db), event.clone());
        let (plugin, verdict, outbox) = blocking(move || {
            if db.applied_by(&plugin.name, &event.id)?.is_some() {
                return Ok::<_, anyhow::Error>((plugin, Verdict::Duplicate, Vec::new()));
            }
            let incoming = Incoming { event, hops: 0 };
            let version = plugin.current();
            let (mut verdicts, outbox) =
                apply_events(&plugin, &version, &db, std::slice::from_ref(&incoming));
            Ok((plugin, verdicts.remove(0), outbox))
        })
        .await??;
        if !outbox.is_empty() {
            plugin.note_outbox();
        }
        match verdict {
            Verdict::Applied | Verdict::Duplicate => applied.push(plugin.name.clone()),
            Verdict::DeadLetter(reason) => return Err(ApiError::BadRequest(reason)),
            Verdict::Retry(reason) => return Err(ApiError::Unavailable(reason)),
        }
    }
    Ok(Json(json!({ "eventId": id, "appliedBy": applied })))
}

async fn collection(
    State(s): State<AppState>,
    Path(name): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Paged<KeyedDocument>>, ApiError> {
    let params = params?.0;
    let limit = params.limit()?;
    let page = blocking(move || s.db.scan(&name, params.after.as_deref(), limit)).await??;
    let items = page
        .entries
        .into_iter()
        .map(|(key, doc)| KeyedDocument {
            key,
            document: stored_json(doc),
        })
        .collect();
    Ok(Json(Paged {
        items,
        next: page.next,
    }))
}

async fn document(
    State(s): State<AppState>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Box<RawValue>>, ApiError> {
    let (n, k) = (name.clone(), key.clone());
    let doc = blocking(move || s.db.document(&n, &k)).await??;
    let doc = doc
        .ok_or_else(|| ApiError::NotFound(format!("no document {key:?} in collection {name:?}")))?;
    Ok(Json(stored_json(doc)))
}

/// A page of any listing: `{"items": [...], "next": <cursor or null>}`.
#[derive(Serialize)]
struct Paged<T> {
    items: Vec<T>,
    next: Option<String>,
}

#[derive(Serialize)]
struct KeyedDocument {
    key: String,
    document: Box<RawValue>,
}

/// A stored document, served as it was written (field order kept). The
/// pipeline checked it is JSON before storing it.
fn stored_json(doc: String) -> Box<RawValue> {
    RawValue::from_string(doc).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored document is not JSON; serving null");
        RawValue::from_string("null".to_owned()).expect("null is JSON")
    })
}

async fn plugins(State(s): State<AppState>) -> Json<Value> {
    let plugins: Vec<Value> = s
        .registry
        .status()
        .into_iter()
        .map(|p| {
            let queue = s.config.queue_name(&p.name);
            let mut entry = serde_json::to_value(p).unwrap_or_default();
            entry["queue"] = Value::String(queue);
            entry
        })
        .collect();
    Json(json!({ "plugins": plugins, "failed": s.registry.failures() }))
}

/// How many events each version of a plugin applied (by sha256), within
/// the deduplication retention window.
async fn plugin_versions(
    State(s): State<AppState>,
    Path(plugin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let current = s.registry.get(&plugin).map(|p| p.current().sha256.clone());
    let db = Arc::clone(&s.db);
    let name = plugin.clone();
    let counts = blocking(move || db.applied_by_version(&name)).await??;
    if current.is_none() && counts.is_empty() {
        return Err(ApiError::NotFound(format!("no plugin named {plugin:?}")));
    }
    let versions: Vec<Value> = counts
        .into_iter()
        .map(|(sha256, applied)| json!({ "sha256": sha256, "events_applied": applied }))
        .collect();
    Ok(Json(
        json!({ "name": plugin, "current": current, "versions": versions }),
    ))
}
