//! What runs and what failed: the plugin list, the cluster, applied counts
//! per version, and each plugin's dead letters (list and replay).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, AppState, PageParams, blocking};
use crate::config::Config;

pub(super) async fn plugins(State(s): State<AppState>) -> Json<Value> {
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

/// `GET /metrics`: Prometheus text.
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
pub(super) async fn cluster(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let host = s.host_id.clone();
    let listing =
        s.db.call(move |db| crate::cluster::listing(db, &host))
            .await?;
    Ok(Json(listing))
}

/// How many events each version of a plugin applied (by sha256), within
/// the deduplication retention window.
pub(super) async fn plugin_versions(
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

/// `GET /plugins/{name}/dlq?limit=`: the oldest dead letters, left in place.
pub(super) async fn list_dead_letters(
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
    let (items, total) = on_broker(&s, &plugin, move |connection, config, plugin| async move {
        crate::dead_letters::list(&connection, &config, &plugin, limit as usize).await
    })
    .await?;
    Ok(Json(json!({ "total": total, "items": items })))
}

/// `POST /plugins/{name}/dlq/replay`: every dead letter back through the
/// plugin's current version.
pub(super) async fn replay_dead_letters(
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
    let replayed = on_broker(&s, &plugin, move |connection, config, plugin| async move {
        crate::dead_letters::replay(&connection, &config, &plugin).await
    })
    .await?;
    Ok(Json(json!({ "plugin": plugin, "replayed": replayed })))
}
