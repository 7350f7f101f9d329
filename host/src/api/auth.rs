//! Who may call what: the bearer token check in front of the write and
//! admin routes (and the reads when they are protected).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::config::ApiToken;

/// The configured token, kept as its SHA-256 digest so that a presented
/// token is compared in time that does not depend on where they differ.
pub(super) struct TokenCheck {
    digest: [u8; 32],
}

impl TokenCheck {
    pub(super) fn new(token: &ApiToken) -> Self {
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
pub(super) async fn require_token(
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
