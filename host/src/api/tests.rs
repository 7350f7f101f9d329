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
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {bytes:?}"));
    (status, headers, json)
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
async fn an_event_id_is_checked_and_may_hold_slashes_and_unicode() {
    let (app, _dir) = app(&["--api-token", "s3cret", "--protect-reads"]).await;
    let token = Some("Bearer s3cret");
    let (status, _, _) = call(&app, Method::GET, "/events/e1", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a protected read");
    for missing in ["/events", "/events/"] {
        let (status, _, body) = call(&app, Method::GET, missing, token, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{missing}");
        assert!(error(&body).starts_with("no eventId"), "{body}");
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
    for (uri, id) in [
        ("/events/e1%2Fmerge%2F0", "e1/merge/0"),
        ("/events/e1/merge/0", "e1/merge/0"),
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
