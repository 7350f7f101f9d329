//! The `switchyard:plugin/producer` world for producer plugins: its
//! bindings (a plugin implements [`Guest`] and calls
//! `export!(MyProducer with_types_in switchyard_feed::component)`), a
//! streaming HTTP GET through `wasi:http`, and [`run`], one poll of a feed.
//!
//! The settings a poll reads (`--plugin-setting <plugin>.<key>=<value>`):
//! `base-url` (required), `path` (the plugin's default, e.g. `/customers`),
//! `max-answer-bytes` and the pagination settings of [`crate::paging`].

wit_bindgen::generate!({
    path: "../../wit",
    world: "producer",
    generate_all,
    pub_export_macro: true,
    default_bindings_module: "switchyard_feed::component",
});

use std::io::{self, Read};

use switchyard::plugin::log::{self, Level};
use switchyard::plugin::{publish, settings, state};
use switchyard_instant::Instant;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingRequest, RequestOptions,
    Scheme,
};
use wasi::io::streams::{InputStream, StreamError};

use crate::paging::Pager;
use crate::{Feed, Produced, Walk, listing};

/// Bytes one upstream answer (one page) may have unless
/// `max-answer-bytes` says otherwise. Records are parsed as they arrive, so
/// this bounds the time and bandwidth of a runaway answer, not memory.
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

/// Events handed to the host while the walk goes on, at most this many at
/// a time (the plugin's memory holds no more events than this).
const CHUNK: usize = 500;

/// One poll: walk `<base-url><path>` (every page of it) and turn what
/// changed into events. Events go out in chunks through `publish` as the
/// walk goes; the last ones are returned.
pub fn run(feed: &Feed<'_>, default_path: &str) -> Result<Vec<ProducedEvent>, String> {
    let base = settings::get("base-url").ok_or(
        "no base-url setting: configure --plugin-setting <plugin>.base-url=http://host:port",
    )?;
    let path = settings::get("path").unwrap_or_else(|| default_path.to_owned());
    let max_bytes = match settings::get("max-answer-bytes") {
        None => DEFAULT_MAX_ANSWER_BYTES,
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("setting max-answer-bytes={v:?} is not a number of bytes"))?,
    };
    let mut pager = Pager::new(
        &format!("{}{path}", base.trim_end_matches('/')),
        settings::get,
    )?;
    let mut state = HostState;
    let mut walk = Walk::new(feed, &mut state, Instant::from_millis(now_ms()));
    let mut url = pager.first()?;
    loop {
        let mut answer = Answer::get(&url, max_bytes)?;
        let shape = pager.shape().clone();
        let page = listing::read(&mut answer, &shape, &mut |record| {
            walk.record(record);
            if walk.ready() < CHUNK {
                return Ok(());
            }
            let events: Vec<ProducedEvent> = walk.take().into_iter().map(wit).collect();
            publish::publish(&events).map_err(|e| format!("publishing during the poll: {e}"))
        })
        .map_err(|e| format!("GET {url}: {e}"))?;
        let link = answer.link.take();
        drop(answer);
        match pager.next(&url, &page, link.as_deref())? {
            Some(next) => url = next,
            None => break,
        }
    }
    let done = walk.finish();
    if let Some(warning) = &done.warning {
        log::log(Level::Warn, warning);
    }
    if let Some(all_clear) = &done.resolved {
        log::log(Level::Info, all_clear);
    }
    Ok(done.events.into_iter().map(wit).collect())
}

fn wit(p: Produced) -> ProducedEvent {
    ProducedEvent {
        id: p.id,
        routing_key: p.routing_key,
        body: p.body,
    }
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

    fn delete(&mut self, key: &str) {
        state::delete(key);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A 2xx answer whose body is read as it arrives.
pub struct Answer {
    /// The `Link` header, if any (several are joined with `, `).
    pub link: Option<String>,
    read: u64,
    max_bytes: u64,
    buffered: Vec<u8>,
    at: usize,
    // Dropped in this order: a stream before its body, a body before its
    // response.
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
}

impl Answer {
    /// GET `url` (`http[s]://host[:port]/path?query`); an error for anything
    /// but a 2xx answer.
    pub fn get(url: &str, max_bytes: u64) -> Result<Self, String> {
        let (scheme, rest) = match url.split_once("://") {
            Some(("http", rest)) => (Scheme::Http, rest),
            Some(("https", rest)) => (Scheme::Https, rest),
            _ => return Err(format!("{url:?} is not an http(s) URL")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
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
            .set_path_with_query(Some(&path))
            .map_err(|()| format!("bad path {path:?}"))?;
        // Nanoseconds; the host clamps them to its own limits.
        let options = RequestOptions::new();
        let _ = options.set_connect_timeout(Some(2_000_000_000));
        let _ = options.set_first_byte_timeout(Some(10_000_000_000));
        let _ = options.set_between_bytes_timeout(Some(10_000_000_000));

        let pending =
            outgoing_handler::handle(request, Some(options)).map_err(|e| describe(url, e))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(describe(url, code)),
            Some(Err(())) | None => return Err(format!("GET {url}: no response")),
        };
        let status = response.status();
        if !(200..300).contains(&status) {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let links: Vec<String> = response
            .headers()
            .get("link")
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect();
        let body = response.consume().map_err(|()| "body already taken")?;
        let stream = body.stream().map_err(|()| "body stream already taken")?;
        Ok(Self {
            link: (!links.is_empty()).then(|| links.join(", ")),
            read: 0,
            max_bytes,
            buffered: Vec::new(),
            at: 0,
            stream,
            _body: body,
            _response: response,
        })
    }
}

impl Read for Answer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buffered.len() {
            match self.stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    self.read += chunk.len() as u64;
                    if self.read > self.max_bytes {
                        return Err(io::Error::other(format!(
                            "the answer is larger than {} bytes (setting max-answer-bytes; \
                             or paginate it: setting pagination)",
                            self.max_bytes
                        )));
                    }
                    self.buffered = chunk;
                    self.at = 0;
                }
                Err(StreamError::Closed) => return Ok(0),
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(io::Error::other(e.to_debug_string()));
                }
            }
        }
        let n = buf.len().min(self.buffered.len() - self.at);
        buf[..n].copy_from_slice(&self.buffered[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
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
