//! API security: the bearer token on the write routes (and on the reads
//! with `protect_reads`), idempotent retries that race, malformed requests
//! answered with a JSON 4xx, and generated requests thrown at a running
//! host, none of which may get a 5xx.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::TestHost;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "sy-test-token-7c1e9a4d";

/// A request header, as bytes: some tests send values that are not UTF-8.
type Header<'a> = (&'a str, &'a [u8]);

const JSON_TYPE: Header = ("content-type", b"application/json");

/// An answer of the API: status, headers and the body as JSON (or `Null`).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON error text in {}: {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

async fn call(
    host: &TestHost,
    method: &str,
    path: &str,
    headers: &[Header<'_>],
    body: impl Into<Vec<u8>>,
) -> Answer {
    let body = body.into();
    if body.len() > 64 * 1024 {
        return call_expecting_continue(host, method, path, headers, &body).await;
    }
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = host.http.request(method, format!("{}{path}", host.base));
    for (name, value) in headers {
        request = request.header(*name, HeaderValue::from_bytes(value).unwrap());
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// A request with a large body sent as curl sends one: `Expect:
/// 100-continue`, and the body only once the server asks for it. A server
/// that answers before reading (401, 413) gets no body at all, so the
/// client never races the server closing the connection (writing into a
/// closed connection fails the client with a broken pipe, now and then).
async fn call_expecting_continue(
    host: &TestHost,
    method: &str,
    path: &str,
    headers: &[Header<'_>],
    body: &[u8],
) -> Answer {
    let authority = host.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-length: {}\r\n\
         expect: 100-continue\r\nconnection: close\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    stream.write_all(&head).await.unwrap();
    let mut received = Vec::new();
    let (mut status, mut headers, mut at) = read_head(&mut stream, &mut received, 0).await;
    if status == 100 {
        stream.write_all(body).await.unwrap();
        (status, headers, at) = read_head(&mut stream, &mut received, at).await;
    }
    stream.read_to_end(&mut received).await.unwrap();
    let mut content = received.split_off(at);
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        content = dechunk(&content).unwrap_or_default();
    }
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&content).unwrap_or(Value::Null),
    }
}

/// Reads until the end of the response head that starts at `from` in
/// `received`; its status, headers, and where what follows it starts.
async fn read_head(
    stream: &mut tokio::net::TcpStream,
    received: &mut Vec<u8>,
    from: usize,
) -> (u16, HeaderMap, usize) {
    let end = loop {
        if let Some(i) = received[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection without an answer");
        received.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&received[from..end]).into_owned();
    let (status, fields) = parse_head(text.trim_end()).unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    (status, headers, end)
}

/// `call`, then checks the status and that the JSON error mentions `mention`.
async fn expect_error(
    host: &TestHost,
    (method, path): (&str, &str),
    headers: &[Header<'_>],
    body: impl Into<Vec<u8>>,
    status: u16,
    mention: &str,
) -> Answer {
    let answer = call(host, method, path, headers, body).await;
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
    assert!(
        answer.error().contains(mention),
        "{method} {path}: {:?} should say {mention:?}",
        answer.error()
    );
    answer
}

fn customer_body(id: &str) -> String {
    json!({
        "customer": {"id": id, "name": "ann", "email": "ann@test.com"},
        "products": [{"id": "p1", "name": "Laptop", "stock": 3}],
    })
    .to_string()
}

fn with_token(config: &mut switchyard::Config) {
    config.api_token = Some(TOKEN.into());
}

const POST_DATA: (&str, &str) = ("POST", "/analytics/data");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_bearer_token_and_reads_stay_open() {
    let host = TestHost::start_with(&["merge"], with_token).await;
    host.wait_healthy().await;
    let body = customer_body("c1");
    let wrong = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    let refused: [(&[u8], &str); 6] = [
        (b"", "needs an API token"),
        (basic.as_bytes(), "Bearer <token>"),
        (TOKEN.as_bytes(), "Bearer <token>"),
        (b"Bearer \xff\xfe", "wrong"),
        (wrong.as_bytes(), "wrong"),
        (b"Bearer sy-test-token", "wrong"),
    ];
    for (authorization, mention) in refused {
        let mut headers = vec![JSON_TYPE];
        if !authorization.is_empty() {
            headers.push(("authorization", authorization));
        }
        let answer = expect_error(&host, POST_DATA, &headers, body.clone(), 401, mention).await;
        let challenge = answer.header("www-authenticate");
        assert!(challenge.starts_with("Bearer"), "{challenge:?}");
        assert!(
            !answer.error().contains("sy-test"),
            "echoes a token: {}",
            answer.body
        );
    }
    let headers = [JSON_TYPE, ("authorization", wrong.as_bytes())];
    let answer = call(&host, "POST", "/analytics/data", &headers, body.clone()).await;
    let challenge = answer.header("www-authenticate");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge:?}"
    );
    // The token is checked before the body is read.
    let oversized = format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    expect_error(
        &host,
        POST_DATA,
        &[JSON_TYPE],
        oversized.clone(),
        401,
        "token",
    )
    .await;
    let (status, data) = host.get("/analytics/data").await;
    assert_eq!(
        (status, &data["items"]),
        (200, &json!([])),
        "a refused write changed nothing"
    );

    // The right token, whatever the case of the scheme.
    let bearer = format!("Bearer {TOKEN}");
    for (authorization, id) in [(bearer.clone(), "c1"), (format!("bearer {TOKEN}"), "c2")] {
        let headers = [JSON_TYPE, ("authorization", authorization.as_bytes())];
        let answer = call(
            &host,
            "POST",
            "/analytics/data",
            &headers,
            customer_body(id),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["appliedBy"], json!(["merge"]));
    }

    // Reads need no token.
    for path in [
        "/health",
        "/plugins",
        "/analytics/data",
        "/analytics/collections/customers",
        "/analytics/collections/customers/c1",
        "/analytics/views/merge/data",
    ] {
        let answer = call(&host, "GET", path, &[], "").await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    let (_, data) = host.get("/analytics/data").await;
    assert_eq!(data["items"].as_array().unwrap().len(), 2, "{data}");

    // Past the token, a bad body is still told apart.
    let auth = [JSON_TYPE, ("authorization", bearer.as_bytes())];
    expect_error(&host, POST_DATA, &auth, oversized, 413, "length limit").await;
    expect_error(&host, POST_DATA, &auth, "{\"customer\": ", 400, "JSON").await;
    expect_error(
        &host,
        POST_DATA,
        &auth,
        r#"{"customer": {"id": "c3",}}"#,
        400,
        "JSON",
    )
    .await;
    let text = [("content-type", &b"text/plain"[..]), auth[1]];
    expect_error(&host, POST_DATA, &text, body, 415, "Content-Type").await;
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protect_reads_closes_every_route_but_health() {
    let host = TestHost::start_with(&["merge"], |c| {
        with_token(c);
        c.protect_reads = true;
    })
    .await;
    host.wait_healthy().await;
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}-not");
    let headers = [JSON_TYPE, ("authorization", bearer.as_bytes())];
    let answer = call(
        &host,
        "POST",
        "/analytics/data",
        &headers,
        customer_body("c1"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for (path, with_token) in [
        ("/plugins", 200),
        ("/analytics/data", 200),
        ("/analytics/collections", 200),
        ("/analytics/collections/customers", 200),
        ("/analytics/collections/customers/c1", 200),
        ("/analytics/collections/customers/nobody", 404),
        ("/analytics/views/merge/data", 200),
    ] {
        let missing = expect_error(&host, ("GET", path), &[], "", 401, "needs an API token").await;
        assert!(missing.header("www-authenticate").starts_with("Bearer"));
        let headers = [("authorization", wrong.as_bytes())];
        expect_error(&host, ("GET", path), &headers, "", 401, "wrong").await;
        let headers = [("authorization", bearer.as_bytes())];
        let answer = call(&host, "GET", path, &headers, "").await;
        assert_eq!(answer.status, with_token, "{path}: {}", answer.body);
    }
    let answer = call(&host, "GET", "/health", &[], "").await;
    assert_eq!(answer.status, 200, "/health stays open: {}", answer.body);
    // The console's files hold no data: open; what the page reads is not.
    let answer = call(&host, "GET", "/", &[], "").await;
    assert_eq!(answer.status, 200, "the console stays open");
    expect_error(
        &host,
        ("GET", "/no/such/route"),
        &[],
        "",
        404,
        "no such route",
    )
    .await;
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_token_leaves_the_api_open() {
    let host = TestHost::start_with(&["merge"], |c| c.api_token = Some("".into())).await;
    host.wait_healthy().await;
    let answer = call(
        &host,
        "POST",
        "/analytics/data",
        &[JSON_TYPE],
        customer_body("c1"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_bound_to_the_body_it_first_applied() {
    let host = TestHost::start(&["merge"]).await;
    host.wait_healthy().await;
    let headers = [JSON_TYPE, ("idempotency-key", b"signup-9")];
    let post = async |body: String| call(&host, "POST", "/analytics/data", &headers, body).await;
    // Rejected: nothing changed, so the key stays free for a corrected body.
    let rejected = post(json!({"customer": {"name": "ann"}}).to_string()).await;
    assert_eq!(rejected.status, 400, "{}", rejected.body);
    let first = post(customer_body("c1")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    // The same JSON, spaced differently, is the same request.
    let spaced: Value = serde_json::from_str(&customer_body("c1")).unwrap();
    let again = post(serde_json::to_string_pretty(&spaced).unwrap()).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["eventId"], first.body["eventId"]);
    // Another body under the same key is refused, not silently dropped.
    let other = post(customer_body("c2")).await;
    assert_eq!(other.status, 422, "{}", other.body);
    assert!(other.error().contains("Idempotency-Key"), "{}", other.body);
    assert_eq!(host.get("/analytics/collections/customers/c2").await.0, 404);
    assert_eq!(host.applied_in_store("merge"), 1);
    host.cleanup(&["merge"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_racing_with_one_idempotency_key_apply_once() {
    let host = TestHost::start(&["counter"]).await;
    host.wait_healthy().await;
    let headers = [JSON_TYPE, ("idempotency-key", b"order-17")];
    let attempts = (0..8).map(|_| call(&host, "POST", "/analytics/data", &headers, "{\"n\": 1}"));
    let answers = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(
        statuses.iter().all(|s| [200, 409].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    for answer in answers.iter().filter(|a| a.status == 409) {
        assert!(
            answer.error().contains("Idempotency-Key"),
            "{}",
            answer.body
        );
    }
    // A later retry is recognised.
    let answer = call(&host, "POST", "/analytics/data", &headers, "{\"n\": 1}").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["eventId"], "api/order-17");
    let (_, total) = host.get("/analytics/collections/counts/total").await;
    assert_eq!(total, json!({"count": 1}), "applied once");
    assert_eq!(host.applied_in_store("counter"), 1);
    host.cleanup(&["counter"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_json_4xx_that_says_what_is_wrong() {
    let host = TestHost::start_with(&["merge"], with_token).await;
    host.wait_healthy().await;
    for (path, mention) in [
        ("/analytics/collections/%FF", "UTF-8 in `name`"),
        ("/analytics/collections/customers/%C3%28", "UTF-8 in `key`"),
        ("/analytics/views/%FF/data", "UTF-8 in `plugin`"),
        ("/analytics/data?limit=%FF", "limit"),
        ("/analytics/collections/customers?limit=-1", "limit"),
    ] {
        expect_error(&host, ("GET", path), &[], "", 400, mention).await;
    }
    let answer = expect_error(&host, ("DELETE", "/analytics/data"), &[], "", 405, "method").await;
    assert_eq!(answer.header("allow"), "GET,HEAD,POST");
    expect_error(&host, ("POST", "/health"), &[], "", 405, "method").await;

    let bearer = format!("Bearer {TOKEN}");
    let auth = ("authorization", bearer.as_bytes());
    let json = [JSON_TYPE, auth];
    let good = customer_body("c1");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    expect_error(&host, POST_DATA, &json, "", 400, "JSON").await;
    expect_error(
        &host,
        POST_DATA,
        &json,
        b"{\"customer\": \"\xff\"}",
        400,
        "JSON",
    )
    .await;
    expect_error(&host, POST_DATA, &json, deep, 400, "JSON").await;
    expect_error(&host, POST_DATA, &json, "[1, 2]", 400, "JSON object").await;
    expect_error(&host, POST_DATA, &[auth], good.clone(), 415, "Content-Type").await;
    let odd_type = [("content-type", &b"application/json\xff"[..]), auth];
    expect_error(
        &host,
        POST_DATA,
        &odd_type,
        good.clone(),
        415,
        "Content-Type",
    )
    .await;
    let long_key = "k".repeat(201);
    for key in [&b"\x80\xff"[..], long_key.as_bytes()] {
        let headers = [JSON_TYPE, auth, ("idempotency-key", key)];
        expect_error(
            &host,
            POST_DATA,
            &headers,
            good.clone(),
            400,
            "Idempotency-Key",
        )
        .await;
    }
    let odd_auth = [JSON_TYPE, ("authorization", &b"Bearer \x80\xff"[..])];
    expect_error(&host, POST_DATA, &odd_auth, good, 401, "wrong").await;
    host.cleanup(&["merge"]).await;
}

// ---------------------------------------------------------------------------
// Generated requests. They are written on a raw TCP connection so that no
// client tidies them up: dot segments, broken percent-escapes, non-UTF-8
// header values and chunked bodies reach the server as generated. Each is
// well-formed HTTP/1.1, so the server must answer each one.

/// The body limit of the hosts under test: small, so generated bodies cross it.
const FUZZ_BODY_LIMIT: usize = 16 * 1024;

/// How the request authenticates.
#[derive(Clone, Debug)]
enum Auth {
    None,
    /// A header the API must accept.
    Valid(String),
    /// A header the API must refuse.
    Invalid(Vec<u8>),
}

#[derive(Clone)]
struct RawRequest {
    /// Sent to the host whose reads need the token too.
    protected: bool,
    method: String,
    target: String,
    auth: Auth,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    chunked: bool,
}

fn shorten(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], bytes.len()),
        None => text.into_owned(),
    }
}

impl fmt::Debug for RawRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", shorten(v)))
            .collect();
        f.debug_struct("RawRequest")
            .field("protected", &self.protected)
            .field("method", &self.method)
            .field("target", &shorten(self.target.as_bytes()))
            .field("auth", &self.auth)
            .field("headers", &headers)
            .field("body", &shorten(&self.body))
            .field("chunked", &self.chunked)
            .finish()
    }
}

impl RawRequest {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Whether the route answering this request demands the token: the
    /// write route always, the read routes on the protected host.
    fn needs_token(&self) -> bool {
        let path = self.path().strip_prefix('/').unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let filled = |s: &[&str]| s.iter().all(|s| !s.is_empty());
        let is_data = segments == ["analytics", "data"];
        let read_route = match segments.as_slice() {
            ["analytics", "data"] | ["plugins"] => true,
            ["analytics", "collections", rest @ ..] if rest.len() <= 2 => filled(rest),
            ["analytics", "views", rest @ ..] if rest.len() == 2 => filled(rest),
            _ => false,
        };
        (self.method == "POST" && is_data)
            || (self.protected && ["GET", "HEAD"].contains(&self.method.as_str()) && read_route)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n",
            self.method, self.target
        )
        .into_bytes();
        let mut header = |name: &str, value: &[u8]| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        match &self.auth {
            Auth::None => {}
            Auth::Valid(value) => header("authorization", value.as_bytes()),
            Auth::Invalid(value) => header("authorization", value),
        }
        for (name, value) in &self.headers {
            header(name, value);
        }
        if self.chunked {
            header("transfer-encoding", b"chunked");
        } else if !self.body.is_empty() {
            header("content-length", self.body.len().to_string().as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if self.chunked {
            for chunk in self.body.chunks(3000) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request and reads the answer until the server closes.
async fn send_raw(addr: SocketAddr, request: &RawRequest) -> Result<RawAnswer, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut reader, mut writer) = stream.into_split();
    let bytes = request.bytes();
    // Written beside the read: the server may answer (401, 413) before it
    // has read the body. The write half lives until the answer is read, as
    // a half-closed connection may be dropped unanswered.
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&bytes).await;
        writer
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut raw)).await;
    let _writer = write.await;
    match read {
        Err(_) => return Err("no answer within 30 s".into()),
        // A reset after a complete answer is the server closing early.
        Ok(Err(e)) if raw.is_empty() => return Err(format!("read: {e}")),
        Ok(_) => {}
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("connection closed without an answer: {:?}", shorten(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let (status, headers) = parse_head(&head)?;
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or("a malformed chunked answer")?;
    }
    Ok(RawAnswer {
        status,
        headers,
        body,
    })
}

/// The status and headers (names lowercased) of an answer's head.
fn parse_head(head: &str) -> Result<(u16, Vec<(String, String)>), String> {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = raw.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line]).ok()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(line + 2..line + 2 + size)?);
        raw = raw.get(line + 4 + size..)?;
    }
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("GET".to_owned()),
        5 => Just("POST".to_owned()),
        1 => Just("HEAD".to_owned()),
        2 => prop::sample::select(vec!["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]).prop_map(str::to_owned),
        1 => "[A-Z]{1,10}".prop_filter("methods with their own request forms", |m| m != "CONNECT" && m != "PRI"),
    ]
}

/// Characters a path segment may hold as they are (RFC 3986 `pchar`).
const PCHAR: &str = "[A-Za-z0-9._~!$&'()*+,;=:@-]";

fn segment() -> impl Strategy<Value = String> {
    let escape = prop_oneof![
        4 => any::<u8>().prop_map(|b| format!("%{b:02X}")),
        2 => PCHAR.prop_map(String::from),
        1 => prop::sample::select(vec!["%", "%G", "%C3", "%E2%82", "%00", "%2F", "%2e%2e"]).prop_map(str::to_owned),
    ];
    prop_oneof![
        16 => prop::sample::select(vec![
            "analytics", "data", "collections", "views", "plugins", "health", "customers",
            "products", "merge", "c1", "p1", "data", "", ".", "..",
        ])
        .prop_map(str::to_owned),
        12 => "[A-Za-z0-9._~!$&'()*+,;=:@-]{0,16}",
        12 => prop::collection::vec(escape, 1..24).prop_map(|parts| parts.concat()),
        8 => (256usize..8192).prop_map(|n| "y".repeat(n)),
        // Past the longest URI the HTTP parser takes: 414 before any routing.
        1 => (66_000usize..70_000).prop_map(|n| "z".repeat(n)),
    ]
}

fn target() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        4 => Just("/analytics/data".to_owned()),
        3 => prop::sample::select(vec![
            "/health", "/plugins", "/analytics/collections/customers",
            "/analytics/collections/products/p1", "/analytics/views/merge/data",
        ])
        .prop_map(str::to_owned),
        2 => (
            prop::sample::select(vec![
                "/analytics/collections/", "/analytics/collections/customers/",
                "/analytics/views/", "/analytics/views/merge/",
            ]),
            segment(),
        )
            .prop_map(|(prefix, segment)| format!("{prefix}{segment}")),
        3 => prop::collection::vec(segment(), 0..6).prop_map(|s| format!("/{}", s.join("/"))),
    ];
    (path, query()).prop_map(|(path, query)| format!("{path}{query}"))
}

/// A query parameter's value: the edges of `limit` (1 to 1000, a u32),
/// numbers, text, percent-escapes of any byte, long runs.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "0", "1", "1000", "1001", "-1", "", "01", "+5", "%205", "1e3", "4294967295",
            "4294967296", "%31%30",
        ])
        .prop_map(str::to_owned),
        2 => (0u32..1100).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        2 => "[A-Za-z0-9._~+%-]{0,20}",
        2 => prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| b.iter().map(|b| format!("%{b:02X}")).collect()),
        1 => (100usize..3000).prop_map(|n| "q".repeat(n)),
    ]
}

/// The page arguments, `?limit=&after=`, each there or not.
fn page_query() -> impl Strategy<Value = String> {
    (
        prop::option::weighted(0.8, query_value()),
        prop::option::weighted(0.4, query_value()),
    )
        .prop_map(|(limit, after)| {
            let limit = limit.map(|v| format!("limit={v}"));
            let after = after.map(|v| format!("after={v}"));
            let pairs: Vec<String> = limit.into_iter().chain(after).collect();
            format!("?{}", pairs.join("&"))
        })
}

/// Any query string: known and unknown keys, repeated or not.
fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        6 => prop::sample::select(vec!["limit", "after", ""]).prop_map(str::to_owned),
        1 => "[a-z0-9%]{1,8}",
    ];
    let value = query_value();
    let pair = (key, prop::option::of(value)).prop_map(|(k, v)| match v {
        Some(v) => format!("{k}={v}"),
        None => k,
    });
    prop_oneof![
        2 => Just(String::new()),
        1 => Just("?".to_owned()),
        4 => prop::collection::vec(pair, 1..4).prop_map(|pairs| format!("?{}", pairs.join("&"))),
    ]
}

