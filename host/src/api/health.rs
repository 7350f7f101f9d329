//! `GET /health`: ok, or 503 with the reason (broker, store, alarm).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::store::now_ms;

pub(super) async fn health(State(s): State<AppState>) -> Response {
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
