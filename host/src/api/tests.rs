//! The router without a broker: status codes, the `{"error"}` shape and the
//! token rules, through `router()` with `oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use super::{AppState, router};
use crate::broker::BrokerStatus;
use crate::config::Config;
use crate::plugins::access::Access;
use crate::plugins::{PluginEngine, PluginRegistry};
use crate::store::{Location, Store, StoreHealth};

/// A router over an empty embedded store, no plugins, no broker.
async fn app(args: &[&str]) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_args(args).unwrap();
    let db = Store::open(&Location::Sqlite(dir.path().to_owned()))
        .await
        .unwrap();
    let engine = PluginEngine::new(
        db.clone(),
        config.plugin_timeout(),
        64 << 20,
        None,
        Access::default(),
    )
    .unwrap();
    let registry = Arc::new(PluginRegistry::new(engine, dir.path()));
    let state = AppState {
        config: Arc::new(config),
        db,
        store_health: Arc::new(StoreHealth::default()),
        host_id: "test".into(),
        registry,
        broker: Arc::new(BrokerStatus::default()),
        writes_in_flight: Default::default(),
        admin_broker: Default::default(),
        http_metrics: Default::default(),
        bus: None,
    };
    (router(state), dir)
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let (status, headers, bytes) = call_raw(app, method, uri, auth, body).await;
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {bytes:?}"));
    (status, headers, json)
}

/// Like [`call`], the body left as bytes.
async fn call_raw(
    app: &axum::Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, axum::body::Bytes) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, bytes)
}

fn error(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {body}"))
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let (app, _dir) = app(&[]).await;
    let (status, _, body) = call(&app, Method::GET, "/nope", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&body), "no such route");
    let (status, _, body) = call(&app, Method::DELETE, "/plugins", None, "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(error(&body).contains("method"), "{body}");
}

#[tokio::test]
async fn health_says_why_it_is_unavailable() {
    let (app, _dir) = app(&[]).await;
    let (status, _, body) = call(&app, Method::GET, "/health", None, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(error(&body).starts_with("broker not connected"), "{body}");
    assert_eq!(body["plugins"], 0);
}

#[tokio::test]
async fn collections_page_and_refuse_bad_limits() {
    let (app, _dir) = app(&[]).await;
    let (status, _, body) = call(
        &app,
        Method::GET,
        "/analytics/collections/c?limit=5",
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"items": [], "next": null}));
    for bad in ["0", "1001", "-1", "ten", "1e3"] {
        let uri = format!("/analytics/collections/c?limit={bad}");
        let (status, _, body) = call(&app, Method::GET, &uri, None, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            error(&body).contains("limit must be an integer from 1 to 1000"),
            "{body}"
        );
    }
    let (status, _, body) = call(
        &app,
        Method::GET,
        "/analytics/collections/c/%E2%9C%93",
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error(&body).contains("\"✓\""), "{body}");
}

