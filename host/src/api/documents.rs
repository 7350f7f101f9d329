//! The document collections: `GET /analytics/collections` (their names),
//! `GET /analytics/collections/{name}` and
//! `GET /analytics/collections/{name}/{key}`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{ApiError, AppState, ErrorBody, PageParams, Paged, storable};

/// `GET /analytics/collections`: every collection that holds a document,
/// with how many it holds: `{"collections": [{"name", "documents"}]}`.
#[utoipa::path(
    get,
    path = "/analytics/collections",
    tag = "data",
    summary = "The document collections",
    description = "Every collection that holds a document, by name (byte order), with how many \
        it holds: `{\"collections\": [{\"name\", \"documents\"}]}`.",
    security((), ("bearer" = [])),
    responses((status = 200, description = "The collections", body = Object)),
)]
pub(super) async fn collections(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let listed = s.db.call(|db| db.collections()).await?;
    let collections: Vec<Value> = listed
        .into_iter()
        .map(|(name, documents)| json!({ "name": name, "documents": documents }))
        .collect();
    Ok(Json(json!({ "collections": collections })))
}

#[utoipa::path(
    get,
    path = "/analytics/collections/{name}",
    tag = "data",
    summary = "A document collection",
    description = "The documents of a collection in key order, a page at a time. A collection \
        nobody wrote to is empty.",
    params(
        ("name" = String, Path, description = "The collection", example = "customers"),
        PageParams,
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of the collection", body = CollectionPage),
        (status = 400, description = "A bad `limit` or path", body = ErrorBody),
    ),
)]
pub(super) async fn collection(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Paged<KeyedDocument>>, ApiError> {
    let Path(name) = name?;
    storable("the collection name", &name)?;
    let params = params?.0;
    let limit = params.limit()?;
    let after = params.after()?.map(str::to_owned);
    let page =
        s.db.call(move |db| db.scan(&name, after.as_deref(), limit))
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

#[utoipa::path(
    get,
    path = "/analytics/collections/{name}/{key}",
    tag = "data",
    summary = "One document",
    description = "A document as its plugin wrote it (field order kept).",
    params(
        ("name" = String, Path, description = "The collection", example = "customers"),
        ("key" = String, Path, description = "The document's key", example = "c1"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The document", body = serde_json::Value),
        (status = 400, description = "A bad path", body = ErrorBody),
        (status = 404, description = "No such document in the collection", body = ErrorBody),
    ),
)]
pub(super) async fn document(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Box<RawValue>>, ApiError> {
    let Path((name, key)) = path?;
    storable("the collection name", &name)?;
    storable("the key", &key)?;
    let (n, k) = (name.clone(), key.clone());
    let doc = s.db.call(move |db| db.document(&n, &k)).await?;
    let doc = doc
        .ok_or_else(|| ApiError::NotFound(format!("no document {key:?} in collection {name:?}")))?;
    Ok(Json(stored_json(doc)))
}

/// One document of a collection and its key.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct KeyedDocument {
    key: String,
    /// The document as its plugin wrote it.
    #[schema(value_type = serde_json::Value)]
    document: Box<RawValue>,
}

/// A page of a collection, as the OpenAPI document describes it (served as
/// [`Paged`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct CollectionPage {
    items: Vec<KeyedDocument>,
    /// The cursor of the next page (`?after=`), `null` on the last.
    next: Option<String>,
}

/// A stored document, served as it was written (field order kept). The
/// pipeline checked it is JSON before storing it.
pub(super) fn stored_json(doc: String) -> Box<RawValue> {
    RawValue::from_string(doc).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored document is not JSON; serving null");
        RawValue::from_string("null".to_owned()).expect("null is JSON")
    })
}
