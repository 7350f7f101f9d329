//! The HTTP API (axum): health, the analytics read and write routes, the
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

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::batch::{self, Incoming, Outcome};
use crate::broker::BrokerStatus;
use crate::config::{ApiToken, Config};
use crate::plugins::bindings::Event;
use crate::plugins::state_txn::StateTxn;
use crate::plugins::{PluginRegistry, PluginSlot};
use crate::store::{Store, StoreError, StoreHealth, now_ms};
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
    pub db: Store,
    pub store_health: Arc<StoreHealth>,
    /// This host's id among those sharing the store.
    pub host_id: String,
    pub registry: Arc<PluginRegistry>,
    pub broker: Arc<BrokerStatus>,
    /// Idempotency keys of the API writes in progress.
    pub writes_in_flight: Arc<InFlight>,
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
        .merge(reads)
        .merge(writes)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The routes that only read: open unless `protect_reads` is on.
fn read_routes() -> Router<AppState> {
    Router::new()
        .route("/analytics/data", get(data_view))
        .route("/analytics/collections/{name}", get(collection))
        .route("/analytics/collections/{name}/{key}", get(document))
        .route("/analytics/views/{plugin}/{view}", get(plugin_view))
        .route("/plugins", get(plugins))
        .route("/plugins/{name}/versions", get(plugin_versions))
        .route("/plugins/{name}/dlq", get(list_dead_letters))
        .route("/cluster", get(cluster))
}

/// The routes that change something, and admin routes: every one added here
/// needs the API token when one is set.
fn write_routes() -> Router<AppState> {
    Router::new()
        .route("/analytics/data", post(post_data))
        .route("/plugins/{name}/dlq/replay", post(replay_dead_letters))
}

/// The configured token, kept as its SHA-256 digest so that a presented
/// token is compared in time that does not depend on where they differ.
struct TokenCheck {
    digest: [u8; 32],
}

impl TokenCheck {
    fn new(token: &ApiToken) -> Self {
        Self {
            digest: Sha256::digest(token.expose().as_bytes()).into(),
        }
    }

    fn accepts(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        // No early exit: every byte is looked at whatever the others are.
        let difference = presented
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        difference == 0
    }
}

/// Lets the request through only with `Authorization: Bearer <the token>`.
async fn require_token(
    State(check): State<Arc<TokenCheck>>,
    request: Request,
    next: Next,
) -> Response {
    match bearer_token(request.headers()) {
        Err(e) => e.into_response(),
        Ok(presented) if !check.accepts(presented) => {
            ApiError::Unauthorized(Unauthorized::WrongToken).into_response()
        }
        Ok(_) => next.run(request).await,
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive), as bytes: it is only ever hashed.
fn bearer_token(headers: &HeaderMap) -> Result<&[u8], ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(Unauthorized::Missing))?
        .as_bytes();
    let malformed = ApiError::Unauthorized(Unauthorized::NotBearer);
    let space = value.iter().position(|&b| b == b' ').ok_or(malformed)?;
    let (scheme, token) = (&value[..space], value[space..].trim_ascii());
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() {
        return Err(ApiError::Unauthorized(Unauthorized::NotBearer));
    }
    Ok(token)
}

/// Why a request was not let through. The presented token is never shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    Missing,
    NotBearer,
    WrongToken,
}

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unauthorized::Missing => {
                "this route needs an API token: send the header Authorization: Bearer <token>"
            }
            Unauthorized::NotBearer => {
                "the Authorization header must be of the form: Bearer <token>"
            }
            Unauthorized::WrongToken => "the API token is wrong",
        })
    }
}

/// The idempotency keys of API writes under way, so that a retry which
/// arrives while its first attempt still runs is told so (409) instead of
/// racing it to the store.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<HashSet<String>>);

impl InFlight {
    /// Claims `key` until the returned guard is dropped; `None` if taken.
    fn claim(self: &Arc<Self>, key: &str) -> Option<InFlightKey> {
        let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(key.to_owned()).then(|| InFlightKey {
            set: Arc::clone(self),
            key: key.to_owned(),
        })
    }
}

struct InFlightKey {
    set: Arc<InFlight>,
    key: String,
}

impl Drop for InFlightKey {
    fn drop(&mut self) {
        let mut keys = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        keys.remove(&self.key);
    }
}

/// Why a request failed; the only error type handlers return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(Unauthorized),
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but at odds with an earlier request.
    #[error("{0}")]
    Unprocessable(String),
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
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Rejected(status, _) => *status,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Plugin(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if let ApiError::Unauthorized(why) = self {
            let challenge = match why {
                Unauthorized::WrongToken => r#"Bearer realm="switchyard", error="invalid_token""#,
                Unauthorized::Missing | Unauthorized::NotBearer => r#"Bearer realm="switchyard""#,
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// A store outage is a 503 (its details go to the log, not to the client);
/// anything else an internal error.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_outage() {
            tracing::warn!(error = %e, "request failed: the store is unavailable");
            ApiError::Unavailable("the store is unavailable; try again later".into())
        } else {
            ApiError::Internal(e.into())
        }
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

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::Rejected(r.status(), r.body_text())
    }
}

