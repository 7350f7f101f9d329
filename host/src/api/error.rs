//! The API's one error type and its answer: a status and `{"error": ...}`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Unauthorized;
use crate::store::StoreError;

/// Every error answer of the API, whatever its status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "limit must be an integer from 1 to 1000, got \"0\""}))]
pub struct ErrorBody {
    /// What is wrong, for a person to read.
    pub error: String,
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
        let body = ErrorBody {
            error: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
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