/// Bytes a header value may hold: visible ASCII, space, tab and obs-text.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..40)
}

fn auth() -> impl Strategy<Value = Auth> {
    let valid = vec![
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER   {TOKEN}"),
    ];
    let invalid = vec![
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Basic {TOKEN}"),
        format!("Bearer{TOKEN}"),
        TOKEN.to_owned(),
        "Bearer".to_owned(),
    ];
    prop_oneof![
        3 => Just(Auth::None),
        4 => prop::sample::select(valid).prop_map(Auth::Valid),
        2 => prop::sample::select(invalid).prop_map(|v| Auth::Invalid(v.into_bytes())),
        1 => header_value().prop_map(|v| Auth::Invalid([&b"Bearer "[..], &v].concat())),
        1 => header_value().prop_map(Auth::Invalid),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let content_type = prop_oneof![
        prop::sample::select(vec![
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.switchyard+json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/",
            "json",
        ])
        .prop_map(|v| v.as_bytes().to_vec()),
        header_value(),
    ];
    let idempotency_key = prop_oneof![
        "[A-Za-z0-9/_-]{1,40}".prop_map(String::into_bytes),
        header_value(),
        (190usize..230).prop_map(|n| vec![b'k'; n]),
    ];
    let other = ("x-[a-z]{1,8}", header_value());
    (
        prop::option::weighted(0.7, content_type),
        prop::option::weighted(0.3, idempotency_key),
        prop::option::weighted(0.2, other),
    )
        .prop_map(|(content_type, key, other)| {
            let mut headers = Vec::new();
            if let Some(v) = content_type {
                headers.push(("content-type".to_owned(), v));
            }
            if let Some(v) = key {
                headers.push(("idempotency-key".to_owned(), v));
            }
            headers.extend(other);
            headers
        })
}

/// A body in the legacy shape, with odd but valid values.
fn legacy_body() -> impl Strategy<Value = String> {
    let text = prop_oneof![".{0,12}", Just(String::new()), "[a-z]{1,6}"];
    let product = (
        text.clone(),
        text.clone(),
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            (0i64..10).prop_map(Value::from),
            Just(json!("3")),
            Just(json!(1.5))
        ],
    );
    (
        text.clone(),
        text.clone(),
        text,
        prop::collection::vec(product, 0..4),
    )
        .prop_map(|(id, name, email, products)| {
            let products: Vec<Value> = products
                .into_iter()
                .map(|(id, name, stock)| json!({"id": id, "name": name, "stock": stock}))
                .collect();
            json!({"customer": {"id": id, "name": name, "email": email}, "products": products})
                .to_string()
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let near_valid = (
        legacy_body(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        0..3u8,
    )
        .prop_map(|(body, at, byte, how)| {
            let mut bytes = body.into_bytes();
            let i = at.index(bytes.len());
            match how {
                0 => bytes.truncate(i),
                1 => bytes.insert(i, byte),
                _ => bytes[i] = byte,
            }
            bytes
        });
    prop_oneof![
        2 => Just(Vec::new()),
        3 => legacy_body().prop_map(String::into_bytes),
        3 => near_valid,
        2 => prop::collection::vec(any::<u8>(), 0..512),
        1 => (1usize..400).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        2 => (FUZZ_BODY_LIMIT + 1..FUZZ_BODY_LIMIT + 4096)
            .prop_map(|n| format!("{{\"pad\": \"{}\"}}", "x".repeat(n)).into_bytes()),
    ]
}

/// Any request: every part drawn on its own.
fn any_request() -> impl Strategy<Value = RawRequest> {
    (
        any::<bool>(),
        method(),
        target(),
        auth(),
        headers(),
        body(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(protected, method, target, auth, headers, body, chunked)| RawRequest {
                protected,
                method,
                target,
                auth,
                headers,
                body,
                chunked,
            },
        )
}

/// A `POST /analytics/data` that mostly gets past the token and the content
/// type, so that its body reaches the handler and the plugin.
fn write_request() -> impl Strategy<Value = RawRequest> {
    let auth = prop_oneof![
        3 => Just(Auth::Valid(format!("Bearer {TOKEN}"))),
        1 => auth(),
    ];
    let headers = (headers(), prop::bool::weighted(0.8)).prop_map(|(mut headers, json)| {
        if json {
            headers.retain(|(name, _)| name != "content-type");
            headers.push(("content-type".to_owned(), b"application/json".to_vec()));
        }
        headers
    });
    (
        any::<bool>(),
        query(),
        auth,
        headers,
        body(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(protected, query, auth, headers, body, chunked)| RawRequest {
                protected,
                method: "POST".to_owned(),
                target: format!("/analytics/data{query}"),
                auth,
                headers,
                body,
                chunked,
            },
        )
}

/// A read that mostly gets past the token: one of the read routes, with
/// generated parameters and page arguments.
fn read_request() -> impl Strategy<Value = RawRequest> {
    let auth = prop_oneof![
        3 => Just(Auth::Valid(format!("Bearer {TOKEN}"))),
        1 => auth(),
    ];
    let path = prop_oneof![
        prop::sample::select(vec![
            "/analytics/data",
            "/plugins",
            "/analytics/collections/customers",
            "/analytics/views/merge/data",
            "/analytics/collections/products/p1",
        ])
        .prop_map(str::to_owned),
        (
            prop::sample::select(vec![
                "/analytics/collections/",
                "/analytics/collections/customers/",
                "/analytics/views/merge/",
                "/analytics/views/",
            ]),
            segment(),
        )
            .prop_map(|(prefix, segment)| format!("{prefix}{segment}")),
    ];
    (
        any::<bool>(),
        prop::sample::select(vec!["GET", "GET", "GET", "HEAD"]),
        path,
        prop_oneof![query(), page_query()],
        auth,
        headers(),
    )
        .prop_map(
            |(protected, method, path, query, auth, headers)| RawRequest {
                protected,
                method: method.to_owned(),
                target: format!("{path}{query}"),
                auth,
                headers,
                body: Vec::new(),
                chunked: false,
            },
        )
}

fn request() -> impl Strategy<Value = RawRequest> {
    prop_oneof![2 => any_request(), 2 => write_request(), 2 => read_request()]
}

/// What every answer must be, whatever the request.
fn judge(request: &RawRequest, answer: &RawAnswer) -> Result<(), TestCaseError> {
    let status = answer.status;
    let body = String::from_utf8_lossy(&answer.body);
    // The only 5xx allowed: /health while the broker is away.
    let health_down = status == 503 && request.path() == "/health";
    prop_assert!(status < 500 || health_down, "{status} {body}");
    // 414 and 431 come from the HTTP parser, before any route, with no body.
    if matches!(status, 414 | 431) {
        return Ok(());
    }
    if status >= 400 && request.method != "HEAD" {
        prop_assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{} {}",
            status,
            body
        );
        let error: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {body}")))?;
        prop_assert!(error["error"].is_string(), "{} {}", status, body);
        prop_assert!(
            !body.contains(TOKEN),
            "the answer shows the token: {}",
            body
        );
    }
    let refused = request.needs_token() && !matches!(request.auth, Auth::Valid(_));
    prop_assert_eq!(status == 401, refused, "{} {}", status, body);
    if status == 401 {
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        prop_assert!(
            challenge.starts_with("Bearer"),
            "401 with challenge {:?}",
            challenge
        );
    }
    Ok(())
}

/// Generated requests (500, or `SWITCHYARD_FUZZ_CASES`) against two hosts
/// with a token, one of which protects its reads. Each answer must be a
/// non-5xx; an error must be the JSON error shape; a 401 must come exactly
/// when the route needs the token and the request lacks it. A failure is
/// shrunk to a minimal request and printed. Run with `--nocapture` to see
/// how many requests were sent and the answers by status.
#[test]
fn no_generated_request_gets_a_5xx() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = |protect_reads: bool| {
        TestHost::start_with(&["merge"], move |c| {
            with_token(c);
            c.protect_reads = protect_reads;
            c.max_body_bytes = FUZZ_BODY_LIMIT;
        })
    };
    let (open, protected) = runtime.block_on(async {
        let hosts = (start(false).await, start(true).await);
        hosts.0.wait_healthy().await;
        hosts.1.wait_healthy().await;
        hosts
    });
    let addr = |host: &TestHost| host.running.as_ref().unwrap().http_addr;
    let (open_addr, protected_addr) = (addr(&open), addr(&protected));

    let cases = std::env::var("SWITCHYARD_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let sent = AtomicUsize::new(0);
    let statuses = Mutex::new(BTreeMap::<u16, usize>::new());
    let outcome = runner.run(&request(), |request| {
        let addr = if request.protected {
            protected_addr
        } else {
            open_addr
        };
        let answer = runtime
            .block_on(send_raw(addr, &request))
            .map_err(TestCaseError::fail)?;
        sent.fetch_add(1, Ordering::Relaxed);
        *statuses.lock().unwrap().entry(answer.status).or_default() += 1;
        judge(&request, &answer)
    });
    let sent = sent.into_inner();
    let statuses = statuses.into_inner().unwrap();
    println!("generated requests sent: {sent}; answers by status: {statuses:?}");
    match outcome {
        Ok(()) => {}
        Err(TestError::Fail(why, request)) => {
            panic!("{why}\nminimal failing request: {request:#?}")
        }
        Err(e) => panic!("{e}"),
    }
    // The generator reaches past the token and into the handlers.
    for status in [200, 400, 401, 404, 405, 413, 415] {
        assert!(
            statuses.contains_key(&status),
            "no {status} among {statuses:?}"
        );
    }
    runtime.block_on(async {
        open.cleanup(&["merge"]).await;
        protected.cleanup(&["merge"]).await;
    });
}
