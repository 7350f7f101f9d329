//! The document collections: `GET /analytics/collections` (their names),
//! `GET /analytics/collections/{name}` and
//! `GET /analytics/collections/{name}/{key}`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{ApiError, AppState, PageParams, Paged};

/// `GET /analytics/collections`: every collection that holds a document,
/// with how many it holds: `{"collections": [{"name", "documents"}]}`.
pub(super) async fn collections(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let listed = s.db.call(|db| db.collections()).await?;
    let collections: Vec<Value> = listed
        .into_iter()
        .map(|(name, documents)| json!({ "name": name, "documents": documents }))
        .collect();
    Ok(Json(json!({ "collections": collections })))
}

pub(super) async fn collection(
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

pub(super) async fn document(
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

#[derive(Serialize)]
pub(super) struct KeyedDocument {
    key: String,
    document: Box<RawValue>,
}

/// A stored document, served as it was written (field order kept). The
/// pipeline checked it is JSON before storing it.
pub(super) fn stored_json(doc: String) -> Box<RawValue> {
    RawValue::from_string(doc).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored document is not JSON; serving null");
        RawValue::from_string("null".to_owned()).expect("null is JSON")
    })
}