/// Runs blocking plugin work off the reactor (the store's own calls go
/// through [`Store::call`]).
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
    let problem = match (s.broker.get(), s.store_health.outage()) {
        (Err(reason), _) => Some(format!("broker not connected: {reason}")),
        (Ok(()), Some(outage)) => Some(format!(
            "{} (since {} ms ago)",
            outage.reason,
            now_ms() - outage.since_ms
        )),
        (Ok(()), None) => match s.broker.blocked_reason() {
            Some(reason) => Some(format!("broker blocked publishing: {reason}")),
            None if plugins == 0 => Some("no plugins loaded".to_owned()),
            None => None,
        },
    };
    match problem {
        None if s.broker.is_embedded() => Json(json!({ "status": "ok", "broker": "embedded", "plugins": plugins }))
            .into_response(),
        None => Json(json!({ "status": "ok", "broker": "connected", "connections": connections, "plugins": plugins }))
            .into_response(),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "error": error, "connections": connections, "plugins": plugins })),
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
    serve_view(&s.db, plugin, DATA_VIEW, params?.0).await
}

async fn plugin_view(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Paged<Box<RawValue>>>, ApiError> {
    let Path((plugin, view)) = path?;
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
    serve_view(&s.db, plugin, &view, params?.0).await
}

async fn serve_view(
    db: &Store,
    plugin: Arc<PluginSlot>,
    view: &str,
    params: PageParams,
) -> Result<Json<Paged<Box<RawValue>>>, ApiError> {
    let limit = params.limit()?;
    let (view, db) = (view.to_owned(), db.clone());
    let answer = blocking(move || {
        let version = plugin.current();
        // Read-only: the transaction only syncs the cache, and is dropped.
        let result = match StateTxn::begin(&plugin, &db, || version.transformer()) {
            Ok(Some(mut txn)) => Ok(txn.instance().view(&view, params.after.as_deref(), limit)),
            Ok(None) => Ok(Ok(Err(format!(
                "{} is a producer: it serves no views",
                plugin.name
            )))),
            Err(e) => Err(e),
        };
        (plugin, result)
    })
    .await?;
    let (plugin, result) = answer;
    let result = result?;
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
            let version = p.current();
            !version.is_producer()
                && version
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
    let key = match headers.get("idempotency-key") {
        Some(key) => match key.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 200 => Some(format!("api/{key}")),
            _ => {
                return Err(ApiError::BadRequest(
                    "Idempotency-Key must be 1-200 visible ASCII characters".into(),
                ));
            }
        },
        None => None,
    };
    let id = key.clone().unwrap_or_else(|| {
        format!(
            "api/{}-{}",
            now_ms(),
            API_EVENT_SEQ.fetch_add(1, Ordering::Relaxed)
        )
    });
    // Checking that the event is new and applying it are two steps: a retry
    // arriving in between would apply it a second time.
    let mut claim = s.writes_in_flight.claim(&id).ok_or_else(|| {
        ApiError::Conflict("a request with this Idempotency-Key is still being applied".into())
    })?;
    let body = body.to_string();
    if let Some(key) = &key {
        let (key, sha256) = (key.clone(), hex::encode(Sha256::digest(&body)));
        if !s
            .db
            .call(move |db| db.bind_idempotency_key(&key, &sha256))
            .await?
        {
            return Err(ApiError::Unprocessable(
                "this Idempotency-Key came earlier with another body: use a new key for a new request"
                    .into(),
            ));
        }
    }
    let event = Event {
        id: id.clone(),
        routing_key: ANALYTICS_DATA_KEY.to_owned(),
        body,
        received_at_ms: now_ms() as u64,
    };
    let mut applied = Vec::new();
    let mut failure = None;
    for plugin in plugins {
        let (db, event) = (s.db.clone(), event.clone());
        // The claim travels with the work: a client that hangs up does not
        // free the key while its write still runs.
        let (returned, plugin, processed) = blocking(move || {
            // The same core as a batch from the broker: skipped if this
            // plugin applied the id before.
            let version = plugin.current();
            let one = [Ok(Incoming { event, hops: 0 })];
            let processed = batch::process(&plugin, &version, &db, &one);
            (claim, plugin, processed)
        })
        .await?;
        claim = returned;
        let processed = match processed {
            Ok(processed) => {
                s.store_health.answered();
                processed
            }
            Err(e) => {
                s.store_health.failed(&e);
                failure = Some(ApiError::from(e));
                break;
            }
        };
        if !processed.outbox.is_empty() {
            plugin.note_outbox();
        }
        let outcome = processed.outcomes.into_iter().next();
        match outcome.expect("one outcome per event") {
            Outcome::Applied | Outcome::Duplicate => applied.push(plugin.name.clone()),
            Outcome::DeadLetter(reason) => {
                failure = Some(ApiError::BadRequest(reason));
                break;
            }
            Outcome::Retry(reason) => {
                failure = Some(ApiError::Unavailable(reason));
                break;
            }
        }
    }
    if let Some(failure) = failure {
        // Nothing changed: the key may come again with a corrected body.
        if let Some(key) = key.filter(|_| applied.is_empty()) {
            s.db.call(move |db| db.unbind_idempotency_key(&key)).await?;
        }
        return Err(failure);
    }
    Ok(Json(json!({ "eventId": id, "appliedBy": applied })))
}

