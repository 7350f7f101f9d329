//! The `switchyard:plugin/producer` world for producer plugins: its
//! bindings (a plugin implements [`Guest`] and calls
//! `export!(MyProducer with_types_in switchyard_feed::component)`), a
//! blocking HTTP GET through `wasi:http`, and [`run`], one poll of a feed.

wit_bindgen::generate!({
    path: "../../wit",
    world: "producer",
    generate_all,
    pub_export_macro: true,
    default_bindings_module: "switchyard_feed::component",
});

use switchyard::plugin::{settings, state};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::streams::StreamError;

use crate::Feed;

/// Upstream answers larger than this are refused.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// One poll: GET `<base-url setting><path>` and turn the listing into events.
pub fn run(feed: &Feed<'_>, path: &str) -> Result<Vec<ProducedEvent>, String> {
    let base = settings::get("base-url").ok_or(
        "no base-url setting: configure --plugin-setting <plugin>.base-url=http://host:port",
    )?;
    let listing = get(&format!("{}{path}", base.trim_end_matches('/')))?;
    let now = crate::iso8601(now_ms());
    let produced = crate::poll(feed, &mut HostState, &listing, &now)?;
    Ok(produced
        .into_iter()
        .map(|p| ProducedEvent {
            id: p.id,
            routing_key: p.routing_key,
            body: p.body,
        })
        .collect())
}

/// [`crate::State`] on the host's `state` import.
struct HostState;

impl crate::State for HostState {
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    fn set(&mut self, key: &str, value: &[u8]) {
        state::set(key, value);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A blocking GET of `url` (`http[s]://host[:port]/path`); the body of a
/// 2xx answer, as text.
pub fn get(url: &str) -> Result<String, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("{url:?} is not an http(s) URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    headers
        .append("accept", b"application/json")
        .map_err(|e| format!("header: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    request
        .set_method(&Method::Get)
        .map_err(|()| "bad method")?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("bad authority {authority:?}"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("bad path {path:?}"))?;
    // Nanoseconds; the host clamps them to its own limits.
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(2_000_000_000));
    let _ = options.set_first_byte_timeout(Some(5_000_000_000));
    let _ = options.set_between_bytes_timeout(Some(5_000_000_000));

    let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| describe(url, e))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(describe(url, code)),
        Some(Err(())) | None => return Err(format!("GET {url}: no response")),
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "body already taken")?;
    let stream = body.stream().map_err(|()| "body stream already taken")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_BODY {
                    return Err(format!("GET {url}: answer larger than {MAX_BODY} bytes"));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!(
                    "GET {url}: reading the answer: {}",
                    e.to_debug_string()
                ));
            }
        }
    }
    // The stream belongs to the body: drop it before finishing the body.
    drop(stream);
    drop(IncomingBody::finish(body));
    if !(200..300).contains(&status) {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    String::from_utf8(bytes).map_err(|_| format!("GET {url}: the answer is not UTF-8"))
}

fn describe(url: &str, code: ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            format!("GET {url}: refused by the host (origin not granted to this plugin)")
        }
        ErrorCode::TlsCertificateError => format!(
            "GET {url}: the server's TLS certificate is not trusted by the host (its CA can be added with --tls-ca-file)"
        ),
        other => format!("GET {url}: {other:?}"),
    }
}
