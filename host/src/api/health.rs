//! `GET /health`: ok, or 503 with the reason (broker, store, alarm).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::store::now_ms;

/// A host that can take events: connected to its broker (or running the
/// embedded bus), its store answering, at least one plugin loaded.
#[derive(Serialize, ToSchema)]
pub(super) struct Healthy {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
    /// `connected` (RabbitMQ) or `embedded` (the in-process bus).
    #[schema(example = "connected")]
    broker: &'static str,
    /// Broker connections made since the host started (reconnects add
    /// one each); absent on the embedded bus.
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<u64>,
    /// Plugins loaded.
    plugins: usize,
}

/// A host that cannot take events now, and why.
#[derive(Serialize, ToSchema)]
pub(super) struct Unhealthy {
    /// Always `unavailable`.
    #[schema(example = "unavailable")]
    status: &'static str,
    /// What is wrong: the broker, the store, a broker alarm, no plugins.
    #[schema(example = "broker not connected: connection refused")]
    error: String,
    connections: u64,
    plugins: usize,
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    summary = "Whether the host can take events",
    description = "Always open, even with an API token and protected reads.",
    responses(
        (status = 200, description = "Ready", body = Healthy),
        (status = 503, description = "Not ready, and why", body = Unhealthy),
    ),
)]
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
        None => {
            let embedded = s.broker.is_embedded();
            Json(Healthy {
                status: "ok",
                broker: if embedded { "embedded" } else { "connected" },
                connections: (!embedded).then_some(connections),
                plugins,
            })
            .into_response()
        }
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Unhealthy {
                status: "unavailable",
                error,
                connections,
                plugins,
            }),
        )
            .into_response(),
    }
}