#[tokio::test]
async fn writes_need_the_token_and_bodies_are_checked_first() {
    let (app, _dir) = app(&["--api-token", "s3cret"]).await;
    let (status, headers, body) = call(&app, Method::POST, "/analytics/data", None, "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error(&body).contains("Authorization: Bearer"), "{body}");
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        r#"Bearer realm="switchyard""#
    );
    let (status, headers, _) = call(
        &app,
        Method::POST,
        "/analytics/data",
        Some("Bearer wrong"),
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/analytics/data",
        Some("Basic czNjcmV0"),
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let token = Some("bearer s3cret");
    let (status, _, body) = call(&app, Method::POST, "/analytics/data", token, "{\"a\":").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = call(&app, Method::POST, "/analytics/data", token, "[1,2]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body), "body must be a JSON object");
    // Well-formed, but nothing here takes it: said so, not a 5xx.
    let (status, _, body) = call(&app, Method::POST, "/analytics/data", token, "{}").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        error(&body).contains("no loaded plugin subscribes"),
        "{body}"
    );
    // Reads stay open unless protected.
    let (status, _, _) = call(&app, Method::GET, "/plugins", None, "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn protected_reads_need_the_token_but_health_does_not() {
    let (app, _dir) = app(&["--api-token", "s3cret", "--protect-reads"]).await;
    let (status, _, _) = call(&app, Method::GET, "/plugins", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(&app, Method::GET, "/plugins", Some("Bearer s3cret"), "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&app, Method::GET, "/health", None, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn dead_letter_routes_name_an_unknown_plugin_without_a_broker() {
    let (app, _dir) = app(&[]).await;
    let (status, _, body) = call(&app, Method::GET, "/plugins/ghost/dlq", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error(&body).contains("\"ghost\""), "{body}");
}

/// The routes the router serves, read from axum's `Debug` of its path
/// router (`RouteId(n): "/path"`): axum offers no other listing.
fn served_paths(app: &axum::Router) -> std::collections::BTreeSet<String> {
    let debug = format!("{app:?}");
    let start = debug
        .find("path_router:")
        .expect("axum's Router Debug shows its path_router");
    let end = debug[start..]
        .find("fallback_router:")
        .map_or(debug.len(), |n| start + n);
    let routes = &debug[start..end];
    let paths: std::collections::BTreeSet<String> = routes
        .split("RouteId(")
        .skip(1)
        .filter_map(|entry| {
            let quoted = entry.split_once("): \"")?.1;
            Some(quoted.split('"').next()?.to_owned())
        })
        .collect();
    assert!(
        paths.contains("/health"),
        "could not read the routes from axum's Debug output: {routes}"
    );
    paths
}

/// `/a/{x}/b` with every `{param}` given a value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A GET answered with its raw body (the console's files are not JSON).
async fn get_raw(
    app: &axum::Router,
    uri: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().uri(uri);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

#[tokio::test]
async fn the_console_is_served_open_with_a_strict_policy_even_when_reads_are_protected() {
    let (app, _dir) = app(&["--api-token", "s3cret", "--protect-reads"]).await;
    let (status, headers, page) = get_raw(&app, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        String::from_utf8(page)
            .unwrap()
            .contains("/console/console.js")
    );
    // An unchanged file costs a 304.
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, _, body) = get_raw(&app, "/", Some(&etag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    let (status, _, _) = get_raw(&app, "/", Some("\"something else\"")).await;
    assert_eq!(status, StatusCode::OK);
    for (file, kind) in [
        ("console.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
        ("index.html", "text/html; charset=utf-8"),
    ] {
        let (status, headers, body) = get_raw(&app, &format!("/console/{file}"), None).await;
        assert_eq!(status, StatusCode::OK, "{file}");
        assert_eq!(headers[header::CONTENT_TYPE], kind, "{file}");
        assert!(!body.is_empty(), "{file}");
    }
    // What is not a console file is a JSON 404, wherever it points.
    for uri in [
        "/console/nope.js",
        "/console/..%2FCargo.toml",
        "/console/",
        "/console/%00",
    ] {
        let (status, _, body) = call(&app, Method::GET, uri, None, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(error(&body).contains("no "), "{uri}: {body}");
    }
    let (status, _, _) = call(&app, Method::POST, "/", None, "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // The data the page reads stays behind the token.
    let (status, _, _) = call(&app, Method::GET, "/analytics/collections", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_collections_of_an_empty_store_are_an_empty_list() {
    let (app, _dir) = app(&[]).await;
    let (status, _, body) = call(&app, Method::GET, "/analytics/collections", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({ "collections": [] }));
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_and_methods_the_router_serves() {
    let (app, _dir) = app(&[]).await;
    let (status, headers, doc) = call(&app, Method::GET, "/openapi.json", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let documented = doc["paths"].as_object().unwrap();

    let served = served_paths(&app);
    let listed: std::collections::BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(
        served, listed,
        "every route the router serves is in /openapi.json and nothing else: \
         register routes as `.routes(routes!(handler))` with a `#[utoipa::path]` on the handler"
    );

    // Method by method: the router takes exactly the documented ones.
    for (path, item) in documented {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let operation = &item[method.as_str().to_lowercase()];
            let (status, headers, bytes) =
                call_raw(&app, method.clone(), &concrete(path), None, "{}").await;
            let kind = headers[header::CONTENT_TYPE].to_str().unwrap();
            let body: Value = if kind == "application/json" {
                serde_json::from_slice(&bytes).unwrap()
            } else {
                Value::Null
            };
            if operation.is_null() {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {body}"
                );
                continue;
            }
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(body["error"], "no such route", "{method} {path}");
            let answers = operation["responses"].as_object().unwrap();
            let answer = answers.get(status.as_str()).unwrap_or_else(|| {
                panic!(
                    "{method} {path} answered {status}, not in its documented answers {:?}: {body}",
                    answers.keys().collect::<Vec<_>>()
                )
            });
            let media_type = kind.split(';').next().unwrap();
            assert!(
                answer["content"].get(media_type).is_some(),
                "{method} {path} {status}: {kind} is not documented: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn every_operation_documents_its_errors_and_who_may_call_it() {
    let (app, _dir) = app(&[]).await;
    let (_, _, doc) = call(&app, Method::GET, "/openapi.json", None, "").await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        serde_json::json!({"type": "http", "scheme": "bearer", "description": "The API token (`SWITCHYARD_API_TOKEN`), when one is configured."})
    );
    let error_schema = serde_json::json!({"$ref": "#/components/schemas/ErrorBody"});
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            let answers = operation["responses"].as_object().unwrap();
            for (status, answer) in answers {
                if matches!(status.as_str(), "414" | "431") {
                    // The HTTP server's own refusals, before any route.
                    assert!(answer.get("content").is_none(), "{what} {status}");
                } else if status.starts_with('4') || (status.starts_with('5') && path != "/health")
                {
                    assert_eq!(
                        answer["content"]["application/json"]["schema"], error_schema,
                        "{what} {status}"
                    );
                }
            }
            assert!(answers.contains_key("503"), "{what}: the time limit");
            let security = operation["security"].as_array();
            match (path.as_str(), method.as_str()) {
                ("/health" | "/openapi.json" | "/" | "/console/{file}", _) => {
                    assert!(security.is_none(), "{what} is open")
                }
                (_, "get") => {
                    // Open unless reads are protected: the token is optional.
                    assert_eq!(
                        operation["security"],
                        serde_json::json!([{}, {"bearer": []}]),
                        "{what}"
                    );
                    assert!(answers.contains_key("401"), "{what}");
                }
                _ => {
                    assert_eq!(
                        operation["security"],
                        serde_json::json!([{"bearer": []}]),
                        "{what}"
                    );
                    assert!(answers.contains_key("401"), "{what}");
                }
            }
        }
    }
    assert_eq!(
        doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["text/plain"]
    );
}

/// Found by schemathesis on PostgreSQL, which refuses NUL in text: a name,
/// key or cursor holding one is a 400 on every backend, never a store error.
#[tokio::test]
async fn nul_in_names_keys_and_cursors_is_a_bad_request() {
    let (app, _dir) = app(&[]).await;
    for uri in [
        "/analytics/collections/a%00b",
        "/analytics/collections/c?after=x%00",
        "/analytics/collections/c/k%00",
        "/analytics/collections/%00/k",
        "/plugins/%00/versions",
        "/plugins/m%00/dlq",
    ] {
        let (status, _, body) = call(&app, Method::GET, uri, None, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(
            error(&body).contains("must not contain NUL"),
            "{uri}: {body}"
        );
    }
}

#[tokio::test]
async fn an_event_id_is_checked_and_may_hold_encoded_slashes_and_unicode() {
    let (app, _dir) = app(&["--api-token", "s3cret", "--protect-reads"]).await;
    let token = Some("Bearer s3cret");
    let (status, _, _) = call(&app, Method::GET, "/events/e1", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a protected read");
    for missing in ["/events", "/events/"] {
        let (status, _, body) = call(&app, Method::GET, missing, token, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert!(!error(&body).is_empty(), "{body}");
    }
    let long = format!("/events/{}", "%C3%A9".repeat(513));
    let (status, _, body) = call(&app, Method::GET, &long, token, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error(&body).contains("1026 bytes long, over the limit of 1024"),
        "{body}"
    );
    let (status, _, body) = call(&app, Method::GET, "/events/%FF%FE", token, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not UTF-8: {body}");
    // A published event's id holds `/`: one path segment, percent-encoded.
    let (status, _, _) = call(&app, Method::GET, "/events/e1/merge/0", token, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "raw slashes are other paths");
    for (uri, id) in [
        ("/events/e1%2Fmerge%2F0", "e1/merge/0"),
        ("/events/%E2%9C%93%20x", "✓ x"),
        ("/events/a%3Fb%23c", "a?b#c"),
    ] {
        let (status, _, body) = call(&app, Method::GET, uri, token, "").await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(
            body,
            serde_json::json!({"eventId": id, "plugins": [], "published": [], "complete": true})
        );
    }
}