async fn collection(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Paged<KeyedDocument>>, ApiError> {
    let Path(name) = name?;
    let params = params?.0;
    let limit = params.limit()?;
    let page =
        s.db.call(move |db| db.scan(&name, params.after.as_deref(), limit))
            .await?;
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
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Box<RawValue>>, ApiError> {
    let Path((name, key)) = path?;
    let (n, k) = (name.clone(), key.clone());
    let doc = s.db.call(move |db| db.document(&n, &k)).await?;
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
            let queue = (p.world == crate::plugins::TRANSFORMER_WORLD)
                .then(|| s.config.queue_name(&p.name));
            let mut entry = serde_json::to_value(p).unwrap_or_default();
            if let Some(queue) = queue {
                entry["queue"] = Value::String(queue);
            }
            entry
        })
        .collect();
    Json(json!({ "plugins": plugins, "failed": s.registry.failures() }))
}

/// The hosts sharing the store: which are alive, what each runs.
async fn cluster(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let host = s.host_id.clone();
    let listing =
        s.db.call(move |db| crate::cluster::listing(db, &host))
            .await?;
    Ok(Json(listing))
}

/// How many events each version of a plugin applied (by sha256), within
/// the deduplication retention window.
async fn plugin_versions(
    State(s): State<AppState>,
    Path(plugin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let current = s.registry.get(&plugin).map(|p| p.current().sha256.clone());
    let name = plugin.clone();
    let counts = s.db.call(move |db| db.applied_by_version(&name)).await?;
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

/// A connection for an admin request on a plugin's dead letters; the
/// plugin must be known here (loaded, or with applied events on record).
async fn dead_letter_connection(s: &AppState, plugin: &str) -> Result<lapin::Connection, ApiError> {
    if s.registry.get(plugin).is_none() {
        return Err(ApiError::NotFound(format!(
            "no plugin named {plugin:?} is loaded"
        )));
    }
    crate::broker::connect(&s.config, "switchyard admin")
        .await
        .map_err(|e| ApiError::Unavailable(crate::telemetry::error_chain(&e)))
}

/// `GET /plugins/{name}/dlq?limit=`: the oldest dead letters, left in place.
async fn list_dead_letters(
    State(s): State<AppState>,
    Path(plugin): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let limit = params?.0.limit()?;
    if s.bus.is_some() {
        let (letters, total) = s.db.call(move |db| db.dead_letters(&plugin, limit)).await?;
        let items: Vec<crate::dead_letters::DeadLetter> =
            letters.into_iter().map(Into::into).collect();
        return Ok(Json(json!({ "total": total, "items": items })));
    }
    let connection = dead_letter_connection(&s, &plugin).await?;
    let listed = crate::dead_letters::list(&connection, &s.config, &plugin, limit as usize).await;
    let _ = connection.close(200, "bye".into()).await;
    let (items, total) =
        listed.map_err(|e| ApiError::Unavailable(crate::telemetry::error_chain(&e)))?;
    Ok(Json(json!({ "total": total, "items": items })))
}

/// `POST /plugins/{name}/dlq/replay`: every dead letter back through the
/// plugin's current version.
async fn replay_dead_letters(
    State(s): State<AppState>,
    Path(plugin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(bus) = &s.bus {
        if s.registry.get(&plugin).is_none() {
            return Err(ApiError::NotFound(format!(
                "no plugin named {plugin:?} is loaded"
            )));
        }
        let (bus, name) = (Arc::clone(bus), plugin.clone());
        let replayed = blocking(move || bus.replay(&name))
            .await?
            .map_err(|e| ApiError::Unavailable(crate::telemetry::error_chain(&e)))?;
        return Ok(Json(json!({ "plugin": plugin, "replayed": replayed })));
    }
    let connection = dead_letter_connection(&s, &plugin).await?;
    let replayed = crate::dead_letters::replay(&connection, &s.config, &plugin).await;
    let _ = connection.close(200, "bye".into()).await;
    let replayed =
        replayed.map_err(|e| ApiError::Unavailable(crate::telemetry::error_chain(&e)))?;
    Ok(Json(json!({ "plugin": plugin, "replayed": replayed })))
}
