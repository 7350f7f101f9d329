//! The OpenAPI 3.1 document of the API, `GET /openapi.json`: made from the
//! `#[utoipa::path]` annotation of each handler as the router registers it
//! (see [`super::router`]), plus what the shared layers add to every route
//! (the request time limit, the token check).

use std::sync::Arc;

use axum::extract::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

use super::error::ErrorBody;

/// The name of the bearer security scheme in the document; annotations
/// write it as a literal: `security(("bearer" = []))`.
const BEARER: &str = "bearer";

/// What every operation gets from the document's top: title, version, the
/// bearer scheme, the error schema.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Switchyard",
        description = "The HTTP API of a Switchyard host: health, the plugins' views and \
            document collections, the write route that hands a body to the plugins as an \
            event, and the plugins' status and dead letters.\n\n\
            Every error is `{\"error\": \"<what is wrong>\"}`. With an API token configured \
            (`SWITCHYARD_API_TOKEN`), the operations marked with the `bearer` scheme alone \
            need `Authorization: Bearer <token>`; the others (marked optional) need it too \
            when `SWITCHYARD_PROTECT_READS` is on. `/health` and `/openapi.json` are always open.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
)]
pub(super) struct Top;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The API token (`SWITCHYARD_API_TOKEN`), when one is configured.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds to every operation the answers of the layers in front of all
/// routes: 414 and 431 from the HTTP server (a request line or headers
/// over its limits, answered before any route), 503 when the request time
/// limit passes, and 401 where the operation may need the token.
pub(super) fn finish(mut doc: OpenApi) -> OpenApi {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_layer_answers(operation);
        }
    }
    doc
}

fn add_layer_answers(operation: &mut Operation) {
    let error = || {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build()
    };
    let answers = &mut operation.responses.responses;
    for (status, what) in [
        ("414", "The URI is over the HTTP server's limit (no body)"),
        (
            "431",
            "The headers are over the HTTP server's limit (no body)",
        ),
    ] {
        answers
            .entry(status.into())
            .or_insert_with(|| ResponseBuilder::new().description(what).build().into());
    }
    answers.entry("503".into()).or_insert_with(|| {
        ResponseBuilder::new()
            .description(
                "Unavailable: no answer within the request time limit \
                 (`SWITCHYARD_REQUEST_TIMEOUT_SECS`), or what the route needs (the store, \
                 the broker, a plugin) cannot serve it now; try again later",
            )
            .content("application/json", error())
            .build()
            .into()
    });
    let may_need_token = operation
        .security
        .iter()
        .flatten()
        .any(|requirement| *requirement != SecurityRequirement::default());
    if may_need_token {
        answers.entry("401".into()).or_insert_with(|| {
            ResponseBuilder::new()
                .description(
                    "The API token is missing, malformed or wrong \
                     (with a `WWW-Authenticate: Bearer` challenge)",
                )
                .content("application/json", error())
                .build()
                .into()
        });
    }
}

/// The document as served, made once when the router is built.
#[derive(Clone)]
pub(super) struct Document(pub(super) Arc<str>);

impl Document {
    pub(super) fn new(doc: &OpenApi) -> Self {
        // Serialising plain data to a string cannot fail.
        let json = doc.to_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document does not serialise");
            "{}".to_owned()
        });
        Self(json.into())
    }
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    summary = "This document",
    description = "The OpenAPI 3.1 description of every route, generated from the code. \
        Always open.",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
pub(super) async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
        .into_response()
}
