//! What runs and what failed: the plugin list, the cluster, applied counts
//! per version, and each plugin's dead letters (list and replay).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{ApiError, AppState, ErrorBody, PageParams, blocking, storable};
use crate::config::Config;
use crate::dead_letters::DeadLetter;
use crate::plugins::registry::{LoadFailure, PluginStatus};

/// `GET /plugins`: what is loaded, and the files that failed to load.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginList {
    plugins: Vec<PluginEntry>,
    /// Files in the plugins folder that could not be loaded, and why.
    failed: Vec<LoadFailure>,
}

/// One loaded plugin.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginEntry {
    #[serde(flatten)]
    status: PluginStatus,
    /// Transformers only: the queue it consumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
}

#[utoipa::path(
    get,
    path = "/plugins",
    tag = "plugins",
    summary = "The loaded plugins and their counters",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Every loaded plugin, and the files that failed", body = PluginList)),
)]
pub(super) async fn plugins(State(s): State<AppState>) -> Json<PluginList> {
    let plugins = s
        .registry
        .status()
        .into_iter()
        .map(|status| PluginEntry {
            queue: (status.world == crate::plugins::TRANSFORMER_WORLD)
                .then(|| s.config.queue_name(&status.name)),
            status,
        })
        .collect();
    Json(PluginList {
        plugins,
        failed: s.registry.failures(),
    })
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    summary = "Prometheus metrics",
    description = "The Prometheus text exposition format (0.0.4): events, batches, plugin calls, \
        the broker, the store, HTTP requests, the process.",
    security((), ("bearer" = [])),
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)),
)]
pub(super) async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let store_file = match s.config.store_location() {
        Ok(crate::store::Location::Sqlite(dir)) => Some(dir.join(crate::store::sqlite::FILE)),
        _ => None,
    };
    let page = crate::metrics::render(&crate::metrics::Sources {
        registry: &s.registry,
        broker: &s.broker,
        store_health: &s.store_health,
        store_file,
        http: &s.http_metrics,
    });
    (
        [(
            header::CONTENT_TYPE,
            crate::metrics::exposition::CONTENT_TYPE,
        )],
        page,
    )
}

/// The hosts sharing the store: which are alive, what each runs.
#[utoipa::path(
    get,
    path = "/cluster",
    tag = "plugins",
    summary = "The hosts sharing the store",
    description = "`{\"this_host\": <id>, \"hosts\": [{\"id\", \"alive\", \"last_seen_ms\", \
        \"seen_ago_ms\", \"started_ms\", \"this_host\", \"plugins\"}]}`, most recently seen first.",
    security((), ("bearer" = [])),
    responses((status = 200, description = "The hosts seen lately", body = Object)),
)]
pub(super) async fn cluster(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let host = s.host_id.clone();
    let listing =
        s.db.call(move |db| crate::cluster::listing(db, &host))
            .await?;
    Ok(Json(listing))
}

/// `GET /plugins/{name}/versions`.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginVersions {
    name: String,
    /// The sha256 of the version loaded now; `null` when it is not loaded.
    current: Option<String>,
    versions: Vec<VersionCount>,
}

/// Events one version of a plugin applied.
#[derive(Serialize, ToSchema)]
pub(super) struct VersionCount {
    sha256: String,
    events_applied: u64,
}

/// The `{name}` of a plugin route.
fn plugin_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path?;
    storable("the plugin name", &name)?;
    Ok(name)
}

/// How many events each version of a plugin applied (by sha256), within
/// the deduplication retention window.
#[utoipa::path(
    get,
    path = "/plugins/{name}/versions",
    tag = "plugins",
    summary = "Events applied per version of a plugin",
    description = "How many events each version (by sha256) applied, within the deduplication \
        retention window.",
    params(("name" = String, Path, description = "The plugin", example = "merge")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The counts by version", body = PluginVersions),
        (status = 400, description = "A bad path", body = ErrorBody),
        (status = 404, description = "Neither loaded nor known to the store", body = ErrorBody),
    ),
)]
pub(super) async fn plugin_versions(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PluginVersions>, ApiError> {
    let plugin = plugin_name(path)?;
    let current = s.registry.get(&plugin).map(|p| p.current().sha256.clone());
    let name = plugin.clone();
    let counts = s.db.call(move |db| db.applied_by_version(&name)).await?;
    if current.is_none() && counts.is_empty() {
        return Err(ApiError::NotFound(format!("no plugin named {plugin:?}")));
    }
    let versions = counts
        .into_iter()
        .map(|(sha256, events_applied)| VersionCount {
            sha256,
            events_applied,
        })
        .collect();
    Ok(Json(PluginVersions {
        name: plugin,
        current,
        versions,
    }))
}

/// The broker connection the dead-letter routes share: opened on first
/// use, and again once it has closed.
#[derive(Default)]
pub struct AdminConnection(tokio::sync::Mutex<Option<Arc<lapin::Connection>>>);

/// Longest a dead-letter route waits on the broker. The work itself is not
/// cut short (a listing half done would hold its messages): it finishes on
/// its own.
const BROKER_WAIT: Duration = Duration::from_secs(10);

impl AdminConnection {
    async fn get(&self, config: &Config) -> Result<Arc<lapin::Connection>, ApiError> {
        let mut slot = self.0.lock().await;
        if let Some(open) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(Arc::clone(open));
        }
        let opened = crate::broker::connect(config, "switchyard admin")
            .await
            .map_err(|e| ApiError::Unavailable(crate::telemetry::error_chain(&e)))?;
        Ok(Arc::clone(slot.insert(Arc::new(opened))))
    }
}

