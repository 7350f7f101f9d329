//! The plugins' read-side views: `GET /analytics/data` and
//! `GET /analytics/views/{plugin}/{view}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde_json::value::RawValue;

use super::{ApiError, AppState, DATA_VIEW, ErrorBody, PageParams, Paged, ViewPage, blocking};
use crate::plugins::PluginSlot;
use crate::plugins::state_txn::StateTxn;
use crate::store::Store;

#[utoipa::path(
    get,
    path = "/analytics/data",
    tag = "data",
    summary = "The `data` view",
    description = "The view named `data` of the first loaded plugin that serves one, a page at \
        a time. The items are JSON as the plugin made them.",
    params(PageParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of the view", body = ViewPage),
        (status = 400, description = "A bad `limit`, or a cursor the plugin refuses", body = ErrorBody),
        (status = 502, description = "The plugin failed to serve the view", body = ErrorBody),
        (status = 503, description = "No loaded plugin serves the view `data`, the store is \
            unavailable, or no answer within the time limit", body = ErrorBody),
    ),
)]
pub(super) async fn data_view(
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

#[utoipa::path(
    get,
    path = "/analytics/views/{plugin}/{view}",
    tag = "data",
    summary = "A plugin's view",
    description = "The view `view` of the plugin `plugin`, a page at a time. The items are JSON \
        as the plugin made them.",
    params(
        ("plugin" = String, Path, description = "A loaded plugin's name", example = "merge"),
        ("view" = String, Path, description = "One of the plugin's views (`GET /plugins` lists them)", example = "data"),
        PageParams,
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of the view", body = ViewPage),
        (status = 400, description = "A bad `limit` or path, or a cursor the plugin refuses", body = ErrorBody),
        (status = 404, description = "No such plugin, or it has no such view", body = ErrorBody),
        (status = 502, description = "The plugin failed to serve the view", body = ErrorBody),
    ),
)]
pub(super) async fn plugin_view(
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
    let after = params.after()?.map(str::to_owned);
    let (view, db) = (view.to_owned(), db.clone());
    let answer = blocking(move || {
        let version = plugin.current();
        // Read-only: the transaction only syncs the cache, and is dropped.
        let result = match StateTxn::begin(&plugin, &db, || version.transformer()) {
            Ok(Some(mut txn)) => Ok(txn.instance().view(&view, after.as_deref(), limit)),
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
