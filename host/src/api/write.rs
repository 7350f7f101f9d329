//! The write path: `POST /analytics/data` as an event through the same
//! batch core as the broker's, once per Idempotency-Key.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ANALYTICS_DATA_KEY, ApiError, AppState, ErrorBody, blocking};
use crate::batch::{self, Incoming, Outcome};
use crate::plugins::PluginSlot;
use crate::plugins::bindings::Event;
use crate::store::now_ms;
use crate::topic;

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

/// Makes event ids for API writes unique within this process's lifetime.
static API_EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// What `POST /analytics/data` answers once every subscribed plugin took
/// the event.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Written {
    /// The event's id: `api/<Idempotency-Key>`, or one made up.
    #[schema(example = "api/order-42")]
    event_id: String,
    /// The plugins that applied it (or had applied it before).
    #[schema(example = json!(["merge"]))]
    applied_by: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/analytics/data",
    tag = "data",
    summary = "Hand a JSON object to the plugins as an event",
    description = "The body becomes an event with routing key `analytics.data`, run through \
        every loaded plugin subscribed to it like an event from the broker, and committed \
        before the answer. With an `Idempotency-Key`, a retry is applied once.",
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200,
            description = "Makes a retry of the same body apply once; 1-200 visible ASCII characters",
            example = "order-42"),
    ),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "Any JSON object: what it must hold is up to the plugins (the merge plugin \
            takes a customer and their products)",
        example = json!({"customer": {"id": "c1", "name": "ann", "email": "ann@test.com"},
            "products": [{"id": "p1", "name": "Laptop", "stock": 3}]}),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Applied by every subscribed plugin", body = Written),
        (status = 400, description = "Not JSON, not an object, a bad Idempotency-Key, or a \
            plugin rejected the event (the reason)", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is still being applied", body = ErrorBody),
        (status = 413, description = "The body is over the size limit (`SWITCHYARD_MAX_BODY_BYTES`)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "This Idempotency-Key came earlier with another body", body = ErrorBody),
        (status = 503, description = "No loaded plugin subscribes to `analytics.data`, a plugin \
            asked to retry later, the store is unavailable, or no answer within the time limit",
            body = ErrorBody),
    ),
)]
pub(super) async fn post_data(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Written>, ApiError> {
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
    Ok(Json(Written {
        event_id: id,
        applied_by: applied,
    }))
}
