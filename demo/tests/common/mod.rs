//! Shared by the demo's integration tests: start an upstream on a free
//! loopback port, talk to it over real HTTP.

use axum::Router;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

/// Serves `router` on 127.0.0.1, on a port the system picks, for the rest of
/// the test; returns its base URL.
pub async fn start(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(switchyard_demo::serve(
        listener,
        router,
        std::future::pending(),
    ));
    base
}

pub fn client() -> Client {
    Client::new()
}

/// The status and JSON body of `response`.
pub async fn json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

/// Asserts a refusal: `status` and a non-empty `{"error": "..."}` body that
/// mentions `needle`.
pub async fn assert_refused(response: Response, status: StatusCode, needle: &str) {
    let (got, body) = json(response).await;
    assert_eq!(got, status, "{body}");
    let error = body["error"].as_str().expect("an error message");
    assert!(
        error.contains(needle),
        "{error:?} should mention {needle:?}"
    );
}