/// Runs `work` on the shared admin connection of `s`, for a plugin that
/// must be known here; waits at most [`BROKER_WAIT`] for it.
pub(super) async fn on_broker<T, F>(
    s: &AppState,
    plugin: &str,
    work: impl FnOnce(Arc<lapin::Connection>, Arc<Config>, String) -> F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    if s.registry.get(plugin).is_none() {
        return Err(ApiError::NotFound(format!(
            "no plugin named {plugin:?} is loaded"
        )));
    }
    let connection = s.admin_broker.get(&s.config).await?;
    let running = tokio::spawn(work(connection, Arc::clone(&s.config), plugin.to_owned()));
    match tokio::time::timeout(BROKER_WAIT, running).await {
        Err(_) => Err(ApiError::Unavailable(format!(
            "the broker did not answer within {} s; try again later",
            BROKER_WAIT.as_secs()
        ))),
        Ok(Err(e)) => Err(ApiError::Internal(anyhow::anyhow!("worker failed: {e}"))),
        Ok(Ok(done)) => done.map_err(|e| ApiError::Unavailable(crate::telemetry::error_chain(&e))),
    }
}

/// `GET /plugins/{name}/dlq`.
#[derive(Serialize, ToSchema)]
pub(super) struct DeadLetterList {
    /// How many dead letters the plugin has.
    total: u64,
    /// The oldest of them, at most `limit`.
    items: Vec<DeadLetter>,
}

/// `GET /plugins/{name}/dlq?limit=`: the oldest dead letters, left in place.
#[utoipa::path(
    get,
    path = "/plugins/{name}/dlq",
    tag = "plugins",
    summary = "A plugin's dead letters",
    description = "The oldest dead letters of a loaded plugin, with their reasons, left in \
        place. `after` is ignored: this is the head of the queue.",
    params(("name" = String, Path, description = "A loaded plugin", example = "merge"), PageParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The head of the dead-letter queue", body = DeadLetterList),
        (status = 400, description = "A bad `limit` or path", body = ErrorBody),
        (status = 404, description = "No such plugin is loaded", body = ErrorBody),
        (status = 503, description = "The broker is unreachable or did not answer in time, or \
            the store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn list_dead_letters(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let plugin = plugin_name(path)?;
    let limit = params?.0.limit()?;
    if s.bus.is_some() {
        let (letters, total) = s.db.call(move |db| db.dead_letters(&plugin, limit)).await?;
        let items = letters.into_iter().map(Into::into).collect();
        return Ok(Json(DeadLetterList { total, items }));
    }
    let (items, total) = on_broker(&s, &plugin, move |connection, config, plugin| async move {
        crate::dead_letters::list(&connection, &config, &plugin, limit as usize).await
    })
    .await?;
    Ok(Json(DeadLetterList {
        total: total.into(),
        items,
    }))
}

/// `POST /plugins/{name}/dlq/replay`.
#[derive(Serialize, ToSchema)]
pub(super) struct Replayed {
    plugin: String,
    /// Dead letters sent back to the plugin.
    replayed: u64,
}

/// `POST /plugins/{name}/dlq/replay`: every dead letter back through the
/// plugin's current version.
#[utoipa::path(
    post,
    path = "/plugins/{name}/dlq/replay",
    tag = "plugins",
    summary = "Replay a plugin's dead letters",
    description = "Sends every dead letter of the plugin back through its current version.",
    params(("name" = String, Path, description = "A loaded plugin", example = "merge")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many were sent back", body = Replayed),
        (status = 400, description = "A bad path", body = ErrorBody),
        (status = 404, description = "No such plugin is loaded", body = ErrorBody),
        (status = 503, description = "The broker is unreachable or did not answer in time", body = ErrorBody),
    ),
)]
pub(super) async fn replay_dead_letters(
    State(s): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Replayed>, ApiError> {
    let plugin = plugin_name(path)?;
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
        return Ok(Json(Replayed { plugin, replayed }));
    }
    let replayed = on_broker(&s, &plugin, move |connection, config, plugin| async move {
        crate::dead_letters::replay(&connection, &config, &plugin).await
    })
    .await?;
    Ok(Json(Replayed {
        plugin,
        replayed: replayed.into(),
    }))
}
